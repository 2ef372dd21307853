"""QuickBooks Online: thin, batched, signed notifications, resolved after the answer through the accounting API.

`intuit-signature` is base64 HMAC-SHA256 of the raw body keyed with the app's verifier token (not the OAuth client
secret). Two payload formats, sniffed: the legacy object (`eventNotifications[].dataChangeEvent.entities[]`, one
group per realm) and the CloudEvents array (`qbo.payment.created.v1`, `intuitaccountid` = realm); one POST may name
up to 100 entities across several companies. Intuit wants a 200 within 3 seconds, so the notification is only
verified and stored (`Received.resolve_later`) and `resolve` reads it afterwards: each `Payment` Create/Update by
`GET /v3/company/{realm}/payment/{id}`, the invoices of its `Line[].LinkedTxn` (`DocNumber`, `TotalAmt`, `Balance`,
`BillEmail`) and the customer (email, phone); an `Invoice` update whose balance fell counts too, as the invoice's
state (cumulative, no payment id), so the Payment that moved the same money is recognised as the same payment
whichever arrives first. A realm paybot is not connected to, and an entity that no longer exists, are recorded as
ignored with why. The catch-up sweep asks Change Data Capture (`/cdc?entities=Payment,Invoice&changedSince=…`).

Tokens come from `bot.services.oauth` (`PlatformAccess`); a 401 is one refresh and one retry; 429 and 5xx back
off as Intuit's Retry-After says (`bot.services.verifier`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import urlencode

from pydantic import SecretStr

from bot.domain.money import CurrencyError, Money
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import PayloadInvalid, ProviderError, ProviderRejected, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.oauth import OAuthApp, Tenant
from bot.integrations.sources.base import InboundRequest, PlatformAccess, Received, Swept, WebhookSource
from bot.integrations.sources.common import digest_matches, fetch_json, json_object, parse_time, path_segment
from bot.settings import Settings as CoreSettings

log = logging.getLogger(__name__)
SCOPES = ("com.intuit.quickbooks.accounting",)
READS_AT_ONCE = 4  # API reads in flight per notification: a 50-entity batch is read briskly, Intuit not hammered
#: What paybot acts on: money arriving (a Payment created or changed) or an invoice whose balance may have fallen.
ACTED_ON = {("payment", "create"), ("payment", "update"), ("invoice", "update")}
CLOUD_OPERATIONS = {"created": "create", "updated": "update", "deleted": "delete", "voided": "void",
                    "emailed": "emailed", "merged": "merge"}


class QuickBooksSettings(IntegrationSettings):
    model_config = settings_config("QUICKBOOKS")
    required = ("verifier_token",)

    verifier_token: SecretStr | None = None  # the app's Webhooks page: signs every notification
    client_id: str | None = None             # the app's Keys & credentials: `paybot connect quickbooks`
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None   # optional: seeds the token store once (else `paybot connect`)
    realm_id: str | None = None              # the company the seeded refresh token belongs to
    base_url: str = "https://quickbooks.api.intuit.com"  # sandbox: https://sandbox-quickbooks.api.intuit.com
    token_url: str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    authorize_url: str = "https://appcenter.intuit.com/connect/oauth2"
    minor_version: int = 75


def sign(body: bytes, verifier_token: str) -> str:
    """The `intuit-signature` header Intuit would send."""
    return base64.b64encode(hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()).decode()


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity a notification names."""

    realm: str
    name: str       # lower case: payment, invoice, …
    id: str
    operation: str  # lower case: create, update, delete, void, …
    when: str
    key: str        # what makes a redelivery of this entity's notice recognisable


