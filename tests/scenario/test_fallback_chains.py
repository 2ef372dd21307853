"""Fallback on real failure signals, across channels: an email bounce moves the receipt to SMS, an SMS opt-out to
the next channel (email, WhatsApp), a confirmed delivery ends the chain (a late report changes nothing, a fallback not yet sent is
cancelled), an exhausted chain reaches finance; every step is in the audit trail."""

from __future__ import annotations

import pytest

from bot.integrations.channels.sendgrid import SendGridSettings
from bot.storage import models
from tests.channels.conftest import whatsapp, whatsapp_settings  # noqa: F401 (fixture)
from tests.fakes.sendgrid import API_KEY
from tests.fakes.sendgrid_events import EventSigner, body, event
from tests.harness import stripe_invoice_event
from tests.scenario.test_twilio import PHONE, inbound, status, twilio, twilio_settings  # noqa: F401 (fixture)

SIGNER = EventSigner()


@pytest.fixture
def configs(configs, sendgrid, twilio, whatsapp):  # noqa: F811
    return configs | {
        "twilio": twilio_settings(twilio), "whatsapp": whatsapp_settings(whatsapp),
        "sendgrid": SendGridSettings(_env_file=None, api_key=API_KEY, from_email="billing@weld.example",
                                     event_public_key=SIGNER.public_key, base_url=str(sendgrid.server.make_url("/")))}


async def paid(paybot, channels, **fields):
    await paybot.add_customer(phone=PHONE, channels=channels, **fields)
    await paybot.add_invoice()
    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    await paybot.deliver()


async def bounce(paybot, mail, kind: str = "bounce"):
    ts = int(paybot.clock().timestamp())
    raw = body(event(kind, mail, ts, type=kind, reason="550 5.1.1 The email account does not exist"))
    return await paybot.client.post("/callbacks/sendgrid", data=raw, headers=SIGNER.headers(raw, ts))


async def receipts(paybot):
    return sorted((n for n in await paybot.notifications() if n.purpose == "receipt"), key=lambda n: n.id)


async def chain(paybot):
    """The audit trail's story of the receipt: (kind, channel) of every notification step."""
    kinds = ("notification.queued", "notification.sent", "notification.undelivered", "notification.failed",
             "notification.fallback", "notification.skipped", "notification.cancelled", "notification.status",
             "consent.opted_out")
    return [(e.kind, e.channel) for e in await paybot.rows(models.AuditEntry)
            if e.kind in kinds and (e.detail or {}).get("purpose") != "finance_card"
            and e.channel != "slack"]


async def test_email_bounce_moves_the_receipt_to_sms_within_a_minute(paybot, sendgrid, twilio, slack, clock):
    await paid(paybot, ("email", "sms"))
    [mail] = sendgrid.accepted
    clock.advance(600)
    assert (await bounce(paybot, mail)).status == 200
    signal_at = clock()
    await paybot.deliver()

    [sms] = twilio.messages
    assert sms["to"] == PHONE and "INV-1042" in sms["body"]
    email, text = await receipts(paybot)
    assert (email.status, email.delivery_status) == ("dead", "bounce")
    assert (text.channel, text.status) == ("twilio", "sent") and (text.sent_at - signal_at).total_seconds() < 60
    assert await chain(paybot) == [
        ("notification.queued", "sendgrid"), ("notification.sent", "sendgrid"),
        ("notification.undelivered", "sendgrid"), ("notification.fallback", "twilio"),
        ("notification.queued", "twilio"), ("notification.sent", "twilio")]
    # Finance hears that the email failed and that SMS is being tried.
    clock.advance(2)
    await paybot.deliver()
    [alert] = [m for m in slack.posted("C0FINANCE") if "Could not deliver" in m["text"]]
    assert "trying twilio next" in alert["text"]


async def test_sms_stop_moves_the_receipt_to_the_next_channel(paybot, sendgrid, twilio, clock):
    await paybot.add_customer(phone=PHONE, channels=("sms", "email"))
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    assert (await inbound(paybot, "STOP")).status == 200
    await paybot.deliver()
    await paybot.deliver()
    assert twilio.messages == [] and len(sendgrid.accepted) == 1
    assert [k for k, _ in await chain(paybot)] == [
        "notification.queued", "consent.opted_out", "notification.failed", "notification.fallback",
        "notification.queued", "notification.sent"]


async def test_sms_stop_moves_the_receipt_to_whatsapp(paybot, twilio, whatsapp, clock):  # noqa: F811
    await paybot.add_customer(phone=PHONE, channels=("sms", "whatsapp"))
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    assert (await inbound(paybot, "STOP")).status == 200  # STOP is about texts: WhatsApp may still be used
    await paybot.deliver()
    await paybot.deliver()
    assert twilio.messages == []
    [sent] = whatsapp.accepted
    assert sent["to"] == PHONE[1:] and sent["type"] == "template"
    assert await chain(paybot) == [
        ("notification.queued", "twilio"), ("consent.opted_out", "twilio"), ("notification.failed", "twilio"),
        ("notification.fallback", "whatsapp"), ("notification.queued", "whatsapp"), ("notification.sent", "whatsapp")]


async def test_delivered_ends_the_chain(paybot, sendgrid, twilio, clock):
    await paid(paybot, ("sms", "email"))
    [message] = twilio.messages
    assert (await status(paybot, message, "delivered")).status == 200
    await status(paybot, message, "failed", 30008)  # late and out of order
    await paybot.deliver()
    assert sendgrid.accepted == []
    [text] = await receipts(paybot)
    assert (text.status, text.delivery_status) == ("sent", "delivered")


async def test_a_late_delivery_cancels_the_fallback_not_yet_sent(paybot, sendgrid, twilio, clock):
    await paid(paybot, ("sms", "email"))
    [message] = twilio.messages
    sendgrid.script("/v3/mail/send", *[sendgrid_busy() for _ in range(2)])
    await status(paybot, message, "undelivered", 30003)
    await paybot.deliver()  # the email fallback is queued, SendGrid is busy: it waits for a retry
    await status(paybot, message, "delivered")  # the carrier delivered the SMS after all
    clock.advance(paybot.runtime.settings.retry_max_seconds)
    await paybot.deliver()

    assert sendgrid.accepted == []  # never thanked twice
    text, email = await receipts(paybot)
    assert (text.delivery_status, email.status) == ("delivered", "cancelled")
    assert ("notification.cancelled", "sendgrid") in await chain(paybot)


async def test_an_exhausted_chain_reaches_finance(paybot, sendgrid, twilio, slack, clock):
    twilio.landlines.add(PHONE)
    await paid(paybot, ("sms", "email"))
    [mail] = sendgrid.accepted
    await bounce(paybot, mail)
    for _ in range(3):
        clock.advance(2)
        await paybot.deliver()
    text, email = await receipts(paybot)
    assert (text.status, email.status) == ("dead", "dead")
    alerts = sorted(m["text"] for m in slack.posted("C0FINANCE") if "Could not deliver" in m["text"])
    assert len(alerts) == 2
    assert "via sendgrid (bounce" in alerts[0] and "no other channel of the customer's left" in alerts[0]
    assert "via twilio" in alerts[1] and "21614" in alerts[1] and "trying sendgrid next" in alerts[1]


def sendgrid_busy():
    from tests.fakes.sendgrid import errors

    return errors(503, "Service Unavailable")
