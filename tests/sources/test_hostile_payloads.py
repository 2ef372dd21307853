"""Hostile bytes at the sources: malformed signature headers are 401 (never 500); a genuine, signed payment whose
text storage cannot hold (NUL, lone surrogates, a 300-character name) is recorded with that text cleaned, never
refused; ids from payloads reach outbound API paths as one encoded segment."""

from __future__ import annotations

import json

import pytest

from bot.storage import models
from tests.harness import stripe_invoice_event
from tests.sources.helpers import load, post

ONE_SEGMENT_ID = "in_1/../../v1/charges?x"


@pytest.mark.parametrize(("source", "headers"), [
    ("stripe", {"Stripe-Signature": "t=²,v1=" + "0" * 64}),  # "²".isdigit() is true; int("²") raises
    ("stripe", {"Stripe-Signature": "t=1795867200,v1=é"}),  # compare_digest refuses non-ASCII str
    ("stripe", {"Stripe-Signature": "t=" + "9" * 5000 + ",v1=00"}),  # past int()'s digit limit
    ("square", {"x-square-hmacsha256-signature": "é"}),
    ("wave", {"X-Webhook-Secret": "é"}),
])
async def test_a_malformed_signature_header_is_401(paybot, source, headers):
    response = await paybot.client.post(f"/webhooks/{source}", data=b"{}",
                                        headers=headers | {"Content-Type": "application/json"})
    assert response.status == 401
    assert await paybot.rows(models.WebhookEvent) == []


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
async def test_unstorable_text_in_a_signed_payment_is_cleaned_and_the_payment_recorded(paybot, bad):
    await paybot.add_customer(external_ids={"stripe": "cus_Q1"})
    await paybot.add_invoice("INV-1042", "1250.00")
    event = stripe_invoice_event(customer_name=f"Jane{bad} Doe", customer_email=f"jane{bad}@example.com",
                                 description=f"Thanks{bad}", metadata={"note": f"a{bad}b"}, customer_phone=f"+1{bad}")
    response = await paybot.post_stripe(json.dumps(event).encode())  # \u0000 and \ud800 escapes: valid JSON
    assert response.status == 200
    [payment] = await paybot.rows(models.Payment)
    assert payment.payer_name == "Jane\ufffd Doe" and payment.amount_minor == 125000
    assert payment.payer_email is None  # not an address: it could never match or reach anyone
    assert payment.invoice_id is not None  # matched by the invoice number all the same


async def test_a_nul_in_the_event_id_is_400_not_a_retry_for_ever(paybot):
    response = await paybot.post_stripe(json.dumps(stripe_invoice_event("evt_\x00")).encode())
    assert response.status == 400
    assert "event_id" in (await response.json())["error"]
    assert await paybot.rows(models.WebhookEvent) == []


async def test_a_payer_name_over_255_characters_is_cut_short_not_refused(paybot):
    await paybot.add_customer(external_ids={"stripe": "cus_Q1"})
    await paybot.add_invoice("INV-1042", "1250.00")
    response = await paybot.post_stripe(stripe_invoice_event(customer_name="Ö" * 300))
    assert response.status == 200
    [payment] = await paybot.rows(models.Payment)
    assert payment.payer_name == "Ö" * 254 + "…"


async def test_a_long_name_from_wave_is_cut_short_too(paybot):
    response = await post(paybot, "wave", load("wave", "zapier_partial.json", customer_name="x" * 1000))
    assert response.status == 200
    [payment] = await paybot.rows(models.Payment)
    assert len(payment.payer_name) == 255


async def test_an_id_from_a_payload_is_one_encoded_segment_of_the_outbound_path(paybot, stripe_api):
    await paybot.add_customer(external_ids={"stripe": "cus_Q1"})
    await paybot.add_invoice("INV-1042", "1250.00")
    stripe_api.invoices[ONE_SEGMENT_ID] = load("stripe", "invoice_open_partial.json")
    event = load("stripe", "invoice_payment_paid.json")
    event["data"]["object"]["invoice"] = ONE_SEGMENT_ID
    response = await paybot.post_stripe(event)
    assert response.status == 200
    await paybot.runtime.settle()  # the fake's /v1/invoices/{id} route saw the whole id as its one segment
    [call] = [c for c in stripe_api.calls if c.path.startswith("/v1/invoices/")]
    assert call.path == f"/v1/invoices/{ONE_SEGMENT_ID}"
    assert [c.path for c in stripe_api.calls if c.path.startswith("/v1/charges")] == []
