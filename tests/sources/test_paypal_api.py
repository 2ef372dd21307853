"""PayPal REST webhooks with the REST app's credentials: verified through (fake) PayPal's verify-webhook-signature
API before the answer, the capture's payer read from its order; HTTP in → database → fake SendGrid.

Every event is signed for real with the fake's key; the fake verifies it the way PayPal does, over the CRC32 of the
event as paybot passed it on. Without the credentials, tests/sources/test_paypal.py covers the local check.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from aiohttp import web

from bot.errors import ConfigError
from bot.integrations.sources import paypal as source_module
from bot.integrations.sources.base import InboundRequest
from bot.integrations.sources.paypal import PayPalSettings, with_payer
from bot.runtime import integration_settings
from bot.storage import models
from tests.contract.samples import payload
from tests.fakes.paypal import (CERT_PATH, CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, VERIFY_PATH, WEBHOOK_ID, FakePayPal,
                                order_path)
from tests.scenario import operator
from tests.sources import test_paypal as paypal_tests
from tests.sources.helpers import mail_text
from tests.sources.test_paypal import RECEIVER, customer_and_invoice

paypal, providers = paypal_tests.paypal, operator.providers  # fixtures: the fake PayPal; every fake, for `paybot check`
ORDER_ID, CAPTURE_ID, PAYER_ID = "89T257400V0473133", "29Y24445UY2083144", "QYR5Z8XDVJNXQ"
ORDER = order_path(ORDER_ID)


def api_settings(fake: FakePayPal, **changes: Any) -> PayPalSettings:
    values: dict[str, Any] = {
        "receiver_email": RECEIVER, "webhook_id": WEBHOOK_ID, "cert_origins": fake.origin,
        "ipn_verify_url": str(fake.server.make_url("/cgi-bin/webscr")), "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "base_url": str(fake.server.make_url("/"))}
    return PayPalSettings(_env_file=None, **(values | changes))


@pytest.fixture
def configs(configs, paypal):  # type: ignore[no-untyped-def]
    paypal.add_order(ORDER_ID, CAPTURE_ID, email="jose.muller@example.com", given_name="José", surname="Müller",
                     payer_id=PAYER_ID)
    return configs | {"paypal": api_settings(paypal)}


@pytest.fixture
def source(paybot):  # type: ignore[no-untyped-def]
    found = paybot.runtime.sources["paypal"]
    found.clock = paybot.clock  # the token cache's
    return found


def capture(**changes: Any) -> dict[str, Any]:
    event = json.loads(payload("paypal", "rest_capture_completed.json"))
    event["resource"] |= changes
    return event


async def post(paybot, paypal: FakePayPal, body: bytes, **headers: str) -> Any:  # type: ignore[no-untyped-def]
    """PayPal's delivery: the transmission signed for our webhook (then `headers` changed, as a forger would)."""
    return await paybot.client.post("/webhooks/paypal", data=body,
                                    headers=paypal.transmit(body, paybot.clock()) | headers)


async def test_a_capture_verified_by_paypal_is_recorded_with_its_payer_and_thanked(paybot, paypal, source,
                                                                                  sendgrid):
    await customer_and_invoice(paybot, amount="1250.00")
    body = payload("paypal", "rest_capture_completed.json")
    response = await post(paybot, paypal, body)
    assert response.status == 200, await response.text()

    # A token (Basic auth), PayPal's verdict, the order; no certificate fetched: PayPal checked the signature.
    assert [c.path for c in paypal.calls] == [TOKEN_PATH, VERIFY_PATH, ORDER]
    [token] = paypal.to(TOKEN_PATH)
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token.headers["Authorization"] == f"Basic {basic}"
    assert token.body == b"grant_type=client_credentials"
    [verify] = paypal.to(VERIFY_PATH)
    assert verify.headers["Authorization"].startswith("Bearer A21AA")
    asked = verify.json()
    assert asked["webhook_id"] == WEBHOOK_ID and asked["auth_algo"] == "SHA256withRSA"
    assert asked["cert_url"] == paypal.origin + CERT_PATH and asked["webhook_event"]["id"] == json.loads(body)["id"]
    assert verify.body.endswith(b'"webhook_event": ' + body + b"}")  # the event's own bytes, spliced in

    [payment] = await paybot.rows(models.Payment)
    assert (payment.payment_ref, payment.payer_email, payment.payer_name) == (
        CAPTURE_ID, "jose.muller@example.com", "José Müller")
    assert payment.details["order_id"] == ORDER_ID and payment.invoice_id is not None
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert mail["personalizations"][0]["to"] == [{"email": "jose.muller@example.com"}]
    assert "$1,250.00" in mail_text(mail) and "Invoice INV-1042 is now paid in full" in mail_text(mail)


