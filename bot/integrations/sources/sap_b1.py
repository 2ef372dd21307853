"""SAP Business One: an integration-scenario (B1if) HTTP call on object 24 (incoming payment), with HTTP Basic.

B1 does not sign: the scenario sends the credentials the operator configured (`SAP_B1_WEBHOOK_USER`/`_PASSWORD`),
compared in constant time. The body (the README's shape) names the payment's `DocEntry` only; paybot reads it
through the Service Layer: `POST /b1s/v1/Login` (a `B1SESSION` shared by every concurrent read, logged in again
once when B1 answers 401 / "Invalid session"), `IncomingPayments({DocEntry})` and its `PaymentInvoices[]` →
`Invoices({DocEntry})` (`NumAtCard` is the printed number, `DocNum` also matched; `DocTotal`, `PaidToDate`) →
`BusinessPartners('{CardCode}')` (`EmailAddress`, `Cellular`/`Phone1`). Service Layer errors are OData envelopes
(`{"error": {"code": -2028, "message": {"value": …}}}`), classified by status and code. A payment applied to no
invoice (on account) goes to finance for review; the customer is not messaged. The sweep lists
`IncomingPayments?$filter=UpdateDate ge '…'`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote

import aiohttp
from pydantic import SecretStr

from bot.domain.money import CurrencyError, normalise_currency
from bot.domain.payments import PaymentEvent
from bot.errors import PayloadInvalid, ProviderRejected, ProviderUnavailable, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.sources.applied import (AppliedInvoice, PostedPayment, LOOKBACK, money, payment_events,
                                              sweep_stamp, text)
from bot.integrations.sources.base import InboundRequest, PlatformAccess, Received, Swept, WebhookSource
from bot.storage.database import utcnow
from bot.integrations.sources.common import digest_matches, fetch_json, is_bare_date, json_object, parse_time

log = logging.getLogger(__name__)
PAYMENT_OBJECT = "24"
ACTED_ON = frozenset({"A", "U"})  # added, updated; cancelled/deleted payments are nobody's thanks
INVALID_SESSION = 301             # Service Layer's code for a timed-out or unknown session
NOT_FOUND = -2028                 # "No matching records found"
SWEEP_PAGES = 20
PAGE_SIZE = 100


class SapB1Settings(IntegrationSettings):
    model_config = settings_config("SAP_B1")
    required = ("webhook_user", "webhook_password", "base_url", "company_db", "username", "password")

    webhook_user: str | None = None           # the Basic credentials the integration scenario sends
    webhook_password: SecretStr | None = None
    base_url: str | None = None               # the Service Layer, e.g. https://b1.example.com:50000 (on premises)
    company_db: str | None = None             # CompanyDB to log in to; a scenario naming another SourceDB is ignored
    username: str | None = None               # a Service Layer user
    password: SecretStr | None = None
    currency: str = "USD"                     # for documents whose DocCurrency is not an ISO code (B1's "$")


def b1_error(body: str) -> tuple[int | None, str]:
    """An OData error envelope's code and message (v1 `message.value`, v2 a plain `message`)."""
    try:
        error = json.loads(body).get("error") or {}
        message = error.get("message")
        value = message.get("value") if isinstance(message, dict) else message
        code = error.get("code")
        return (int(code) if code is not None else None), str(value or "")[:200]
    except (ValueError, TypeError, AttributeError):
        return None, ""


def basic_credentials(header: str) -> tuple[bytes, bytes] | None:
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    doc_entry: str
    trans_type: str
    object_type: str
    source_db: str | None


def event_of(body: bytes) -> Event:
    data = json_object(body)
    object_type = str(data.get("ObjectType") or "").strip()
    if not object_type:
        raise PayloadInvalid("missing field ObjectType")
    names = [n.strip() for n in str(data.get("FieldNames") or "").split("\t")]
    values = [v.strip() for v in str(data.get("FieldValues") or "").split("\t")]
    keys = dict(zip(names, values, strict=False))
    doc_entry = keys.get("DocEntry", "")
    if not doc_entry.isascii() or not doc_entry.isdigit():
        raise PayloadInvalid("FieldValues holds no numeric DocEntry")
    trans = str(data.get("TransType") or "").strip().upper()
    # The scenario's EventID (B1's event sender numbers events; a retry repeats it), else what the event says.
    given = text(data.get("EventID"))
    identity = given or "b1:" + hashlib.sha256(f"{object_type}:{doc_entry}:{trans}".encode()).hexdigest()[:40]
    return Event(identity, doc_entry, trans, object_type, text(data.get("SourceDB")))


