"""Xero: thin, signed notifications (`x-xero-signature`), resolved after the answer by reading the invoice back.

Xero has no payment event: a payment shows as an INVOICE UPDATE naming the invoice and the tenant (organisation).
paybot verifies the POST (base64 HMAC-SHA256 of the raw body with the webhook key), answers an empty 200 at once,
and afterwards reads `GET /api.xro/2.0/Invoices/{id}` with the tenant's token (`xero-tenant-id`). Each payment
in the invoice's `Payments[]` becomes one payment whose `payment_ref` is Xero's PaymentID: an update that did not
change what was paid restates payments already recorded (duplicates, nothing sent), a partial payment is its own
instalment, and the catch-up sweep (`If-Modified-Since` on Invoices) names payments exactly as a webhook would.

Intent to receive: when a subscription is set up Xero sends empty-events POSTs, some signed wrongly on purpose:
a good one gets an empty 200 and is kept nowhere, a bad one 401 (checked before anything else, as Xero asks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp
from pydantic import Field, SecretStr

from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import PayloadInvalid, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, secrets, settings_config
from bot.integrations.checks import Finding
from bot.integrations.http import Headers, seconds_after
from bot.integrations.oauth import OAuthApp, Tenant
from bot.integrations.sources.base import InboundRequest, Received, Reply, Swept, WebhookSource
from bot.integrations.sources.books import because, book_money, http_date, oauth_findings, text
from bot.integrations.sources.common import digest_matches, json_object, parse_time, path_segment
from bot.integrations.sources.tenant_api import TenantAPI, fetch_list
from bot.settings import Settings as CoreSettings

if TYPE_CHECKING:
    from bot.integrations.sources.base import PlatformAccess

EMPTY_200 = Reply(200, "", "text/plain")  # Xero: 200, no body, no cookies
ACTS_ON = frozenset({("INVOICE", "UPDATE"), ("INVOICE", "CREATE")})
PAGE_SIZE = 100   # Xero's page of invoices
SWEEP_PAGES = 50  # 5,000 changed invoices in one sweep at most; the mark moves on and the next sweep continues
SWEEP_LOOKBACK = timedelta(hours=72)
MS_DATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")


class XeroSettings(IntegrationSettings):
    model_config = settings_config("XERO")
    required = ("webhook_key",)

    webhook_key: SecretStr | None = None      # the webhook's signing key (Xero app → Webhooks); several comma-separated
    client_id: str | None = None              # the Xero app's OAuth2 client (`paybot connect xero`)
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None    # seeds the token store once (with XERO_TENANT_ID)
    tenant_id: str | None = None
    base_url: str = "https://api.xero.com"
    token_url: str = "https://identity.xero.com/connect/token"
    authorize_url: str = "https://login.xero.com/identity/connect/authorize"
    # What paybot asks for at `paybot connect xero` (read-only). Apps that must use Xero's granular scopes:
    # "offline_access accounting.invoices.read accounting.payments.read accounting.contacts.read".
    scopes: str = "offline_access accounting.transactions.read accounting.contacts.read"
    # A payment Xero dates longer ago than this when its invoice changes is history (recorded before paybot was
    # connected, or reconciled very late): it is recorded as ignored, nobody is thanked for it.
    max_payment_age_days: float = Field(default=45.0, gt=0)


def sign(body: bytes, key: str) -> str:
    """The `x-xero-signature` Xero sends: base64 HMAC-SHA256 of the raw body, the key's text as it is."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def ms_date(value: Any) -> datetime | None:
    """Xero's `/Date(1518685950940+0000)/` (milliseconds since the epoch, UTC; the offset is informational)."""
    found = MS_DATE.fullmatch(value.strip()) if isinstance(value, str) else None
    if found is None:
        return None
    try:
        return datetime.fromtimestamp(int(found.group(1)) / 1000, UTC)
    except (OverflowError, ValueError, OSError):
        return None


def retry_hint(headers: Headers) -> float | None:
    """Xero's 429: `Retry-After` seconds; without it, which limit was hit (`X-Rate-Limit-Problem`, or a remaining
    count of 0): the minute limit frees within a minute, the day limit is worth asking again in an hour."""
    after = seconds_after(headers)
    if after is not None:
        return after
    problem = (headers.get("X-Rate-Limit-Problem") or "").lower()
    if problem == "day" or (headers.get("X-DayLimit-Remaining") or "").strip() == "0":
        return 3600.0
    if problem in ("minute", "appminute") or (headers.get("X-MinLimit-Remaining") or "").strip() == "0":
        return 60.0
    return None


