"""WhatsApp Cloud API end to end: a signed Stripe payment in, a template message at the fake Graph API with the
customer's language and babel-formatted values; Meta's signed status webhooks and its hub.challenge handshake."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from aiohttp import web

from tests.channels.conftest import whatsapp_settings
from tests.fakes import whatsapp as wa
from tests.harness import stripe_invoice_event

PHONE = "+5215512345678"


async def paid(paybot, *, locale="en-US", channels=("whatsapp", "slack"), amount_remaining=0, **customer):
    await paybot.add_customer(phone=PHONE, locale=locale, channels=channels, slack_channel="C0SHARED", **customer)
    await paybot.add_invoice(amount="1250.00")
    await paybot.post_stripe(stripe_invoice_event(amount_paid=125000 - amount_remaining,
                                                  amount_remaining=amount_remaining))
    await paybot.deliver()


def values(sent):
    [body] = [c for c in sent["template"]["components"] if c["type"] == "body"]
    return [p["text"] for p in body["parameters"]]


async def receipt_row(paybot):
    return next(n for n in await paybot.notifications() if n.purpose == "receipt" and n.channel == "whatsapp")


async def post_statuses(paybot, raw: bytes, headers=None):
    return await paybot.client.post("/callbacks/whatsapp", data=raw, headers=headers or wa.signed(raw))


async def test_english_template_with_babel_values(paybot, whatsapp):
    await paid(paybot, amount_remaining=50000)
    [sent] = whatsapp.accepted
    assert whatsapp.calls[0].headers["Authorization"] == f"Bearer {wa.ACCESS_TOKEN}"
    assert whatsapp.calls[0].path == wa.MESSAGES
    assert sent["to"] == PHONE[1:] and sent["type"] == "template"
    assert sent["template"]["name"] == "payment_received" and sent["template"]["language"] == {"code": "en_US"}
    assert values(sent) == ["Jane Doe", "INV-1042", "$750.00", "$500.00"]
    row = await receipt_row(paybot)
    assert (row.status, row.provider_id) == ("sent", sent["id"])
    assert sent["biz_opaque_callback_data"] == row.idempotency_key


async def test_spanish_customer_gets_the_spanish_template(paybot, whatsapp):
    await paid(paybot, locale="es-MX", name="Soldaduras Núñez")
    [sent] = whatsapp.accepted
    assert sent["template"]["language"] == {"code": "es_MX"}
    assert values(sent) == ["Soldaduras Núñez", "INV-1042", "$1,250.00 USD", "$0.00 USD"]


async def test_delivered_confirms_and_unknown_messages_are_ignored(paybot, whatsapp, caplog):
    caplog.set_level("INFO", logger="bot.services.delivery_status")
    await paid(paybot)
    [sent] = whatsapp.accepted
    ts = int(paybot.clock().timestamp())
    both = wa.notification(wa.status(sent, "sent", ts), wa.status(sent, "delivered", ts))
    response = await post_statuses(paybot, both)
    assert response.status == 200 and await response.json() == {"received": 2, "changed": 2}
    assert (await receipt_row(paybot)).delivery_status == "delivered"
    stranger = dict(sent, id="wamid.other", biz_opaque_callback_data="p999:receipt:whatsapp")
    response = await post_statuses(paybot, wa.notification(wa.status(stranger, "failed", ts, wa.undeliverable())))
    assert response.status == 200 and (await response.json())["changed"] == 0
    assert "ignored" in caplog.text
    assert (await receipt_row(paybot)).status == "sent"
    assert len(whatsapp.accepted) == 1


async def test_failed_status_falls_back_to_the_next_channel(paybot, whatsapp, slack, clock):
    await paid(paybot)
    [sent] = whatsapp.accepted
    assert slack.posted("C0SHARED") == []
    failed = wa.status(sent, "failed", int(clock().timestamp()), wa.undeliverable())
    assert (await post_statuses(paybot, wa.notification(failed))).status == 200
    clock.advance(1)
    await paybot.deliver()
    row = await receipt_row(paybot)
    assert (row.status, row.delivery_status) == ("dead", "failed")
    [shared] = slack.posted("C0SHARED")
    assert "INV-1042" in shared["text"]
    assert any("Could not deliver" in m["text"] and "131026" in m["text"] for m in slack.posted("C0FINANCE"))
    assert "notification.undelivered" in await paybot.audit_kinds()


async def test_forged_statuses_are_refused_and_change_nothing(paybot, whatsapp):
    await paid(paybot)
    [sent] = whatsapp.accepted
    raw = wa.notification(wa.status(sent, "failed", int(paybot.clock().timestamp()), wa.undeliverable()))
    assert (await post_statuses(paybot, raw, wa.signed(raw, "another-app-secret"))).status == 401
    assert (await post_statuses(paybot, raw, {"Content-Type": "application/json"})).status == 401
    tampered = raw.replace(b'"failed"', b'"read"')
    assert (await post_statuses(paybot, tampered, wa.signed(raw))).status == 401
    garbage = b'{"object": "whatsapp_business_account", "entry": ['
    assert (await post_statuses(paybot, garbage)).status == 400
    row = await receipt_row(paybot)
    assert (row.status, row.delivery_status) == ("sent", None)
    assert (await paybot.audit_kinds()).count("callback.rejected") == 4


async def test_hub_challenge_handshake(paybot):
    def query(token):
        return "/callbacks/whatsapp?" + urlencode({"hub.mode": "subscribe", "hub.verify_token": token,
                                                   "hub.challenge": "1158201444"})
    good = await paybot.client.get(query(wa.VERIFY_TOKEN))
    assert good.status == 200 and await good.text() == "1158201444"
    assert (await paybot.client.get(query("guess"))).status == 403
    assert (await paybot.client.get("/callbacks/whatsapp?hub.mode=subscribe")).status == 400
    assert (await paybot.client.get("/callbacks/sendgrid")).status == 405
    assert (await paybot.client.get("/callbacks/nope")).status == 404


async def test_permanent_error_codes_fall_back_at_once(paybot, whatsapp, slack):
    whatsapp.script(wa.MESSAGES, wa.graph_error(400, 131026, "Message undeliverable", "Message Undeliverable."))
    await paid(paybot)
    row = await receipt_row(paybot)
    assert row.status == "dead" and "131026" in row.last_error and "undeliverable" in row.last_error
    assert len(slack.posted("C0SHARED")) == 1


async def test_template_missing_in_the_language_is_permanent(paybot, whatsapp, slack):
    await paid(paybot, locale="pt-BR")  # no Portuguese translation approved
    row = await receipt_row(paybot)
    assert row.status == "dead" and "132001" in row.last_error
    assert whatsapp.accepted == [] and len(slack.posted("C0SHARED")) == 1


async def test_throttling_is_retried_after_the_wait(paybot, whatsapp, clock):
    whatsapp.script(wa.MESSAGES, wa.throttled(30),
                    wa.graph_error(400, 131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit"))
    await paid(paybot)
    row = await receipt_row(paybot)
    assert row.status == "pending" and "130429" in row.last_error
    assert (row.available_at.replace(tzinfo=None) - clock().replace(tzinfo=None)).total_seconds() >= 30
    clock.advance(3600)
    await paybot.deliver()
    assert (await receipt_row(paybot)).status == "pending"  # 131056: again later
    clock.advance(3600)
    await paybot.deliver()
    assert (await receipt_row(paybot)).status == "sent" and len(whatsapp.accepted) == 1


async def test_unknown_server_error_is_not_sent_twice(paybot, whatsapp, slack):
    whatsapp.script(wa.MESSAGES, web.Response(status=500, text="<html>Internal Server Error</html>"))
    await paid(paybot)
    row = await receipt_row(paybot)
    assert row.status == "dead" and "not sent again" in row.last_error
    assert len(whatsapp.to(wa.MESSAGES)) == 1 and len(slack.posted("C0SHARED")) == 1


async def test_no_usable_number_skips_whatsapp(paybot, whatsapp, slack):
    await paybot.add_customer(phone=None, channels=("whatsapp", "slack"), slack_channel="C0SHARED")
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    await paybot.deliver()
    assert whatsapp.calls == [] and len(slack.posted("C0SHARED")) == 1


def test_language_is_the_closest_approved_one(whatsapp):
    from bot.integrations.channels.whatsapp import WhatsAppChannel

    settings = whatsapp_settings(whatsapp, template_languages="en_US, es_MX, es")
    channel = WhatsAppChannel(settings, None)  # type: ignore[arg-type]
    assert [channel.language(tag) for tag in ("en-US", "es-MX", "es-US", "en-GB", "fr-FR")] == \
        ["en_US", "es_MX", "es", "en_US", "en_US"]


async def test_signed_statuses_with_unstorable_text_change_nothing(paybot, whatsapp):
    await paid(paybot)
    [sent] = whatsapp.accepted
    ts = int(paybot.clock().timestamp())
    for key, word in (("\ud800", "failed"), ("\x00", "delivered"), (sent["biz_opaque_callback_data"], "\x00\ud800")):
        raw = wa.notification(wa.status(dict(sent, biz_opaque_callback_data=key), word, ts))
        response = await post_statuses(paybot, raw)
        assert response.status in (200, 400), await response.text()
    row = await receipt_row(paybot)
    assert row.status == "sent"


async def test_signed_notifications_of_odd_shapes_are_answered_without_a_5xx(paybot, whatsapp):
    await paid(paybot)
    [sent] = whatsapp.accepted
    ts = int(paybot.clock().timestamp())
    shapes = [{"object": "whatsapp_business_account", "entry": [{"changes": 5}]},
              {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {"statuses": [
                  dict(wa.status(sent, "failed", ts), status={"a": 1}, timestamp={"b": 2}, errors=7)]}}]}]},
              {"object": "whatsapp_business_account", "entry": "x"}]
    for shape in shapes:
        raw = json.dumps(shape).encode()
        response = await post_statuses(paybot, raw)
        assert response.status in (200, 400), await response.text()
    assert (await receipt_row(paybot)).status == "sent"


async def test_parameters_are_one_line_without_runs_of_spaces(paybot, whatsapp):
    await paid(paybot, name="Jane     Doe\n\t<b>Welding</b>\u202e")
    [sent] = whatsapp.accepted
    assert values(sent)[0] == "Jane Doe <b>Welding</b>"
