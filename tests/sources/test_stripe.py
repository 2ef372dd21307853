"""Stripe: partial payments read back from the (fake) Stripe API after the answer, refunds and disputes, replays,
bad input."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from bot.storage import models
from tests.fakes.stripe import rate_limited
from tests.harness import stripe_invoice_event
from tests.sources.helpers import load, mail_text

INVOICE_PATH = "/v1/invoices/in_1QabcINV1042"


async def given_a_partial_payment(paybot, stripe_api):  # type: ignore[no-untyped-def]
    await paybot.add_customer(external_ids={"stripe": "cus_Q1"})
    await paybot.add_invoice("INV-1042", "1250.00")
    stripe_api.invoices["in_1QabcINV1042"] = load("stripe", "invoice_open_partial.json")
    response = await paybot.post_stripe(load("stripe", "invoice_payment_paid.json"))
    await paybot.runtime.settle()  # the invoice is read back after the answer
    return response


async def test_a_partial_payment_is_read_back_and_names_the_balance(paybot, stripe_api, sendgrid):
    response = await given_a_partial_payment(paybot, stripe_api)
    assert response.status == 200
    [call] = stripe_api.to(INVOICE_PATH)
    assert call.headers["Authorization"] == "Bearer sk_test_123"
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "INV-1042" in mail["subject"]
    assert "$400.00" in mail_text(mail) and "$850.00 is still owed on invoice INV-1042" in mail_text(mail)
    [payment] = await paybot.rows(models.Payment)
    assert payment.payment_ref == "pi_3QabcPART0001"


async def test_a_rate_limited_read_back_waits_and_is_tried_again_never_lost(paybot, stripe_api, sendgrid):
    stripe_api.script(INVOICE_PATH, rate_limited(retry_after=2))
    answered = await given_a_partial_payment(paybot, stripe_api)
    assert answered.status == 200  # Stripe is answered at once, whatever its API says
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "waiting" and await paybot.rows(models.Payment) == []
    paybot.clock.advance(60)  # past RESOLVE_RETRY_BASE_SECONDS (and the Retry-After)
    await paybot.runtime.verifier.drain()
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    assert len(stripe_api.to(INVOICE_PATH)) == 2


async def test_a_wrong_api_key_keeps_the_event_waiting_and_records_nothing(paybot, stripe_api):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")
    stripe_api.invoices["in_1QabcINV1042"] = load("stripe", "invoice_open_partial.json")
    paybot.runtime.sources["stripe"].settings = paybot.runtime.sources["stripe"].settings.model_copy(
        update={"api_key": SecretStr("sk_test_revoked")})
    response = await paybot.post_stripe(load("stripe", "invoice_payment_paid.json"))
    assert response.status == 200
    await paybot.runtime.settle()
    [event] = await paybot.rows(models.WebhookEvent)
    assert (event.status, event.attempts) == ("waiting", 1)  # retried, then given up with a finance card
    assert await paybot.rows(models.Payment) == []


async def test_a_refund_tells_finance_reduces_the_paid_amount_and_never_thanks(paybot, stripe_api, sendgrid, slack):
    await given_a_partial_payment(paybot, stripe_api)
    await paybot.deliver()
    response = await paybot.post_stripe(load("stripe", "charge_refunded.json"))
    assert response.status == 200
    paybot.clock.advance(2)  # Slack: one message per second per channel
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1  # the thank-you for the payment, nothing for the refund
    reversal = slack.posted("C0FINANCE")[-1]
    assert "refund" in reversal["text"] and "$100.00" in reversal["text"] and "INV-1042" in reversal["text"]
    payment, refund = await paybot.rows(models.Payment)
    assert (refund.kind, refund.amount_minor, refund.invoice_id) == ("refund", 10000, payment.invoice_id)
    assert refund.details["reverses"] == "pi_3QabcPART0001,ch_3QabcPART0001"
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 30000


async def test_a_second_refund_of_the_same_charge_counts_only_its_own_amount(paybot, stripe_api):
    await given_a_partial_payment(paybot, stripe_api)
    await paybot.post_stripe(load("stripe", "charge_refunded.json"))
    second = load("stripe", "charge_refunded.json", id="evt_3QabcREFUND0002")
    second["data"]["object"]["amount_refunded"] = 20000
    second["data"]["previous_attributes"]["amount_refunded"] = 10000
    assert (await paybot.post_stripe(second)).status == 200
    refunds = await paybot.rows(models.Payment, models.Payment.kind == "refund")
    assert [r.amount_minor for r in refunds] == [10000, 10000]
    assert all(r.duplicate_of is None for r in refunds)
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 20000


async def test_a_dispute_is_a_reversal_card_for_finance(paybot, stripe_api, sendgrid, slack):
    await given_a_partial_payment(paybot, stripe_api)
    await paybot.deliver()
    assert (await paybot.post_stripe(load("stripe", "charge_dispute_created.json"))).status == 200
    paybot.clock.advance(2)  # Slack: one message per second per channel
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    assert "dispute" in slack.posted("C0FINANCE")[-1]["text"]
    [dispute] = await paybot.rows(models.Payment, models.Payment.kind == "dispute")
    assert dispute.details["reason"] == "fraudulent" and dispute.customer_id == "C1"


async def test_a_replayed_signature_older_than_the_tolerance_is_401(paybot):
    old = int(paybot.clock().timestamp()) - 301
    response = await paybot.post_stripe(stripe_invoice_event(), timestamp=old)
    assert response.status == 401
    assert await paybot.audit_kinds() == [] and await paybot.refused() == [("stripe", 401, 1)]


@pytest.mark.parametrize(("mangle", "status"), [
    (lambda body: body.replace(b"125000", b"999999", 1), 401),      # tampered after signing
    (lambda body: body[:-5], 400),                                  # truncated JSON
    (lambda body: body + b" " * 1_048_576, 413),                    # oversized
], ids=["forged", "malformed", "oversized"])
async def test_bad_input_is_refused_and_nothing_stored(paybot, mangle, status):
    from bot.integrations.sources.stripe import sign

    body = json.dumps(stripe_invoice_event()).encode()
    header = sign(body if status == 401 else mangle(body), "whsec_test_secret", int(paybot.clock().timestamp()))
    response = await paybot.post_stripe(mangle(body), signature=header)
    assert response.status == status
    assert await paybot.rows(models.WebhookEvent) == []


async def test_a_duplicate_event_is_acknowledged_once(paybot, sendgrid):
    await paybot.add_customer()
    await paybot.add_invoice()
    for _ in range(2):
        assert (await paybot.post_stripe(stripe_invoice_event("evt_twice"))).status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_a_payment_in_another_currency_is_not_thanked_as_paying_the_invoice(paybot, sendgrid, slack):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")
    assert (await paybot.post_stripe(stripe_invoice_event(currency="eur"))).status == 200
    await paybot.deliver()
    assert sendgrid.accepted == []
    assert len(slack.posted("C0FINANCE")) == 1
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 0
