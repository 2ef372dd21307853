"""Money beyond USD, per source, from the platform's request to the email the customer gets.

JPY and ISK have no minor unit, BHD and KWD have three decimals; Stripe sends ISK in hundredths and three-decimal
currencies in thousandths. A source that records ¥5,000 as ¥50 (or 50 dinars as 50,000) fails here: on the amount
stored, on the invoice being paid in full, and on the digits the customer reads. PayPal has no three-decimal
currency nor ISK; its zero-decimal ones are JPY, HUF and TWD (which PayPal sends without decimals).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple
from urllib.parse import quote

import pytest

from bot.domain.money import Money, currency_markers
from bot.storage import models
from tests.contract.samples import payload
from tests.harness import stripe_invoice_event
from tests.sources.helpers import load, mail_text, post
from tests.sources.test_paypal import RECEIVER, configs, paypal  # noqa: F401  (fixtures)


class Case(NamedTuple):
    currency: str
    amount: str  # the invoice, in major units
    stripe_minor: int  # as Stripe sends it
    written: str  # as a person (or Zapier's formatter) writes it
    shown: str  # the digits the customer must read


CASES = [
    Case("JPY", "5000", 5000, "¥5,000", "5,000"),
    Case("ISK", "5000", 500000, "ISK 5,000", "5,000"),
    Case("BHD", "1250.500", 1250500, "BHD 1,250.500", "1,250.500"),
    Case("KWD", "3400.250", 3400250, "3,400.250 KWD", "3,400.250"),
]
IDS = [case.currency for case in CASES]




async def jane_owes(paybot, currency: str, amount: str) -> None:  # type: ignore[no-untyped-def]
    await paybot.add_customer(external_ids={"square": "JDKYHBWT1D4F8MFH63DBMEN8Y4"})
    await paybot.add_invoice("INV-1042", amount, currency)


async def assert_paid_in_full_and_told(paybot, sendgrid, currency: str, amount: str, shown: str) -> None:  # type: ignore[no-untyped-def]
    await paybot.deliver()
    expected = Money.of(amount, currency)
    [payment] = await paybot.rows(models.Payment)
    assert (payment.currency, payment.amount_minor) == (currency, expected.minor)
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == expected.minor
    [mail] = sendgrid.accepted
    text = mail_text(mail)
    # The wording and the symbol are the locale's (another change shapes them); the digits are the amount's.
    assert shown in text and any(marker in text for marker in currency_markers(currency)), text


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_stripe(paybot, sendgrid, case):
    await jane_owes(paybot, case.currency, case.amount)
    event = stripe_invoice_event(amount_paid=case.stripe_minor, currency=case.currency.lower())
    assert (await paybot.post_stripe(event)).status == 200
    await assert_paid_in_full_and_told(paybot, sendgrid, case.currency, case.amount, case.shown)


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_square(paybot, sendgrid, case):
    await jane_owes(paybot, case.currency, case.amount)
    body = load("square", "payment_updated_completed.json")
    minor = Money.of(case.amount, case.currency).minor  # Square: ISO 4217 minor units
    payment = body["data"]["object"]["payment"]
    for name in ("amount_money", "total_money", "approved_money"):
        payment[name] = {"amount": minor, "currency": case.currency}
    assert (await post(paybot, "square", body)).status == 200
    await assert_paid_in_full_and_told(paybot, sendgrid, case.currency, case.amount, case.shown)


@pytest.mark.parametrize("written", [False, True], ids=["plain", "written"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_wave(paybot, sendgrid, case, written):
    await jane_owes(paybot, case.currency, case.amount)
    amount = case.written if written else case.amount
    body = load("wave", "zapier_partial.json", status="PAID", currency=case.currency, total=amount,
                amount_paid=amount, payment_amount=amount, amount_due="0")
    response = await post(paybot, "wave", body)
    assert response.status == 200, await response.text()
    await assert_paid_in_full_and_told(paybot, sendgrid, case.currency, case.amount, case.shown)


PAYPAL_CASES = [("JPY", "5000", "5,000"), ("HUF", "125000", "125,000"), ("TWD", "5000", "5,000")]


def ipn(**changes: str) -> bytes:
    pairs = [pair.split(b"=", 1) for pair in payload("paypal", "ipn_completed.form").split(b"&")]
    return b"&".join(k + b"=" + (quote(changes[k.decode()]).encode() if k.decode() in changes else v)
                     for k, v in pairs)


@pytest.mark.parametrize(("currency", "amount", "shown"), PAYPAL_CASES, ids=[c[0] for c in PAYPAL_CASES])
async def test_paypal_ipn(paybot, sendgrid, paypal, currency, amount, shown):
    await jane_owes(paybot, currency, amount)
    body = paypal.sent_ipn(ipn(mc_gross=amount, payment_gross="", mc_fee="0", mc_currency=currency))
    response = await paybot.client.post("/webhooks/paypal", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 200
    await paybot.runtime.settle()
    await assert_paid_in_full_and_told(paybot, sendgrid, currency, amount, shown)


@pytest.mark.parametrize(("currency", "amount", "shown"), PAYPAL_CASES, ids=[c[0] for c in PAYPAL_CASES])
async def test_paypal_rest(paybot, sendgrid, paypal, currency, amount, shown):
    await jane_owes(paybot, currency, amount)
    event: dict[str, Any] = json.loads(payload("paypal", "rest_capture_completed.json"))
    event["resource"]["amount"] = {"currency_code": currency, "value": amount}
    event["resource"]["payee"]["email_address"] = RECEIVER
    body = json.dumps(event).encode()
    response = await paybot.client.post("/webhooks/paypal", data=body, headers=paypal.transmit(body, paybot.clock()))
    assert response.status == 200, await response.text()
    await assert_paid_in_full_and_told(paybot, sendgrid, currency, amount, shown)


async def test_wave_dollars_as_zapier_formats_them(paybot, sendgrid):
    await jane_owes(paybot, "USD", "2400.00")
    body = load("wave", "zapier_partial.json", status="PAID", total="$2,400.00", amount_paid="$2,400.00",
                payment_amount="$2,400.00", amount_due="$0.00")
    assert (await post(paybot, "wave", body)).status == 200
    await assert_paid_in_full_and_told(paybot, sendgrid, "USD", "2400.00", "2,400.00")


@pytest.mark.parametrize(("amount", "currency"), [("1.250", "USD"), ("5.000", "JPY"), ("€10.00", "USD")])
async def test_wave_an_amount_not_read_one_way_is_400_naming_the_field(paybot, amount, currency):
    body = load("wave", "zapier_partial.json", currency=currency, payment_amount=amount)
    response = await post(paybot, "wave", body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert "payment_amount" in error and amount not in error  # the reason, never the input echoed
    assert await paybot.rows(models.Payment) == []
