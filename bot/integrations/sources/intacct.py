"""Sage Intacct: a platform trigger on ARPYMT (add) posting the body the README defines, with "Use webhook delivery".

Authenticity: `Authorization: Bearer <JWT>` checked against Sage's published keys (`SAGE_INTACCT_JWKS_URL`):
the signature with the key its `kid` names, `iss`, `aud`, `exp`/`nbf` (see `bot.integrations.jwks`). The JWT is
checked before anything is stored; a JWKS endpoint that is down answers 503 (Sage retries on 503), never a guess.

The body names the payment only (`RECORDNO`): paybot reads it back through the REST API with OAuth2 client
credentials — the ARPYMT record and its applied lines (`ARPYMTDETAILS[].RECORDKEY`, `TRX_PAYMENTAMOUNT`), each
ARINVOICE it pays (`RECORDID` is the printed number; `TOTALENTERED`, `TOTALPAID`, `TOTALDUE`), and the customer's
contact (`DISPLAYCONTACT.EMAIL1`, `PHONE1`/`CELLPHONE`). Sage sends every retry with the same `Idempotency-Key`:
it is the event id, so a retry is a duplicate; the payment refs (`{ARPYMT}/{ARINVOICE}`) make a sweep's report of
the same payment one too. The catch-up sweep queries ARPYMT by `WHENMODIFIED`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from collections.abc import Callable
from typing import Any, ClassVar

import aiohttp
from pydantic import SecretStr

from bot.domain.payments import PaymentEvent
from bot.errors import PayloadInvalid, ProviderRejected, ProviderUnavailable, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.client_credentials import ClientCredentials, TokenCache, read_with_token
from bot.integrations.jwks import Expected, KeySet, bearer, unverified_header, verified_claims
from bot.integrations.sources.applied import (AppliedInvoice, PostedPayment, LOOKBACK, money,
                                              optional_money, payment_events, text)
from bot.integrations.sources.base import InboundRequest, PlatformAccess, Received, Swept, WebhookSource
from bot.integrations.sources.common import is_bare_date, json_object, method_details, parse_time, path_segment
from bot.settings import Settings as CoreSettings
from bot.storage.database import utcnow

log = logging.getLogger(__name__)
OBJECT = "ARPYMT"
IDEMPOTENCY_HEADER = "Idempotency-Key"
NOT_POSTED = frozenset({"draft", "voided", "reversed", "declined", "reversal"})
QUERY_PAGE = 100
SWEEP_PAGES = 20  # per sweep; the mark moves to the last one read, the next sweep goes on from there
CUSTOMER_FIELDS = ("CUSTOMERID", "NAME", "DISPLAYCONTACT.EMAIL1", "DISPLAYCONTACT.PHONE1", "DISPLAYCONTACT.CELLPHONE")


class SageIntacctSettings(IntegrationSettings):
    model_config = settings_config("SAGE_INTACCT")
    required = ("jwks_url", "issuer", "audience", "client_id", "client_secret", "username")

    jwks_url: str | None = None        # where Sage publishes the keys that sign trigger JWTs
    issuer: str | None = None          # the tokens' `iss`
    audience: str | None = None        # the tokens' `aud` (the Client ID entered in the trigger)
    jwt_leeway_seconds: int = 60       # clock skew allowed on exp/nbf
    client_id: str | None = None       # REST API app (client credentials)
    client_secret: SecretStr | None = None
    username: str | None = None        # the web-services user the app acts as
    company_id: str | None = None      # the company; a trigger naming another is ignored
    base_url: str = "https://api.intacct.com/ia/api/v1"
    token_url: str = "https://api.intacct.com/ia/api/v1/oauth2/token"


@dataclass(frozen=True, slots=True)
class Trigger:
    record_no: str
    event: str
    company_id: str | None


def trigger_of(body: bytes) -> Trigger:
    data = json_object(body)
    if data.get("object") != OBJECT:
        raise PayloadInvalid(f"object must be {OBJECT}")
    record = data.get("RECORDNO")
    if not isinstance(record, (str, int)) or not str(record).strip():
        raise PayloadInvalid("missing field RECORDNO")
    return Trigger(str(record).strip(), str(data.get("event") or "add"), text(data.get("companyId")))


def ia_result(answer: dict[str, Any], what: str) -> Any:
    """The `ia::result` of a REST answer; an `ia::error` inside a 2xx is the platform failing, not us."""
    result = answer.get("ia::result")
    if isinstance(result, dict) and "ia::error" in result:
        raise ProviderUnavailable("sage-intacct", f"{what}: {error_code(result['ia::error'])}")
    if result is None:
        raise ProviderUnavailable("sage-intacct", f"{what}: answer without ia::result")
    return result


def error_code(error: Any) -> str:
    """Intacct's error envelope `{"code", "message", "errorId", …}` as its code (a message may quote input)."""
    return str(error.get("code") or error.get("errorId") or "error")[:80] if isinstance(error, dict) else "error"