def entities(body: bytes) -> list[Entity]:
    """Every entity a notification names, in either format; PayloadInvalid for anything else."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadInvalid(f"body is not valid JSON: {exc}") from exc
    if isinstance(data, list):
        return [_cloud_event(event) for event in data]
    if isinstance(data, dict) and isinstance(data.get("eventNotifications"), list):
        return [_legacy(group, item) for group in data["eventNotifications"]
                for item in _list((group or {}).get("dataChangeEvent", {}).get("entities"))]
    raise PayloadInvalid("neither a CloudEvents array nor eventNotifications")


def body_is_array(body: bytes) -> bool:
    return body.lstrip()[:1] == b"["


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadInvalid("dataChangeEvent.entities is not a list")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise PayloadInvalid(f"missing field {what}")
    return str(value)


def _cloud_event(event: Any) -> Entity:
    if not isinstance(event, dict) or event.get("specversion") != "1.0":
        raise PayloadInvalid("a CloudEvents element without specversion 1.0")
    kind = _text(event.get("type"), "type").split(".")  # qbo.payment.created.v1
    if len(kind) < 3 or kind[0] != "qbo":
        raise PayloadInvalid("type is not qbo.<entity>.<operation>.v1")
    return Entity(realm=_text(event.get("intuitaccountid"), "intuitaccountid"), name=kind[1].lower(),
                  id=_text(event.get("intuitentityid"), "intuitentityid"),
                  operation=CLOUD_OPERATIONS.get(kind[2].lower(), kind[2].lower()),
                  when=str(event.get("time") or ""), key=_text(event.get("id"), "id"))


def _legacy(group: Any, item: Any) -> Entity:
    if not isinstance(group, dict) or not isinstance(item, dict):
        raise PayloadInvalid("eventNotifications holds something other than objects")
    realm = _text(group.get("realmId"), "realmId")
    name, entity_id = _text(item.get("name"), "name"), _text(item.get("id"), "id")
    operation, when = _text(item.get("operation"), "operation"), str(item.get("lastUpdated") or "")
    return Entity(realm=realm, name=name.lower(), id=entity_id, operation=operation.lower(), when=when,
                  key=json.dumps([realm, name, entity_id, operation, item.get("lastUpdated")]))


class Gone(Exception):
    """The API says the entity does not exist (deleted, or never was)."""


def money(value: Any, currency: str) -> Money:
    try:
        return Money.of(Decimal(str(value)), currency)
    except (InvalidOperation, ValueError, CurrencyError) as exc:
        raise PayloadInvalid(f"bad amount or currency: {value!r} {currency!r}") from exc


class QuickBooksSource(WebhookSource[QuickBooksSettings]):
    name: ClassVar[str] = "quickbooks"
    Settings: ClassVar[type[IntegrationSettings]] = QuickBooksSettings

    def verify(self, request: InboundRequest) -> None:
        given = request.headers.get("intuit-signature", "").strip()
        if not given or not digest_matches(sign(request.body, secret(self.settings.verifier_token)), [given]):
            raise SignatureInvalid("intuit-signature missing or does not match")

    async def parse(self, request: InboundRequest) -> Received:
        named = entities(request.body)
        acted = [e for e in named if (e.name, e.operation) in ACTED_ON]
        # A redelivery of the same batch is the same event: one CloudEvent is known by its id, a batch by a hash
        # of what identifies each notice (the CloudEvents ids; legacy: realm, name, id, operation, lastUpdated).
        digest = hashlib.sha256("\n".join(sorted(e.key for e in named)).encode()).hexdigest()[:40]
        cloud_id = named[0].key if len(named) == 1 and body_is_array(request.body) else None
        kinds = sorted({f"{e.name.capitalize()}.{e.operation.capitalize()}" for e in (acted or named)})
        event_type = f"{len(named)} entit{'y' if len(named) == 1 else 'ies'}: {', '.join(kinds)}"
        return Received(event_id=cloud_id or f"qbo-{digest}", event_type=event_type if acted else f"not acted on: {event_type}",
                        resolve_later=bool(acted))

    # --- after the answer ---
    async def resolve(self, stored: InboundRequest, access: PlatformAccess) -> Received:
        named = [e for e in entities(stored.body) if (e.name, e.operation) in ACTED_ON]
        connected = set(await access.tenants())
        reads = Reads(self, access)
        found = await asyncio.gather(*(self._entity(e, connected, reads) for e in named))
        payments = tuple(p for events, _ in found for p in events)
        skipped = [why for _, why in found if why]
        for why in skipped:
            log.info("quickbooks: %s", why)
        return Received(event_id="", event_type="; ".join(skipped)[:120] if not payments else "resolved",
                        payments=payments)

    async def _entity(self, entity: Entity, connected: set[str], reads: Reads) -> tuple[list[PaymentEvent], str]:
        if entity.realm not in connected:
            return [], f"realm {entity.realm} is not connected"
        try:
            if entity.name == "payment":
                return await self.payment_events(entity.realm, await reads.get(entity.realm, "payment", entity.id),
                                                 reads), ""
            events = await self.invoice_events(entity.realm, await reads.get(entity.realm, "invoice", entity.id),
                                               reads)
            return events, "" if events else f"invoice {entity.id}: nothing paid on it"
        except Gone:
            return [], f"{entity.name} {entity.id} no longer exists"

    async def payment_events(self, realm: str, payment: dict[str, Any], reads: Reads) -> list[PaymentEvent]:
        """One event per invoice the payment is applied to (each its own payment_ref), or one for the whole."""
        currency = str((payment.get("CurrencyRef") or {}).get("value") or "USD")
        customer = await reads.customer(realm, (payment.get("CustomerRef") or {}).get("value"))
        when, date_only = self._when(payment)
        base = dict(source=self.name, kind=PaymentKind.PAYMENT, occurred_at=when, date_only=date_only,
                    customer_external_id=_ref(payment.get("CustomerRef")),
                    payer_name=(payment.get("CustomerRef") or {}).get("name") or customer.get("DisplayName"),
                    payer_email=_email(customer.get("PrimaryEmailAddr")),
                    payer_phone=(customer.get("PrimaryPhone") or {}).get("FreeFormNumber"))
        details = {"realm": realm, "payment_id": str(payment.get("Id")),
                   **({"reference": str(payment["PaymentRefNum"])} if payment.get("PaymentRefNum") else {})}
        linked = [(line, txn["TxnId"]) for line in payment.get("Line") or []
                  for txn in line.get("LinkedTxn") or [] if txn.get("TxnType") == "Invoice" and txn.get("TxnId")]
        if not linked:
            return [PaymentEvent(amount=money(payment.get("TotalAmt"), currency), payment_ref=payment_ref(
                realm, payment.get("Id")), details=details, **base)]  # type: ignore[arg-type]
        events = []
        for line, invoice_id in linked:
            try:
                invoice = await reads.get(realm, "invoice", str(invoice_id))
            except Gone:
                invoice = {"Id": str(invoice_id)}
            events.append(PaymentEvent(
                amount=money(line.get("Amount"), currency), payment_ref=payment_ref(realm, payment.get("Id"), invoice_id),
                details=details, **base | self._invoice_facts(invoice, currency)))  # type: ignore[arg-type]
        return events

    async def invoice_events(self, realm: str, invoice: dict[str, Any], reads: Reads) -> list[PaymentEvent]:
        """An invoice's state: what has been paid on it so far (cumulative). No payment id: the Payment that moved
        this money is then recognised as the same payment, whichever of the two arrives first."""
        currency = str((invoice.get("CurrencyRef") or {}).get("value") or "USD")
        total, balance = money(invoice.get("TotalAmt"), currency), money(invoice.get("Balance"), currency)
        if (total - balance).minor <= 0:
            return []
        customer = await reads.customer(realm, (invoice.get("CustomerRef") or {}).get("value"))
        when = parse_time((invoice.get("MetaData") or {}).get("LastUpdatedTime"), datetime.now(UTC))
        facts = self._invoice_facts(invoice, currency)
        return [PaymentEvent(
            source=self.name, kind=PaymentKind.PAYMENT, amount=total - balance, occurred_at=when, cumulative=True,
            customer_external_id=_ref(invoice.get("CustomerRef")),
            payer_name=(invoice.get("CustomerRef") or {}).get("name") or customer.get("DisplayName"),
            payer_email=facts.pop("payer_email", None) or _email(customer.get("PrimaryEmailAddr")),
            payer_phone=(customer.get("PrimaryPhone") or {}).get("FreeFormNumber"),
            details={"realm": realm, "invoice_id": str(invoice.get("Id"))}, **facts)]

    @staticmethod
    def _invoice_facts(invoice: dict[str, Any], currency: str) -> dict[str, Any]:
        facts: dict[str, Any] = {"invoice_external_id": str(invoice["Id"])}
        if invoice.get("DocNumber"):
            facts["invoice_numbers"] = (str(invoice["DocNumber"]),)
        if invoice.get("TotalAmt") is not None:
            facts["invoice_total"] = money(invoice["TotalAmt"], currency)
        if invoice.get("Balance") is not None:
            facts["reported_balance"] = money(invoice["Balance"], currency)
        if email := _email(invoice.get("BillEmail")):
            facts["payer_email"] = email
        return facts

    @staticmethod
    def _when(payment: dict[str, Any]) -> tuple[datetime, bool]:
        created = (payment.get("MetaData") or {}).get("CreateTime")
        if isinstance(created, str) and created:
            return parse_time(created, datetime.now(UTC)), False
        return parse_time(payment.get("TxnDate"), datetime.now(UTC)), True

    # --- the catch-up sweep ---
    async def sweep(self, since: datetime | None, access: PlatformAccess) -> Swept:
        """Change Data Capture per connected realm: changed Payments first, then Invoices (an invoice a payment
        was applied to then restates money already recorded: a duplicate, nobody told twice)."""
        start = since or datetime.now(UTC).replace(microsecond=0)
        reads = Reads(self, access)
        received: list[Received] = []
        marks = []
        for realm in await access.tenants():
            query = urlencode({"entities": "Payment,Invoice", "changedSince": start.isoformat()})
            answer = await reads.call(realm, f"cdc?{query}")
            marks.append(parse_time(answer.get("time"), start))
            changed: dict[str, list[dict[str, Any]]] = {}
            for block in answer.get("CDCResponse") or []:
                for group in block.get("QueryResponse") or []:
                    for name in ("Payment", "Invoice"):
                        changed.setdefault(name, []).extend(o for o in group.get(name) or []
                                                            if o.get("status") != "Deleted")
            for obj in changed.get("Payment", []):
                events = await self.payment_events(realm, obj, reads)
                received.append(self._swept(realm, "Payment", obj, events))
            for obj in changed.get("Invoice", []):
                events = await self.invoice_events(realm, obj, reads)
                if events:
                    received.append(self._swept(realm, "Invoice", obj, events))
        return Swept(received=tuple(received), mark=min(marks) if marks else start)

    @staticmethod
    def _swept(realm: str, name: str, obj: dict[str, Any], events: list[PaymentEvent]) -> Received:
        updated = (obj.get("MetaData") or {}).get("LastUpdatedTime", "")
        return Received(event_id=f"cdc-{realm}-{name}-{obj.get('Id')}-{updated}"[:255],
                        event_type=f"{name} (catch-up sweep)", payments=tuple(events))

    # --- connecting ---
    def oauth_app(self) -> OAuthApp | None:
        if not self.settings.client_id or not secret(self.settings.client_secret):
            return None
        return OAuthApp(authorize_url=self.settings.authorize_url, token_url=self.settings.token_url,
                        client_id=self.settings.client_id, client_secret=secret(self.settings.client_secret),
                        scopes=SCOPES)

    async def connected(self, access_token: str, callback_query: Mapping[str, str]) -> list[Tenant]:
        """The company the operator chose on Intuit's consent page (`realmId` on the callback) and its name."""
        realm = callback_query.get("realmId", "")
        if not realm:
            raise ProviderRejected(self.name, "the callback named no company (realmId)")
        info = await fetch_json(self.http, self.name, "GET", self._url(realm, f"companyinfo/{path_segment(realm)}"),
                                what="the company", headers=_headers(access_token))
        return [Tenant(realm, str((info.get("CompanyInfo") or {}).get("CompanyName") or realm))]

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """Nothing to call without a token (those live in the database): whether paybot can read what it hears."""
        if self.oauth_app() is None:
            return [problem("QUICKBOOKS_CLIENT_ID and QUICKBOOKS_CLIENT_SECRET are not set: notifications are verified "
                            "but cannot be read; set them, then run `paybot connect quickbooks`")]
        return [ok("OAuth app configured; `paybot connect quickbooks` connects a company (notifications for a "
                   "company not connected are recorded and ignored)")]

    def _url(self, realm: str, path: str) -> str:
        joiner = "&" if "?" in path else "?"
        return (f"{self.settings.base_url.rstrip('/')}/v3/company/{path_segment(realm)}/{path}"
                f"{joiner}minorversion={self.settings.minor_version}")


