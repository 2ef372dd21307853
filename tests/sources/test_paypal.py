"""PayPal in, through HTTP, the database, the confirmation sweep and the worker, to fake SendGrid and Slack.

IPN is answered with an empty 200 before anything else and confirmed afterwards by the postback to the fake
PayPal; REST events, with no REST app credentials set, are checked with PayPal's certificate before the answer
(with them, through PayPal's verify-webhook-signature API: test_paypal_api.py).
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from bot.integrations.sources.paypal import PayPalSettings
from bot.storage import models
from tests.contract.samples import payload
from tests.fakes.paypal import CERT_PATH, WEBHOOK_ID, FakePayPal, certificate_for
from tests.sources.helpers import mail_text

RECEIVER = "billing@weld.example"


@pytest.fixture
async def paypal(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakePayPal()
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
def configs(configs, paypal):  # type: ignore[no-untyped-def]
    return configs | {"paypal": PayPalSettings(  # type: ignore[call-arg]
        _env_file=None, ipn_verify_url=str(paypal.server.make_url("/cgi-bin/webscr")), receiver_email=RECEIVER,
        webhook_id=WEBHOOK_ID, cert_origins=paypal.origin)}


def ipn(name: str = "ipn_completed.form", **changes: str) -> bytes:
    """A committed IPN body with some fields' (already URL-encoded) values replaced, order kept."""
    pairs = [pair.split(b"=", 1) for pair in payload("paypal", name).split(b"&")]
    return b"&".join(k + b"=" + (changes[k.decode()].encode() if k.decode() in changes else v) for k, v in pairs)


async def post_ipn(paybot, body: bytes, paypal: FakePayPal | None = None) -> Any:  # type: ignore[no-untyped-def]
    """PayPal's delivery (when `paypal` is given, PayPal really sent it), then the confirmation it kicks off."""
    if paypal is not None:
        paypal.sent_ipn(body)
    response = await paybot.client.post("/webhooks/paypal", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "PayPal IPN ( https://www.paypal.com/ipn )"})
    assert response.status == 200, await response.text()
    assert await response.read() == b""
    await paybot.runtime.settle()
    return response


async def post_rest(paybot, paypal: FakePayPal, body: bytes, **headers: str) -> Any:  # type: ignore[no-untyped-def]
    signed = paypal.transmit(body, paybot.clock()) | headers
    return await paybot.client.post("/webhooks/paypal", data=body, headers=signed)


async def customer_and_invoice(paybot, amount: str = "2000.00", number: str = "INV-1042") -> None:  # type: ignore[no-untyped-def]
    await paybot.add_customer("C1", name="José Müller", email="jose.muller@example.com")
    await paybot.add_invoice(number, amount)


async def test_a_verified_ipn_is_answered_empty_then_thanked_with_the_balance(paybot, paypal, sendgrid, slack):
    await customer_and_invoice(paybot)
    body = ipn()
    await post_ipn(paybot, body, paypal)

    # The postback is the raw bytes, windows-1252 escapes and all, behind the command.
    [postback] = paypal.to("/cgi-bin/webscr")
    assert postback.body == b"cmd=_notify-validate&" + body
    [event] = await paybot.rows(models.WebhookEvent)
    assert (event.event_id, event.status) == ("61E67681CH3238416:Completed", "processed")
    [payment] = await paybot.rows(models.Payment)
    assert payment.payer_name == "José Müller" and payment.payment_ref == "61E67681CH3238416"
    assert payment.occurred_at.isoformat() == "2026-11-28T11:12:59+00:00"  # 03:12:59 PST

    assert await paybot.deliver() == 2
    [mail] = sendgrid.accepted
    assert mail["personalizations"][0]["to"] == [{"email": "jose.muller@example.com"}]
    text = mail_text(mail)
    assert "$1,250.00" in text and "INV-1042" in text and "$750.00 is still owed on invoice INV-1042" in text
    assert len(slack.posted("C0FINANCE")) == 1
    kinds = await paybot.audit_kinds()
    # Not in the chain before PayPal vouched for it: anyone can post an IPN.
    assert "webhook.received" not in kinds and kinds.index("webhook.verified") < kinds.index("payment.matched")