async def test_the_event_reaches_paypal_byte_for_byte(paybot, paypal, source):
    """Spacing, key order and escapes as PayPal sent them: re-serialised, the CRC32 would differ (FAILURE)."""
    await customer_and_invoice(paybot, amount="1250.00")
    event = capture(custom_id="Müller — weld-order-42", amount={"value": "1250.00", "currency_code": "USD"})
    body = json.dumps(event, indent=3, ensure_ascii=False).encode()
    response = await post(paybot, paypal, body)
    assert response.status == 200, await response.text()
    assert len(await paybot.rows(models.Payment)) == 1


async def test_the_payer_id_names_the_customer(paybot, paypal, source):
    """`customer_external_id` is the order's payer id: a customer known by `paypal:<payer id>` is found by it."""
    body = payload("paypal", "rest_capture_completed.json")
    request = InboundRequest(method="POST", url="https://paybot.example.com/webhooks/paypal",
                             headers=paypal.transmit(body, paybot.clock()), query={}, body=body,
                             received_at=paybot.clock())
    source.verify(request)
    [payment] = (await source.parse(request)).payments
    assert (payment.customer_external_id, payment.payer_email, payment.payer_name) == (
        PAYER_ID, "jose.muller@example.com", "José Müller")


async def test_a_failure_is_401_and_nothing_is_recorded(paybot, paypal, source, sendgrid):
    await customer_and_invoice(paybot)
    body = payload("paypal", "rest_capture_completed.json")
    headers = paypal.transmit(body, paybot.clock())
    tampered = body.replace(b'"value":"1250.00"', b'"value":"9250.00"', 1)
    other_webhook = paypal.transmit(body, paybot.clock(), webhook_id="3HV58741XF905712A")
    forged_sig = headers | {"PAYPAL-TRANSMISSION-SIG": base64.b64encode(b"\x00" * 256).decode()}
    for sent, signed in [(tampered, headers), (body, other_webhook), (body, forged_sig)]:
        response = await paybot.client.post("/webhooks/paypal", data=sent, headers=signed)
        assert response.status == 401, await response.text()
        assert "FAILURE" in (await response.json())["error"]
    assert len(paypal.to(VERIFY_PATH)) == 3 and paypal.to(ORDER) == []  # nothing read for a forgery
    assert await paybot.rows(models.WebhookEvent) == [] and await paybot.rows(models.Payment) == []
    assert await paybot.refused() == [("paypal", 401, 3)]
    await paybot.deliver()
    assert sendgrid.accepted == []