def payment_ref(realm: str, payment_id: Any, invoice_id: Any = None) -> str:
    """The same for a webhook's and a sweep's report of one payment (applied to one invoice)."""
    return f"{realm}:{payment_id}" + (f":{invoice_id}" if invoice_id is not None else "")


def _ref(value: Any) -> str | None:
    return str(value["value"]) if isinstance(value, dict) and value.get("value") else None


def _email(value: Any) -> str | None:
    return str(value["Address"]) if isinstance(value, dict) and value.get("Address") else None


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


class Reads:
    """One notification's (or sweep's) reads: a token per realm, one refresh after a 401, each customer read once,
    at most READS_AT_ONCE in flight."""

    def __init__(self, source: QuickBooksSource, access: PlatformAccess) -> None:
        self.source = source
        self.access = access
        self._gate = asyncio.Semaphore(READS_AT_ONCE)
        self._customers: dict[tuple[str, str], asyncio.Task[dict[str, Any]]] = {}

    async def get(self, realm: str, entity: str, entity_id: str) -> dict[str, Any]:
        answer = await self.call(realm, f"{entity}/{path_segment(entity_id)}")
        found = next((v for k, v in answer.items() if k.lower() == entity and isinstance(v, dict)), None)
        if found is None:
            raise Gone()
        return found

    async def customer(self, realm: str, customer_id: Any) -> dict[str, Any]:
        if not customer_id:
            return {}
        key = (realm, str(customer_id))
        if key not in self._customers:
            self._customers[key] = asyncio.ensure_future(self._customer(realm, str(customer_id)))
        return await self._customers[key]

    async def _customer(self, realm: str, customer_id: str) -> dict[str, Any]:
        try:
            return await self.get(realm, "customer", customer_id)
        except Gone:
            return {}

    async def call(self, realm: str, path: str) -> dict[str, Any]:
        async with self._gate:
            token = await self.access.token(realm)
            try:
                return await self._fetch(realm, path, token)
            except ProviderRejected as exc:
                if exc.status != 401:
                    raise
            token = await self.access.refreshed(realm, token)  # once; a second 401 is the platform's refusal
            return await self._fetch(realm, path, token)

    async def _fetch(self, realm: str, path: str, token: str) -> dict[str, Any]:
        try:
            return await fetch_json(self.source.http, self.source.name, "GET", self.source._url(realm, path),
                                    what=path.split("?")[0], headers=_headers(token))
        except ProviderRejected as exc:
            if exc.status == 400 and _fault_code(exc.body) == "610":
                raise Gone() from exc
            raise


def _fault_code(body: str) -> str:
    """The first error code of Intuit's `Fault` envelope (`{"Fault": {"Error": [{"code": "610", …}]}}`)."""
    try:
        data = json_object(body.encode())
    except (PayloadInvalid, ProviderError):
        return ""
    envelope = data.get("Fault") or data.get("fault") or {}
    errors = envelope.get("Error") or envelope.get("error") or [{}]
    return str(errors[0].get("code") or "") if isinstance(errors, list) and errors else ""