@dataclass(frozen=True, slots=True)
class InvoiceEvent:
    tenant: str
    invoice_id: str
    changed_at: datetime


def invoice_events(document: dict[str, Any], received_at: datetime) -> list[InvoiceEvent]:
    """The invoices a notification's INVOICE CREATE/UPDATE events name (other categories are not about money)."""
    found: dict[tuple[str, str], InvoiceEvent] = {}
    for event in events_of(document):
        key = (str(event.get("eventCategory", "")).upper(), str(event.get("eventType", "")).upper())
        if key in ACTS_ON:
            named = InvoiceEvent(str(event["tenantId"]), str(event["resourceId"]),
                                 parse_time(event.get("eventDateUtc"), received_at))
            seen = found.get((named.tenant, named.invoice_id))  # one read per invoice, however many events name it
            if seen is None or named.changed_at > seen.changed_at:
                found[(named.tenant, named.invoice_id)] = named
    return list(found.values())


def events_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    events = document.get("events")
    if not isinstance(events, list):
        raise PayloadInvalid("missing field events")
    for event in events:
        if not isinstance(event, dict):
            raise PayloadInvalid("an event is not an object")
        for name in ("resourceId", "tenantId", "eventCategory", "eventType"):
            if not isinstance(event.get(name), str) or not event[name]:
                raise PayloadInvalid(f"missing field events[].{name}")
    return events


def notification_id(document: dict[str, Any], body: bytes) -> str:
    """Xero gives a notification no id, but each carries its own random `entropy`, and a retry resends the same
    bytes. Another notification about the same invoice is a new one; its payments are recognised by their ids."""
    entropy = document.get("entropy")
    if isinstance(entropy, str) and 8 <= len(entropy) <= 200 and entropy.isascii():
        return entropy
    return "xero-" + hashlib.sha256(body).hexdigest()[:40]


def kinds(events: list[dict[str, Any]]) -> str:
    return ", ".join(dict.fromkeys(f"{e['eventCategory'].upper()} {e['eventType'].upper()}" for e in events))