class ServiceLayer:
    """One Service Layer login shared by every read; a second login only after B1 refused the session."""

    def __init__(self, settings: SapB1Settings, http: aiohttp.ClientSession, provider: str) -> None:
        self.settings = settings
        self.http = http
        self.provider = provider
        self.root = f"{(settings.base_url or '').rstrip('/')}/b1s/v1"
        self._session: str | None = None
        self._lock = asyncio.Lock()
        self.logins = 0

    async def session(self) -> str:
        if self._session is not None:
            return self._session
        async with self._lock:
            if self._session is None:
                self._session = await self._login()
            return self._session

    async def _relogin(self, refused: str) -> str:
        async with self._lock:  # concurrent reads refused the same session: one login between them
            if self._session in (None, refused):
                self._session = await self._login()
            assert self._session is not None
            return self._session

    async def _login(self) -> str:
        self.logins += 1
        body = {"CompanyDB": self.settings.company_db, "UserName": self.settings.username,
                "Password": secret(self.settings.password)}
        try:
            answer = await fetch_json(self.http, self.provider, "POST", f"{self.root}/Login", what="a login", json=body)
        except ProviderRejected as exc:
            code, _ = b1_error(exc.body)
            raise ProviderRejected(self.provider, f"login refused (code {code}): check SAP_B1_COMPANY_DB, "
                                                  "SAP_B1_USERNAME and SAP_B1_PASSWORD", status=exc.status) from exc
        session = answer.get("SessionId")
        if not isinstance(session, str) or not session:
            raise ProviderUnavailable(self.provider, "login answered without a SessionId")
        return session

    async def get(self, path: str, what: str, **params: str) -> dict[str, Any] | None:
        """A Service Layer read; None when B1 says there is no such record."""
        session = await self.session()
        for attempt in (1, 2):
            try:
                return await fetch_json(self.http, self.provider, "GET", f"{self.root}/{path}", what=what,
                                        params=params or None, headers={
                                            "Cookie": f"B1SESSION={session}", "Prefer": f"odata.maxpagesize={PAGE_SIZE}"})
            except ProviderRejected as exc:
                code, _ = b1_error(exc.body)
                if (exc.status == 401 or code == INVALID_SESSION) and attempt == 1:
                    session = await self._relogin(session)
                    continue
                if exc.status == 404 or code == NOT_FOUND:
                    return None
                raise ProviderRejected(self.provider, f"{what} refused (code {code})", status=exc.status) from exc
        raise AssertionError("unreachable")


