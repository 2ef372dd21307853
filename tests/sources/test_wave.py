"""Wave through a "Webhooks by Zapier" POST: JSON or form payload, `X-Webhook-Secret`; HTTP in → fake SendGrid."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from bot.storage import models
from tests.contract.samples import payload
from tests.sources.helpers import load, mail_text, post

PARTIAL = "zapier_partial.json"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def given_jane_owes_1250(paybot) -> None:  # type: ignore[no-untyped-def]
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")


@pytest.mark.parametrize(("body", "headers"), [
    (payload("wave", PARTIAL), {}),
    (payload("wave", "zapier_partial.form"), FORM),
], ids=["json", "form"])
async def test_a_relayed_payment_names_invoice_amount_and_balance(paybot, sendgrid, body, headers):
    await given_jane_owes_1250(paybot)
    response = await post(paybot, "wave", body, **headers)
    assert response.status == 200
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "INV-1042" in mail["subject"]
    assert "$500.00" in mail_text(mail) and "$750.00 is still owed on invoice INV-1042" in mail_text(mail)
    [payment] = await paybot.rows(models.Payment)
    assert payment.payment_ref == json.loads(payload("wave", PARTIAL))["payment_id"]


async def test_without_payment_amount_amount_paid_is_everything_paid_so_far(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    await post(paybot, "wave", load("wave", PARTIAL))
    paid = await post(paybot, "wave", load("wave", "zapier_invoice_paid_no_payment.json"))
    assert paid.status == 200
    await paybot.deliver()
    first, second = sendgrid.accepted
    assert "$750.00" in mail_text(second) and "Invoice INV-1042 is now paid in full" in mail_text(second)
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 125000


async def test_a_replayed_zap_run_is_a_duplicate_even_without_a_payment_id(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    body = load("wave", "zapier_invoice_paid_no_payment.json")
    first = await post(paybot, "wave", body)
    paybot.clock.advance(300)  # Zapier's Autoreplay: 5 minutes later, the same body
    again = await post(paybot, "wave", body)
    assert (first.status, again.status) == (200, 200)
    assert (await again.json())["duplicate"] is True
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


@pytest.mark.parametrize("headers", [{"X-Webhook-Secret": "a-guess"}, {"X-Webhook-Secret": ""}])
async def test_a_wrong_or_missing_secret_is_401(paybot, headers):
    response = await post(paybot, "wave", load("wave", PARTIAL), **headers)
    assert response.status == 401
    assert await paybot.rows(models.WebhookEvent) == []
    assert await paybot.audit_kinds() == [] and await paybot.refused() == [("wave", 401, 1)]


@pytest.mark.parametrize(("body", "headers", "named"), [
    (urlencode({"invoice_number": "INV-1042", "status": "PAID", "currency": "USD", "amount_paid": "a lot"}).encode(),
     FORM, "amount_paid"),
    (json.dumps({"invoice_number": "INV-1042", "status": "PAID", "amount_paid": "10.00"}).encode(), {}, "currency"),
    (json.dumps({"status": "PAID", "currency": "USD", "amount_paid": "10.00"}).encode(), {}, "invoice_"),
    (b"status=PAID&&&=", FORM, "form"),
], ids=["not-a-number", "no-currency", "no-invoice", "broken-form"])
async def test_malformed_is_400_naming_the_problem(paybot, body, headers, named):
    response = await post(paybot, "wave", body, **headers)
    assert response.status == 400
    assert named in (await response.json())["error"]


async def test_oversized_is_413(paybot):
    response = await post(paybot, "wave", b"{" + b" " * paybot.runtime.settings.max_body_bytes + b"}")
    assert response.status == 413


async def test_an_unpaid_invoice_is_stored_and_ignored(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    response = await post(paybot, "wave", load("wave", PARTIAL, status="UNPAID"))
    assert response.status == 200
    assert await paybot.rows(models.Payment) == []


async def test_a_payment_in_another_currency_is_not_thanked_as_paying_the_invoice(paybot, sendgrid, slack):
    await given_jane_owes_1250(paybot)
    assert (await post(paybot, "wave", load("wave", PARTIAL, currency="CAD"))).status == 200
    await paybot.deliver()
    assert sendgrid.accepted == []
    [card] = slack.posted("C0FINANCE")
    assert "INV-1042" in json.dumps(card)
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 0