def envelope_code(body: str) -> str:
    try:
        answer = json_object(body.encode())
    except PayloadInvalid:
        return "no error envelope"
    result = answer.get("ia::result")
    return error_code(result.get("ia::error") if isinstance(result, dict) else None)


class SageIntacctSource(WebhookSource[SageIntacctSettings]):
    name: ClassVar[str] = "sage-intacct"
    Settings: ClassVar[type[IntegrationSettings]] = SageIntacctSettings

    def __init__(self, settings: SageIntacctSettings, http: aiohttp.ClientSession) -> None:
        super().__init__(settings, http)
        self.clock: Callable[[], datetime] = utcnow  # replaced by tests (token and key caches read it)
        self.keys = KeySet(self.name, settings.jwks_url or "", http, lambda: self.clock())
        username = settings.username or ""
        if settings.company_id and "@" not in username:
            username = f"{username}@{settings.company_id}"  # Intacct's client-credentials user is user@company
        self.tokens = TokenCache(self.name, ClientCredentials(
            token_url=settings.token_url, client_id=settings.client_id or "",
            client_secret=secret(settings.client_secret), extra={"username": username}), http, lambda: self.clock())
        self.expected = Expected(settings.issuer or "", settings.audience or "",
                                 timedelta(seconds=settings.jwt_leeway_seconds))

    def verify(self, request: InboundRequest) -> None:
        """What can be checked without Sage's keys: a Bearer JWT of an accepted algorithm naming a key. The
        signature itself is checked in `parse`, which may have to fetch the keys."""
        unverified_header(bearer(request.headers.get("Authorization", "")))

    async def parse(self, request: InboundRequest) -> Received:
        token = bearer(request.headers.get("Authorization", ""))
        await verified_claims(self.keys, token, self.expected, request.received_at)
        trigger = trigger_of(request.body)
        event_id = self.event_id(request, trigger)
        if self.settings.company_id and trigger.company_id and trigger.company_id != self.settings.company_id:
            return Received(event_id=event_id, event_type=f"{OBJECT}.{trigger.event} (another company)")
        return Received(event_id=event_id, event_type=f"{OBJECT}.{trigger.event}", resolve_later=True)

    @staticmethod
    def event_id(request: InboundRequest, trigger: Trigger) -> str:
        key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        if key and len(key) <= 200 and key.isprintable():
            return key
        # Without Sage's key, one payment's event is one event: a retry is still a duplicate.
        return "intacct:" + hashlib.sha256(f"{trigger.record_no}:{trigger.event}".encode()).hexdigest()[:40]

    async def resolve(self, stored: InboundRequest, access: PlatformAccess) -> Received:
        trigger = trigger_of(stored.body)
        event_type = f"{OBJECT}.{trigger.event}"
        payments = await self.payments_of(trigger.record_no, stored.received_at)
        if payments is None:
            return Received(event_id=f"intacct:{trigger.record_no}", event_type=f"{event_type} (payment not posted)")
        return Received(event_id=f"intacct:{trigger.record_no}", event_type=event_type, payments=payments)

    # --- the REST API -------------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.settings.base_url.rstrip('/')}/{path}"

    async def _object(self, path: str, what: str) -> dict[str, Any] | None:
        """One record by key; None when Intacct says there is none (deleted since the trigger fired)."""
        try:
            answer = await read_with_token(self.tokens, "GET", self._url(path), what=what)
        except ProviderRejected as exc:
            if exc.status == 404:
                return None
            raise ProviderRejected(self.name, f"{what} refused ({envelope_code(exc.body)})", status=exc.status) from exc
        result = ia_result(answer, what)
        if not isinstance(result, dict):
            raise ProviderUnavailable(self.name, f"{what}: ia::result is not a record")
        return result

    async def query(self, body: dict[str, Any], what: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """`POST services/core/query`: one page of records and the `ia::meta` that says whether more follow."""
        answer = await read_with_token(self.tokens, "POST", self._url("services/core/query"), what=what, json=body)
        result = ia_result(answer, what)
        if not isinstance(result, list):
            raise ProviderUnavailable(self.name, f"{what}: ia::result is not a list")
        meta = answer.get("ia::meta")
        return [r for r in result if isinstance(r, dict)], meta if isinstance(meta, dict) else {}

    async def payments_of(self, record_no: str, received_at: datetime) -> tuple[PaymentEvent, ...] | None:
        """The ARPYMT's payments, one per invoice it pays; None when it does not exist or is not posted."""
        payment = await self._object(f"objects/accounts-receivable/payment/{path_segment(record_no)}",
                                     f"payment {record_no}")
        if payment is None or str(payment.get("STATE") or "").strip().lower() in NOT_POSTED:
            return None
        currency = text(payment.get("CURRENCY")) or text(payment.get("BASECURR"))
        lines = [line for line in payment.get("ARPYMTDETAILS") or [] if isinstance(line, dict)]
        invoices = []
        for line in lines:
            invoice_key = text(line.get("RECORDKEY"))
            if invoice_key is None:
                continue
            invoice = await self._object(f"objects/accounts-receivable/invoice/{path_segment(invoice_key)}",
                                         f"invoice {invoice_key}")
            if invoice is None:
                continue
            currency = currency or text(invoice.get("CURRENCY"))
            if currency is None:
                raise PayloadInvalid("payment names no currency")
            applied = line.get("TRX_PAYMENTAMOUNT", line.get("PAYMENTAMOUNT"))
            total = optional_money(invoice.get("TOTALENTERED"), currency, "ARINVOICE.TOTALENTERED")
            paid = optional_money(invoice.get("TOTALPAID"), currency, "ARINVOICE.TOTALPAID")
            due = optional_money(invoice.get("TOTALDUE"), currency, "ARINVOICE.TOTALDUE")
            if due is None and total is not None and paid is not None:
                due = total - paid  # TOTALDUE not given: what is left after everything paid so far
            invoices.append(AppliedInvoice(
                key=invoice_key, number=text(invoice.get("RECORDID")),
                applied=money(applied, currency, "ARPYMTDETAIL.TRX_PAYMENTAMOUNT"), total=total, due=due))
        if currency is None:
            raise PayloadInvalid("payment names no currency")
        customer_id = text(payment.get("CUSTOMERID"))
        contact = await self.contact(customer_id) if customer_id and invoices else {}
        paid_on = payment.get("RECEIPTDATE") or payment.get("WHENPAID") or payment.get("PAYMENTDATE")
        return payment_events(PostedPayment(
            source=self.name, key=record_no,
            amount=money(payment.get("TOTALENTERED", payment.get("TOTALPAID")), currency, "ARPYMT.TOTALENTERED"),
            occurred_at=parse_time(paid_on, received_at), date_only=is_bare_date(paid_on),
            customer_id=customer_id, customer_name=text(payment.get("CUSTOMERNAME")) or contact.get("NAME"),
            email=contact.get("DISPLAYCONTACT.EMAIL1"),
            phone=contact.get("DISPLAYCONTACT.CELLPHONE") or contact.get("DISPLAYCONTACT.PHONE1"),
            invoices=tuple(invoices),
            details={"intacct_state": str(payment.get("STATE") or ""), **method_details(payment.get("PAYMENTMETHOD"))},
        ))

    async def contact(self, customer_id: str) -> dict[str, str]:
        """The customer's display contact (email, phones), by CUSTOMERID."""
        rows, _ = await self.query({"object": "accounts-receivable/customer", "fields": list(CUSTOMER_FIELDS),
                                    "filters": [{"$eq": {"CUSTOMERID": customer_id}}], "start": 1, "size": 1},
                                   f"customer {customer_id}")
        return {k: str(v).strip() for k, v in (rows[0] if rows else {}).items() if v not in (None, "")}

    async def sweep(self, since: datetime | None, access: PlatformAccess) -> Swept:
        """ARPYMT records modified since the mark, oldest first (`WHENMODIFIED`, Intacct's clock), as Received whose
        payment refs are those of the trigger's; the new mark is the last WHENMODIFIED read."""
        now = self.clock()
        mark = since or now - LOOKBACK
        received, start = [], 1
        after = mark.strftime("%Y-%m-%dT%H:%M:%SZ")
        for _ in range(SWEEP_PAGES):
            rows, meta = await self.query({
                "object": "accounts-receivable/payment", "fields": ["RECORDNO", "WHENMODIFIED"],
                "filters": [{"$gt": {"WHENMODIFIED": after}}], "orderBy": [{"WHENMODIFIED": "asc"}],
                "start": start, "size": QUERY_PAGE}, "payments modified")
            for row in rows:
                record_no, modified = text(row.get("RECORDNO")), parse_time(row.get("WHENMODIFIED"), mark)
                if record_no is None:
                    continue
                payments = await self.payments_of(record_no, now)
                if payments:
                    received.append(Received(event_id=f"intacct-sweep:{record_no}@{modified.isoformat()}",
                                             event_type=f"{OBJECT}.swept", payments=payments))
                mark = max(mark, modified)
            following = meta.get("next")
            if not rows or not following:
                break
            start = int(following)
        return Swept(tuple(received), mark)

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """A client-credentials token, then one query (the cheapest authenticated call)."""
        try:
            await self.query({"object": "accounts-receivable/payment", "fields": ["RECORDNO"], "start": 1, "size": 1},
                             "one payment")
        except ProviderRejected as exc:
            return [problem(f"SAGE_INTACCT_CLIENT_ID/_SECRET/_USERNAME were refused (HTTP {exc.status}): {exc}")]
        try:
            await self.keys.key("(check)")
        except SignatureInvalid:
            pass  # the keys were fetched; no key is called that
        except ProviderUnavailable as exc:
            return [problem(f"SAGE_INTACCT_JWKS_URL could not be read: {exc}")]
        return [ok("client credentials accepted and the JWKS read")]