@pytest.mark.parametrize("misbehave", [
    pytest.param(lambda fake: fake.unavailable(VERIFY_PATH, 503), id="verify-503"),
    pytest.param(lambda fake: fake.unavailable(VERIFY_PATH, 500), id="verify-500"),
    pytest.param(lambda fake: fake.rate_limited(VERIFY_PATH), id="verify-429"),
    pytest.param(lambda fake: fake.unavailable(TOKEN_PATH, 503), id="token-503"),
    pytest.param(lambda fake: fake.unavailable(ORDER, 502), id="order-502"),
    pytest.param(lambda fake: fake.rate_limited(ORDER), id="order-429"),
    pytest.param(lambda fake: fake.script(VERIFY_PATH, web.json_response({})), id="verify-without-verdict"),
])
async def test_paypal_unavailable_is_503_and_the_retry_is_recorded_once(paybot, paypal, source, sendgrid, misbehave):
    await customer_and_invoice(paybot, amount="1250.00")
    body = payload("paypal", "rest_capture_completed.json")
    misbehave(paypal)
    response = await post(paybot, paypal, body)
    assert response.status == 503, await response.text()
    assert await paybot.rows(models.WebhookEvent) == [] and await paybot.rows(models.Payment) == []

    again = await post(paybot, paypal, body)  # PayPal's retry of the same event
    assert again.status == 200, await again.text()
    [payment] = await paybot.rows(models.Payment)
    assert payment.payer_email == "jose.muller@example.com"
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_paypal_unreachable_is_503(paybot, paypal, configs):
    paybot.runtime.sources["paypal"] = source_module.PayPalSource(
        api_settings(paypal, base_url="http://127.0.0.1:9"), paybot.runtime.http)  # nothing listens there
    response = await post(paybot, paypal, payload("paypal", "rest_capture_completed.json"))
    assert response.status == 503
    assert await paybot.rows(models.WebhookEvent) == []


async def test_refused_credentials_are_503_named_and_never_logged(paybot, paypal, caplog):
    paybot.runtime.sources["paypal"] = source_module.PayPalSource(
        api_settings(paypal, client_secret="EPaybotWrongSecret-revoked"), paybot.runtime.http)
    caplog.set_level(logging.INFO)
    response = await post(paybot, paypal, payload("paypal", "rest_capture_completed.json"))
    assert response.status == 503  # our fault, not PayPal's or the sender's: PayPal keeps the event meanwhile
    assert "PAYPAL_CLIENT_ID/PAYPAL_CLIENT_SECRET were refused" in (await response.json())["error"]
    assert [c.path for c in paypal.calls] == [TOKEN_PATH]  # no verification asked with no token
    assert await paybot.rows(models.WebhookEvent) == []
    assert "PAYPAL_CLIENT_ID/PAYPAL_CLIENT_SECRET were refused" in caplog.text
    assert "EPaybotWrongSecret-revoked" not in caplog.text and CLIENT_SECRET not in caplog.text


async def test_the_token_is_reused_renewed_before_it_expires_and_once_after_a_401(paybot, paypal, source):
    await customer_and_invoice(paybot, amount="5000.00")
    event = capture()
    for n in range(2):
        assert (await post(paybot, paypal, json.dumps(event | {"id": f"WH-{n}"}).encode())).status == 200
    assert len(paypal.to(TOKEN_PATH)) == 1

    paypal.expire_tokens()  # PayPal forgot it early: the API answers 401 invalid_token, once
    assert (await post(paybot, paypal, json.dumps(event | {"id": "WH-2"}).encode())).status == 200
    assert len(paypal.to(TOKEN_PATH)) == 2

    paybot.clock.advance(32400)  # the token's expires_in: a new one before it is used again
    assert (await post(paybot, paypal, json.dumps(event | {"id": "WH-3"}).encode())).status == 200
    assert len(paypal.to(TOKEN_PATH)) == 3
    assert [p.payment_ref for p in await paybot.rows(models.Payment)] == [CAPTURE_ID] * 4


async def test_an_order_paypal_cannot_find_leaves_the_payment_without_a_payer(paybot, paypal, source, sendgrid):
    await customer_and_invoice(paybot, amount="1250.00")
    body = json.dumps(capture(supplementary_data={"related_ids": {"order_id": "5O190127TN364715T"}})).encode()
    response = await post(paybot, paypal, body)
    assert response.status == 200, await response.text()
    assert paypal.to(order_path("5O190127TN364715T"))  # asked, answered 404
    [payment] = await paybot.rows(models.Payment)
    assert (payment.payer_email, payment.payer_name) == (None, None)
    assert payment.details["payer_lookup"] == "order unreadable (HTTP 404)"
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1  # matched on invoice_id: the customer still hears


async def test_a_capture_without_an_order_asks_for_none(paybot, paypal, source):
    body = json.dumps(capture(supplementary_data={})).encode()
    assert (await post(paybot, paypal, body)).status == 200
    assert [c.path for c in paypal.calls] == [TOKEN_PATH, VERIFY_PATH]
    [payment] = await paybot.rows(models.Payment)
    assert payment.payer_email is None


