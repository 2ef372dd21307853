"""Fake PayPal: the IPN postback (`/cgi-bin/webscr`) and the REST webhooks' signing certificate
(`/v1/notifications/certs/…`), answering as PayPal does.

PayPal signs REST transmissions with its private key, SHA256withRSA over
`transmission_id|transmission_time|webhook_id|crc32(body)`, and publishes the certificate at the URL it names in
`PAYPAL-CERT-URL`. The fake does the same with a key and self-signed certificate made when the tests start.
IPN messages are genuine when the fake was told it sent them (`sent_ipn`).
"""

from __future__ import annotations

import base64
import functools
import itertools
from datetime import UTC, datetime

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from bot.integrations.sources.paypal import signed_message
from tests.fakes.base import FakeProvider

WEBHOOK_ID = "8PT597110X687430LKGECATA"
CERT_PATH = "/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"


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


class FakePayPal(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.ipn_sent: list[bytes] = []
        self.certificates: dict[str, bytes] = {CERT_PATH: certificate_pem()}
        self._ids = itertools.count(1)
        self.app.router.add_post("/cgi-bin/webscr", self.webscr)
        self.app.router.add_get("/v1/notifications/certs/{name}", self.certificate)

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



def certificate_for(common_name: str, valid_from: datetime, valid_until: datetime) -> bytes:
    """Another certificate for the same key (expired, or not PayPal's), to serve instead of PayPal's own."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(signing_key().public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(valid_from).not_valid_after(valid_until)
            .sign(signing_key(), hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
