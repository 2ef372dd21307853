"""Fake PayPal: the IPN postback (`/cgi-bin/webscr`), the REST webhooks' signing certificate
(`/v1/notifications/certs/…`) and the REST API paybot calls (`/v1/oauth2/token`,
`/v1/notifications/verify-webhook-signature`, `/v2/checkout/orders/{id}`), answering as PayPal does.

PayPal signs REST transmissions with its private key, SHA256withRSA over
`transmission_id|transmission_time|webhook_id|crc32(body)`, and publishes the certificate at the URL it names in
`PAYPAL-CERT-URL`. The fake does the same with a key and self-signed certificate made when the tests start, and its
verify-webhook-signature checks the same signature over the CRC32 of the `webhook_event` exactly as it appears in
the request: an event re-serialised on the way is a FAILURE, as with PayPal. The token endpoint takes the app's
client id and secret in HTTP Basic; the API wants its Bearer tokens (`expire_tokens` makes them all stale).
Misbehaviour on demand: `script` (from FakeProvider), `rate_limited`, `unavailable`.
IPN messages are genuine when the fake was told it sent them (`sent_ipn`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from bot.integrations.sources.paypal import signed_message
from tests.fakes.base import FakeProvider

WEBHOOK_ID = "8PT597110X687430LKGECATA"
CERT_PATH = "/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"
CLIENT_ID = "AbPaybotFakeClientId-weld-shop-0001"
CLIENT_SECRET = "EPaybotFakeClientSecret-do-not-log-0001"
TOKEN_PATH = "/v1/oauth2/token"
VERIFY_PATH = "/v1/notifications/verify-webhook-signature"
VERIFY_FIELDS = ("auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time", "webhook_id",
                 "webhook_event")


@functools.cache
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def certificate_pem(common_name: str = "messageverificationcerts.paypal.com") -> bytes:
    """A self-signed certificate for `signing_key`, valid from 2020 to 2040 (the tests' clocks fall inside)."""
    key = signing_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PayPal, Inc.")])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
                   .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
                   .sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)


