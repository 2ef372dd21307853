"""One payment, several reports: Stripe and a Square or Wave relay seeing the same money thank the customer once,
and the later report adds its reference to the payment already recorded."""

from __future__ import annotations

from datetime import timedelta

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


@pytest.fixture
async def xero_api(aiohttp_server):  # type: ignore[no-untyped-def]
    from tests.fakes.xero import FakeXero

    fake = FakeXero()
    fake.server = await aiohttp_server(fake.app)
    return fake


def xero_settings(xero_api):  # type: ignore[no-untyped-def]
    from bot.integrations.sources.xero import XeroSettings
    from tests.contract.samples import SAMPLES
    from tests.fakes.xero import CLIENT_ID, CLIENT_SECRET, TENANT

    _, refresh = xero_api.tokens.issue("seed-")
    return XeroSettings(
        _env_file=None, webhook_key=SAMPLES["xero"].KEY, client_id=CLIENT_ID,  # type: ignore[attr-defined]
        client_secret=CLIENT_SECRET, refresh_token=refresh, tenant_id=TENANT,
        base_url=str(xero_api.server.make_url("/")), token_url=str(xero_api.server.make_url("/connect/token")))


# --- the ERP sources (#12): a trigger, a notification or a scenario, and the catch-up sweep, thank once ----------


@pytest.fixture
async def erps(aiohttp_server, clock):  # type: ignore[no-untyped-def]
    from tests.fakes.business_central import FakeBusinessCentral
    from tests.fakes.intacct import FakeIntacct
    from tests.fakes.sap_b1 import FakeServiceLayer

    fakes = {"sage-intacct": FakeIntacct(), "business-central": FakeBusinessCentral(clock),
             "sap-b1": FakeServiceLayer()}
    for fake in fakes.values():
        fake.server = await aiohttp_server(fake.app)
    fakes["sage-intacct"].add_invoice("4021", "INV-1042", total="1250.00", paid="1250.00")
    fakes["sage-intacct"].add_payment("9001", ("4021", "1250.00"))
    fakes["business-central"].add_invoice(1, "INV-1042", total="1250.00", remaining="0")
    fakes["sap-b1"].add_invoice(301, "INV-1042", total="1250.00", paid="1250.00")
    fakes["sap-b1"].add_payment(77, (301, "1250.00"))
    return fakes


@pytest.fixture
def configs(configs, erps, xero_api):  # type: ignore[no-untyped-def]
    from tests.sources.test_business_central import bc_settings
    from tests.sources.test_intacct import intacct_settings
    from tests.sources.test_sap_b1 import b1_settings

    return configs | {"sage-intacct": intacct_settings(erps["sage-intacct"]),
                      "business-central": bc_settings(erps["business-central"]), "sap-b1": b1_settings(erps["sap-b1"]),
                      "xero": xero_settings(xero_api)}


async def erp_webhook(paybot, name: str, fakes) -> int:  # type: ignore[no-untyped-def]
    from tests.sources import test_business_central, test_intacct, test_sap_b1

    paybot.runtime.sources[name].clock = paybot.clock
    if name == "sage-intacct":
        response = await test_intacct.send(paybot, fakes[name])
    elif name == "business-central":
        response = await test_business_central.send(paybot, test_business_central.notification(
            test_business_central.item(1)))
    else:
        response = await test_sap_b1.send(paybot)
    return int(response.status)


@pytest.mark.parametrize("name", ["sage-intacct", "business-central", "sap-b1"])
async def test_an_erp_webhook_then_the_catch_up_sweep_thank_once(paybot, erps, sendgrid, name):
    await given_jane_owes_1250(paybot)
    assert await erp_webhook(paybot, name, erps) == 200
    await paybot.deliver()
    only = {name: paybot.runtime.sources[name]}
    paybot.runtime.sweeper.ingest.sources, everything = only, paybot.runtime.sweeper.ingest.sources
    try:
        await paybot.runtime.catch_up()  # the real sweep job: finds the same payment, with the same payment_ref
    finally:
        paybot.runtime.sweeper.ingest.sources = everything
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    [payment, *again] = await paybot.rows(models.Payment)
    assert all(p.payment_ref == payment.payment_ref for p in again)
    assert len(await paybot.rows(models.WebhookEvent, models.WebhookEvent.source == name)) == 2


@pytest.mark.parametrize("name", ["sage-intacct", "business-central", "sap-b1"])
async def test_the_sweep_first_then_the_late_erp_webhook_thank_once(paybot, erps, sendgrid, name):
    await given_jane_owes_1250(paybot)
    paybot.runtime.sources[name].clock = paybot.clock
    swept = await paybot.runtime.sources[name].sweep(paybot.clock() - timedelta(hours=1), None)
    for received in swept.received:
        await paybot.runtime.ingest.record(name, sweep_request(paybot), received)
    assert await erp_webhook(paybot, name, erps) == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


@pytest.mark.parametrize("name", ["sage-intacct", "business-central", "sap-b1"])
async def test_stripe_and_an_erp_reporting_one_payment_thank_once(paybot, erps, sendgrid, name):
    await given_jane_owes_1250(paybot)
    await paybot.post_stripe(stripe_invoice_event())
    assert await erp_webhook(paybot, name, erps) == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    original, report = await payments(paybot)
    assert report.duplicate_of == original.id
# --- Accounting platforms: the firm's Xero records the same money Stripe took (a bank-feed reconciliation). ---

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


def sweep_request(paybot):  # type: ignore[no-untyped-def]
    from bot.integrations.sources.base import InboundRequest

    return InboundRequest("GET", "sweep", {"Content-Type": "text/plain"}, {}, b"(swept)", paybot.clock())
async def test_xero_first_then_stripes_invoice_state_thank_once(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    await xero_records_the_payment(paybot, xero_api)
    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    original, report = await payments(paybot)
    assert (original.source, report.duplicate_of) == ("xero", original.id)
