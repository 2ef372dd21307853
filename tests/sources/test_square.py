"""Square: signed over the notification URL and the body; HTTP in → DB → worker → fake SendGrid and Slack."""

from __future__ import annotations

import json

from bot.integrations.sources.square import sign
from bot.storage import models
from tests.contract.samples import SquareSample
from tests.sources.helpers import load, mail_text, post

PAYMENT = "payment_updated_completed.json"


def test_signature_matches_the_reference_vector() -> None:
    # A vector computed independently from the recipe Square documents (URL + raw body, HMAC-SHA256, base64).
    body = b'{"id":"evt_test","type":"invoice.paid"}'
    assert sign(body, "sq_sig_key", "https://example.com/webhooks/square") == \
        "8kfNK9d9kF3wIgdLBNWkqyA56h0Dtdr1s7Q2FyNUIpI="


async def given_jane_owes_1250(paybot) -> None:  # type: ignore[no-untyped-def]
    await paybot.add_customer(external_ids={"square": "JDKYHBWT1D4F8MFH63DBMEN8Y4"})
    await paybot.add_invoice("INV-1042", "1250.00")


async def test_completed_payment_thanks_the_customer_naming_invoice_amount_and_balance(paybot, sendgrid, slack):
    await given_jane_owes_1250(paybot)
    response = await post(paybot, "square", load("square", PAYMENT))
    assert response.status == 200
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert mail["personalizations"][0]["to"] == [{"email": "jane@example.com"}]
    assert "INV-1042" in mail["subject"]
    assert "$200.00" in mail_text(mail) and "$1,050.00 is still owed on invoice INV-1042" in mail_text(mail)
    [payment] = await paybot.rows(models.Payment)
    assert payment.payment_ref == "KkAkhdMsgzn59SM8A89WgKwekxLZY" and payment.settlement == "partially_paid"
    assert len(slack.posted("C0FINANCE")) == 1


async def test_created_then_updated_for_one_payment_is_acknowledged_once(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    created = await post(paybot, "square", load("square", "payment_created_completed.json"))
    updated = await post(paybot, "square", load("square", PAYMENT))
    assert (created.status, updated.status) == (200, 200)
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    first, second = await paybot.rows(models.Payment)
    assert second.duplicate_of == first.id
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 20000


async def test_invoice_payment_made_restating_the_payment_adds_nothing(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    await post(paybot, "square", load("square", PAYMENT))
    restated = await post(paybot, "square", load("square", "invoice_payment_made_partial.json"))
    assert restated.status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    payment, invoice_report = await paybot.rows(models.Payment)
    assert invoice_report.duplicate_of == payment.id


async def test_invoice_payment_made_alone_is_a_partial_payment(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    assert (await post(paybot, "square", load("square", "invoice_payment_made_partial.json"))).status == 200
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "$200.00" in mail_text(mail) and "$1,050.00 is still owed on invoice INV-1042" in mail_text(mail)


async def test_a_payment_not_yet_completed_is_stored_and_ignored(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    response = await post(paybot, "square", load("square", "payment_updated_approved.json"))
    assert response.status == 200
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "ignored"
    assert await paybot.rows(models.Payment) == []


async def test_forged_or_signed_for_another_url_is_401(paybot):
    body = load("square", PAYMENT)
    assert (await post(paybot, "square", body, forged=True)).status == 401
    other_url = sign(json.dumps(body).encode(), SquareSample.KEY, "https://elsewhere.example/webhooks/square")
    response = await post(paybot, "square", body, **{"x-square-hmacsha256-signature": other_url})
    assert response.status == 401
    assert await paybot.rows(models.WebhookEvent) == []
    assert await paybot.audit_kinds() == []
    assert await paybot.refused() == [("square", 401, 2)]


async def test_a_redelivered_event_is_a_duplicate(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    await post(paybot, "square", load("square", PAYMENT))
    paybot.clock.advance(3600)  # Square retries for up to a day, with square-retry-number set
    again = await post(paybot, "square", load("square", PAYMENT), **{"square-retry-number": "1"})
    assert again.status == 200 and (await again.json())["duplicate"] is True
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_malformed_money_is_400_naming_the_field(paybot):
    body = load("square", PAYMENT)
    body["data"]["object"]["payment"]["amount_money"] = {"amount": "lots", "currency": "USD"}
    response = await post(paybot, "square", body)
    assert response.status == 400
    assert "amount_money" in (await response.json())["error"]


async def test_oversized_is_413(paybot):
    response = await post(paybot, "square", b"{" + b" " * paybot.runtime.settings.max_body_bytes + b"}")
    assert response.status == 413


async def test_a_payment_in_another_currency_is_not_thanked_as_paying_the_invoice(paybot, sendgrid, slack):
    await given_jane_owes_1250(paybot)
    body = load("square", PAYMENT)
    body["data"]["object"]["payment"]["amount_money"] = {"amount": 20000, "currency": "EUR"}
    assert (await post(paybot, "square", body)).status == 200
    await paybot.deliver()
    assert sendgrid.accepted == []
    [card] = slack.posted("C0FINANCE")
    assert "EUR" in card["text"] or "€" in card["text"]
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 0