async def test_an_invalid_ipn_is_rejected_and_nobody_hears(paybot, paypal, sendgrid, slack):
    await customer_and_invoice(paybot)
    await post_ipn(paybot, ipn(), paypal=None)  # PayPal never sent this: its postback answers INVALID

    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "rejected"
    assert await paybot.rows(models.Payment) == [] and await paybot.notifications() == []
    # A forgery found out is counted with the other refusals, never a permanent entry of the chain.
    assert "webhook.rejected" not in await paybot.audit_kinds() and await paybot.refused() == [("paypal", 401, 1)]
    await paybot.deliver()
    assert sendgrid.accepted == [] and slack.posted() == []


async def test_a_forgery_does_not_take_the_genuine_messages_place(paybot, paypal, sendgrid):
    await customer_and_invoice(paybot)
    await post_ipn(paybot, ipn(), paypal=None)
    await post_ipn(paybot, ipn(), paypal)  # PayPal's own delivery of the same transaction comes afterwards
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    assert sorted(e.status for e in await paybot.rows(models.WebhookEvent)) == ["processed", "rejected"]


async def test_a_resent_ipn_sends_one_email(paybot, paypal, sendgrid):
    await customer_and_invoice(paybot)
    body = ipn()
    await post_ipn(paybot, body, paypal)
    await post_ipn(paybot, body + b"&resend=true", paypal)  # PayPal's resend of the same transaction
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    assert len(await paybot.rows(models.WebhookEvent)) == 1


async def test_a_pending_payment_is_recorded_without_a_word(paybot, paypal, sendgrid, slack):
    await customer_and_invoice(paybot)
    await post_ipn(paybot, ipn("ipn_pending.form"), paypal)
    [payment] = await paybot.rows(models.Payment)
    assert payment.kind == "pending" and payment.details["pending_reason"] == "echeck"
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 0
    await paybot.deliver()
    assert sendgrid.accepted == [] and slack.posted() == []


async def test_a_refund_after_the_payment_tells_finance_not_the_customer(paybot, paypal, sendgrid, slack):
    await customer_and_invoice(paybot, amount="1250.00")
    await post_ipn(paybot, ipn(), paypal)
    await paybot.deliver()
    await post_ipn(paybot, ipn("ipn_refunded.form"), paypal)
    paybot.clock.advance(2)  # Slack: one message per second per channel
    await paybot.deliver()

    assert len(sendgrid.accepted) == 1  # the thank-you for the payment, nothing for the refund
    refund = (await paybot.rows(models.Payment, models.Payment.kind == "refund"))[0]
    assert refund.amount_minor == 125000 and refund.payment_ref == "2JM91027HW466412F"
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 0
    first, reversal = slack.posted("C0FINANCE")
    assert "refund" in reversal["text"] and "INV-1042" in reversal["text"] and "$1,250.00" in reversal["text"]


