"""Which invoices a payment is matched among: the named one alone when it decides, else the customer's open ones."""

from __future__ import annotations

from bot.storage import models
from tests.harness import stripe_invoice_event


async def invoice_of(paybot, event_id: str) -> tuple[str | None, str]:  # type: ignore[no-untyped-def]
    [event] = await paybot.rows(models.WebhookEvent, models.WebhookEvent.event_id == event_id)
    [payment] = await paybot.rows(models.Payment, models.Payment.webhook_event_id == event.id)
    invoices = {i.id: i.number for i in await paybot.rows(models.Invoice)}
    return invoices.get(payment.invoice_id), payment.match_rule


async def test_a_named_invoice_wins_over_the_customers_other_open_invoices(paybot):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1", "100.00")
    await paybot.add_invoice("INV-2", "100.00")  # the same amount: by customer and amount alone, ambiguous

    response = await paybot.post_stripe(stripe_invoice_event("evt_named", number="INV-1", amount_paid=10000))

    assert response.status == 200
    assert await invoice_of(paybot, "evt_named") == ("INV-1", "invoice_number")


async def test_without_a_known_invoice_the_customers_only_open_invoice_is_chosen(paybot):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1", "100.00")
    await paybot.add_invoice("INV-2", "250.00")
    await paybot.post_stripe(stripe_invoice_event("evt_settle", number="INV-1", amount_paid=10000))

    # Stripe names an invoice paybot does not track, for a customer it knows: INV-1 is settled, INV-2 is not.
    unknown = stripe_invoice_event("evt_unknown", number=None, id="in_untracked", amount_paid=9900)
    response = await paybot.post_stripe(unknown)

    assert response.status == 200
    assert await invoice_of(paybot, "evt_unknown") == ("INV-2", "customer_amount")


async def test_invoice_numbers_match_whatever_the_case_of_their_letters(paybot, sendgrid):
    """Printed `inv-2026-a`, quoted by the payer as printed, in capitals, or in a description: one invoice."""
    await paybot.add_customer()
    await paybot.add_invoice("inv-2026-a", "100.00")
    await paybot.add_invoice("Rech-7b", "50.00", customer_id="C1")
    await paybot.post_stripe(stripe_invoice_event("evt_printed", number="inv-2026-a", amount_paid=4000,
                                                  amount_remaining=6000, email="someone@else.example"))
    await paybot.post_stripe(stripe_invoice_event("evt_capitals", number="INV-2026-A", amount_paid=6000,
                                                  email="someone@else.example"))
    await paybot.post_stripe(stripe_invoice_event("evt_free_text", number=None, id="in_other", amount_paid=5000,
                                                  email="someone@else.example", description="Zahlung RECH-7B"))

    assert await invoice_of(paybot, "evt_printed") == ("inv-2026-a", "invoice_number")
    assert await invoice_of(paybot, "evt_capitals") == ("inv-2026-a", "invoice_number")
    assert await invoice_of(paybot, "evt_free_text") == ("Rech-7b", "invoice_number")
    await paybot.deliver()
    assert len(sendgrid.accepted) == 3  # every payer thanked, none sent to review
    assert "inv-2026-a" in sendgrid.accepted[0]["subject"]  # shown as printed
