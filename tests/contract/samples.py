"""How to build a genuine request for each payment source, for the contract suite (`test_sources.py`).

Every entry of `bot.integrations.sources.SOURCES` needs a `SourceSample` registered in `SAMPLES` under its name;
the suite fails for a source without one. A sample signs the way the platform signs and may start local fake
servers (e.g. a verification API) in `configure`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from bot.integrations.base import IntegrationSettings
from bot.integrations.sources import (
    business_central, freshbooks, intacct, paypal, quickbooks, sap_b1, square, stripe, wave, xero, zoho,
)
from tests.fakes import business_central as bc_fake
from tests.fakes import intacct as intacct_fake
from tests.fakes import sap_b1 as b1_fake
from tests.fakes.business_central import FakeBusinessCentral
from tests.fakes.intacct import FakeIntacct
from tests.fakes.paypal import WEBHOOK_ID, FakePayPal
from tests.fakes.sap_b1 import FakeServiceLayer
from tests.harness import STRIPE_SECRET, stripe_invoice_event

PAYLOADS = Path(__file__).parent.parent / "payloads"
PUBLIC_BASE_URL = "https://paybot.example.com"  # what the `settings_for` fixture configures
ServerFactory = Callable[[Any], Awaitable[Any]]  # pytest-aiohttp's `aiohttp_server`


def payload(source: str, name: str) -> bytes:
    return (PAYLOADS / source / name).read_bytes()


@dataclass(frozen=True, slots=True)
class Signed:
    """A request as the platform would send it."""

    body: bytes
    headers: dict[str, str]


class SourceSample(Protocol):
    #: Does the platform's check cover the body (a changed byte is refused)? A shared-secret header does not.
    signs_body: ClassVar[bool]

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        """The source's settings, pointed at any fake servers it needs."""

    def secrets(self) -> tuple[str, ...]:
        """Every secret value in the settings: none may appear in a repr, a log line or an audit entry."""

    def payment(self) -> bytes:
        """The body of a notification that records one payment."""

    def malformed(self) -> bytes:
        """A body that cannot be parsed."""

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        """The request carrying `body`, signed as the platform signs (with a wrong secret when `forged`)."""