async def test_an_ipn_for_another_receiver_is_refused_before_it_is_stored_or_posted_back(paybot, paypal, sendgrid,
                                                                                            slack):
    await customer_and_invoice(paybot)
    body = paypal.sent_ipn(ipn(receiver_email="someone-else%40example.org"))
    response = await paybot.client.post("/webhooks/paypal", data=body,
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 400
    assert "receiver_email" in (await response.json())["error"]
    assert await paybot.rows(models.WebhookEvent) == [] and paypal.to("/cgi-bin/webscr") == []
    assert await paybot.rows(models.Payment) == []
    await paybot.deliver()
    assert sendgrid.accepted == [] and slack.posted() == []


async def test_a_payment_in_another_currency_goes_to_finance_for_review(paybot, paypal, sendgrid, slack):
    await customer_and_invoice(paybot)
    await post_ipn(paybot, ipn(mc_currency="EUR"), paypal)
    [payment] = await paybot.rows(models.Payment)
    assert payment.invoice_id is None and "EUR" in payment.match_reason
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 0
    await paybot.deliver()
    assert sendgrid.accepted == []
    [card] = slack.posted("C0FINANCE")
    assert "EUR" in card["text"]


@pytest.mark.parametrize("body", [
    pytest.param(b"\xff\xfeinvoice=INV-1042", id="not-url-encoded"),
    pytest.param(b"hello world", id="no-ipn-fields"),
    pytest.param(ipn(mc_gross=""), id="completed-without-amount"),
    pytest.param(ipn(mc_gross="12.3.4"), id="bad-amount"),
    pytest.param(ipn(charset="x-no-such-charset"), id="unknown-charset"),
    pytest.param(ipn(txn_id="61E67681%00CH3238416"), id="nul-in-a-field"),
])
async def test_a_malformed_ipn_is_400_with_the_reason(paybot, paypal, body):
    paypal.sent_ipn(body)
    response = await paybot.client.post("/webhooks/paypal", data=body,
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 400
    assert (await response.json())["error"]
    assert await paybot.rows(models.WebhookEvent) == []
    assert await paybot.audit_kinds() == [] and await paybot.refused() == [("paypal", 400, 1)]


async def test_an_oversized_ipn_is_413(paybot):
    body = ipn(custom="x" * paybot.runtime.settings.max_body_bytes)
    response = await paybot.client.post("/webhooks/paypal", data=body,
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 413
    assert await paybot.rows(models.WebhookEvent) == []


async def test_an_unreachable_postback_waits_for_the_sweep(paybot, paypal, sendgrid):
    await customer_and_invoice(paybot)
    paypal.script("/cgi-bin/webscr", web.Response(status=503, text="Service Unavailable"))
    await post_ipn(paybot, ipn(), paypal)
    [event] = await paybot.rows(models.WebhookEvent)
    assert (event.status, event.attempts) == ("pending_verification", 1)

    paybot.clock.advance(30)  # its backoff: VERIFY_RETRY_BASE_SECONDS after the first attempt
    await paybot.runtime.worker.run_periodic()  # the worker's sweep, once PayPal answers again
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "processed"
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_a_verified_capture_is_thanked(paybot, paypal, sendgrid):
    await customer_and_invoice(paybot, amount="1250.00")
    body = payload("paypal", "rest_capture_completed.json")
    response = await post_rest(paybot, paypal, body)
    assert response.status == 200, await response.text()

    # Checked here with PayPal's certificate: the one request to PayPal is for the certificate itself.
    assert [c.path for c in paypal.calls] == [CERT_PATH]
    [payment] = await paybot.rows(models.Payment)
    assert payment.payment_ref == "29Y24445UY2083144" and payment.details["order_id"] == "89T257400V0473133"
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "$1,250.00" in mail_text(mail) and "Invoice INV-1042 is now paid in full" in mail_text(mail)


async def test_a_forged_rest_event_is_401_and_costs_paypal_no_call(paybot, paypal, sendgrid):
    await customer_and_invoice(paybot)
    body = payload("paypal", "rest_capture_completed.json")
    assert (await post_rest(paybot, paypal, body)).status == 200  # PayPal's own: its certificate is now kept
    paypal.calls.clear()

    headers = paypal.transmit(body, paybot.clock())
    tampered = body.replace(b'"value":"1250.00"', b'"value":"9250.00"', 1)
    other_webhook = paypal.transmit(body, paybot.clock(), webhook_id="3HV58741XF905712A")
    forged_sig = headers | {"PAYPAL-TRANSMISSION-SIG": base64.b64encode(b"\x00" * 256).decode()}
    elsewhere = headers | {"PAYPAL-CERT-URL": "https://evil.example/v1/notifications/certs/CERT-1"}
    for sent, signed in [(tampered, headers), (body, other_webhook), (body, forged_sig), (body, elsewhere)]:
        response = await paybot.client.post("/webhooks/paypal", data=sent, headers=signed)
        assert response.status == 401, await response.text()
    assert paypal.calls == []  # no certificate fetched again, no API asked, nothing fetched from elsewhere
    assert len(await paybot.rows(models.WebhookEvent)) == 1
    assert "webhook.rejected" not in await paybot.audit_kinds() and await paybot.refused() == [("paypal", 401, 4)]


async def test_the_certificate_is_fetched_once_per_url(paybot, paypal):
    await customer_and_invoice(paybot)
    capture = json.loads(payload("paypal", "rest_capture_completed.json"))
    for n in range(3):
        response = await post_rest(paybot, paypal, json.dumps(capture | {"id": f"WH-{n}"}).encode())
        assert response.status == 200
    assert len(paypal.to(CERT_PATH)) == 1


async def test_an_unknown_certificate_on_paypals_host_is_401_and_fetched_at_most_once_a_minute(paybot, paypal):
    body = payload("paypal", "rest_capture_completed.json")
    made_up = paypal.transmit(body, paybot.clock(), cert_path="/v1/notifications/certs/CERT-made-up-1")
    assert (await paybot.client.post("/webhooks/paypal", data=body, headers=made_up)).status == 401
    another = paypal.transmit(body, paybot.clock(), cert_path="/v1/notifications/certs/CERT-made-up-2")
    response = await paybot.client.post("/webhooks/paypal", data=body, headers=another)
    assert response.status == 503  # not fetched: PayPal, if it was PayPal, sends it again
    assert [c.path for c in paypal.calls] == ["/v1/notifications/certs/CERT-made-up-1"]
    assert await paybot.rows(models.WebhookEvent) == []


@pytest.mark.parametrize("common_name, valid_days", [
    pytest.param("messageverificationcerts.paypal.com", (-400, -1), id="expired"),
    pytest.param("messageverificationcerts.paypal.com.evil.example", (-1, 365), id="not-paypals-name"),
])
async def test_a_certificate_that_is_not_paypals_current_one_is_401(paybot, paypal, common_name, valid_days):
    now = paybot.clock()
    paypal.certificates[CERT_PATH] = certificate_for(common_name, now + timedelta(days=valid_days[0]),
                                                     now + timedelta(days=valid_days[1]))
    body = payload("paypal", "rest_capture_completed.json")
    response = await post_rest(paybot, paypal, body)  # signed with the very key the certificate holds
    assert response.status == 401
    assert await paybot.rows(models.WebhookEvent) == []


@pytest.mark.parametrize("headers", [
    pytest.param({"PAYPAL-AUTH-ALGO": "SHA1withRSA"}, id="another-algorithm"),
    pytest.param({"PAYPAL-TRANSMISSION-SIG": "not base64!"}, id="signature-not-base64"),
    pytest.param({"PAYPAL-TRANSMISSION-ID": "b2384410\u00e9"}, id="non-ascii-transmission-id"),
    pytest.param({"PAYPAL-CERT-URL": "http://api.paypal.com/v1/notifications/certs/CERT-1"}, id="cert-over-http"),
    pytest.param({"PAYPAL-CERT-URL": "https://api.paypal.com.evil.example/v1/notifications/certs/C"}, id="lookalike"),
    pytest.param({"PAYPAL-CERT-URL": "https://api.paypal.com/v1/oauth2/token"}, id="not-a-cert-path"),
])
async def test_malformed_transmission_headers_are_401_without_a_request(paybot, paypal, headers):
    body = payload("paypal", "rest_capture_completed.json")
    signed = paypal.transmit(body, paybot.clock()) | headers
    response = await paybot.client.post("/webhooks/paypal", data=body, headers=signed)
    assert response.status == 401
    assert paypal.calls == [] and await paybot.rows(models.WebhookEvent) == []


async def test_a_rest_event_without_transmission_headers_is_401(paybot):
    body = payload("paypal", "rest_capture_completed.json")
    response = await paybot.client.post("/webhooks/paypal", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 401
    assert "PAYPAL-TRANSMISSION-ID" in (await response.json())["error"]


async def test_a_partly_paid_invoice_names_the_balance(paybot, paypal, sendgrid):
    await paybot.add_customer("C1", name="Jane Doe", email="jane@example.com")
    await paybot.add_invoice("INV-7", "1000.00")
    response = await post_rest(paybot, paypal, payload("paypal", "rest_invoice_paid_partial.json"))
    assert response.status == 200
    await paybot.deliver()
    [mail] = sendgrid.accepted
    text = mail_text(mail)
    assert "$400.00" in text and "$600.00 is still owed on invoice INV-7" in text


async def test_a_chargeback_is_a_reversal_card_for_finance(paybot, paypal, sendgrid, slack):
    await customer_and_invoice(paybot, amount="1250.00")
    await post_ipn(paybot, ipn(), paypal)
    await paybot.deliver()
    await post_ipn(paybot, ipn("ipn_refunded.form", payment_status="Reversed", reason_code="chargeback"), paypal)
    paybot.clock.advance(2)
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    [dispute] = await paybot.rows(models.Payment, models.Payment.kind == "dispute")
    assert dispute.invoice_id is not None and dispute.details["reason_code"] == "chargeback"
    reversal = slack.posted("C0FINANCE")[-1]
    assert "dispute" in reversal["text"] and "INV-1042" in reversal["text"]


async def test_an_overpayment_is_acknowledged_as_such(paybot, paypal, sendgrid, slack):
    await customer_and_invoice(paybot, amount="1000.00")
    await post_ipn(paybot, ipn(), paypal)  # $1,250.00 on a $1,000.00 invoice
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "$250.00 more than invoice INV-1042 asked" in mail_text(mail)
    assert len(slack.posted("C0FINANCE")) == 1


async def test_one_transaction_reported_by_ipn_and_by_a_rest_event_is_thanked_once(paybot, paypal, sendgrid):
    await customer_and_invoice(paybot, amount="1250.00")
    await post_ipn(paybot, ipn(), paypal)
    capture = json.loads(payload("paypal", "rest_capture_completed.json"))
    capture["resource"]["id"] = "61E67681CH3238416"  # the capture id is the IPN's txn_id
    response = await post_rest(paybot, paypal, json.dumps(capture).encode())
    assert response.status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    first, second = await paybot.rows(models.Payment)
    assert second.duplicate_of == first.id


async def test_an_unreachable_certificate_is_a_503_so_paypal_retries(paybot, paypal, sendgrid):
    await customer_and_invoice(paybot, amount="1250.00")
    body = payload("paypal", "rest_capture_completed.json")
    paypal.script(CERT_PATH, web.Response(status=503, text="Service Unavailable"))
    response = await post_rest(paybot, paypal, body)
    assert response.status == 503
    assert await paybot.rows(models.WebhookEvent) == []

    paybot.clock.advance(60)  # a new certificate is fetched at most once a minute
    again = await post_rest(paybot, paypal, body)  # PayPal's retry
    assert again.status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_a_forgery_still_unverified_does_not_swallow_the_genuine_message(paybot, paypal, sendgrid):
    """A forged IPN arrives first and cannot be verified yet (PayPal down); PayPal's genuine one follows."""
    await customer_and_invoice(paybot)
    paypal.script("/cgi-bin/webscr", web.Response(status=503, text="Service Unavailable"))
    await post_ipn(paybot, ipn(payer_email="mallory%40example.com"), paypal=None)  # forged: PayPal never sent it
    await post_ipn(paybot, ipn(), paypal)  # genuine, the same txn_id, while the forgery still awaits PayPal
    paybot.clock.advance(30)
    await paybot.runtime.worker.run_periodic()   # the sweep, PayPal answering again
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    assert sorted(e.status for e in await paybot.rows(models.WebhookEvent)) == ["processed", "rejected"]


async def test_two_copies_confirmed_together_record_one_event(paybot, paypal, sendgrid):
    await customer_and_invoice(paybot)
    paypal.script("/cgi-bin/webscr", web.Response(status=503, text="Service Unavailable"))
    await post_ipn(paybot, ipn(), paypal)
    await post_ipn(paybot, ipn() + b"&resend=true", paypal)  # PayPal resends while we could not verify
    paybot.clock.advance(30)
    await paybot.runtime.worker.run_periodic()
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    assert sorted(e.status for e in await paybot.rows(models.WebhookEvent)) == ["duplicate", "processed"]
