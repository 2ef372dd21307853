"""Mailgun as the email provider (EMAIL_PROVIDER=mailgun) end to end: a signed Stripe payment in, a form-encoded
message at the fake Mailgun with HTML + text in the customer's language; Mailgun's signed events."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
from aiohttp import web

from bot.integrations.http import Retry
from bot.services.delivery import DeliveryWorker
from bot.storage import models
from tests.fakes import mailgun as mg
from tests.scenario.test_crash_window import WorkerDied
from tests.harness import stripe_invoice_event

SIGNER = mg.EventSigner()
MESSAGES = f"/v3/{mg.DOMAIN}/messages"


@pytest.fixture
def settings_for(settings_for):  # type: ignore[no-untyped-def]
    return functools.partial(settings_for, email_provider="mailgun")


async def emailed(paybot, mailgun, *, locale="en-US", channels=("email", "slack")):
    await paybot.add_customer(locale=locale, channels=channels, slack_channel="C0SHARED")
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    await paybot.deliver()
    [sent] = mailgun.accepted
    return sent


async def receipt_row(paybot):
    return next(n for n in await paybot.notifications() if n.purpose == "receipt" and n.channel == "mailgun")


async def post_event(paybot, event, *, timestamp=None, token=None, signer=SIGNER):
    ts = int(paybot.clock().timestamp()) if timestamp is None else timestamp
    return await paybot.client.post("/callbacks/mailgun", data=signer.body(event, ts, token),
                                    headers={"Content-Type": "application/json"})


async def test_english_mail_as_form_fields(paybot, mailgun, sendgrid):
    sent = await emailed(paybot, mailgun)
    call = mailgun.to(MESSAGES)[0]
    assert call.headers["Content-Type"].startswith("multipart/form-data")
    assert sent["from"] == ["Weld Billing <billing@mg.weld.example>"] and sent["to"] == ["jane@example.com"]
    assert sent["subject"] == ["Payment received for invoice INV-1042 — thank you"]
    assert "We received your payment of $1,250.00 for invoice INV-1042" in sent["text"][0]
    assert "<strong>INV-1042</strong>" in sent["html"][0]
    assert sent["o:tag"] == ["paybot", "receipt"]
    row = await receipt_row(paybot)
    assert sent["v:notification_key"] == [row.idempotency_key] == sent["h:X-Paybot-Notification-Key"]
    assert (row.status, row.provider_id) == ("sent", sent["id"][0])
    assert sendgrid.accepted == []  # EMAIL_PROVIDER picks Mailgun although SendGrid is configured too


async def test_spanish_mail(paybot, mailgun):
    sent = await emailed(paybot, mailgun, locale="es-MX")
    assert sent["subject"] == ["Pago recibido de la factura INV-1042: gracias"]
    assert "Recibimos su pago de $1,250.00 USD para la factura INV-1042. ¡Muchas gracias!" in sent["text"][0]
    assert "Recibimos su pago" in sent["html"][0]


async def test_delivered_confirms_and_unknown_messages_are_ignored(paybot, mailgun, caplog):
    caplog.set_level("INFO", logger="bot.services.delivery_status")
    sent = await emailed(paybot, mailgun)
    ts = int(paybot.clock().timestamp())
    response = await post_event(paybot, mg.event("delivered", sent, ts))
    assert response.status == 200 and await response.json() == {"received": 1, "changed": 1}
    assert (await receipt_row(paybot)).delivery_status == "delivered"
    stranger = dict(sent, **{"v:notification_key": ["p999:receipt:mailgun"]})
    response = await post_event(paybot, mg.bounce(stranger, ts))
    assert response.status == 200 and (await response.json())["changed"] == 0
    assert "ignored" in caplog.text
    opened = await post_event(paybot, mg.event("opened", sent, ts))
    assert opened.status == 200 and (await opened.json())["received"] == 0
    assert (await receipt_row(paybot)).status == "sent"


async def test_permanent_failure_falls_back_and_alerts_finance(paybot, mailgun, slack, clock):
    sent = await emailed(paybot, mailgun)
    assert (await post_event(paybot, mg.bounce(sent, int(clock().timestamp())))).status == 200
    clock.advance(1)
    await paybot.deliver()
    row = await receipt_row(paybot)
    assert (row.status, row.delivery_status) == ("dead", "failed")
    [shared] = slack.posted("C0SHARED")
    assert "INV-1042" in shared["text"]
    assert any("Could not deliver" in m["text"] and "does not exist" in m["text"] for m in slack.posted("C0FINANCE"))


async def test_temporary_failure_is_not_a_failure_signal(paybot, mailgun, slack, clock):
    sent = await emailed(paybot, mailgun)
    ts = int(clock().timestamp())
    assert (await post_event(paybot, mg.bounce(sent, ts, severity="temporary"))).status == 200
    await paybot.deliver()
    row = await receipt_row(paybot)
    assert (row.status, row.delivery_status) == ("sent", "failed-temporary")
    assert slack.posted("C0SHARED") == []
    assert (await post_event(paybot, mg.event("delivered", sent, ts + 60), timestamp=ts + 60)).status == 200
    assert (await receipt_row(paybot)).delivery_status == "delivered"


async def test_complaint_is_a_failure_signal(paybot, mailgun, slack, clock):
    sent = await emailed(paybot, mailgun)
    assert (await post_event(paybot, mg.event("complained", sent, int(clock().timestamp())))).status == 200
    await paybot.deliver()
    assert (await receipt_row(paybot)).status == "dead" and len(slack.posted("C0SHARED")) == 1


async def test_forged_stale_and_replayed_events_are_refused(paybot, mailgun):
    sent = await emailed(paybot, mailgun)
    ts = int(paybot.clock().timestamp())
    bounce = mg.bounce(sent, ts)
    assert (await post_event(paybot, bounce, signer=mg.EventSigner("not-the-signing-key"))).status == 401
    assert (await post_event(paybot, bounce, timestamp=ts - 301)).status == 401
    unsigned = await paybot.client.post("/callbacks/mailgun", json={"event-data": bounce})
    assert unsigned.status == 401
    assert (await paybot.client.post("/callbacks/mailgun", data=b"{not json")).status == 400
    delivered = mg.event("delivered", sent, ts)
    assert (await post_event(paybot, delivered, token="a" * 50)).status == 200
    replay = await post_event(paybot, bounce, token="a" * 50)  # a captured signature on another body
    assert replay.status == 401
    row = await receipt_row(paybot)
    assert (row.status, row.delivery_status) == ("sent", "delivered")
    assert (await paybot.audit_kinds()).count("callback.rejected") == 5


async def test_rate_limit_waits_for_retry_after(paybot, mailgun, clock):
    mailgun.script(MESSAGES, mg.too_many_requests(20))
    await paybot.add_customer(channels=("email",))
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    await paybot.deliver()
    row = await receipt_row(paybot)
    assert row.status == "pending" and "429" in row.last_error and mailgun.accepted == []
    assert (row.available_at.replace(tzinfo=None) - clock().replace(tzinfo=None)).total_seconds() >= 20
    clock.advance(600)
    await paybot.deliver()
    assert (await receipt_row(paybot)).status == "sent" and len(mailgun.accepted) == 1


async def test_a_500_after_mailgun_took_the_message_is_not_sent_twice(paybot, mailgun, slack, clock):
    paybot.runtime.channels["mailgun"]._now = clock
    mailgun.lose_answers = 1
    await paybot.add_customer(channels=("email", "slack"), slack_channel="C0SHARED")
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    await paybot.deliver()
    row = await receipt_row(paybot)
    assert row.status == "pending" and "asked before sending again" in row.last_error
    clock.advance(60)
    await paybot.deliver()  # the event log has it: recorded as sent, not sent again
    row = await receipt_row(paybot)
    assert (row.status, row.provider_id) == ("sent", mailgun.accepted[0]["id"][0])
    assert len(mailgun.to(MESSAGES)) == 1 and slack.posted("C0SHARED") == []


async def test_a_500_before_mailgun_took_it_is_sent_once_the_log_has_caught_up(paybot, mailgun, slack, clock):
    paybot.runtime.channels["mailgun"]._now = clock
    mailgun.script(MESSAGES, web.Response(status=500, text="Internal Server Error"))
    await paybot.add_customer(channels=("email", "slack"), slack_channel="C0SHARED")
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    await paybot.deliver()
    clock.advance(60)
    await paybot.deliver()
    assert (await receipt_row(paybot)).status == "pending" and mailgun.accepted == []  # the log may lag
    clock.advance(300)
    await paybot.deliver()
    assert (await receipt_row(paybot)).status == "sent" and len(mailgun.accepted) == 1
    assert len(mailgun.to(MESSAGES)) == 2 and slack.posted("C0SHARED") == []


def test_region_picks_the_api_root():
    from bot.integrations.channels.mailgun import MailgunSettings

    assert MailgunSettings(_env_file=None).api_root == "https://api.mailgun.net"
    assert MailgunSettings(_env_file=None, region="eu").api_root == "https://api.eu.mailgun.net"
    assert MailgunSettings(_env_file=None, region="eu", base_url="http://127.0.0.1:9/").api_root == "http://127.0.0.1:9"


class DiesWhileSending:
    """The worker's process dies during the send, whatever Mailgun answered."""

    def __init__(self, channel) -> None:  # type: ignore[no-untyped-def]
        self.channel, self.name = channel, channel.name

    def rate_limit(self, payload):  # type: ignore[no-untyped-def]
        return None

    async def send(self, payload, *, key):  # type: ignore[no-untyped-def]
        await self.channel.send(payload, key=key)
        raise WorkerDied


