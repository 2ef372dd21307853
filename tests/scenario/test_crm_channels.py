"""CRM channels end to end, on both engines: a signed Stripe payment in, the CRM's real calls out at its fake.

HubSpot, ActiveCampaign, Klaviyo and Intercom: what each is sent, that retries keep the idempotency key
(sendId, unique_id, created_at), that each CRM's rate-limit headers are waited out exactly, that a refused
token is told to finance once per integration while customers fall back, and that a customer without the
contact a CRM needs is skipped with an audit entry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from aiohttp import web

from bot.integrations.channels.activecampaign import ActiveCampaignSettings
from bot.integrations.channels.hubspot import SINGLE_SEND, UPSERT, HubSpotSettings
from bot.integrations.channels.intercom import IntercomSettings
from bot.integrations.channels.klaviyo import KlaviyoSettings
from bot.services import status_poll
from bot.storage import models
from tests.fakes import activecampaign as ac_fake
from tests.fakes import hubspot as hubspot_fake
from tests.fakes import intercom as intercom_fake
from tests.fakes import klaviyo as klaviyo_fake
from tests.harness import stripe_invoice_event

CRMS = ("hubspot", "activecampaign", "klaviyo", "intercom")


@pytest.fixture
async def hubspot(aiohttp_server, clock):  # type: ignore[no-untyped-def]
    fake = hubspot_fake.FakeHubSpot(clock)
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
async def activecampaign(aiohttp_server, clock):  # type: ignore[no-untyped-def]
    fake = ac_fake.FakeActiveCampaign(clock)
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
async def klaviyo(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = klaviyo_fake.FakeKlaviyo()
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
async def intercom(aiohttp_server, clock):  # type: ignore[no-untyped-def]
    fake = intercom_fake.FakeIntercom(clock)
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
def hubspot_mode() -> str:
    return "transactional"


@pytest.fixture
def ac_triggers() -> dict[str, str]:
    return {"tag": "payment-received"}


@pytest.fixture
def refused() -> str | None:
    """A CRM whose token is wrong, if any."""
    return None


@pytest.fixture
def configs(configs, hubspot, activecampaign, klaviyo, intercom, hubspot_mode, ac_triggers, refused):  # type: ignore[no-untyped-def]
    """The default fakes (Stripe, SendGrid, Slack) and the four CRMs, pointed at theirs."""
    def token(name: str, good: str) -> str:
        return "wrong-token" if refused == name else good

    mode: dict[str, Any] = ({"email_id": hubspot_fake.EMAIL_ID} if hubspot_mode == "transactional"
                            else {"payment_property": "paybot_payment"})
    return configs | {
        "hubspot": HubSpotSettings(_env_file=None, access_token=token("hubspot", hubspot_fake.TOKEN),
                                   base_url=str(hubspot.server.make_url("/")), **mode),
        "activecampaign": ActiveCampaignSettings(
            _env_file=None, api_token=token("activecampaign", ac_fake.TOKEN),
            base_url=str(activecampaign.server.make_url("/api/3")), **ac_triggers),
        "klaviyo": KlaviyoSettings(_env_file=None, api_key=token("klaviyo", klaviyo_fake.API_KEY),
                                   base_url=str(klaviyo.server.make_url("/"))),
        "intercom": IntercomSettings(_env_file=None, access_token=token("intercom", intercom_fake.TOKEN),
                                     base_url=str(intercom.server.make_url("/"))),
    }


async def pay(paybot, number: str = "INV-1042", *, event: str | None = None, created: int = 1795867200,
              amount: int = 125000) -> None:
    await paybot.add_invoice(number, f"{amount / 100:.2f}")
    response = await paybot.post_stripe(stripe_invoice_event(event or f"evt_{number}", number=number,
                                                             amount_paid=amount, created=created))
    assert response.status == 200


async def rows(paybot, channel: str) -> list[models.Notification]:
    return sorted((n for n in await paybot.notifications() if n.channel == channel), key=lambda n: n.id)


async def deliver_all(paybot, clock, rounds: int = 4) -> None:
    """Deliver, moving the clock past every rate-limit slot (the CRM's and Slack's one a second)."""
    for _ in range(rounds):
        await paybot.deliver()
        clock.advance(1.1)


async def audit(paybot, kind: str) -> list[models.AuditEntry]:
    return await paybot.rows(models.AuditEntry, models.AuditEntry.kind == kind)


# --- HubSpot ---------------------------------------------------------------------------------------------------

async def test_hubspot_upserts_by_email_sends_the_transactional_email_and_records_how_it_ended(paybot, hubspot):
    await paybot.add_customer(channels=("hubspot", "email"))
    await pay(paybot)
    await paybot.deliver()

    [row] = await rows(paybot, "hubspot")
    [upsert] = hubspot.to(UPSERT)
    assert upsert.headers["Authorization"] == f"Bearer {hubspot_fake.TOKEN}"
    assert upsert.json() == {"inputs": [{"id": "jane@example.com", "idProperty": "email",
                                         "properties": {"email": "jane@example.com"}}]}
    [send] = hubspot.sends
    assert send["emailId"] == hubspot_fake.EMAIL_ID
    assert send["message"] == {"to": "jane@example.com", "sendId": row.idempotency_key}
    assert send["customProperties"]["invoice_number"] == "INV-1042"
    assert send["customProperties"]["amount"] == "1250.00" and send["customProperties"]["currency"] == "USD"
    assert (row.status, row.delivery_status) == ("sent", "PENDING") and row.provider_id in hubspot.statuses
    [sent] = [e for e in await audit(paybot, "notification.sent") if e.channel == "hubspot"]
    assert sent.detail["delivered"] == "PENDING"

    rt = paybot.runtime
    await status_poll.poll(rt.db, rt.notifier, "hubspot", rt.channels["hubspot"])
    [row] = await rows(paybot, "hubspot")
    assert (row.status, row.delivery_status) == ("sent", "SENT")
    [status] = [e for e in await audit(paybot, "notification.status") if e.channel == "hubspot"]
    assert status.detail["status"] == "SENT"
    assert hubspot.to("/v3/mail/send") == []


async def test_hubspot_retry_after_a_lost_answer_keeps_the_send_id_and_idempotent_ignore_counts_as_sent(
        paybot, hubspot, sendgrid, clock):
    await paybot.add_customer(channels=("hubspot", "email"))
    hubspot.lose_next_answer = True  # HubSpot sends, then its gateway answers 504
    await pay(paybot)
    await paybot.deliver()
    [row] = await rows(paybot, "hubspot")
    assert row.status == "pending" and "504" in row.last_error

    clock.advance(paybot.runtime.settings.retry_max_seconds)
    await paybot.deliver()
    first, again = hubspot.to(SINGLE_SEND)
    assert first.json()["message"]["sendId"] == again.json()["message"]["sendId"] == row.idempotency_key
    assert len(hubspot.emails_sent) == 1  # one email per sendId

    rt = paybot.runtime
    await status_poll.poll(rt.db, rt.notifier, "hubspot", rt.channels["hubspot"])
    [row] = await rows(paybot, "hubspot")
    assert (row.status, row.delivery_status) == ("sent", "IDEMPOTENT_IGNORE")
    assert sendgrid.accepted == []  # counted as sent: no fallback


@pytest.mark.parametrize("hubspot_mode", ["properties"])
async def test_hubspot_without_an_email_id_sets_the_properties_a_workflow_watches(paybot, hubspot):
    await paybot.add_customer(channels=("hubspot",))
    await pay(paybot)
    await paybot.deliver()
    [row] = await rows(paybot, "hubspot")
    [upsert] = hubspot.to(UPSERT)
    [contact] = upsert.json()["inputs"]
    assert contact["idProperty"] == "email"
    paid = (await paybot.rows(models.Payment))[0].occurred_at
    assert contact["properties"] == {
        "email": "jane@example.com", "paybot_payment": row.idempotency_key, "last_payment_invoice": "INV-1042",
        "last_payment_amount": "1250.00",
        "last_payment_at": paid.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")}
    assert hubspot.to(SINGLE_SEND) == []
    assert (row.status, row.delivery_status) == ("sent", "properties set")


async def test_hubspot_ten_second_limit_waits_exactly_the_interval_it_names(paybot, hubspot, clock):
    await paybot.add_customer(channels=("hubspot",))
    hubspot.script(UPSERT, hubspot_fake.ten_secondly_limit())
    await pay(paybot)
    await paybot.deliver()
    [row] = await rows(paybot, "hubspot")
    assert row.status == "pending" and row.available_at.replace(tzinfo=UTC) == clock() + timedelta(seconds=10)
    clock.advance(9.9)
    await paybot.deliver()
    assert len(hubspot.to(UPSERT)) == 1
    clock.advance(0.1)
    await paybot.deliver()
    assert len(hubspot.sends) == 1


async def test_hubspot_daily_limit_waits_for_midnight_and_tells_finance_once(paybot, hubspot, slack, clock):
    await paybot.add_customer(channels=("hubspot", "email"))
    hubspot.script(UPSERT, hubspot_fake.daily_limit(clock()), hubspot_fake.daily_limit(clock()))
    await pay(paybot, "INV-1")
    await pay(paybot, "INV-2")
    await deliver_all(paybot, clock, rounds=3)

    midnight = datetime(2026, 11, 29, tzinfo=UTC)
    held = await rows(paybot, "hubspot")
    assert [r.status for r in held] == ["pending", "pending"]
    assert all(r.available_at.replace(tzinfo=UTC) == midnight for r in held)
    told = [n for n in await paybot.notifications() if n.idempotency_key.startswith("once:hubspot:daily:")]
    assert len(told) == 1 and told[0].idempotency_key == "once:hubspot:daily:2026-11-28"
    assert len(hubspot.to(UPSERT)) == 2  # one call each, not hammered

    clock.now = midnight
    await deliver_all(paybot, clock)
    assert [r.status for r in await rows(paybot, "hubspot")] == ["sent", "sent"]
    assert len(hubspot.sends) == 2


# --- refused tokens, for every CRM -----------------------------------------------------------------------------

@pytest.mark.parametrize("refused", CRMS)
async def test_a_refused_token_falls_back_and_tells_finance_once_not_per_payment(paybot, sendgrid, refused, clock):
    await paybot.add_customer(channels=(refused, "email"))
    await pay(paybot, "INV-1", created=1795867200)
    await pay(paybot, "INV-2", created=1795867260)
    await deliver_all(paybot, clock)

    dead = await rows(paybot, refused)
    assert [r.status for r in dead] == ["dead", "dead"]
    assert all(f"{refused.upper()}_" in (r.last_error or "") for r in dead)
    assert len(sendgrid.accepted) == 2  # each customer message fell back to email
    alerts = [n for n in await paybot.notifications() if n.purpose == "dead_letter"]
    assert len(alerts) == 1 and alerts[0].idempotency_key.startswith(f"once:{refused}:auth:")
    assert "wrong-token" not in json.dumps([e.detail for e in await paybot.rows(models.AuditEntry)])

    [finding] = await paybot.runtime.channels[refused].check(paybot.runtime.settings)
    assert finding.problem and f"{refused.upper()}_" in finding.text


async def test_paybot_check_calls_each_crm_with_its_credentials(paybot):
    for name in CRMS:
        [finding] = await paybot.runtime.channels[name].check(paybot.runtime.settings)
        assert not finding.problem, finding.text


# --- Klaviyo ---------------------------------------------------------------------------------------------------

async def test_klaviyo_two_invoices_paid_in_the_same_second_are_two_events(paybot, klaviyo, clock):
    await paybot.add_customer(channels=("klaviyo",), phone="+14155550123")
    await pay(paybot, "INV-1")
    await pay(paybot, "INV-2")  # the same `created`: the same second
    await deliver_all(paybot, clock, rounds=2)

    sent = await rows(paybot, "klaviyo")
    assert [(r.status, r.delivery_status) for r in sent] == [("sent", "event accepted")] * 2
    assert [e["unique_id"] for e in klaviyo.events] == [r.idempotency_key for r in sent]
    call = klaviyo.to("/api/events")[0]
    assert call.headers["Authorization"] == f"Klaviyo-API-Key {klaviyo_fake.API_KEY}"
    assert call.headers["revision"] == "2026-07-15"
    assert call.headers["Content-Type"] == "application/vnd.api+json"
    assert b'"value": 1250.00' in call.body  # a JSON number, exact
    event = call.json()["data"]
    assert event["type"] == "event"
    attributes = event["attributes"]
    assert attributes["metric"]["data"]["attributes"]["name"] == "Payment Received"
    assert attributes["profile"]["data"]["attributes"] == {"email": "jane@example.com", "phone_number": "+14155550123"}
    assert attributes["value_currency"] == "USD"
    assert attributes["properties"]["invoice_number"] == "INV-1"


async def test_klaviyo_retries_a_5xx_with_the_same_unique_id_and_waits_out_retry_after(paybot, klaviyo, clock):
    await paybot.add_customer(channels=("klaviyo",))
    klaviyo.script("/api/events", klaviyo_fake.klaviyo_error(503, "service_unavailable", "Service unavailable.",
                                                             "Try again later."), klaviyo_fake.throttled(7))
    await pay(paybot)
    await paybot.deliver()
    clock.advance(paybot.runtime.settings.retry_max_seconds)
    await paybot.deliver()  # throttled: waits exactly seven seconds
    [row] = await rows(paybot, "klaviyo")
    assert row.status == "pending" and row.available_at.replace(tzinfo=UTC) == clock() + timedelta(seconds=7)
    clock.advance(7)
    await paybot.deliver()
    calls = klaviyo.to("/api/events")
    assert len(calls) == 3
    assert {c.json()["data"]["attributes"]["unique_id"] for c in calls} == {row.idempotency_key}
    assert {c.json()["data"]["attributes"]["time"] for c in calls} == {calls[0].json()["data"]["attributes"]["time"]}
    assert len(klaviyo.events) == 1


# --- Intercom --------------------------------------------------------------------------------------------------

async def test_intercom_creates_the_contact_sets_attributes_and_submits_one_event(paybot, intercom, clock):
    await paybot.add_customer(channels=("intercom",))
    await pay(paybot, "INV-1", created=1795867200)
    await paybot.deliver()
    clock.advance(1)
    await pay(paybot, "INV-2", created=1795870800)
    await deliver_all(paybot, clock, rounds=2)

    assert all(c.headers["Intercom-Version"] == "2.14" for c in intercom.calls)
    assert all(c.headers["Authorization"] == f"Bearer {intercom_fake.TOKEN}" for c in intercom.calls)
    assert len(intercom.to("/contacts")) == 1  # created once, found by external id afterwards
    [contact] = intercom.contacts.values()
    assert (contact["external_id"], contact["email"]) == ("C1", "jane@example.com")
    assert contact["custom_attributes"]["last_payment_invoice"] == "INV-2"
    first, second = intercom.events
    payments = sorted(await paybot.rows(models.Payment), key=lambda p: p.id)
    assert [e["created_at"] for e in (first, second)] == [
        int(p.occurred_at.replace(tzinfo=UTC).timestamp()) for p in payments]
    assert first["event_name"] == "payment-received" and first["id"] == contact["id"]
    assert first["metadata"]["amount"] == {"amount": 125000, "currency": "usd"}
    assert first["metadata"]["invoice_number"] == "INV-1" and len(first["metadata"]) <= 10
    assert [(r.status, r.delivery_status) for r in await rows(paybot, "intercom")] == [("sent", "event accepted")] * 2


async def test_intercom_finds_an_existing_contact_by_email(paybot, intercom):
    existing = intercom.add_contact("jane@example.com")
    await paybot.add_customer(channels=("intercom",))
    await pay(paybot)
    await paybot.deliver()
    assert intercom.to("/contacts") == [] and len(intercom.contacts) == 1
    [event] = intercom.events
    assert event["id"] == existing["id"]


async def test_intercom_retries_keep_created_at_and_429_waits_for_the_reset(paybot, intercom, clock):
    await paybot.add_customer(channels=("intercom",))
    intercom.script("/events", intercom_fake.intercom_error(500, "server_error", "Server Error"))
    await pay(paybot)
    await paybot.deliver()
    clock.advance(paybot.runtime.settings.retry_max_seconds)
    reset = int(clock().timestamp()) + 40
    intercom.script("/events", intercom_fake.rate_limited(reset))
    await paybot.deliver()
    [row] = await rows(paybot, "intercom")
    assert row.status == "pending" and row.available_at.replace(tzinfo=UTC) == datetime.fromtimestamp(reset, UTC)
    clock.now = datetime.fromtimestamp(reset, UTC)
    await paybot.deliver()
    calls = intercom.to("/events")
    assert len(calls) == 3 and len({c.json()["created_at"] for c in calls}) == 1
    assert len(intercom.events) == 1 and len(intercom.contacts) == 1


# --- ActiveCampaign --------------------------------------------------------------------------------------------

async def test_activecampaign_syncs_the_contact_and_adds_the_tag_created_once(paybot, activecampaign, clock):
    await paybot.add_customer(channels=("activecampaign",), phone="+14155550123")
    await pay(paybot, "INV-1")
    await pay(paybot, "INV-2")
    await paybot.deliver()
    assert len(activecampaign.to("/api/3/contact/sync")) == 1  # the second waits for the account's next slot
    await deliver_all(paybot, clock)

    syncs = activecampaign.to("/api/3/contact/sync")
    assert len(syncs) == 2 and all(c.headers["Api-Token"] == ac_fake.TOKEN for c in syncs)
    assert syncs[0].json() == {"contact": {"email": "jane@example.com", "phone": "+14155550123"}}
    assert len(activecampaign.to("/api/3/tags")) == 2  # one search, one creation: the id is cached after
    [tag] = activecampaign.tags.values()
    assert tag["tag"] == "payment-received" and tag["tagType"] == "contact"
    [contact] = activecampaign.contacts.values()
    assert activecampaign.contact_tags == [{"contact": contact["id"], "tag": tag["id"], "id": activecampaign.contact_tags[0]["id"]}]
    assert [(r.status, r.delivery_status) for r in await rows(paybot, "activecampaign")] == [("sent", "tag added")] * 2


@pytest.mark.parametrize("ac_triggers", [{"field_id": ac_fake.FIELD_ID, "deal_stage": "3"}])
async def test_activecampaign_sets_the_field_and_wins_the_deal_in_cents(paybot, activecampaign):
    contact = activecampaign.contacts["900"] = {"id": "900", "email": "jane@example.com", "fields": {}}
    deal = activecampaign.add_deal(contact["id"], "3")
    await paybot.add_customer(channels=("activecampaign",))
    await pay(paybot)
    await paybot.deliver()
    [sync] = activecampaign.to("/api/3/contact/sync")
    assert sync.json()["contact"]["fieldValues"] == [{"field": ac_fake.FIELD_ID, "value": "INV-1042"}]
    [put] = activecampaign.to(f"/api/3/deals/{deal['id']}")
    assert put.method == "PUT" and put.json() == {"deal": {"status": 1, "value": 125000, "currency": "usd"}}
    assert deal["status"] == "1"
    [row] = await rows(paybot, "activecampaign")
    assert (row.status, row.delivery_status) == ("sent", "field set, deal won")


async def test_activecampaign_lost_answer_is_not_retried_blindly_but_recorded_for_finance(
        paybot, activecampaign, sendgrid, clock):
    await paybot.add_customer(channels=("activecampaign", "email"))
    activecampaign.drop_next("/api/3/contactTags")
    await pay(paybot)
    await deliver_all(paybot, clock)
    clock.advance(paybot.runtime.settings.retry_max_seconds)
    await deliver_all(paybot, clock)

    [row] = await rows(paybot, "activecampaign")
    assert row.status == "dead" and "not retried" in row.last_error
    assert len(activecampaign.to("/api/3/contactTags")) == 1 and len(activecampaign.contact_tags) == 1
    assert len(sendgrid.accepted) == 1  # the customer's next channel
    [alert] = [n for n in await paybot.notifications() if n.purpose == "dead_letter"]
    assert "activecampaign" in alert.payload["text"]


async def test_activecampaign_422_is_permanent_and_429_waits_exactly_retry_after(paybot, activecampaign, sendgrid,
                                                                                clock):
    await paybot.add_customer(channels=("activecampaign", "email"))
    activecampaign.script("/api/3/contact/sync", ac_fake.too_many(3),
                          ac_fake.unprocessable("Email address is invalid", "email_invalid", "/data/attributes/email"))
    await pay(paybot)
    await paybot.deliver()
    [row] = await rows(paybot, "activecampaign")
    assert row.status == "pending" and row.available_at.replace(tzinfo=UTC) == clock() + timedelta(seconds=3)
    clock.advance(3)
    await deliver_all(paybot, clock)
    [row] = await rows(paybot, "activecampaign")
    assert row.status == "dead" and "422" in row.last_error
    assert len(sendgrid.accepted) == 1


# --- no contact on file ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("crm", CRMS)
async def test_a_customer_without_email_skips_the_crm_with_an_audit_entry(paybot, slack, crm, clock):
    await paybot.add_customer(email="", channels=(crm, "slack"), slack_channel="C0SHARED")
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event(email=""))
    await deliver_all(paybot, clock, rounds=2)

    [skipped] = await audit(paybot, "notification.skipped")
    assert skipped.channel == crm and skipped.detail["reason"] == f"{crm}: no email on file"
    assert await rows(paybot, crm) == []
    assert len(slack.posted("C0SHARED")) == 1


async def test_crm_rate_limit_keys_are_per_account_and_shared(paybot):
    channels = paybot.runtime.channels
    for name in CRMS:
        key, interval = channels[name].rate_limit({})
        assert key.startswith(f"{name}:") and key == channels[name].rate_limit({"email": "x@y.z"})[0]
        assert 0 < interval <= 1
    assert channels["activecampaign"].rate_limit({})[1] >= 2 / 5  # ≤ 5 requests a second, a send's calls counted


async def test_a_worker_dying_mid_send_is_resent_without_a_duplicate_event(paybot, klaviyo, clock):
    from bot.storage import outbox

    await paybot.add_customer(channels=("klaviyo",))
    await pay(paybot)
    rt = paybot.runtime
    # a worker claims the row, marks the attempt started, sends, dies
    claimed = await rt.db.run(partial(outbox.claim, now=clock(), lease=timedelta(seconds=60), worker="doomed",
                                      limit=10))
    [row] = [r for r in claimed if r.channel == "klaviyo"]
    async with rt.db.transaction() as uow:
        assert await outbox.renew(uow.session, row.id, "doomed", clock(), timedelta(seconds=60))
    await rt.channels["klaviyo"].send(row.payload, key=row.idempotency_key)

    clock.advance(61)
    await deliver_all(paybot, clock, rounds=2)
    [row] = await rows(paybot, "klaviyo")
    assert row.status == "sent" and len(klaviyo.to("/api/events")) == 2 and len(klaviyo.events) == 1
    [sent] = [e for e in await audit(paybot, "notification.sent") if e.channel == "klaviyo"]
    assert "possible_duplicate" not in sent.detail


async def test_activecampaign_500_on_a_write_is_not_retried_but_a_read_is(paybot, activecampaign, clock):
    await paybot.add_customer(channels=("activecampaign",))
    server_error = web.json_response({"message": "Internal Server Error"}, status=500)
    activecampaign.script("/api/3/tags", web.json_response({"message": "Bad Gateway"}, status=502))
    await pay(paybot, "INV-1")
    await paybot.deliver()
    [row] = await rows(paybot, "activecampaign")
    assert row.status == "pending" and "502" in row.last_error  # the tag lookup, a read: asked again
    clock.advance(paybot.runtime.settings.retry_max_seconds)
    await deliver_all(paybot, clock)
    assert [r.status for r in await rows(paybot, "activecampaign")] == ["sent"]

    activecampaign.script("/api/3/contactTags", server_error)
    await pay(paybot, "INV-2")
    await deliver_all(paybot, clock)
    first, second = await rows(paybot, "activecampaign")
    assert second.status == "dead" and "not retried" in second.last_error


def test_a_bad_hubspot_timezone_is_one_line_naming_the_setting(monkeypatch):
    from bot.errors import ConfigError
    from bot.runtime import integration_settings

    monkeypatch.setenv("HUBSPOT_TIMEZONE", "Mars/Olympus_Mons")
    with pytest.raises(ConfigError) as caught:
        integration_settings(None, "hubspot", HubSpotSettings)
    assert "HUBSPOT_TIMEZONE" in str(caught.value) and "\n" not in str(caught.value)


async def test_hubspot_send_that_ends_refused_falls_back_and_tells_finance(paybot, hubspot, sendgrid, clock):
    assert any(job.name == "hubspot-send-status" for job in paybot.runtime.worker.periodic)
    hubspot.bounced.add("jane@example.com")
    await paybot.add_customer(channels=("hubspot", "email"))
    await pay(paybot)
    await paybot.deliver()
    assert sendgrid.accepted == []  # accepted by HubSpot, for now

    rt = paybot.runtime
    await status_poll.poll(rt.db, rt.notifier, "hubspot", rt.channels["hubspot"])
    await deliver_all(paybot, clock, rounds=2)
    [row] = await rows(paybot, "hubspot")
    assert (row.status, row.delivery_status) == ("dead", "PREVIOUSLY_BOUNCED")
    assert len(sendgrid.accepted) == 1
    assert [n.purpose for n in await paybot.notifications()].count("dead_letter") == 1
    assert [e.channel for e in await audit(paybot, "notification.undelivered")] == ["hubspot"]


@pytest.mark.parametrize("hubspot_mode", ["properties"])
async def test_hubspot_property_missing_in_the_account_is_permanent(paybot, hubspot, sendgrid, clock):
    hubspot.properties.discard("paybot_payment")
    await paybot.add_customer(channels=("hubspot", "email"))
    await pay(paybot)
    await deliver_all(paybot, clock, rounds=2)
    [row] = await rows(paybot, "hubspot")
    assert row.status == "dead" and "paybot_payment" in row.last_error and "VALIDATION_ERROR" in row.last_error
    assert len(hubspot.to(UPSERT)) == 1 and len(sendgrid.accepted) == 1


async def test_check_names_an_activecampaign_url_without_the_api_root(paybot, activecampaign):
    from bot.integrations.channels.activecampaign import ActiveCampaignChannel

    wrong = ActiveCampaignSettings(_env_file=None, api_token=ac_fake.TOKEN, tag="paid",
                                   base_url=str(activecampaign.server.make_url("/")))
    [finding] = await ActiveCampaignChannel(wrong, paybot.runtime.http).check(paybot.runtime.settings)
    assert finding.problem and "ACTIVECAMPAIGN_BASE_URL" in finding.text and "/api/3" in finding.text
