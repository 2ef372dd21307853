"""Pusher Beams end to end: a signed Stripe payment in, a publish to the customer's Beams user at the fake
publish API, worded in the customer's locale; 429 waits, another 4xx falls back, 5xx is classified."""

from __future__ import annotations

from tests.fakes import pusher_beams as pb
from tests.harness import stripe_invoice_event


async def pushed(paybot, *, locale="en-US", external_ids=None, amount_remaining=0, channels=("push", "slack")):
    await paybot.add_customer(locale=locale, channels=channels, slack_channel="C0SHARED",
                              external_ids=external_ids or {})
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event(amount_paid=125000 - amount_remaining,
                                                  amount_remaining=amount_remaining))
    await paybot.deliver()


async def receipt_row(paybot):
    return next(n for n in await paybot.notifications() if n.purpose == "receipt" and n.channel == "pusher-beams")


async def test_english_push_to_the_beams_user(paybot, beams):
    await pushed(paybot, external_ids={"pusher-beams": "user-42", "stripe": "cus_Q1"})
    [call] = beams.to(pb.PUBLISH)
    assert call.headers["Authorization"] == f"Bearer {pb.SECRET_KEY}"
    [body] = beams.published
    assert body["users"] == ["user-42"]
    alert = body["apns"]["aps"]["alert"]
    assert alert["title"] == "Payment received for invoice INV-1042 — thank you"
    assert alert["body"] == ("Thank you, Jane Doe! We received your payment of $1,250.00 for invoice INV-1042. "
                             "Paid in full.")
    assert body["fcm"]["notification"] == alert == body["web"]["notification"]
    row = await receipt_row(paybot)
    assert body["fcm"]["data"]["notification_key"] == row.idempotency_key
    assert (row.status, row.provider_id) == ("sent", "pubid-0001")


async def test_spanish_push_and_the_customer_id_as_user(paybot, beams):
    await pushed(paybot, locale="es-MX", amount_remaining=25000)
    [body] = beams.published
    assert body["users"] == ["C1"]  # no pusher-beams external id: the customer's own id
    assert body["web"]["notification"] == {
        "title": "Pago recibido de la factura INV-1042: gracias",
        "body": "¡Gracias, Jane Doe! Recibimos su pago de $1,000.00 USD para la factura INV-1042. "
                "Saldo pendiente: $250.00 USD."}


async def test_rate_limit_waits_for_retry_after(paybot, beams, clock):
    beams.script(pb.PUBLISH, pb.too_many_requests(45))
    await pushed(paybot)
    row = await receipt_row(paybot)
    assert row.status == "pending" and "429" in row.last_error and beams.published == []
    assert (row.available_at.replace(tzinfo=None) - clock().replace(tzinfo=None)).total_seconds() >= 45
    clock.advance(600)
    await paybot.deliver()
    assert (await receipt_row(paybot)).status == "sent" and len(beams.published) == 1


async def test_client_error_falls_back_to_the_next_channel(paybot, beams, slack, clock):
    await pushed(paybot, external_ids={"pusher-beams": "u" * 165})  # over Beams' limit: not addressable
    assert beams.calls == [] and len(slack.posted("C0SHARED")) == 1
    beams.script(pb.PUBLISH, pb.error(400, "Invalid request", "apns payload is not valid"))
    await paybot.add_customer("C2", channels=("push", "slack"), slack_channel="C0SHARED")
    await paybot.add_invoice("INV-2001", customer_id="C2")
    await paybot.post_stripe(stripe_invoice_event("evt_2", number="INV-2001", id="in_2QabcINV2001", customer="cus_Q2"))
    await paybot.deliver()
    row = next(n for n in await paybot.notifications() if n.channel == "pusher-beams")
    assert row.status == "dead" and "apns payload is not valid" in row.last_error
    clock.advance(2)  # Slack's one message a second per channel
    await paybot.deliver()
    assert len(slack.posted("C0SHARED")) == 2


async def test_gateway_errors_retry_and_server_errors_are_not_sent_twice(paybot, beams, slack, clock):
    from aiohttp import web

    beams.script(pb.PUBLISH, pb.error(503, "Service Unavailable", "try again"),
                 web.Response(status=500, text="Internal Server Error"))
    await pushed(paybot)
    assert (await receipt_row(paybot)).status == "pending"
    clock.advance(600)
    await paybot.deliver()
    row = await receipt_row(paybot)
    assert row.status == "dead" and "not sent again" in row.last_error
    assert len(beams.to(pb.PUBLISH)) == 2 and len(slack.posted("C0SHARED")) == 1