async def test_an_invoice_event_is_verified_and_needs_no_order(paybot, paypal, source, sendgrid):
    await paybot.add_customer("C1", name="Jane Doe", email="jane@example.com")
    await paybot.add_invoice("INV-7", "1000.00")
    body = payload("paypal", "rest_invoice_paid_partial.json").strip()  # as PayPal sends it: no final newline
    response = await post(paybot, paypal, body)
    assert response.status == 200, await response.text()
    assert [c.path for c in paypal.calls] == [TOKEN_PATH, VERIFY_PATH]
    await paybot.deliver()
    assert "$600.00 is still owed on invoice INV-7" in mail_text(sendgrid.accepted[0])


@pytest.mark.parametrize("headers", [
    pytest.param({"PAYPAL-AUTH-ALGO": "SHA1withRSA"}, id="another-algorithm"),
    pytest.param({"PAYPAL-TRANSMISSION-ID": "b2384410\u00e9"}, id="non-ascii-transmission-id"),
    pytest.param({"PAYPAL-CERT-URL": "https://evil.example/v1/notifications/certs/CERT-1"}, id="cert-elsewhere"),
    pytest.param({"PAYPAL-CERT-URL": "https://api.paypal.com/v1/oauth2/token"}, id="not-a-cert-path"),
    pytest.param({"PAYPAL-TRANSMISSION-SIG": ""}, id="no-signature"),
])
async def test_malformed_transmissions_are_401_without_a_call(paybot, paypal, source, headers):
    response = await post(paybot, paypal, payload("paypal", "rest_capture_completed.json"), **headers)
    assert response.status == 401
    assert paypal.calls == [] and await paybot.rows(models.WebhookEvent) == []


@pytest.mark.parametrize("body", [
    pytest.param(b'{"id": "WH-1", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": ', id="truncated"),
    pytest.param('{"id": "WH-1", "event_type": "Zahlung"}'.encode("utf-16"), id="not-utf-8"),
    pytest.param(b'["an", "array"]', id="not-an-object"),
])
async def test_a_body_that_cannot_be_passed_on_is_400_without_a_call(paybot, paypal, source, body):
    response = await post(paybot, paypal, body)
    assert response.status == 400
    assert paypal.calls == [] and await paybot.rows(models.WebhookEvent) == []


async def test_a_flood_of_forgeries_costs_paypal_a_bounded_number_of_calls(paybot, paypal, source, sendgrid):
    await customer_and_invoice(paybot, amount="1250.00")
    body = payload("paypal", "rest_capture_completed.json")
    forged = paypal.transmit(body, paybot.clock()) | {"PAYPAL-TRANSMISSION-SIG": base64.b64encode(b"x" * 256).decode()}
    statuses = [(await paybot.client.post("/webhooks/paypal", data=body, headers=forged)).status for _ in range(30)]
    burst = int(source_module.VERIFY_BURST)
    assert statuses == [401] * burst + [503] * (30 - burst)  # past the burst: not even asked
    assert len(paypal.to(VERIFY_PATH)) == burst and await paybot.rows(models.WebhookEvent) == []

    paybot.clock.advance(1)  # VERIFY_RATE more calls a second: PayPal's own resend gets through
    assert (await post(paybot, paypal, body)).status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_without_credentials_the_certificate_checks_locally(paypal, aiohttp_client, settings_for, clock):
    from bot.app import create_app
    from bot.keys import RUNTIME

    local = api_settings(paypal, client_id=None, client_secret=None)
    app = create_app(settings_for(), configs={"paypal": local}, clock=clock, run_worker=False)
    client = await aiohttp_client(app)
    body = payload("paypal", "rest_capture_completed.json")
    response = await client.post("/webhooks/paypal", data=body, headers=paypal.transmit(body, clock()))
    assert response.status == 200, await response.text()
    assert [c.path for c in paypal.calls] == [CERT_PATH]  # no token, no verification API, no order
    assert app[RUNTIME].sources["paypal"].tokens is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("environment, named", [
    pytest.param({"PAYPAL_CLIENT_ID": CLIENT_ID}, "PAYPAL_CLIENT_SECRET", id="id-without-secret"),
    pytest.param({"PAYPAL_CLIENT_SECRET": CLIENT_SECRET}, "PAYPAL_CLIENT_SECRET", id="secret-without-id"),
    pytest.param({"PAYPAL_CLIENT_ID": CLIENT_ID, "PAYPAL_CLIENT_SECRET": "   "}, "PAYPAL_CLIENT_SECRET", id="blank"),
])
def test_half_a_credential_pair_is_a_setting_error_naming_both(monkeypatch, environment, named):
    for name, value in ({"PAYPAL_WEBHOOK_ID": WEBHOOK_ID} | environment).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        integration_settings(None, "paypal", PayPalSettings)
    message = str(refused.value)
    assert message.startswith(f"bad setting: {named}: PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET go together")
    assert CLIENT_SECRET not in message


