"""Stripe: a refund or dispute of a payment acknowledged through `invoice.paid` (API basil: no PaymentIntent named)
is traced to its invoice through `GET /v1/invoice_payments` on the (fake) Stripe API."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from bot.storage import models
from tests.fakes.stripe import invoice_payment, rate_limited, stripe_error
from tests.harness import stripe_invoice_event
from tests.sources.helpers import load

LIST_PATH = "/v1/invoice_payments"
INTENT = "pi_3QabcPART0001"  # what charge_refunded.json and charge_dispute_created.json undo


async def given_invoice_paid_in_full(paybot, stripe_api, *, number: str = "INV-1042",  # type: ignore[no-untyped-def]
                                     external_ids: dict[str, str] | None = None) -> None:
    await paybot.add_customer()
    await paybot.add_invoice(number, "1250.00", external_ids=external_ids)
    stripe_api.invoices["in_1QabcINV1042"] = load("stripe", "invoice_open_partial.json",
                                                  status="paid", amount_paid=125000, amount_remaining=0)
    stripe_api.invoice_payments.append(invoice_payment("inpay_1QabcPAY1", "in_1QabcINV1042", INTENT, 125000))
    assert (await paybot.post_stripe(stripe_invoice_event("evt_paid"))).status == 200
    await paybot.deliver()
    paybot.clock.advance(2)  # Slack: one message per second per channel


def without_api_key(paybot) -> None:  # type: ignore[no-untyped-def]
    source = paybot.runtime.sources["stripe"]
    source.settings = source.settings.model_copy(update={"api_key": None})


async def test_a_refund_of_an_invoice_paid_payment_lands_on_that_invoice(paybot, stripe_api, sendgrid, slack):
    await given_invoice_paid_in_full(paybot, stripe_api)
    response = await paybot.post_stripe(load("stripe", "charge_refunded.json"))
    assert response.status == 200
    [call] = stripe_api.to(LIST_PATH)
    assert call.headers["Authorization"] == "Bearer sk_test_123"
    assert call.headers["Stripe-Version"] == "2025-05-28.basil"
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1  # the thank-you for the payment; the refund thanks nobody
    reversal = slack.posted("C0FINANCE")[-1]
    assert "refund" in reversal["text"] and "$100.00" in reversal["text"] and "INV-1042" in reversal["text"]
    payment, refund = await paybot.rows(models.Payment)
    assert (refund.kind, refund.invoice_id, refund.match_rule) == ("refund", payment.invoice_id, "invoice_number")
    assert refund.details["stripe_invoice"] == "in_1QabcINV1042"
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 115000


async def test_the_stripe_invoice_id_alone_leads_to_a_tracked_invoice_numbered_otherwise(paybot, stripe_api, slack):
    await given_invoice_paid_in_full(paybot, stripe_api, number="WS-77",
                                     external_ids={"stripe": "in_1QabcINV1042"})
    assert (await paybot.post_stripe(load("stripe", "charge_refunded.json"))).status == 200
    await paybot.deliver()
    assert "WS-77" in slack.posted("C0FINANCE")[-1]["text"]
    payment, refund = await paybot.rows(models.Payment)
    assert (refund.invoice_id, refund.match_rule) == (payment.invoice_id, "external_id")
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 115000


async def test_a_dispute_of_an_invoice_paid_payment_names_the_invoice(paybot, stripe_api, sendgrid, slack):
    await given_invoice_paid_in_full(paybot, stripe_api)
    assert (await paybot.post_stripe(load("stripe", "charge_dispute_created.json"))).status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    card = slack.posted("C0FINANCE")[-1]
    assert "dispute" in card["text"] and "INV-1042" in card["text"]
    payment, dispute = await paybot.rows(models.Payment)
    assert (dispute.kind, dispute.invoice_id) == ("dispute", payment.invoice_id)


async def test_without_an_api_key_the_refund_is_matched_as_before(paybot, stripe_api, slack):
    await given_invoice_paid_in_full(paybot, stripe_api)
    without_api_key(paybot)
    assert (await paybot.post_stripe(load("stripe", "charge_refunded.json"))).status == 200
    assert stripe_api.to(LIST_PATH) == []
    [refund] = await paybot.rows(models.Payment, models.Payment.kind == "refund")
    assert refund.invoice_id is None  # nothing leads back: staff review it
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 125000


async def test_a_rate_limited_lookup_answers_503_so_stripe_retries(paybot, stripe_api):
    await given_invoice_paid_in_full(paybot, stripe_api)
    stripe_api.script(LIST_PATH, rate_limited(retry_after=2))
    refused = await paybot.post_stripe(load("stripe", "charge_refunded.json"))
    assert refused.status == 503
    assert await paybot.rows(models.Payment, models.Payment.kind == "refund") == []
    paybot.clock.advance(60)  # Stripe's retry, freshly signed
    assert (await paybot.post_stripe(load("stripe", "charge_refunded.json"))).status == 200
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 115000


@pytest.mark.parametrize(("status", "message"), [
    (401, "Invalid API Key provided: sk_test_****"),
    (403, "The provided key does not have the required permissions for this endpoint."),
], ids=["401", "403"])
async def test_a_refused_lookup_is_not_fatal(paybot, stripe_api, status, message, caplog):
    await given_invoice_paid_in_full(paybot, stripe_api)
    stripe_api.script(LIST_PATH, stripe_error(status, "invalid_request_error", message))
    assert (await paybot.post_stripe(load("stripe", "charge_refunded.json"))).status == 200
    [refund] = await paybot.rows(models.Payment, models.Payment.kind == "refund")
    assert refund.invoice_id is None
    assert "could not trace refund" in caplog.text and "sk_test_123" not in caplog.text


async def test_a_refund_of_a_payment_recorded_with_its_intent_still_follows_it(paybot, stripe_api):
    # invoice_payment.paid named the PaymentIntent: the look-up finds the same invoice, the payment leads anyway.
    await paybot.add_customer(external_ids={"stripe": "cus_Q1"})
    await paybot.add_invoice("INV-1042", "1250.00")
    stripe_api.invoices["in_1QabcINV1042"] = load("stripe", "invoice_open_partial.json")
    stripe_api.invoice_payments.append(invoice_payment("inpay_1QabcPAY1", "in_1QabcINV1042", INTENT, 40000))
    await paybot.post_stripe(load("stripe", "invoice_payment_paid.json"))
    await paybot.runtime.settle()  # its invoice is read back after the answer
    assert (await paybot.post_stripe(load("stripe", "charge_refunded.json"))).status == 200
    payment, refund = await paybot.rows(models.Payment)
    assert refund.invoice_id == payment.invoice_id and refund.match_rule == "external_id"
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 30000
