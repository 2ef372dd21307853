"""Fake PayPal: the IPN postback (`/cgi-bin/webscr`), OAuth2 client credentials (`/v1/oauth2/token`) and
`/v1/notifications/verify-webhook-signature`, answering as PayPal does.

PayPal signs REST transmissions with its private key over `transmission_id|transmission_time|webhook_id|crc32(body)`;
the fake stands in with an HMAC under its own key, and only it can check it, as only PayPal can check the real one.
IPN messages are genuine when the fake was told it sent them (`sent_ipn`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import zlib
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.base import FakeProvider

CLIENT_ID = "AcLIENT-paybot-test"
CLIENT_SECRET = "EsECRET-paybot-test"
WEBHOOK_ID = "8PT597110X687430LKGECATA"
CERT_URL = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"
_SIGNING_KEY = b"the fake's stand-in for PayPal's private key"


def oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def signed_message(transmission_id: str, transmission_time: str, webhook_id: str, body: bytes) -> bytes:
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}".encode()


class FakePayPal(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.ipn_sent: list[bytes] = []
        self.transmissions: dict[str, bytes] = {}  # transmission id -> the event body PayPal sent
        self.tokens: set[str] = set()
        self._ids = itertools.count(1)
        self.app.router.add_post("/cgi-bin/webscr", self.webscr)
        self.app.router.add_post("/v1/oauth2/token", self.token)
        self.app.router.add_post("/v1/notifications/verify-webhook-signature", self.verify_signature)

    # --- what PayPal sends ---

    def sent_ipn(self, body: bytes) -> bytes:
        """Remember an IPN message as one PayPal sent (its postback will be VERIFIED)."""
        self.ipn_sent.append(body)
        return body

    def transmit(self, body: bytes, now: datetime, *, webhook_id: str = WEBHOOK_ID) -> dict[str, str]:
        """The headers PayPal sends a REST event with, for `webhook_id`'s subscription."""
        transmission_id = f"b2384410-f8d2-11ee-8f6d-{next(self._ids):012d}"
        when = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        mac = hmac.new(_SIGNING_KEY, signed_message(transmission_id, when, webhook_id, body), hashlib.sha256)
        self.transmissions[transmission_id] = body
        return {
            "PAYPAL-TRANSMISSION-ID": transmission_id, "PAYPAL-TRANSMISSION-TIME": when,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(mac.digest()).decode(), "PAYPAL-CERT-URL": CERT_URL,
            "PAYPAL-AUTH-ALGO": "SHA256withRSA", "Content-Type": "application/json",
            "User-Agent": "PayPal/AUHR-214.0-58843778",
        }

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    # --- PayPal's endpoints ---

    async def webscr(self, request: web.Request) -> web.Response:
        body = await request.read()
        prefix = b"cmd=_notify-validate&"
        genuine = body.startswith(prefix) and body[len(prefix):] in self.ipn_sent
        return web.Response(text="VERIFIED" if genuine else "INVALID", content_type="text/html")

    async def token(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return oauth_error(401, "invalid_client", "Client Authentication failed")
        form = dict(parse_qsl((await request.read()).decode()))
        if form.get("grant_type") != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "Grant Type is NULL")
        token = f"A21AAF{next(self._ids):08d}paybotfake"
        self.tokens.add(token)
        return web.json_response({
            "scope": "https://uri.paypal.com/services/invoicing https://uri.paypal.com/services/payments/payment",
            "access_token": token, "token_type": "Bearer", "app_id": "APP-80W284485P519543T",
            "expires_in": 32400, "nonce": "2026-11-28T12:00:00Zpaybotfake"})

    async def verify_signature(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return oauth_error(401, "invalid_token", "Token signature verification failed")
        try:
            args: dict[str, Any] = json.loads(await request.read(), parse_float=Decimal)
        except ValueError:
            return self.validation_error("MALFORMED_REQUEST_JSON")
        names = ("auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time", "webhook_id",
                 "webhook_event")
        if any(not args.get(name) for name in names):
            return self.validation_error("MISSING_REQUIRED_PARAMETER")
        return web.json_response({"verification_status": "SUCCESS" if self._genuine(args) else "FAILURE"})

    def _genuine(self, args: dict[str, Any]) -> bool:
        sent = self.transmissions.get(args["transmission_id"])
        if sent is None or json.loads(sent, parse_float=Decimal) != args["webhook_event"]:
            return False  # not a transmission of ours, or not the event we sent
        message = signed_message(args["transmission_id"], args["transmission_time"], args["webhook_id"], sent)
        expected = base64.b64encode(hmac.new(_SIGNING_KEY, message, hashlib.sha256).digest()).decode()
        return hmac.compare_digest(expected.encode(), str(args["transmission_sig"]).encode())  # any text, no raise

    @staticmethod
    def validation_error(issue: str) -> web.Response:
        return web.json_response({
            "name": "VALIDATION_ERROR", "message": "Invalid request - see details",
            "debug_id": "f2a1c3b4d5e6f", "details": [{"issue": issue}]}, status=400)
