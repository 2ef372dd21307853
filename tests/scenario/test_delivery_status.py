"""SendGrid's signed Event Webhook at /callbacks/sendgrid: delivered is recorded; a bounce after acceptance
falls back to the customer's next channel and tells finance."""

from __future__ import annotations

import pytest

from bot.integrations.channels.sendgrid import SendGridSettings
from tests.fakes.sendgrid import API_KEY
from tests.fakes.sendgrid_events import EventSigner, body, event
from tests.harness import stripe_invoice_event

SIGNER = EventSigner()


@pytest.fixture
def configs(configs, sendgrid):
    return configs | {"sendgrid": SendGridSettings(
        _env_file=None, api_key=API_KEY, from_email="billing@weld.example", event_public_key=SIGNER.public_key,
        base_url=str(sendgrid.server.make_url("/")))}


async def emailed(paybot, sendgrid, **customer):
    await paybot.add_customer(**customer)
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    await paybot.deliver()
    [mail] = sendgrid.accepted
    return mail


async def post_events(paybot, raw: bytes, timestamp: int | None = None, signer: EventSigner = SIGNER):
    ts = int(paybot.clock().timestamp()) if timestamp is None else timestamp
    return await paybot.client.post("/callbacks/sendgrid", data=raw, headers=signer.headers(raw, ts))


async def receipt_row(paybot):
    return next(n for n in await paybot.notifications() if n.purpose == "receipt" and n.channel == "sendgrid")


async def test_delivered_is_recorded_once(paybot, sendgrid):
    mail = await emailed(paybot, sendgrid)
    ts = int(paybot.clock().timestamp())
    raw = body(event("processed", mail, ts), event("delivered", mail, ts), event("open", mail, ts))
    response = await post_events(paybot, raw)
    assert response.status == 200 and (await response.json()) == {"received": 2, "changed": 2}
    assert (await receipt_row(paybot)).delivery_status == "delivered"
    again = await post_events(paybot, body(event("delivered", mail, ts)))
    assert (await again.json())["changed"] == 0  # SendGrid redelivers; nothing new
    assert (await paybot.audit_kinds()).count("notification.status") == 2


async def test_bounce_falls_back_and_alerts_finance(paybot, sendgrid, slack, clock):
    mail = await emailed(paybot, sendgrid, channels=("email", "slack"), slack_channel="C0SHARED")
    ts = int(clock().timestamp())
    bounce = event("bounce", mail, ts, type="bounce", reason="550 5.1.1 The email account does not exist")
    assert (await post_events(paybot, body(bounce))).status == 200
    clock.advance(1)
    await paybot.deliver()

    row = await receipt_row(paybot)
    assert (row.status, row.delivery_status) == ("dead", "bounce")
    [shared] = slack.posted("C0SHARED")
    assert "INV-1042" in shared["text"]
    alert = [m for m in slack.posted("C0FINANCE") if "Could not deliver" in m["text"]]
    assert len(alert) == 1 and "does not exist" in alert[0]["text"]
    assert "notification.undelivered" in await paybot.audit_kinds()


async def test_forged_or_stale_events_are_refused(paybot, sendgrid):
    mail = await emailed(paybot, sendgrid)
    ts = int(paybot.clock().timestamp())
    raw = body(event("bounce", mail, ts))
    assert (await post_events(paybot, raw, signer=EventSigner())).status == 401
    assert (await post_events(paybot, raw, timestamp=ts - 301)).status == 401
    tampered = await paybot.client.post("/callbacks/sendgrid", data=raw.replace(b"bounce", b"delivered"),
                                        headers=SIGNER.headers(raw, ts))
    assert tampered.status == 401
    assert (await receipt_row(paybot)).status == "sent"
    assert (await paybot.audit_kinds()).count("callback.rejected") == 3


async def test_unparseable_events_are_400_and_change_nothing(paybot, sendgrid):
    await emailed(paybot, sendgrid)
    before = [(n.id, n.status, n.delivery_status) for n in await paybot.notifications()]
    audit_before = await paybot.audit_kinds()
    assert (await post_events(paybot, b'{"not": "a list"}')).status == 400
    assert (await post_events(paybot, b'[{"event": "bounce"')).status == 400
    assert (await paybot.client.post("/callbacks/slack", data=b"[]")).status == 404
    assert [(n.id, n.status, n.delivery_status) for n in await paybot.notifications()] == before
    assert before and all(status == "sent" for _, status, _ in before)
    assert [k for k in await paybot.audit_kinds() if k not in audit_before] == ["callback.rejected"] * 2