class SapB1Source(WebhookSource[SapB1Settings]):
    name: ClassVar[str] = "sap-b1"
    Settings: ClassVar[type[IntegrationSettings]] = SapB1Settings

    def __init__(self, settings: SapB1Settings, http: aiohttp.ClientSession) -> None:
        super().__init__(settings, http)
        self.clock: Callable[[], datetime] = utcnow
        self.service_layer = ServiceLayer(settings, http, self.name)

    def verify(self, request: InboundRequest) -> None:
        given = basic_credentials(request.headers.get("Authorization", ""))
        if given is None:
            raise SignatureInvalid("Authorization: Basic credentials missing")
        user, password = given
        # Both compared, always: which of the two was wrong is not told by the time taken.
        user_ok = digest_matches(self.settings.webhook_user or "", [user])
        password_ok = digest_matches(secret(self.settings.webhook_password), [password])
        if not (user_ok and password_ok):
            raise SignatureInvalid("Basic credentials do not match")

    async def parse(self, request: InboundRequest) -> Received:
        event = event_of(request.body)
        if event.object_type != PAYMENT_OBJECT or event.trans_type not in ACTED_ON:
            return Received(event_id=event.event_id, event_type=f"object {event.object_type}.{event.trans_type}")
        if event.source_db and self.settings.company_db and event.source_db.lower() != self.settings.company_db.lower():
            return Received(event_id=event.event_id, event_type="IncomingPayments (another company)")
        return Received(event_id=event.event_id, event_type=f"IncomingPayments.{event.trans_type}", resolve_later=True)

    async def resolve(self, stored: InboundRequest, access: PlatformAccess) -> Received:
        event = event_of(stored.body)
        payments = await self.payments_of(event.doc_entry, stored.received_at)
        if payments is None:
            return Received(event_id=event.event_id, event_type="IncomingPayments (gone or cancelled)")
        return Received(event_id=event.event_id, event_type=f"IncomingPayments.{event.trans_type}", payments=payments)

    def _currency(self, code: Any) -> str:
        try:
            return normalise_currency(str(code or ""))
        except (CurrencyError, ValueError):
            return self.settings.currency

    async def payments_of(self, doc_entry: str, received_at: datetime) -> tuple[PaymentEvent, ...] | None:
        sl = self.service_layer
        payment = await sl.get(f"IncomingPayments({doc_entry})", f"incoming payment {doc_entry}")
        if payment is None or payment.get("Cancelled") == "tYES":
            return None
        currency = self._currency(payment.get("DocCurrency"))
        invoices = []
        for line in payment.get("PaymentInvoices") or []:
            if not isinstance(line, dict) or line.get("InvoiceType", "it_Invoice") != "it_Invoice":
                continue
            entry = str(line.get("DocEntry") or "")
            if not entry.isdigit():
                continue
            invoice = await sl.get(f"Invoices({entry})", f"invoice {entry}")
            if invoice is None:
                continue
            currency_of_invoice = self._currency(invoice.get("DocCurrency") or payment.get("DocCurrency"))
            total = money(invoice.get("DocTotal"), currency_of_invoice, "Invoices.DocTotal")
            paid = money(invoice.get("PaidToDate", 0), currency_of_invoice, "Invoices.PaidToDate")
            invoices.append(AppliedInvoice(
                key=entry, number=text(invoice.get("NumAtCard")) or text(invoice.get("DocNum")),
                other_numbers=tuple(n for n in (text(invoice.get("DocNum")),) if n),
                applied=money(line.get("SumApplied"), currency_of_invoice, "PaymentInvoices.SumApplied"),
                total=total, due=total - paid))
        card_code = text(payment.get("CardCode"))
        partner = await sl.get(f"BusinessPartners('{quote(card_code.replace(chr(39), chr(39) * 2), safe='')}')",
                               f"business partner {card_code}") if card_code and invoices else None
        partner = partner or {}
        paid_on = payment.get("DocDate")
        return payment_events(PostedPayment(
            source=self.name, key=doc_entry, amount=money(self.total(payment), currency, "IncomingPayments total"),
            occurred_at=parse_time(paid_on, received_at), date_only=is_bare_date(paid_on),
            customer_id=card_code, customer_name=text(payment.get("CardName")) or text(partner.get("CardName")),
            email=text(partner.get("EmailAddress")), phone=text(partner.get("Cellular")) or text(partner.get("Phone1")),
            invoices=tuple(invoices), details={"b1_docnum": str(payment.get("DocNum") or "")}))

    @staticmethod
    def total(payment: dict[str, Any]) -> Decimal:
        """An incoming payment's whole amount: its DocTotal where given, else cash + transfer + checks + cards."""
        if payment.get("DocTotal") not in (None, ""):
            return Decimal(str(payment["DocTotal"]))
        parts = [payment.get("CashSum"), payment.get("TransferSum")]
        parts += [c.get("CheckSum") for c in payment.get("PaymentChecks") or [] if isinstance(c, dict)]
        parts += [c.get("CreditSum") for c in payment.get("PaymentCreditCards") or [] if isinstance(c, dict)]
        return sum((Decimal(str(p)) for p in parts if p not in (None, "")), Decimal(0))

    async def sweep(self, since: datetime | None, access: PlatformAccess) -> Swept:
        """Incoming payments updated on or after the mark's day (B1 keeps a date only), as Received with the
        webhook's payment refs; the mark is the last UpdateDate seen (its day is read again next time: what was
        reported is recognised, what was posted later that day is not missed)."""
        now = self.clock()
        mark = since or now - LOOKBACK
        day = mark.astimezone(UTC).date().isoformat()
        received = []
        path, params = "IncomingPayments", {"$filter": f"UpdateDate ge '{day}'", "$select": "DocEntry,UpdateDate",
                                            "$orderby": "DocEntry"}
        for _ in range(SWEEP_PAGES):
            page = await self.service_layer.get(path, "incoming payments updated", **params) or {}
            for row in page.get("value") or []:
                entry, updated = str(row.get("DocEntry") or ""), parse_time(row.get("UpdateDate"), mark)
                if not entry.isdigit():
                    continue
                payments = await self.payments_of(entry, now)
                if payments:
                    received.append(Received(event_id=f"b1-sweep:{entry}@{sweep_stamp(payments)}",
                                             event_type="IncomingPayments.swept", payments=payments))
                mark = max(mark, updated)
            following = page.get("odata.nextLink") or page.get("@odata.nextLink")
            if not following:
                break
            path, _, query = str(following).partition("?")
            params = dict(parse_qsl(query))
        return Swept(tuple(received), mark)

    async def check(self, settings: Any) -> list[Finding]:
        try:
            await self.service_layer.session()
        except ProviderRejected as exc:
            return [problem(str(exc))]
        return [ok(f"logged in to the Service Layer (company {self.settings.company_db})")]

