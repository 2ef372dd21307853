"""Messages end to end, on both engines: a message that cannot be written never loses the payment, a customer
nobody can reach is named to finance, an es-MX customer reads Spanish in their own time zone and money, signed by
the business; without Slack chat-ops the finance card offers no buttons."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from bot.app import create_app
from bot.keys import RUNTIME
from bot.integrations.channels.slack import SlackSettings
from bot.storage import models
from tests.harness import Paybot, stripe_invoice_event
from tests.fakes.slack import BOT_TOKEN

SHOP = {"business_name": "Alvarez Welding", "business_address": "12 Forge Rd, Laredo TX",
        "business_phone": "+1 956 555 0100", "business_reply_to": "billing@alvarez-weld.example",
        "business_timezone": "America/Chicago"}


@pytest.fixture
async def shop(aiohttp_client, settings_for, configs, clock):  # type: ignore[no-untyped-def]
    """paybot with the business identity set; `shop(chat_ops=False)` without SLACK_SIGNING_SECRET."""

    async def make(*, chat_ops: bool = True, **settings: object) -> Paybot:
        slack = configs["slack"]
        if not chat_ops:
            slack = SlackSettings(_env_file=None, bot_token=BOT_TOKEN, base_url=slack.base_url)
        app = create_app(settings_for(**(SHOP | settings)), configs=configs | {"slack": slack}, clock=clock,
                         run_worker=False)
        return Paybot(client=await aiohttp_client(app), runtime=app[RUNTIME], clock=clock)

    return make


async def set_customer(paybot: Paybot, customer_id: str = "C1", **values: object) -> None:
    """Straight into the table, as a row written before imports validated it would be."""
    async with paybot.runtime.db.transaction() as uow:
        await uow.session.execute(update(models.Customer).where(models.Customer.id == customer_id).values(**values))


def mail_text(mail: dict) -> str:
    return next(c["value"] for c in mail["content"] if c["type"] == "text/plain")


def card_text(message: dict) -> str:
    return message["text"] + "\n" + json.dumps(message["blocks"], ensure_ascii=False)


async def test_a_message_that_cannot_be_written_fails_alone_and_the_payment_stands(paybot, sendgrid, slack):
    await paybot.add_customer(channels=("email", "slack"), slack_channel="C0SHARED")
    await set_customer(paybot, locale="english")
    await paybot.add_invoice("INV-1042", "1250.00")

    response = await paybot.post_stripe(stripe_invoice_event())
    assert response.status == 200

    [payment] = await paybot.rows(models.Payment)
    assert (payment.amount_minor, payment.customer_id) == (125000, "C1")
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 125000
    receipts = await paybot.rows(models.Notification, models.Notification.purpose == "receipt")
    assert [(n.channel, n.status) for n in receipts] == [("sendgrid", "dead"), ("slack", "dead")]  # then fell back
    assert all("unknown locale 'english'" in (n.last_error or "") for n in receipts)
    failed = [e for e in await paybot.rows(models.AuditEntry) if e.kind == "notification.failed"]
    assert [(e.channel, e.detail["stage"]) for e in failed] == [("sendgrid", "render"), ("slack", "render")]
    assert "payment.matched" in await paybot.audit_kinds()

    for _ in range(3):  # Slack takes one message a second per channel
        await paybot.deliver()
        paybot.clock.advance(1.5)
    assert sendgrid.accepted == [] and slack.posted("C0SHARED") == []
    finance = [card_text(m) for m in slack.posted("C0FINANCE")]
    assert len(finance) == 3  # the payment card, and one "could not deliver" per channel tried
    assert any("Payment received" in t and "$1,250.00" in t for t in finance)
    undelivered = [t for t in finance if "Could not deliver" in t]
    assert len(undelivered) == 2 and all("unknown locale" in t for t in undelivered)


async def test_deferred_ingest_records_the_payment_of_a_customer_whose_message_cannot_be_written(shop, slack):
    """INGEST_MODE=deferred: the worker that records the stored event must not trip over the message either."""
    paybot = await shop(ingest_mode="deferred")
    await paybot.add_customer()
    await set_customer(paybot, locale="xx-YY")
    await paybot.add_invoice("INV-1042", "1250.00")

    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    await paybot.runtime.process_waiting()  # a worker records the stored event's payments
    await paybot.deliver()

    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "processed"
    [payment] = await paybot.rows(models.Payment)
    assert payment.amount_minor == 125000
    [receipt] = await paybot.rows(models.Notification, models.Notification.purpose == "receipt")
    assert receipt.status == "dead" and "unknown locale 'xx_YY'" in (receipt.last_error or "")
    finance = await paybot.rows(models.Notification, models.Notification.audience == "finance")
    assert sorted(n.purpose for n in finance) == ["dead_letter", "finance_card"]
    assert "Could not deliver the receipt via sendgrid" in slack.posted("C0FINANCE")[0]["text"]


@pytest.mark.parametrize(("fields", "reason"), [
    ({"channels": ("sms",)}, "sms: not configured"),
    ({"channels": ("email",), "email": None}, "email: no email address on file"),
    ({"channels": ("teams", "slack")}, "teams: not configured; slack: no slack_channel on file"),
])
async def test_a_customer_no_channel_can_reach_is_named_to_finance(paybot, sendgrid, slack, fields, reason):
    await paybot.add_customer(**fields)
    await paybot.add_invoice("INV-1042", "1250.00")

    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    [entry] = [e for e in await paybot.rows(models.AuditEntry) if e.kind == "notification.undeliverable"]
    assert (entry.customer_id, entry.invoice, entry.detail["reason"]) == ("C1", "INV-1042", reason)

    await paybot.deliver()
    assert sendgrid.accepted == []
    [card] = slack.posted("C0FINANCE")
    assert f"Jane Doe was NOT told* about this payment: {reason}" in card_text(card)
    assert f"The customer was NOT told: {reason}." in card["text"]


async def test_es_mx_customer_gets_spanish_in_their_time_zone_signed_by_the_business(shop, sendgrid, slack):
    paybot = await shop()
    await paybot.add_customer(name="Ferretería Norte", email="ap@norte.example")
    await set_customer(paybot, locale="es-MX", timezone="America/Mexico_City")
    await paybot.add_invoice("INV-1042", "980.50")

    assert (await paybot.post_stripe(stripe_invoice_event(amount_paid=98050, email="ap@norte.example",
                                                          payment_intent="pi_3QxYzNorte"))).status == 200
    await paybot.deliver()

    [mail] = sendgrid.accepted
    assert mail["from"] == {"email": "billing@weld.example", "name": "Alvarez Welding"}
    assert mail["reply_to"] == {"email": "billing@alvarez-weld.example", "name": "Alvarez Welding"}
    assert mail["subject"] == "Pago recibido de la factura INV-1042: gracias (Alvarez Welding)"
    text = mail_text(mail)
    assert "Recibimos su pago de $980.50 USD para la factura INV-1042." in text
    assert "Recibido: 28 de noviembre de 2026, 6:00\u202fa.m. hora estándar central" in text  # 12:00 UTC
    assert "Referencia: pi_3QxYzNorte" in text
    assert "Escríbanos a billing@alvarez-weld.example o llámenos al +1 956 555 0100." in text
    html = next(c["value"] for c in mail["content"] if c["type"] == "text/html")
    assert "<strong>$980.50 USD</strong>" in html and "Alvarez Welding<br>12 Forge Rd, Laredo TX" in html

    [card] = slack.posted("C0FINANCE")  # finance reads the business's way, not the customer's
    assert "$980.50 from *Ferretería Norte*" in card_text(card) and "USD" not in card["blocks"][0]["text"]["text"]
    assert "November 28, 2026, 6:00\u202fAM CST" in card_text(card)


def stripe_charge(amount: int, **charge: object) -> dict:
    """`charge.succeeded` for a card payment whose metadata names the invoice."""
    return {"id": "evt_charge_1", "object": "event", "api_version": "2025-05-28.basil", "created": 1795867200,
            "type": "charge.succeeded", "data": {"object": {
                "id": "ch_3QCharge", "object": "charge", "amount": amount, "amount_captured": amount,
                "currency": "usd", "created": 1795867200, "payment_intent": "pi_3QCharge", "customer": "cus_Q1",
                "billing_details": {"email": "jane@example.com", "name": "Jane Doe"},
                "metadata": {"invoice_number": "INV-1042"},
                "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}}, **charge}}}


async def test_without_chat_ops_the_finance_card_offers_no_buttons_and_an_overpayment_says_so(shop, sendgrid, slack):
    paybot = await shop(chat_ops=False)
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1000.00")
    assert (await paybot.post_stripe(stripe_charge(120000))).status == 200
    await paybot.deliver()

    [card] = slack.posted("C0FINANCE")
    assert [b for b in card["blocks"] if b["type"] == "actions"] == []
    assert "Overpaid by $200.00" in card["text"] and "*Overpaid by*\\n$200.00" in card_text(card)
    assert "-$200.00" not in card_text(card) and "Balance left" not in card_text(card)
    [mail] = sendgrid.accepted
    assert "You paid $200.00 more than invoice INV-1042 asked" in mail_text(mail)
    assert "Method: Visa card ending in 4242" in mail_text(mail) and "Reference: pi_3QCharge" in mail_text(mail)


async def test_needs_review_names_what_the_payer_quoted(paybot, slack):
    assert (await paybot.post_stripe(stripe_charge(98050, metadata={"invoice_number": "INV-9999"}))).status == 200
    await paybot.deliver()
    [card] = slack.posted("C0FINANCE")
    fields = [f["text"] for b in card["blocks"] for f in b.get("fields", [])]
    assert "*Payer*\nJane Doe (jane@example.com)" in fields
    assert "*They quoted*\nINV-9999" in fields
    assert "*stripe payment id*\npi_3QCharge" in fields
    assert card["text"].startswith("Unmatched payment of $980.50 via stripe from Jane Doe (jane@example.com), "
                                   "quoting INV-9999 (payment pi_3QCharge)")
