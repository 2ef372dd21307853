"""Dynamics 365 Business Central: API webhook subscriptions on `salesInvoices` (and `customerPayments`).

BC signs nothing. When a subscription is created or renewed it calls the notification URL with
`?validationToken=…`, which is answered at once with the token as `text/plain`. Every notification then carries
the subscription's `clientState`, compared in constant time with BUSINESS_CENTRAL_CLIENT_STATE: a mismatch is 401
and nothing is stored. BC deletes a subscription answered with any 4xx but 408/429, so a transient fault here is
a 503, never a 4xx.

Notifications are thin (`{"value": [{subscriptionId, clientState, resource, changeType, …}]}`): stored, answered,
and resolved afterwards with OAuth2 client credentials (Microsoft Entra ID) by reading each `salesInvoices({id})`
— or, for `changeType: collection` (more than 1,000 changes), every page of the `$filter` query BC names. An invoice
is acknowledged when something is paid on it: `status` Paid, or `remainingAmount` below the total. BC names no
payment, so the amount is the invoice's state (everything paid so far, `cumulative`), and its `payment_ref` is the
invoice at that amount: a redelivery or a sweep seeing the same state is a duplicate; a further payment is new.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote

import aiohttp
from pydantic import SecretStr

from bot.domain.money import CurrencyError, normalise_currency
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import PayloadInvalid, ProviderRejected, ProviderUnavailable, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.client_credentials import ClientCredentials, TokenCache, read_with_token
from bot.integrations.sources.applied import LOOKBACK, money, text
from bot.integrations.sources.base import InboundRequest, PlatformAccess, Received, Reply, Swept, WebhookSource
from bot.integrations.sources.common import digest_matches, json_object, parse_time
from bot.storage.database import utcnow

API = "api/v2.0"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
NO_INVOICE = "00000000-0000-0000-0000-000000000000"  # an unapplied journal line
MAX_TOKEN = 1024  # a validationToken longer than this is nobody's handshake
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
RESOURCE = re.compile(rf"^/?{re.escape(API)}/companies\((?P<company>{GUID})\)/(?P<entity>salesInvoices|customerPayments)"
                      rf"(?:\((?P<id>{GUID})\))?(?:\?(?P<query>.*))?$")
ACTED_ON = frozenset({"created", "updated", "collection"})
PAID_SOMETHING = frozenset({"Open", "Paid"})
LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)  # an expiry BC did not state: renew at once
MAX_PAGES = 100  # a collection of 100 pages (BC's pages hold up to 20,000) is past any real delay window


class BusinessCentralSettings(IntegrationSettings):
    model_config = settings_config("BUSINESS_CENTRAL")
    required = ("client_state", "tenant_id", "client_id", "client_secret", "company_id")

    client_state: SecretStr | None = None  # the subscription's clientState (up to 2,048 characters)
    tenant_id: str | None = None            # the Microsoft Entra tenant
    client_id: str | None = None            # the Entra app registered in BC (Microsoft Entra applications page)
    client_secret: SecretStr | None = None
    environment: str = "production"
    company_id: str | None = None           # the company's id (GUID) in BC
    notification_url: str | None = None     # default PUBLIC_BASE_URL + /webhooks/business-central
    base_url: str = "https://api.businesscentral.dynamics.com"
    token_url: str | None = None            # default https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token
    currency: str = "USD"                   # the company's local currency (BC leaves currencyCode empty for it)

    def api_root(self) -> str:
        return f"{self.base_url.rstrip('/')}/v2.0/{self.tenant_id}/{self.environment}/{API}"


@dataclass(frozen=True, slots=True)
class Change:
    company: str
    entity: str
    id: str | None
    query: dict[str, str]
    change_type: str


def notifications(body: bytes) -> list[dict[str, Any]]:
    data = json_object(body)
    items = data.get("value")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise PayloadInvalid("value must be a non-empty list of notifications")
    return items


def change_of(item: dict[str, Any]) -> Change | None:
    """What a notification names, if it is a resource paybot reads; None for any other."""
    found = RESOURCE.match(str(item.get("resource") or ""))
    if found is None:
        return None
    query = dict(parse_qsl(found["query"] or ""))
    return Change(found["company"].lower(), found["entity"], found["id"], {k: v for k, v in query.items()
                                                                         if k == "$filter"},
                  str(item.get("changeType") or ""))


class BusinessCentralSource(WebhookSource[BusinessCentralSettings]):
    name: ClassVar[str] = "business-central"
    Settings: ClassVar[type[IntegrationSettings]] = BusinessCentralSettings

    def __init__(self, settings: BusinessCentralSettings, http: aiohttp.ClientSession) -> None:
        super().__init__(settings, http)
        self.clock: Callable[[], datetime] = utcnow  # replaced by tests (the token cache reads it)
        token_url = settings.token_url or f"https://login.microsoftonline.com/{settings.tenant_id}/oauth2/v2.0/token"
        self.tokens = TokenCache(self.name, ClientCredentials(
            token_url=token_url, client_id=settings.client_id or "", client_secret=secret(settings.client_secret),
            scope=SCOPE), http, lambda: self.clock())

    async def handshake(self, request: InboundRequest) -> Reply | None:
        token = request.query.get("validationToken")
        if token is None:
            return None
        if not token or len(token) > MAX_TOKEN or not token.isprintable():
            return Reply(400, "validationToken is empty or not a token")
        return Reply(200, token, "text/plain")

    def verify(self, request: InboundRequest) -> None:
        """Every notification in the body must carry our clientState. An unparseable body is left for `parse`
        to refuse (400); one that parses but names another clientState is 401."""
        try:
            items = notifications(request.body)
        except PayloadInvalid:
            return
        expected = secret(self.settings.client_state)
        for item in items:
            given = item.get("clientState")
            if not isinstance(given, str) or not digest_matches(expected, [given]):
                raise SignatureInvalid("clientState missing or wrong")

    async def parse(self, request: InboundRequest) -> Received:
        items = notifications(request.body)
        for item in items:
            if not isinstance(item.get("clientState"), str):
                raise SignatureInvalid("clientState missing or wrong")
        changes = [c for c in map(change_of, items) if c is not None]
        ours = [c for c in changes if c.company == (self.settings.company_id or "").lower()
                and c.change_type in ACTED_ON]
        kinds = ",".join(sorted({f"{c.entity}.{c.change_type}" for c in changes})) or "other resources"
        return Received(event_id=self.event_id(request.body), event_type=kinds[:120], resolve_later=bool(ours))

    @staticmethod
    def event_id(body: bytes) -> str:
        """BC gives a notification no id; a redelivery is the same bytes, so the body's digest is its identity."""
        return "bc:" + hashlib.sha256(body).hexdigest()[:48]

    async def resolve(self, stored: InboundRequest, access: PlatformAccess) -> Received:
        items = notifications(stored.body)
        changes = [c for c in map(change_of, items) if c is not None]
        payments: dict[str, PaymentEvent] = {}
        for change in changes:
            if change.company != (self.settings.company_id or "").lower() or change.change_type not in ACTED_ON:
                continue
            for invoice in await self.invoices_of(change):
                event = self.payment_of(invoice, stored.received_at)
                if event is not None and event.payment_ref is not None:
                    payments[event.payment_ref] = event
        kinds = ",".join(sorted({f"{c.entity}.{c.change_type}" for c in changes}))
        if not payments:
            return Received(event_id="", event_type=f"{kinds} (nothing paid)")
        return Received(event_id="", event_type=kinds, payments=tuple(payments.values()))

    # --- the API ------------------------------------------------------------------------------------------------

    def company_url(self, company: str) -> str:
        return f"{self.settings.api_root()}/companies({company})"

    async def read(self, url: str, what: str, **params: str) -> dict[str, Any] | None:
        """A BC read; None when BC says it does not exist (deleted since)."""
        try:
            return await read_with_token(self.tokens, "GET", url, what=what, params=params or None)
        except ProviderRejected as exc:
            if exc.status == 404:
                return None
            raise ProviderRejected(self.name, f"{what} refused ({odata_code(exc.body)})", status=exc.status) from exc

    async def invoices_of(self, change: Change) -> list[dict[str, Any]]:
        base = self.company_url(change.company)
        if change.entity == "customerPayments":
            if change.id is None:
                return []  # a collection of journal lines: the sweep of salesInvoices catches what they paid
            line = await self.read(f"{base}/customerPayments({change.id})", f"customer payment {change.id}")
            invoice_id = text((line or {}).get("appliesToInvoiceId"))
            if invoice_id is None or not re.fullmatch(GUID, invoice_id) or invoice_id == NO_INVOICE:
                return []
            found = await self.read(f"{base}/salesInvoices({invoice_id})", f"sales invoice {invoice_id}")
            return [found] if found else []
        if change.id is not None:
            found = await self.read(f"{base}/salesInvoices({change.id})", f"sales invoice {change.id}")
            return [found] if found else []
        return await self.pages(f"{base}/salesInvoices", "changed sales invoices", change.query)

    async def pages(self, url: str, what: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """Every page of a collection, following `@odata.nextLink`."""
        found: list[dict[str, Any]] = []
        next_url: str | None = url
        query: dict[str, str] = params
        for _ in range(MAX_PAGES):
            if next_url is None:
                break
            page = await self.read(next_url, what, **query) or {}
            found += [i for i in page.get("value") or [] if isinstance(i, dict)]
            next_url, query = page.get("@odata.nextLink"), {}  # the link carries its own query
        return found

    def payment_of(self, invoice: dict[str, Any], received_at: datetime) -> PaymentEvent | None:
        """The invoice's state as a payment, when something is paid on it."""
        status = str(invoice.get("status") or "")
        invoice_id = text(invoice.get("id"))
        if status not in PAID_SOMETHING or invoice_id is None:
            return None
        currency = self._currency(invoice.get("currencyCode"))
        total = money(invoice.get("totalAmountIncludingTax"), currency, "totalAmountIncludingTax")
        remaining = money(invoice.get("remainingAmount", 0), currency, "remainingAmount")
        paid = total - remaining
        if paid.minor <= 0:
            return None
        number = text(invoice.get("number"))
        return PaymentEvent(
            source=self.name, kind=PaymentKind.PAYMENT, amount=paid, cumulative=True,
            occurred_at=parse_time(invoice.get("lastModifiedDateTime"), received_at),
            payment_ref=f"{invoice_id}@{paid.amount}",
            invoice_numbers=(number,) if number else (), invoice_external_id=invoice_id,
            customer_external_id=text(invoice.get("customerNumber")), payer_email=text(invoice.get("email")),
            payer_name=text(invoice.get("customerName")), payer_phone=text(invoice.get("phoneNumber")),
            reported_balance=remaining, invoice_total=total,
            details={"bc_invoice": invoice_id, "bc_status": status},
        )

    def _currency(self, code: Any) -> str:
        try:
            return normalise_currency(str(code)) if text(code) else self.settings.currency
        except (CurrencyError, ValueError):
            return self.settings.currency

    async def sweep(self, since: datetime | None, access: PlatformAccess) -> Swept:
        """salesInvoices changed since the mark (`lastModifiedDateTime gt …`, BC's clock), as their payment state."""
        now = self.clock()
        mark = since or now - LOOKBACK
        company = (self.settings.company_id or "").lower()
        invoices = await self.pages(f"{self.company_url(company)}/salesInvoices", "changed sales invoices",
                                    {"$filter": f"lastModifiedDateTime gt {mark.strftime('%Y-%m-%dT%H:%M:%SZ')}"})
        received = []
        for invoice in invoices:
            modified = parse_time(invoice.get("lastModifiedDateTime"), mark)
            mark = max(mark, modified)
            event = self.payment_of(invoice, now)
            if event is not None:
                received.append(Received(event_id=f"bc-sweep:{event.payment_ref}", event_type="salesInvoices.swept",
                                         payments=(event,)))
        return Swept(tuple(received), mark)

    # --- subscriptions (`paybot subscribe business-central`, `bot.services.bc_subscriptions`) ---------------------

    def resource(self) -> str:
        return f"/{API}/companies({(self.settings.company_id or '').lower()})/salesInvoices"

    def subscription_body(self, notification_url: str, resource: str | None = None) -> dict[str, str]:
        return {"notificationUrl": notification_url, "resource": resource or self.resource(),
                "clientState": secret(self.settings.client_state)}

    async def create_subscription(self, notification_url: str, resource: str | None = None) -> Subscription:
        """`POST subscriptions`: BC calls the notification URL's handshake before it answers 201."""
        answer = await read_with_token(self.tokens, "POST", f"{self.settings.api_root()}/subscriptions",
                                       what="a new subscription", timeout=60,
                                       json=self.subscription_body(notification_url, resource))
        return subscription_of(answer)

    async def renew_subscription(self, subscription_id: str, etag: str, notification_url: str,
                                 resource: str) -> Subscription | None:
        """`PATCH subscriptions('{id}')` with its `@odata.etag`: a new expiry (BC repeats the handshake). None when
        BC no longer has it (it deleted it: expired, or a notification answered with a 4xx)."""
        url = f"{self.settings.api_root()}/subscriptions('{quote(subscription_id, safe='')}')"
        try:
            answer = await read_with_token(self.tokens, "PATCH", url, what=f"subscription {subscription_id}",
                                           timeout=60, headers={"If-Match": etag},
                                           json=self.subscription_body(notification_url, resource))
        except ProviderRejected as exc:
            if exc.status == 404:
                return None
            raise ProviderRejected(self.name, f"renewing subscription {subscription_id} refused "
                                              f"({odata_code(exc.body)})", status=exc.status) from exc
        return subscription_of(answer)

    async def check(self, settings: Any) -> list[Finding]:
        try:
            await self.read(f"{self.settings.api_root()}/companies", "the companies")
        except ProviderRejected as exc:
            return [problem(f"BUSINESS_CENTRAL_TENANT_ID/_CLIENT_ID/_CLIENT_SECRET were refused (HTTP {exc.status})")]
        return [ok("client credentials accepted by Business Central")]


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    etag: str
    expires_at: datetime
    resource: str
    notification_url: str


def subscription_of(answer: dict[str, Any]) -> Subscription:
    try:
        return Subscription(str(answer["subscriptionId"]), str(answer["@odata.etag"]),
                            parse_time(answer["expirationDateTime"], LONG_AGO), str(answer["resource"]),
                            str(answer["notificationUrl"]))
    except KeyError as exc:
        raise ProviderUnavailable("business-central", f"subscription answer without {exc}") from exc


def odata_code(body: str) -> str:
    """BC's error envelope `{"error": {"code": "BadRequest_NotFound", "message": …}}` as its code."""
    try:
        error = json.loads(body).get("error") or {}
        return str(error.get("code") or "no code")[:80]
    except (ValueError, AttributeError):
        return "no error envelope"