class XeroSource(WebhookSource[XeroSettings]):
    name: ClassVar[str] = "xero"
    Settings: ClassVar[type[IntegrationSettings]] = XeroSettings

    def __init__(self, settings: XeroSettings, http: aiohttp.ClientSession) -> None:
        super().__init__(settings, http)
        self.api = TenantAPI(self.name, http, retry_hint=retry_hint, forbidden_is_lost=True)

    def oauth_app(self) -> OAuthApp | None:
        if not self.settings.client_id or not secret(self.settings.client_secret):
            return None
        return OAuthApp(authorize_url=self.settings.authorize_url, token_url=self.settings.token_url,
                        client_id=self.settings.client_id, client_secret=secret(self.settings.client_secret),
                        scopes=tuple(self.settings.scopes.split()), client_auth="basic")

    async def connected(self, access_token: str, callback_query: Mapping[str, str]) -> list[Tenant]:
        """`GET /connections`: the organisations the consent reached (a tenant per organisation)."""
        answer = await fetch_list(self.http, self.name, f"{self.settings.base_url.rstrip('/')}/connections",
                                  "the connections", {"Authorization": f"Bearer {access_token}",
                                                      "Accept": "application/json"})
        return [Tenant(id=str(c["tenantId"]), name=str(c.get("tenantName") or c["tenantId"])) for c in answer
                if isinstance(c, dict) and c.get("tenantId") and c.get("tenantType", "ORGANISATION") == "ORGANISATION"]

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """Nothing to call without a token (those live in the database): whether paybot can read what it hears."""
        return oauth_findings(self.name, self.oauth_app())

    def verify(self, request: InboundRequest) -> None:
        given = request.headers.get("x-xero-signature", "").strip()
        if not given:
            raise SignatureInvalid("x-xero-signature header missing")
        if not digest_matches(given, [sign(request.body, key) for key in secrets(self.settings.webhook_key)]):
            raise SignatureInvalid("x-xero-signature does not match")

    async def parse(self, request: InboundRequest) -> Received:
        document = json_object(request.body)
        events = events_of(document)
        if not events and not document.get("firstEventSequence") and not document.get("lastEventSequence"):
            # intent to receive (no events, sequences 0), correctly signed: answered, kept nowhere
            return Received(event_id="intent-to-receive", event_type="intent to receive", reply=EMPTY_200,
                            store=False)
        acts = bool(invoice_events({"events": events}, request.received_at))
        return Received(event_id=notification_id(document, request.body), event_type=kinds(events), reply=EMPTY_200,
                        resolve_later=acts)

    async def resolve(self, stored: InboundRequest, access: PlatformAccess) -> Received:
        """Each invoice the notification names, read back for its tenant; their payments in one Received."""
        document = json_object(stored.body)
        events = events_of(document)
        connected = set(await access.tenants())
        payments: list[PaymentEvent] = []
        reasons: list[str] = []
        for event in invoice_events(document, stored.received_at):
            if event.tenant not in connected:
                reasons.append(f"tenant {event.tenant} is not connected")
                continue
            invoice = await self.invoice(access, event.tenant, event.invoice_id)
            if invoice is None:
                reasons.append(f"invoice {event.invoice_id} not found")
                continue
            found, reason = await self.payments_of(access, event.tenant, invoice, event.changed_at)
            payments += found
            reasons.append(reason or "")
        kind = kinds(events)
        return Received(event_id=notification_id(document, stored.body),
                        event_type=kind if payments else because(kind, reasons), payments=tuple(payments))

    async def invoice(self, access: PlatformAccess, tenant: str, invoice_id: str) -> dict[str, Any] | None:
        answer = await self._get(access, tenant, f"/api.xro/2.0/Invoices/{path_segment(invoice_id)}",
                                 f"invoice {invoice_id}")
        invoices = (answer or {}).get("Invoices")
        return invoices[0] if isinstance(invoices, list) and invoices and isinstance(invoices[0], dict) else None

    async def _get(self, access: PlatformAccess, tenant: str, path: str, what: str,
                   headers: Mapping[str, str] | None = None, params: Any = None) -> dict[str, Any] | None:
        return await self.api.get(access, tenant, f"{self.settings.base_url.rstrip('/')}{path}", what=what,
                                  headers={"xero-tenant-id": tenant, "Accept": "application/json", **(headers or {})},
                                  params=params)

    async def payments_of(self, access: PlatformAccess, tenant: str, invoice: dict[str, Any],
                          changed_at: datetime) -> tuple[list[PaymentEvent], str | None]:
        """The invoice's payments worth acknowledging, or why there are none."""
        number = text(invoice.get("InvoiceNumber")) or str(invoice.get("InvoiceID"))
        if invoice.get("Type") != "ACCREC":
            return [], f"{number} is a bill, not a sales invoice"
        status = str(invoice.get("Status") or "")
        if status not in ("AUTHORISED", "PAID"):
            return [], f"{number} is {status or 'without a status'}"
        currency = invoice.get("CurrencyCode")
        if book_money(invoice.get("AmountPaid", 0), currency, "AmountPaid").minor <= 0:
            return [], f"nothing paid on {number}"
        oldest = changed_at - timedelta(days=self.settings.max_payment_age_days)
        recorded = [p for p in invoice.get("Payments") or [] if isinstance(p, dict) and p.get("PaymentID")]
        recent = [p for p in recorded if (ms_date(p.get("Date")) or changed_at) >= oldest]
        if recorded and not recent:
            return [], f"the payments on {number} are older than {self.settings.max_payment_age_days:g} days"
        contact = await self.contact(access, tenant, invoice.get("Contact"))
        if not recorded:  # paid by credit notes or prepayments alone: the invoice's state is all Xero says
            return [self._event(invoice, contact, book_money(invoice["AmountPaid"], currency, "AmountPaid"),
                                changed_at, cumulative=True)], None
        return [self._event(invoice, contact, book_money(p.get("Amount"), currency, "Payments[].Amount"),
                            ms_date(p.get("Date")) or changed_at, payment=p) for p in recent], None

    async def contact(self, access: PlatformAccess, tenant: str, embedded: Any) -> dict[str, Any]:
        """The invoice's contact with its email and phones (an invoice often embeds only the id and name)."""
        contact = embedded if isinstance(embedded, dict) else {}
        if contact.get("EmailAddress") or not contact.get("ContactID"):
            return contact
        answer = await self._get(access, tenant, f"/api.xro/2.0/Contacts/{path_segment(contact['ContactID'])}",
                                 f"contact {contact['ContactID']}")
        found = (answer or {}).get("Contacts")
        return found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else contact

    def _event(self, invoice: dict[str, Any], contact: dict[str, Any], amount: Any, occurred: datetime, *,
               payment: dict[str, Any] | None = None, cumulative: bool = False) -> PaymentEvent:
        currency = invoice.get("CurrencyCode")
        number = text(invoice.get("InvoiceNumber"))
        reference = text((payment or {}).get("Reference"))
        return PaymentEvent(
            source=self.name,
            kind=PaymentKind.PAYMENT,
            amount=amount,
            cumulative=cumulative,
            occurred_at=occurred,
            date_only=payment is not None,  # a payment's Date is a day, midnight UTC
            payment_ref=str(payment["PaymentID"]) if payment else None,
            invoice_numbers=(number,) if number else (),
            invoice_external_id=text(invoice.get("InvoiceID")),
            customer_external_id=text(contact.get("ContactID")),
            payer_email=text(contact.get("EmailAddress")),
            payer_name=text(contact.get("Name")),
            payer_phone=phone(contact.get("Phones")),
            texts=tuple(t for t in (text(invoice.get("Reference")), reference) if t),
            reported_balance=book_money(invoice.get("AmountDue", 0), currency, "AmountDue"),
            invoice_total=book_money(invoice["Total"], currency, "Total") if invoice.get("Total") is not None else None,
            details={"xero_invoice": str(invoice.get("InvoiceID")), "xero_status": str(invoice.get("Status")),
                     **({"reference": reference} if reference else {})},
        )

    async def sweep(self, since: datetime | None, access: PlatformAccess) -> Swept:
        """Sales invoices changed since `since` (`If-Modified-Since`, oldest change first, 100 a page), for every
        connected tenant; the mark is the latest `UpdatedDateUTC` Xero reported."""
        start = since or datetime.now(UTC) - SWEEP_LOOKBACK  # the sweeper always passes a time (its own clock)
        mark = start
        found: list[Received] = []
        for tenant in await access.tenants():
            for page in range(1, SWEEP_PAGES + 1):
                answer = await self._get(access, tenant, "/api.xro/2.0/Invoices", f"invoices changed since {start}",
                                         headers={"If-Modified-Since": http_date(start)},
                                         params={"where": 'Type=="ACCREC"', "order": "UpdatedDateUTC ASC",
                                                 "page": str(page)})
                invoices = [i for i in (answer or {}).get("Invoices") or [] if isinstance(i, dict)]
                for invoice in invoices:
                    changed = ms_date(invoice.get("UpdatedDateUTC")) or start
                    mark = max(mark, changed)
                    payments, reason = await self.payments_of(access, tenant, invoice, changed)
                    found.append(Received(
                        event_id=f"sweep-{tenant}-{invoice.get('InvoiceID')}-{invoice.get('UpdatedDateUTC')}"[:255],
                        event_type="INVOICE swept" if payments else because("INVOICE swept", [reason or ""]),
                        payments=tuple(payments)))
                if len(invoices) < PAGE_SIZE:
                    break
        return Swept(received=tuple(r for r in found if r.payments), mark=mark)


def phone(phones: Any) -> str | None:
    """The contact's mobile, else its default number, as Xero splits it (country, area, number)."""
    listed = [p for p in phones or [] if isinstance(p, dict) and text(p.get("PhoneNumber"))]
    ranked = sorted(listed, key=lambda p: {"MOBILE": 0, "DEFAULT": 1, "DDI": 2}.get(str(p.get("PhoneType")), 3))
    if not ranked or ranked[0].get("PhoneType") == "FAX":
        return None
    best = ranked[0]
    country = text(best.get("PhoneCountryCode"))
    number = " ".join(t for t in (text(best.get("PhoneAreaCode")), text(best.get("PhoneNumber"))) if t)
    return f"+{country.lstrip('+')} {number}" if country else number
