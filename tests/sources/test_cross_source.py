"""One payment, several reports: Stripe and a Square or Wave relay seeing the same money thank the customer once,
and the later report adds its reference to the payment already recorded."""

from __future__ import annotations

import pytest

from bot.storage import models
from tests.harness import stripe_invoice_event
from tests.sources.helpers import load, mail_text, post

WAVE_PAYMENT_ID = "wave-payment-1"


async def given_jane_owes_1250(paybot) -> None:  # type: ignore[no-untyped-def]
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")


def wave_instalment(payment_id: str, paid_so_far: str, due: str) -> dict[str, str]:
    return load("wave", "zapier_partial.json", payment_id=payment_id, amount_paid=paid_so_far, amount_due=due)


async def payments(paybot) -> list[models.Payment]:  # type: ignore[no-untyped-def]
    return await paybot.rows(models.Payment)


async def test_stripe_then_a_wave_relay_thank_once_and_the_payment_gains_the_wave_reference(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    await paybot.post_stripe(stripe_invoice_event())
    relayed = load("wave", "zapier_partial.json", payment_id=WAVE_PAYMENT_ID, payment_amount="1250.00",
                   amount_paid="1250.00", amount_due="0.00", status="PAID")
    assert (await post(paybot, "wave", relayed)).status == 200
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "$1,250.00" in mail_text(mail)
    original, report = await payments(paybot)
    assert report.duplicate_of == original.id
    assert original.details["wave_ref"] == WAVE_PAYMENT_ID


async def test_a_wave_relay_then_stripes_invoice_state_thank_once(paybot, sendgrid):
    # Stripe's invoice.paid states everything paid so far: nothing new, so it restates the relayed payment.
    await given_jane_owes_1250(paybot)
    relayed = load("wave", "zapier_partial.json", payment_id=WAVE_PAYMENT_ID, payment_amount="1250.00",
                   amount_paid="1250.00", amount_due="0.00", status="PAID")
    await post(paybot, "wave", relayed)
    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    original, report = await payments(paybot)
    assert report.duplicate_of == original.id and original.details["stripe_ref"] == ""
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 125000


async def test_square_and_wave_reporting_one_payment_thank_once(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    await post(paybot, "square", load("square", "payment_updated_completed.json"))
    relayed = wave_instalment(WAVE_PAYMENT_ID, "200.00", "1050.00") | {"payment_amount": "200.00"}
    await post(paybot, "wave", relayed)
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "$1,050.00 is still owed on invoice INV-1042" in mail_text(mail)
    original, report = await payments(paybot)
    assert report.duplicate_of == original.id
    assert original.details["wave_ref"] == WAVE_PAYMENT_ID


async def test_two_equal_instalments_reported_by_both_are_two_payments_each_reported_twice(paybot, stripe_api,
                                                                                         sendgrid):
    await given_jane_owes_1250(paybot)
    stripe_api.invoices["in_1QabcINV1042"] = load("stripe", "invoice_open_partial.json")
    first_pi = load("stripe", "invoice_payment_paid.json")
    second_pi = load("stripe", "invoice_payment_paid.json", id="evt_1QinvpayPAID0002")
    second_pi["data"]["object"]["payment"]["payment_intent"] = "pi_3QabcPART0002"

    await paybot.post_stripe(first_pi)
    await paybot.runtime.settle()  # read back after the answer
    await post(paybot, "wave", wave_instalment("wave-1", "400.00", "850.00") | {"payment_amount": "400.00"})
    await paybot.post_stripe(second_pi)
    await paybot.runtime.settle()
    await post(paybot, "wave", wave_instalment("wave-2", "800.00", "450.00") | {"payment_amount": "400.00"})
    await paybot.deliver()

    assert len(sendgrid.accepted) == 2
    pi_1, wave_1, pi_2, wave_2 = await payments(paybot)
    assert (wave_1.duplicate_of, wave_2.duplicate_of) == (pi_1.id, pi_2.id)
    assert (pi_1.details["wave_ref"], pi_2.details["wave_ref"]) == ("wave-1", "wave-2")
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 80000


# --- Accounting platforms: the firm's Xero records the same money Stripe took (a bank-feed reconciliation). ---

@pytest.fixture
async def xero_api(aiohttp_server):  # type: ignore[no-untyped-def]
    from tests.fakes.xero import FakeXero

    fake = FakeXero()
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
def configs(configs, xero_api):  # type: ignore[no-untyped-def]
    from bot.integrations.sources.xero import XeroSettings
    from tests.contract.samples import SAMPLES
    from tests.fakes.xero import CLIENT_ID, CLIENT_SECRET, TENANT

    _, refresh = xero_api.tokens.issue("seed-")
    return configs | {"xero": XeroSettings(
        _env_file=None, webhook_key=SAMPLES["xero"].KEY, client_id=CLIENT_ID,  # type: ignore[attr-defined]
        client_secret=CLIENT_SECRET, refresh_token=refresh, tenant_id=TENANT,
        base_url=str(xero_api.server.make_url("/")), token_url=str(xero_api.server.make_url("/connect/token")))}


async def xero_records_the_payment(paybot, xero_api) -> None:  # type: ignore[no-untyped-def]
    from tests.sources.test_xero import PAID_ON, notification, xero_invoice

    xero_api.add_invoice(xero_invoice(("xero-payment-1", "1250.00", PAID_ON), Contact={
        "ContactID": "3f2a5b10-7c1e-4c55-9a55-2b7c1d9e0a01", "Name": "Jane Doe", "EmailAddress": "jane@example.com"}))
    assert (await post(paybot, "xero", notification())).status == 200
    await paybot.deliver()


async def test_stripe_then_xeros_bank_feed_record_thank_once(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    await paybot.post_stripe(stripe_invoice_event())
    await xero_records_the_payment(paybot, xero_api)
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "$1,250.00" in mail_text(mail)
    original, report = await payments(paybot)
    assert (original.source, report.source, report.duplicate_of) == ("stripe", "xero", original.id)
    assert original.details["xero_ref"] == "xero-payment-1"
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 125000


async def test_xero_first_then_stripes_invoice_state_thank_once(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    await xero_records_the_payment(paybot, xero_api)
    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    original, report = await payments(paybot)
    assert (original.source, report.duplicate_of) == ("xero", original.id)
