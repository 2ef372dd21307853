"""Xero end to end: a signed INVOICE UPDATE is answered empty at once, read back after the answer through the (fake)
Xero API with the tenant's token from the token store, and the customer thanked for the new payment. HTTP in → DB
→ resolver → fake Xero → worker → fake SendGrid, on both engines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.integrations.sources.xero import XeroSettings, XeroSource, ms_date, retry_hint, sign
from bot.services.oauth import Scoped
from bot.storage import models
from tests.contract.samples import SAMPLES
from tests.fakes.xero import (CLIENT_ID, CLIENT_SECRET, OTHER_TENANT, TENANT, FakeXero, ms, rate_limited,
                              unavailable)
from tests.sources.helpers import load, mail_text, post

INVOICE_ID = "717f2bfc-c6d4-41fd-b238-3f2f0c0cf777"
CONTACT_ID = "3f2a5b10-7c1e-4c55-9a55-2b7c1d9e0a01"
INVOICE_PATH = f"/api.xro/2.0/Invoices/{INVOICE_ID}"
PAID_ON = datetime(2026, 11, 28, tzinfo=UTC)


@pytest.fixture
async def xero_api(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeXero()
    fake.server = await aiohttp_server(fake.app)
    fake.contacts[TENANT][CONTACT_ID] = {
        "ContactID": CONTACT_ID, "Name": "Jane Doe", "EmailAddress": "jane@example.com",
        "Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": "5550100", "PhoneAreaCode": "415", "PhoneCountryCode": "1"},
                   {"PhoneType": "MOBILE", "PhoneNumber": "5550199", "PhoneAreaCode": "415", "PhoneCountryCode": "1"}]}
    return fake


@pytest.fixture
def configs(configs, xero_api):  # type: ignore[no-untyped-def]
    _, refresh = xero_api.tokens.issue("seed-")
    return configs | {"xero": XeroSettings(
        _env_file=None, webhook_key=SAMPLES["xero"].KEY, client_id=CLIENT_ID,  # type: ignore[attr-defined]
        client_secret=CLIENT_SECRET, refresh_token=refresh, tenant_id=TENANT,
        base_url=str(xero_api.server.make_url("/")), token_url=str(xero_api.server.make_url("/connect/token")))}


def xero_invoice(*payments: tuple[str, str, datetime], total: str = "1250.00", status: str | None = None,
                 **changes: Any) -> dict[str, Any]:
    """INV-1042 as `GET /api.xro/2.0/Invoices/{id}` returns it, with these payments (id, amount, date)."""
    paid = sum(float(amount) for _, amount, _ in payments)
    due = float(total) - paid
    return {
        "Type": "ACCREC", "InvoiceID": INVOICE_ID, "InvoiceNumber": "INV-1042", "Reference": "PO 7731",
        "Status": status or ("PAID" if due == 0 else "AUTHORISED"), "CurrencyCode": "USD",
        "Date": ms(datetime(2026, 11, 1, tzinfo=UTC)), "DueDate": ms(datetime(2026, 12, 1, tzinfo=UTC)),
        "SubTotal": float(total), "TotalTax": 0.0, "Total": float(total), "AmountDue": due, "AmountPaid": paid,
        "AmountCredited": 0.0, "UpdatedDateUTC": ms(datetime(2026, 11, 28, 11, 0, tzinfo=UTC)),
        "Contact": {"ContactID": CONTACT_ID, "Name": "Jane Doe"},
        "Payments": [{"PaymentID": pid, "Date": ms(on), "Amount": float(amount), "Reference": "", "CurrencyRate": 1.0,
                      "HasAccount": False, "HasValidationErrors": False} for pid, amount, on in payments],
        **changes,
    }


def notification(entropy: str = "S0m3r4Nd0mt3xt", tenant: str = TENANT, invoice_id: str = INVOICE_ID) -> bytes:
    body = load("xero", "invoice_update.json", entropy=entropy)
    body["events"][0].update(tenantId=tenant, resourceId=invoice_id)
    return json.dumps(body).encode()


async def the_event(paybot, entropy: str = "S0m3r4Nd0mt3xt") -> models.WebhookEvent:  # type: ignore[no-untyped-def]
    [row] = await paybot.rows(models.WebhookEvent, models.WebhookEvent.event_id == entropy)
    return row


async def ignored_reasons(paybot) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.detail.get("ignored") for e in await paybot.rows(models.AuditEntry) if e.kind == "webhook.resolved"]


async def given_jane_owes_1250(paybot) -> None:  # type: ignore[no-untyped-def]
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")


async def test_intent_to_receive_good_is_an_empty_200_bad_is_401_and_nothing_is_kept(paybot):
    itr = json.dumps(load("xero", "intent_to_receive.json")).encode()
    good = await paybot.client.post("/webhooks/xero", data=itr, headers={
        "x-xero-signature": sign(itr, SAMPLES["xero"].KEY), "Content-Type": "application/json"})  # type: ignore[attr-defined]
    assert good.status == 200 and await good.read() == b"" and "Set-Cookie" not in good.headers
    bad = await paybot.client.post("/webhooks/xero", data=itr, headers={
        "x-xero-signature": sign(itr, "a-wrong-key"), "Content-Type": "application/json"})
    assert bad.status == 401
    assert await paybot.rows(models.WebhookEvent) == [] and await paybot.audit_kinds() == []
    assert [(s, status) for s, status, _ in await paybot.refused()] == [("xero", 401)]


async def test_a_partial_payment_is_read_back_after_the_answer_and_thanked(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON)))
    async with paybot.runtime.verifier._round:  # the consumer held: the answer must not wait for Xero
        response = await post(paybot, "xero", notification())
        assert response.status == 200 and await response.read() == b""
        assert (await the_event(paybot)).status == "waiting"
        assert xero_api.calls == []
    await paybot.deliver()
    [read] = xero_api.to(INVOICE_PATH)
    assert read.headers["xero-tenant-id"] == TENANT and read.headers["Authorization"].startswith("Bearer ")
    assert xero_api.tokens.grants == ["refresh_token"]  # the seeded refresh token, rotated once
    [mail] = sendgrid.accepted
    assert "$450.00" in mail_text(mail) and "$800.00 is still owed on invoice INV-1042" in mail_text(mail)
    [payment] = await paybot.rows(models.Payment)
    assert (payment.payment_ref, payment.amount_minor, payment.match_rule) == ("pay-1", 45000, "invoice_number")
    assert payment.details["xero_invoice"] == INVOICE_ID
    assert (await the_event(paybot)).status == "processed"


async def test_an_update_that_did_not_change_the_amount_paid_sends_nothing(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON)))
    await post(paybot, "xero", notification())
    await paybot.deliver()
    # The bookkeeper fixes the invoice's reference: Xero sends another UPDATE, AmountPaid is what it was.
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON), Reference="PO 7731-A"))
    assert (await post(paybot, "xero", notification("an0th3rEntropyValue"))).status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    first, restated = await paybot.rows(models.Payment)
    assert restated.duplicate_of == first.id


async def test_a_second_instalment_is_thanked_alone_and_the_paid_status_closes_the_invoice(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON)))
    await post(paybot, "xero", notification())
    await paybot.deliver()
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON), ("pay-2", "800.00", PAID_ON + timedelta(days=1))))
    await post(paybot, "xero", notification("s3condNotification"))
    await paybot.deliver()
    first, second = sendgrid.accepted
    assert "$800.00" in mail_text(second) and "still owed" not in mail_text(second)
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 125000
    assert [p.payment_ref for p in await paybot.rows(models.Payment) if p.duplicate_of is None] == ["pay-1", "pay-2"]


async def test_payments_from_before_paybot_was_connected_are_history_not_thanked(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-0", "450.00", PAID_ON - timedelta(days=90))))
    await post(paybot, "xero", notification())
    await paybot.deliver()
    assert sendgrid.accepted == [] and await paybot.rows(models.Payment) == []
    assert (await the_event(paybot)).status == "ignored"
    assert "older than 45 days" in (await ignored_reasons(paybot))[0]


async def test_the_contact_is_read_for_email_and_mobile_when_the_invoice_embeds_only_its_name(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON)))
    await post(paybot, "xero", notification())
    await paybot.deliver()
    assert len(xero_api.to(f"/api.xro/2.0/Contacts/{CONTACT_ID}")) == 1
    [payment] = await paybot.rows(models.Payment)
    assert payment.payer_email == "jane@example.com"


async def test_an_invoice_xero_says_does_not_exist_is_ignored_with_the_reason(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    assert (await post(paybot, "xero", notification())).status == 200
    await paybot.deliver()
    assert (await the_event(paybot)).status == "ignored"
    assert await ignored_reasons(paybot) == [f"INVOICE UPDATE: ignored (invoice {INVOICE_ID} not found)"]
    assert sendgrid.accepted == [] and await paybot.rows(models.Payment) == []


async def test_a_tenant_paybot_is_not_connected_to_is_recorded_and_ignored(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    assert (await post(paybot, "xero", notification(tenant=OTHER_TENANT))).status == 200
    await paybot.deliver()
    assert (await the_event(paybot)).status == "ignored"
    assert f"tenant {OTHER_TENANT} is not connected" in (await ignored_reasons(paybot))[0]
    assert xero_api.to(INVOICE_PATH) == []


async def test_a_401_refreshes_the_token_once_then_reads_again(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON)))
    await post(paybot, "xero", notification())
    await paybot.deliver()
    [row] = await paybot.rows(models.OAuthToken)
    rotated = row.refresh_token
    xero_api.tokens.expire()  # Xero stops honouring the access token before its stated expiry
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON), ("pay-2", "100.00", PAID_ON)))
    await post(paybot, "xero", notification("afterTheTokenExpired"))
    await paybot.deliver()
    assert xero_api.tokens.grants == ["refresh_token", "refresh_token"]
    statuses = [c for c in xero_api.calls if c.path == INVOICE_PATH]
    assert len(statuses) == 3  # first notification; then a 401 and the retry with the new token
    [row] = await paybot.rows(models.OAuthToken)
    assert row.refresh_token != rotated and row.refresh_token in xero_api.tokens.refresh_tokens
    assert len(sendgrid.accepted) == 2


async def test_429_and_503_back_off_as_xero_says(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON)))
    xero_api.script(INVOICE_PATH, rate_limited("minute", retry_after=37), unavailable())
    await post(paybot, "xero", notification())
    await paybot.deliver()
    row = await the_event(paybot)
    assert row.status == "waiting" and row.next_attempt_at >= paybot.clock() + timedelta(seconds=37)
    paybot.clock.advance(60)
    await paybot.runtime.verifier.drain()
    row = await the_event(paybot)
    assert row.status == "waiting" and row.next_attempt_at >= paybot.clock() + timedelta(seconds=120)
    paybot.clock.advance(3600)
    await paybot.runtime.verifier.drain()
    await paybot.deliver()
    assert (await the_event(paybot)).status == "processed" and len(sendgrid.accepted) == 1


def test_rate_limit_headers_without_retry_after_still_say_how_long() -> None:
    assert retry_hint({"Retry-After": "12"}) == 12
    assert retry_hint({"X-Rate-Limit-Problem": "minute"}) == 60
    assert retry_hint({"X-Rate-Limit-Problem": "day"}) == 3600
    assert retry_hint({"X-DayLimit-Remaining": "0"}) == 3600
    assert retry_hint({}) is None


async def test_a_revoked_connection_waits_and_finance_hears_once(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON)))
    xero_api.tokens.revoke()  # the firm disconnected paybot in Xero
    await post(paybot, "xero", notification())
    await paybot.deliver()
    paybot.clock.advance(3600)
    await paybot.runtime.verifier.drain()
    row = await the_event(paybot)
    assert row.status == "waiting" and row.attempts == 0
    assert xero_api.tokens.grants == ["refresh_token"]  # asked once, never again: no retry storm
    assert [n.purpose for n in await paybot.notifications()] == ["connection_lost"]
    assert "oauth.lost" in await paybot.audit_kinds()


async def test_forged_or_missing_signature_is_401_and_nothing_is_stored(paybot, xero_api):
    body = notification()
    assert (await paybot.client.post("/webhooks/xero", data=body, headers={
        "x-xero-signature": sign(body, "guess")})).status == 401
    assert (await paybot.client.post("/webhooks/xero", data=body)).status == 401
    assert await paybot.rows(models.WebhookEvent) == [] and await paybot.audit_kinds() == []
    assert xero_api.calls == []


async def test_the_sweep_names_payments_as_the_webhook_does_so_both_thank_once(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON)))
    source = paybot.runtime.sources["xero"]
    access = paybot.runtime.verifier.access_for("xero")
    swept = await source.sweep(datetime(2026, 11, 28, 10, 0, tzinfo=UTC), Scoped(access, TENANT))
    [list_call] = xero_api.to("/api.xro/2.0/Invoices")
    assert list_call.headers["If-Modified-Since"] == "Sat, 28 Nov 2026 10:00:00 GMT"
    assert swept.mark == datetime(2026, 11, 28, 11, 0, tzinfo=UTC)  # Xero's UpdatedDateUTC, not our clock
    [found] = swept.received
    assert [p.payment_ref for p in found.payments] == ["pay-1"]
    # What the webhook reports later is the same payment.
    await post(paybot, "xero", notification())
    await paybot.deliver()
    [webhook_payment] = [p for p in await paybot.rows(models.Payment)]
    assert webhook_payment.payment_ref == found.payments[0].payment_ref


async def test_the_sweep_pages_through_many_changed_invoices(paybot, xero_api):
    for n in range(130):
        invoice = xero_invoice(("pay-%d" % n, "10.00", PAID_ON), InvoiceID=f"inv-{n}", InvoiceNumber=f"INV-{n}",
                               UpdatedDateUTC=ms(datetime(2026, 11, 28, 11, 0, tzinfo=UTC) + timedelta(seconds=n)))
        xero_api.add_invoice(invoice)
    source = paybot.runtime.sources["xero"]
    swept = await source.sweep(datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
                               Scoped(paybot.runtime.verifier.access_for("xero"), TENANT))
    assert len(swept.received) == 130 and len(xero_api.to("/api.xro/2.0/Invoices")) == 2
    assert swept.mark == datetime(2026, 11, 28, 11, 2, 9, tzinfo=UTC)


async def test_connect_names_the_organisations_the_consent_reached(paybot, xero_api):
    access, _ = xero_api.tokens.issue()
    source: XeroSource = paybot.runtime.sources["xero"]
    tenants = await source.connected(access, {})
    assert [(t.id, t.name) for t in tenants] == [(TENANT, "Weld Shop Ltd")]
    app = source.oauth_app()
    assert app is not None and app.client_auth == "basic" and "offline_access" in app.scopes


def test_ms_dates() -> None:
    assert ms_date("/Date(1518685950940+0000)/") == datetime(2018, 2, 15, 9, 12, 30, 940000, tzinfo=UTC)
    assert ms_date("/Date(1518685950940)/") == datetime(2018, 2, 15, 9, 12, 30, 940000, tzinfo=UTC)
    assert ms_date("2018-02-15") is None and ms_date(None) is None



async def test_one_notification_naming_an_invoice_twice_and_a_contact_reads_the_invoice_once(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON)))
    body = load("xero", "invoice_update.json", lastEventSequence=3)
    first = body["events"][0]
    body["events"] += [first | {"eventDateUtc": "2026-11-28T15:21:00.000", "eventType": "Update"},
                       first | {"eventCategory": "CONTACT", "resourceId": CONTACT_ID}]
    await post(paybot, "xero", body)
    await paybot.deliver()
    assert len(xero_api.to(INVOICE_PATH)) == 1 and len(sendgrid.accepted) == 1
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.event_type == "INVOICE UPDATE, CONTACT UPDATE"


async def test_the_catch_up_sweep_thanks_a_payment_no_webhook_reported_and_the_late_webhook_does_not(paybot, xero_api,
                                                                                                    sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON)))
    await paybot.runtime.sweeper.run()  # the first sweep looks back SWEEP_LOOKBACK_HOURS
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "$450.00" in mail_text(mail)
    [listed] = xero_api.to("/api.xro/2.0/Invoices")
    assert listed.headers["If-Modified-Since"] == "Wed, 25 Nov 2026 12:00:00 GMT"
    assert await paybot.runtime.sweeper.mark("xero", TENANT) == datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    await post(paybot, "xero", notification())  # Xero's webhook, late
    await paybot.deliver()
    await paybot.runtime.sweeper.run()  # and the next sweep finds the same invoice again
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    assert [p.duplicate_of is None for p in await paybot.rows(models.Payment)].count(True) == 1


async def test_an_organisation_disconnected_in_xero_is_a_lost_connection_told_once(paybot, xero_api, sendgrid):
    await given_jane_owes_1250(paybot)
    xero_api.add_invoice(xero_invoice(("pay-1", "450.00", PAID_ON)))
    del xero_api.connections[TENANT]  # Xero → Settings → Connected apps → Disconnect (the token still refreshes)
    await post(paybot, "xero", notification())
    await paybot.deliver()
    paybot.clock.advance(3600)
    await paybot.runtime.verifier.drain()
    row = await the_event(paybot)
    assert row.status == "waiting" and row.attempts == 0
    assert [n.purpose for n in await paybot.notifications()] == ["connection_lost"]