class StripeSample:
    signs_body: ClassVar[bool] = True

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        return stripe.StripeSettings(_env_file=None, webhook_secret=STRIPE_SECRET)  # type: ignore[call-arg]

    def secrets(self) -> tuple[str, ...]:
        return (STRIPE_SECRET,)

    def payment(self) -> bytes:
        return json.dumps(stripe_invoice_event("evt_contract")).encode()

    def malformed(self) -> bytes:
        return b'{"id": "evt_broken", "type": "invoice.paid", "data": '

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        header = stripe.sign(body, "whsec_not_the_secret" if forged else STRIPE_SECRET, int(now.timestamp()))
        return Signed(body, {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"})


class SquareSample:
    signs_body: ClassVar[bool] = True
    KEY = "sq-signature-key-contract"
    URL = f"{PUBLIC_BASE_URL}/webhooks/square"  # unset SQUARE_NOTIFICATION_URL: PUBLIC_BASE_URL + the path

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        return square.SquareSettings(_env_file=None, signature_key=self.KEY)  # type: ignore[call-arg]

    def secrets(self) -> tuple[str, ...]:
        return (self.KEY,)

    def payment(self) -> bytes:
        return payload("square", "payment_updated_completed.json")

    def malformed(self) -> bytes:
        return b'{"merchant_id": "ML82H4QPKMGXY", "type": "payment.updated", "event_id": '

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        signature = square.sign(body, "sq-some-other-key" if forged else self.KEY, self.URL)
        return Signed(body, {"x-square-hmacsha256-signature": signature, "Content-Type": "application/json",
                             "square-environment": "Production", "User-Agent": "Square Connect v2"})


class WaveSample:
    signs_body: ClassVar[bool] = False  # Zapier cannot sign; the secret header is the whole check
    SECRET = "wave-relay-secret-contract"

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        return wave.WaveSettings(_env_file=None, webhook_secret=self.SECRET)  # type: ignore[call-arg]

    def secrets(self) -> tuple[str, ...]:
        return (self.SECRET,)

    def payment(self) -> bytes:
        return payload("wave", "zapier_partial.json")

    def malformed(self) -> bytes:
        return b'{"source": "wave", "invoice_number": "INV-1042", "amount_paid": '

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        return Signed(body, {wave.HEADER: "a-guess" if forged else self.SECRET, "Content-Type": "application/json",
                             "User-Agent": "Zapier"})


class PayPalSample:
    """REST webhooks, signed with the fake's certificate and checked with it. (IPN is answered 200 before it can
    be verified, so it cannot meet this contract's 401; tests/sources/test_paypal.py covers it.)"""

    signs_body: ClassVar[bool] = True
    fake: FakePayPal | None = None

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        self.fake = FakePayPal()
        self.fake.server = await aiohttp_server(self.fake.app)
        return paypal.PayPalSettings(  # type: ignore[call-arg]
            _env_file=None, receiver_email="billing@weld.example", webhook_id=WEBHOOK_ID,
            cert_origins=self.fake.origin, ipn_verify_url=str(self.fake.server.make_url("/cgi-bin/webscr")))

    def secrets(self) -> tuple[str, ...]:
        return ()  # PayPal's signature is checked with its public certificate: paybot holds no PayPal secret

    def payment(self) -> bytes:
        return payload("paypal", "rest_capture_completed.json")

    def malformed(self) -> bytes:
        return b'{"id": "WH-2CL46544TB770421K", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": '

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        assert self.fake is not None, "configure first"
        # A forgery cannot produce PayPal's signature for our subscription: here, one made for another webhook.
        return Signed(body, self.fake.transmit(body, now, webhook_id="3HV58741XF905712A" if forged else WEBHOOK_ID))


class SageIntacctSample:
    """A platform trigger's POST: the Bearer JWT minted with the fake's own keys, the ARPYMT read back from it."""

    signs_body: ClassVar[bool] = False  # the JWT proves the sender, it does not cover the body
    fake: FakeIntacct | None = None

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        self.fake = FakeIntacct()
        self.fake.server = await aiohttp_server(self.fake.app)
        self.fake.add_invoice("4021", "INV-1042", total="1250.00", paid="1250.00")
        self.fake.add_payment("9001", ("4021", "1250.00"))
        base = self.fake.server.make_url
        return intacct.SageIntacctSettings(  # type: ignore[call-arg]
            _env_file=None, jwks_url=str(base("/.well-known/jwks.json")), issuer=intacct_fake.ISSUER,
            audience=intacct_fake.AUDIENCE, client_id=intacct_fake.CLIENT_ID, client_secret=intacct_fake.CLIENT_SECRET,
            username=intacct_fake.USERNAME, company_id=intacct_fake.COMPANY_ID, base_url=str(base(intacct_fake.API)),
            token_url=str(base(f"{intacct_fake.API}/oauth2/token")))

    def secrets(self) -> tuple[str, ...]:
        return (intacct_fake.CLIENT_SECRET,)

    def payment(self) -> bytes:
        return json.dumps({"object": "ARPYMT", "event": "add", "RECORDNO": "9001", "CUSTOMERID": "C-100",
                           "companyId": intacct_fake.COMPANY_ID, "timestamp": "2026-11-28T11:59:30Z"}).encode()

    def malformed(self) -> bytes:
        return b'{"object": "ARPYMT", "event": "add", "RECORDNO": '

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        assert self.fake is not None, "configure first"
        token = self.fake.mint(now, key=intacct_fake.rsa_key() if forged else None)
        key = hashlib.sha256(body).hexdigest()[:32]  # Sage's retries carry the same key
        return Signed(body, {"Authorization": f"Bearer {token}", "Idempotency-Key": key,
                             "X-Trusted-Context": "eyJjbGllbnRJZCI6InBheWJvdCJ9", "Content-Type": "application/json"})


class BusinessCentralSample:
    """A salesInvoices notification: BC signs nothing; the clientState in the body is the check."""

    signs_body: ClassVar[bool] = False
    proof_fields: ClassVar[tuple[str, ...]] = ("clientState",)  # the check is in the body: not fuzzed
    fake: FakeBusinessCentral | None = None

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        from datetime import UTC

        self.fake = FakeBusinessCentral(lambda: datetime.now(UTC))
        self.fake.server = await aiohttp_server(self.fake.app)
        self.fake.add_invoice(1, "INV-1042", total="1250.00", remaining="0")
        base = self.fake.server.make_url
        return business_central.BusinessCentralSettings(  # type: ignore[call-arg]
            _env_file=None, client_state=bc_fake.CLIENT_STATE, tenant_id=bc_fake.TENANT, client_id=bc_fake.CLIENT_ID,
            client_secret=bc_fake.CLIENT_SECRET, company_id=bc_fake.COMPANY, base_url=str(base("/")),
            token_url=str(base(f"/{bc_fake.TENANT}/oauth2/v2.0/token")))

    def secrets(self) -> tuple[str, ...]:
        return (bc_fake.CLIENT_STATE, bc_fake.CLIENT_SECRET)

    def payment(self) -> bytes:
        return json.dumps({"value": [{
            "subscriptionId": "salesInvoices-sub", "clientState": bc_fake.CLIENT_STATE,
            "expirationDateTime": "2026-12-01T07:52:31Z",
            "resource": f"api/v2.0/companies({bc_fake.COMPANY})/salesInvoices({bc_fake.invoice_id(1)})",
            "changeType": "updated", "lastModifiedDateTime": "2026-11-28T11:59:20.467Z"}]}).encode()

    def malformed(self) -> bytes:
        return b'{"value": [{"subscriptionId": "salesInvoices-sub", "clientState": '

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        if forged:  # someone who does not know the clientState
            body = body.replace(bc_fake.CLIENT_STATE.encode(), b"a-guessed-client-state")
        return Signed(body, {"Content-Type": "application/json"})


class SapB1Sample:
    """An integration scenario's POST on object 24 with the Basic credentials the operator configured."""

    signs_body: ClassVar[bool] = False  # HTTP Basic: a shared secret, not a signature
    USER, PASSWORD = "b1if", "scenario-secret-contract"
    fake: FakeServiceLayer | None = None

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        self.fake = FakeServiceLayer()
        self.fake.server = await aiohttp_server(self.fake.app)
        self.fake.add_invoice(301, "INV-1042", total="1250.00", paid="1250.00")
        self.fake.add_payment(77, (301, "1250.00"))
        return sap_b1.SapB1Settings(  # type: ignore[call-arg]
            _env_file=None, webhook_user=self.USER, webhook_password=self.PASSWORD,
            base_url=str(self.fake.server.make_url("/")), company_db=b1_fake.COMPANY_DB, username=b1_fake.USERNAME,
            password=b1_fake.PASSWORD)

    def secrets(self) -> tuple[str, ...]:
        return (self.PASSWORD, b1_fake.PASSWORD)

    def payment(self) -> bytes:
        return json.dumps({"EventID": "1f0c2a7e", "SourceDB": b1_fake.COMPANY_DB, "ObjectType": "24",
                           "BizObject": "IncomingPayments", "TransType": "A", "FieldsInKey": 1,
                           "FieldNames": "DocEntry", "FieldValues": "77", "UserID": "1", "CreateDate": "20261128",
                           "CreateTime": "1159"}).encode()

    def malformed(self) -> bytes:
        return b'{"EventID": "1f0c2a7e", "ObjectType": "24", "FieldValues": '

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        password = "a-guess" if forged else self.PASSWORD
        credentials = base64.b64encode(f"{self.USER}:{password}".encode()).decode()
        return Signed(body, {"Authorization": f"Basic {credentials}", "Content-Type": "application/json"})
class QuickBooksSample:
    """A CloudEvents notification (one event: its `id` is the event's); the legacy format and batches are covered by
    tests/sources/test_quickbooks.py. Verified and stored before anything is read from Intuit."""

    signs_body: ClassVar[bool] = True
    TOKEN = "qbo-verifier-token-contract"

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        return quickbooks.QuickBooksSettings(_env_file=None, verifier_token=self.TOKEN)  # type: ignore[call-arg]

    def secrets(self) -> tuple[str, ...]:
        return (self.TOKEN,)

    def payment(self) -> bytes:
        return payload("quickbooks", "payment_created_cloudevent.json")

    def malformed(self) -> bytes:
        return b'[{"specversion": "1.0", "id": "88cd52aa-33b6-4351-9aa4-47572edbd068", "type": '

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        signature = quickbooks.sign(body, "not-the-verifier-token" if forged else self.TOKEN)
        return Signed(body, {"intuit-signature": signature, "Content-Type": "application/json; charset=utf-8",
                             "User-Agent": "Intuit-Webhooks"})
class XeroSample:
    signs_body: ClassVar[bool] = True
    KEY = "xero-webhook-key-contract/+base64ish=="

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        return xero.XeroSettings(_env_file=None, webhook_key=self.KEY)  # type: ignore[call-arg]

    def secrets(self) -> tuple[str, ...]:
        return (self.KEY,)

    def payment(self) -> bytes:
        return payload("xero", "invoice_update.json")

    def malformed(self) -> bytes:
        return b'{"events": [{"resourceId": "717f2bfc-c6d4-41fd-b238-3f2f0c0cf777", "eventCategory": '

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        signature = xero.sign(body, "not-the-webhook-key" if forged else self.KEY)
        return Signed(body, {"x-xero-signature": signature, "Content-Type": "application/json; charset=utf-8"})


class FreshBooksSample:
    signs_body: ClassVar[bool] = True
    VERIFIER = "scADVVi5QuKuj5qTjVkbJNYQe7V7USpGd"

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        return freshbooks.FreshBooksSettings(  # type: ignore[call-arg]
            _env_file=None, verifier=self.VERIFIER, client_id="fb-client-id-0001", account_id="6BApk")

    def secrets(self) -> tuple[str, ...]:
        return (self.VERIFIER,)

    def payment(self) -> bytes:
        return payload("freshbooks", "payment_create.form")

    def malformed(self) -> bytes:
        return b"name=payment.create&object_id"

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        signature = freshbooks.sign(body, "some-other-verifier" if forged else self.VERIFIER)
        return Signed(body, {freshbooks.HEADER: signature, "Content-Type": "application/x-www-form-urlencoded"})


class ZohoBooksSample:
    signs_body: ClassVar[bool] = True
    SECRET = "zohoBooksWebhookSecret2026"

    async def configure(self, aiohttp_server: ServerFactory) -> IntegrationSettings:
        return zoho.ZohoBooksSettings(_env_file=None, webhook_secret=self.SECRET)  # type: ignore[call-arg]

    def secrets(self) -> tuple[str, ...]:
        return (self.SECRET,)

    def payment(self) -> bytes:
        return payload("zoho-books", "payment_received.json")

    def malformed(self) -> bytes:
        return b'{"payment": {"payment_id": "9030000079467", "amount": '

    def sign(self, body: bytes, now: datetime, *, forged: bool = False) -> Signed:
        signature = zoho.sign({}, body, "application/json", "notTheSecretAtAll" if forged else self.SECRET)
        return Signed(body, {zoho.HEADER: signature, "Content-Type": "application/json"})


SAMPLES: dict[str, SourceSample] = {
    "stripe": StripeSample(),
    "paypal": PayPalSample(),
    "square": SquareSample(),
    "wave": WaveSample(),
    "sage-intacct": SageIntacctSample(),
    "business-central": BusinessCentralSample(),
    "sap-b1": SapB1Sample(),
    "quickbooks": QuickBooksSample(),
    "xero": XeroSample(),
    "freshbooks": FreshBooksSample(),
    "zoho-books": ZohoBooksSample(),
}
