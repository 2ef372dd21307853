"""A Stripe payment lands, is stored, matched, acknowledged by email and shown to finance, on both engines."""

from __future__ import annotations

from bot.storage import models
from tests.harness import stripe_invoice_event


async def test_paid_invoice_thanks_the_customer_and_tells_finance(paybot, sendgrid, slack):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")

    response = await paybot.post_stripe(stripe_invoice_event())
    assert response.status == 200
    assert await paybot.deliver() == 2

    [mail] = sendgrid.accepted
    assert mail["personalizations"][0]["to"] == [{"email": "jane@example.com"}]
    assert "INV-1042" in mail["subject"]
    text = next(c["value"] for c in mail["content"] if c["type"] == "text/plain")
    assert "$1,250.00" in text and "paid in full" in text
    [card] = slack.posted("C0FINANCE")
    assert "INV-1042" in card["text"]
    assert {e["action_id"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]} == {
        "payment_resend", "payment_edit", "payment_escalate"}
    kinds = await paybot.audit_kinds()
    assert kinds[:2] == ["webhook.received", "payment.matched"]
    assert kinds.count("notification.sent") == 2


async def test_duplicate_webhook_sends_one_email(paybot, sendgrid):
    await paybot.add_customer()
    await paybot.add_invoice()
    first = await paybot.post_stripe(stripe_invoice_event("evt_same"))
    again = await paybot.post_stripe(stripe_invoice_event("evt_same"))
    assert (first.status, again.status) == (200, 200)
    assert (await again.json())["duplicate"] is True
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    assert len(await paybot.rows(models.WebhookEvent)) == 1


async def test_partial_payment_names_the_balance(paybot, sendgrid):
    await paybot.add_customer()
    await paybot.add_invoice("INV-7", "1000.00")
    await paybot.post_stripe(stripe_invoice_event(number="INV-7", amount_paid=40000, amount_remaining=60000))
    await paybot.deliver()
    [mail] = sendgrid.accepted
    text = next(c["value"] for c in mail["content"] if c["type"] == "text/plain")
    assert "$400.00" in text and "$600.00 is still owed on invoice INV-7" in text


async def test_two_reports_of_one_payment_at_the_same_moment_acknowledge_once(paybot, sendgrid):
    """Stripe sends `invoice.paid` and `invoice.payment_succeeded` together: the invoice lock orders them."""
    import asyncio

    await paybot.add_customer()
    await paybot.add_invoice()
    responses = await asyncio.gather(
        paybot.post_stripe(stripe_invoice_event("evt_paid", event_type="invoice.paid")),
        paybot.post_stripe(stripe_invoice_event("evt_succeeded", event_type="invoice.payment_succeeded")),
    )
    assert [r.status for r in responses] == [200, 200]
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 125000