async def crash_mid_send(paybot, clock):  # type: ignore[no-untyped-def]
    paybot.runtime.channels["mailgun"]._now = clock  # the channel's clock, as the worker's
    await paybot.add_customer(channels=("email",))
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    await paybot.runtime.settle()
    rt = paybot.runtime
    doomed = DeliveryWorker(rt.db, {"mailgun": DiesWhileSending(rt.channels["mailgun"])}, rt.notifier, rt.settings,
                            metrics=rt.metrics, worker_id="doomed")
    with pytest.raises(WorkerDied):
        await doomed.run_once()
    clock.advance(rt.settings.worker_lease_seconds + 1)


async def test_a_message_accepted_before_a_crash_is_found_in_the_event_log(paybot, mailgun, clock):
    for n in range(3):  # other mail to the same address, so the log is read across pages
        mailgun.accepted.append({"to": ["jane@example.com"], "id": [f"<old{n}@{mg.DOMAIN}>"], "from": ["x"],
                                 "subject": ["x"], "v:notification_key": [f"p{n}:other"]})
        mailgun.accepted_at.append(clock().timestamp())
    await crash_mid_send(paybot, clock)
    assert len(mailgun.accepted) == 4
    await paybot.deliver()
    row = await receipt_row(paybot)
    assert (row.status, row.provider_id) == ("sent", mailgun.accepted[-1]["id"][0])
    assert len(mailgun.to(MESSAGES)) == 1 and len(mailgun.to(f"/v3/{mg.DOMAIN}/events")) == 2  # on page 2
    [sent] = [e.detail for e in await paybot.rows(models.AuditEntry, models.AuditEntry.kind == "notification.sent")
              if e.channel == "mailgun"]
    assert sent.get("found_at_provider") is True