def test_the_settings_default_to_paypals_live_api_and_hide_the_secret(monkeypatch):
    monkeypatch.setenv("PAYPAL_WEBHOOK_ID", WEBHOOK_ID)
    assert PayPalSettings().base_url == "https://api-m.paypal.com" and not PayPalSettings().uses_api()
    monkeypatch.setenv("PAYPAL_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("PAYPAL_CLIENT_SECRET", CLIENT_SECRET)
    settings = PayPalSettings()
    assert settings.uses_api() and CLIENT_SECRET not in repr(settings) and CLIENT_SECRET not in str(settings)


@pytest.mark.parametrize("order, expected", [
    pytest.param({"payer": {"email_address": "a@example.com", "name": {"given_name": "Ana", "surname": "Ruiz"},
                            "payer_id": "P1"}}, ("a@example.com", "Ana Ruiz", "P1"), id="payer"),
    pytest.param({"payment_source": {"paypal": {"email_address": "b@example.com", "account_id": "P2",
                                                "name": {"given_name": "Bo", "surname": "Li"}}}},
                 ("b@example.com", "Bo Li", "P2"), id="payment-source-only"),
    pytest.param({"payer": {"name": {"surname": "Okafor"}, "email_address": 42}}, (None, "Okafor", None),
                 id="odd-values"),
    pytest.param({"payer": "nobody"}, (None, None, None), id="not-an-object"),
])
def test_the_payer_is_read_from_either_place_an_order_keeps_it(order, expected):
    from datetime import UTC, datetime

    from bot.domain.money import Money
    from bot.domain.payments import PaymentEvent, PaymentKind

    bare = PaymentEvent(source="paypal", kind=PaymentKind.PAYMENT, amount=Money.of(1, "USD"),
                        occurred_at=datetime(2026, 11, 28, tzinfo=UTC))
    found = with_payer(bare, order)
    assert (found.payer_email, found.payer_name, found.customer_external_id) == expected


@pytest.mark.parametrize("secret, expected", [
    pytest.param(CLIENT_SECRET, "paypal: PAYPAL_CLIENT_ID/PAYPAL_CLIENT_SECRET accepted; REST events are verified "
                                "through PayPal's verify-webhook-signature API", id="accepted"),
    pytest.param("EPaybotWrongSecret-revoked", "PROBLEM  paypal: PAYPAL_CLIENT_ID/PAYPAL_CLIENT_SECRET were refused "
                                               "(HTTP 401)", id="refused"),
])
async def test_paybot_check_proves_the_credentials_with_a_token(capsys, monkeypatch, database_url, providers,
                                                                secret, expected):
    environment = providers.environment(database_url) | {
        "PAYPAL_CLIENT_ID": CLIENT_ID, "PAYPAL_CLIENT_SECRET": secret,
        "PAYPAL_BASE_URL": str(providers.paypal.server.make_url("/"))}
    operator.configure(monkeypatch, environment)
    code, out, _ = await operator.paybot(capsys, "check")
    assert expected in out and code == (0 if secret == CLIENT_SECRET else 1), out
    assert [c.path for c in providers.paypal.calls] == [TOKEN_PATH]
    assert secret not in out