def sign(message: bytes) -> str:
    return base64.b64encode(signing_key().sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def order_path(order_id: str) -> str:
    return f"/v2/checkout/orders/{order_id}"


def raw_members(text: str) -> dict[str, str]:
    """A JSON object's members, each value as the very text it was sent as (the whole text is valid JSON)."""
    json.loads(text)
    decoder, members = json.JSONDecoder(), {}
    at = _skip(text, text.index("{") + 1)
    while text[at] != "}":
        name, at = decoder.raw_decode(text, at)
        at = _skip(text, text.index(":", at) + 1)
        _, end = decoder.raw_decode(text, at)
        members[str(name)] = text[at:end]
        at = _skip(text, end)
        if text[at] == ",":
            at = _skip(text, at + 1)
    return members


def _skip(text: str, at: int) -> int:
    """Past JSON whitespace."""
    while text[at] in " \t\n\r":
        at += 1
    return at


def paypal_error(status: int, name: str, message: str, **extra: Any) -> web.Response:
    """PayPal's REST error body: `name`, `message`, `debug_id` (and `details` where it has them)."""
    return web.json_response({"name": name, "message": message, "debug_id": "f2c8a93d4e1b7", **extra}, status=status)


class FakePayPal(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.ipn_sent: list[bytes] = []
        self.certificates: dict[str, bytes] = {CERT_PATH: certificate_pem()}
        self.webhooks = {WEBHOOK_ID}  # the app's webhook subscriptions
        self.access_tokens: set[str] = set()
        self.orders: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self.app.router.add_post("/cgi-bin/webscr", self.webscr)
        self.app.router.add_get("/v1/notifications/certs/{name}", self.certificate)
        self.app.router.add_post(TOKEN_PATH, self.token)
        self.app.router.add_post(VERIFY_PATH, self.verify)
        self.app.router.add_get(order_path("{order_id}"), self.order)

    @property
    def origin(self) -> str:
        """Where its certificates live: what PAYPAL_CERT_ORIGINS must allow."""
        return str(self.server.make_url("/")).rstrip("/")

    # --- what PayPal sends ---

    def sent_ipn(self, body: bytes) -> bytes:
        """Remember an IPN message as one PayPal sent (its postback will be VERIFIED)."""
        self.ipn_sent.append(body)
        return body

    def transmit(self, body: bytes, now: datetime, *, webhook_id: str = WEBHOOK_ID,
                 cert_path: str = CERT_PATH) -> dict[str, str]:
        """The headers PayPal sends a REST event with, for `webhook_id`'s subscription, signed for real."""
        transmission_id = f"b2384410-f8d2-11ee-8f6d-{next(self._ids):012d}"
        when = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "PAYPAL-TRANSMISSION-ID": transmission_id, "PAYPAL-TRANSMISSION-TIME": when,
            "PAYPAL-TRANSMISSION-SIG": sign(signed_message(transmission_id, when, webhook_id, body)),
            "PAYPAL-CERT-URL": self.origin + cert_path, "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "Content-Type": "application/json", "User-Agent": "PayPal/AUHR-214.0-58843778",
        }

    def add_order(self, order_id: str, capture_id: str, amount: str = "1250.00", *, email: str = "jane@example.com",
                  given_name: str = "Jane", surname: str = "Doe", payer_id: str = "QYR5Z8XDVJNXQ") -> None:
        """A completed v2 order whose capture is `capture_id` (what GET /v2/checkout/orders/{id} answers)."""
        name, money = {"given_name": given_name, "surname": surname}, {"currency_code": "USD", "value": amount}
        self.orders[order_id] = {
            "id": order_id, "intent": "CAPTURE", "status": "COMPLETED",
            "payment_source": {"paypal": {"email_address": email, "account_id": payer_id, "account_status": "VERIFIED",
                                          "name": name, "address": {"country_code": "US"}}},
            "purchase_units": [{"reference_id": "default", "amount": money, "invoice_id": "INV-1042",
                                "payee": {"email_address": "billing@weld.example", "merchant_id": "S8XGHLYDW9T3S"},
                                "payments": {"captures": [{"id": capture_id, "status": "COMPLETED", "amount": money,
                                                           "final_capture": True}]}}],
            "payer": {"name": name, "email_address": email, "payer_id": payer_id, "address": {"country_code": "US"}},
            "create_time": "2026-11-28T11:57:41Z", "update_time": "2026-11-28T11:58:05Z",
            "links": [{"href": f"https://api.paypal.com/v2/checkout/orders/{order_id}", "rel": "self",
                       "method": "GET"}],
        }

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (PayPal's 401 invalid_token)."""
        self.access_tokens.clear()

    def rate_limited(self, path: str, retry_after: int = 30) -> None:
        """The next request to `path` is PayPal's 429, with Retry-After."""
        response = paypal_error(429, "RATE_LIMIT_REACHED", "Too many requests. Blocked due to rate limiting.")
        response.headers["Retry-After"] = str(retry_after)
        self.script(path, response)

    def unavailable(self, path: str, status: int = 503) -> None:
        """The next request to `path` is a PayPal 5xx."""
        self.script(path, paypal_error(status, "INTERNAL_SERVICE_ERROR", "An internal service error has occurred."))

    # --- PayPal's endpoints ---

    async def webscr(self, request: web.Request) -> web.Response:
        body = await request.read()
        prefix = b"cmd=_notify-validate&"
        genuine = body.startswith(prefix) and body[len(prefix):] in self.ipn_sent
        return web.Response(text="VERIFIED" if genuine else "INVALID", content_type="text/html")

    async def certificate(self, request: web.Request) -> web.Response:
        pem = self.certificates.get(request.path)
        if pem is None:
            return web.json_response({"name": "RESOURCE_NOT_FOUND", "message": "The specified resource does not "
                                      "exist.", "debug_id": "8e4b3c2a1f0d9"}, status=404)
        return web.Response(body=pem, content_type="application/x-pem-file")

    async def token(self, request: web.Request) -> web.Response:
        if self.client_of(request) != (CLIENT_ID, CLIENT_SECRET):
            return web.json_response({"error": "invalid_client", "error_description": "Client Authentication failed"},
                                     status=401)
        if (await request.post()).get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type", "error_description": "unsupported grant_type"},
                                     status=400)
        token = f"A21AAFakeAccessToken{next(self._ids):06d}"
        self.access_tokens.add(token)
        return web.json_response({
            "scope": "https://uri.paypal.com/services/applications/webhooks https://uri.paypal.com/services/payments/"
                     "payment/authcapture", "access_token": token, "token_type": "Bearer",
            "app_id": "APP-80W284485P519543T", "expires_in": 32400, "nonce": "2026-11-28T11:00:00ZFakeNonce"})

    @staticmethod
    def client_of(request: web.Request) -> tuple[str, str]:
        auth = request.headers.get("Authorization", "")
        try:
            user, _, password = base64.b64decode(auth.removeprefix("Basic "), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        return (user, password) if auth.startswith("Basic ") else ("", "")

    def authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in self.access_tokens

    @staticmethod
    def invalid_token() -> web.Response:
        return web.json_response({"error": "invalid_token", "error_description": "Token signature verification failed"},
                                 status=401)

    async def verify(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return self.invalid_token()
        try:
            members = raw_members((await request.read()).decode())
            fields = {name: json.loads(members[name]) for name in VERIFY_FIELDS}
        except (ValueError, KeyError):
            return paypal_error(400, "VALIDATION_ERROR", "Invalid request - see details.",
                                details=[{"location": "body", "issue": "MISSING_REQUIRED_PARAMETER"}])
        event = members["webhook_event"].encode()  # as sent: not re-serialised here either
        genuine = fields["webhook_id"] in self.webhooks and self.signed(fields, event)
        return web.json_response({"verification_status": "SUCCESS" if genuine else "FAILURE"})

    def signed(self, fields: dict[str, Any], event: bytes) -> bool:
        """Was this transmission of `event` signed with the key of the certificate at `cert_url`, one of ours?"""
        url = str(fields["cert_url"])
        pem = self.certificates.get(url.removeprefix(self.origin)) if url.startswith(self.origin + "/") else None
        if pem is None or fields["auth_algo"] != "SHA256withRSA":
            return False
        key = x509.load_pem_x509_certificate(pem).public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        message = signed_message(str(fields["transmission_id"]), str(fields["transmission_time"]),
                                 str(fields["webhook_id"]), event)
        try:
            key.verify(base64.b64decode(str(fields["transmission_sig"])), message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True

    async def order(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return self.invalid_token()
        order_id = request.match_info["order_id"]
        found = self.orders.get(order_id)
        if found is None:
            return paypal_error(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.", details=[
                {"field": "order_id", "value": order_id, "location": "path", "issue": "INVALID_RESOURCE_ID",
                 "description": "Specified resource ID does not exist. Please check the resource ID and try again."}])
        return web.json_response(found)



def certificate_for(common_name: str, valid_from: datetime, valid_until: datetime) -> bytes:
    """Another certificate for the same key (expired, or not PayPal's), to serve instead of PayPal's own."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(signing_key().public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(valid_from).not_valid_after(valid_until)
            .sign(signing_key(), hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