async def test_a_message_mailgun_never_took_is_sent_once_the_log_has_caught_up(paybot, mailgun, clock):
    mailgun.script(MESSAGES, mg.message(503, "Service Unavailable"))
    await crash_mid_send(paybot, clock)
    await paybot.deliver()
    row = await receipt_row(paybot)
    assert row.status == "pending" and "event log" in row.last_error and mailgun.accepted == []
    clock.advance(300)
    await paybot.deliver()
    assert (await receipt_row(paybot)).status == "sent" and len(mailgun.accepted) == 1


async def test_signed_events_with_unstorable_text_change_nothing(paybot, mailgun):
    sent = await emailed(paybot, mailgun)
    ts = int(paybot.clock().timestamp())
    for key in ("\ud800", "\x00", "k" * 5000):
        odd = mg.event("delivered", dict(sent, **{"v:notification_key": [key]}), ts)
        response = await post_event(paybot, odd)
        assert response.status in (200, 400), await response.text()
    assert (await receipt_row(paybot)).delivery_status is None


async def test_signed_events_of_odd_shapes_are_answered_without_a_5xx(paybot, mailgun):
    sent = await emailed(paybot, mailgun)
    ts = int(paybot.clock().timestamp())
    delivered = mg.event("delivered", sent, ts)
    for odd in (delivered | {"event": {"x": 1}}, delivered | {"user-variables": [1]},
                delivered | {"delivery-status": 5, "timestamp": {"t": 1}}, [], 7):
        response = await paybot.client.post("/callbacks/mailgun", data=SIGNER.body(odd, ts))  # type: ignore[arg-type]
        assert response.status in (200, 400), await response.text()
    assert (await receipt_row(paybot)).status == "sent"


async def test_the_event_log_is_read_defensively(paybot, mailgun, clock):
    channel = paybot.runtime.channels["mailgun"]
    channel._now = clock
    events = f"/v3/{mg.DOMAIN}/events"
    odd = {"items": [1, {"user-variables": []}, {"user-variables": {"notification_key": "p1:other"}}],
           "paging": {"next": "https://elsewhere.example/v3/events/next"}}
    mailgun.script(events, web.json_response(odd), mg.too_many_requests(7))
    since = clock() - timedelta(minutes=10)
    assert await channel.find_sent({"to": "jane@example.com"}, key="p1:receipt:mailgun", since=since) is None
    later = await channel.find_sent({"to": "jane@example.com"}, key="p1:receipt:mailgun", since=since)
    assert isinstance(later, Retry) and later.after == 7.0
    assert len(mailgun.to(events)) == 2  # the link to another host was not followed
