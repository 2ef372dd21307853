"""FreshBooks: thin form-encoded callbacks signed with the callback's verifier, resolved after the answer.

A delivery is `name=payment.create&object_id=…&account_id=…` (form-encoded). `X-FreshBooks-Hmac-SHA256` is
FreshBooks' own recipe: base64 HMAC-SHA256, keyed with the verifier, of Python's `json.dumps` of the form fields
(in order, values as strings, default separators) — not of the raw body. paybot answers at once, then reads the
payment (`/accounting/account/{account_id}/payments/payments/{id}`) and its invoice (`outstanding`, `amount`).

Verification handshake: when a callback is registered FreshBooks POSTs `name=callback.verify`, the callback id and a
`verifier`; paybot stores it, answers 200 and confirms it afterwards with
`PUT /events/account/{account_id}/events/callbacks/{callback_id}` (a token is needed, so after the answer). The
verifier is the signing key of every later delivery: the operator puts it in FRESHBOOKS_VERIFIER (README). Until
that is set, only verification requests are accepted; afterwards only one carrying that same verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import aiohttp
from pydantic import SecretStr

from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import PayloadInvalid, ProviderUnavailable, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, secrets, settings_config
from bot.integrations.checks import Finding, problem
from bot.integrations.http import RETRYABLE, seconds_after
from bot.integrations.oauth import OAuthApp, Tenant
from bot.integrations.sources.base import InboundRequest, Received, Reply, Swept, WebhookSource
from bot.integrations.sources.books import because, book_money, oauth_findings, text
from bot.integrations.sources.common import (digest_matches, fetch_json, is_bare_date, method_details, parse_time,
                                             path_segment)
from bot.integrations.sources.tenant_api import TenantAPI
from bot.settings import Settings as CoreSettings

if TYPE_CHECKING:
    from bot.integrations.sources.base import PlatformAccess

HEADER = "X-FreshBooks-Hmac-SHA256"
VERIFY = "callback.verify"
ACTS_ON = frozenset({"payment.create"})
BODY_LIMIT = 4096  # a callback is a handful of ids
PAGE_SIZE = 100
SWEEP_PAGES = 50
SWEEP_LOOKBACK = timedelta(hours=72)
#: The accounting API writes `updated` in FreshBooks' own zone, US Eastern, without saying so.
PLATFORM_ZONE = ZoneInfo("America/New_York")
MISSING_ERRNO = {"1012"}
SCOPES = ("user:profile:read", "user:payments:read", "user:invoices:read", "user:clients:read",
          "user:billable_items:read")  # "The requested … could not be found."


class FreshBooksSettings(IntegrationSettings):
    model_config = settings_config("FRESHBOOKS")
    required = ("client_id",)

    verifier: SecretStr | None = None       # the callback's verifier (its signing key); several comma-separated
    client_id: str | None = None            # the FreshBooks app's OAuth2 client (`paybot connect freshbooks`)
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None  # seeds the token store once (with FRESHBOOKS_ACCOUNT_ID)
    account_id: str | None = None           # the accounting account id (alphanumeric, e.g. 6BApk)
    business_id: str | None = None          # the business id (numeric), for the newer APIs
    base_url: str = "https://api.freshbooks.com"
    token_url: str = "https://api.freshbooks.com/auth/oauth/token"
    authorize_url: str = "https://auth.freshbooks.com/oauth/authorize"


def signed_text(body: bytes) -> bytes:
    """What FreshBooks signs: `json.dumps` of the form fields, as its own Python snippet builds it."""
    fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return json.dumps({k: str(v) for k, v in fields.items()}).encode()


def sign(body: bytes, verifier: str) -> str:
    """The `X-FreshBooks-Hmac-SHA256` FreshBooks sends with a callback."""
    return base64.b64encode(hmac.new(verifier.encode(), signed_text(body), hashlib.sha256).digest()).decode()


def form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadInvalid("body is not valid form data") from exc


def result(answer: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """`{"response": {"result": {key: {...}}}}`, FreshBooks' envelope."""
    found = ((answer or {}).get("response") or {}).get("result") or {}
    value = found.get(key) if isinstance(found, dict) else None
    return value if isinstance(value, dict) else None


def not_found(status: int, answer: dict[str, Any] | None) -> bool:
    """FreshBooks answers a missing object with errno 1012 in its error envelope (whatever the status)."""
    errors = ((answer or {}).get("response") or {}).get("errors") if isinstance(answer, dict) else None
    return isinstance(errors, list) and any(isinstance(e, dict) and str(e.get("errno")) in MISSING_ERRNO
                                            for e in errors)


def platform_time(value: Any, default: datetime) -> datetime:
    """`2026-11-28 09:30:00` in FreshBooks' zone, as UTC."""
    if not isinstance(value, str):
        return default
    try:
        return datetime.fromisoformat(value.strip()).replace(tzinfo=PLATFORM_ZONE).astimezone(UTC)
    except ValueError:
        return default


class FreshBooksSource(WebhookSource[FreshBooksSettings]):
    name: ClassVar[str] = "freshbooks"
    Settings: ClassVar[type[IntegrationSettings]] = FreshBooksSettings

    def __init__(self, settings: FreshBooksSettings, http: aiohttp.ClientSession) -> None:
        super().__init__(settings, http)
        self.api = TenantAPI(self.name, http)

    def oauth_app(self) -> OAuthApp | None:
        if not self.settings.client_id or not secret(self.settings.client_secret):
            return None
        return OAuthApp(authorize_url=self.settings.authorize_url, token_url=self.settings.token_url,
                        client_id=self.settings.client_id, client_secret=secret(self.settings.client_secret),
                        scopes=SCOPES, client_auth="body")

    async def connected(self, access_token: str, callback_query: Mapping[str, str]) -> list[Tenant]:
        """`GET /auth/api/v1/users/me`: the businesses this user belongs to, each with its accounting account id."""
        url = f"{self.settings.base_url.rstrip('/')}/auth/api/v1/users/me"
        answer = await fetch_json(self.http, self.name, "GET", url, what="the user",
                                  headers={"Authorization": f"Bearer {access_token}"})
        memberships = (answer.get("response") or {}).get("business_memberships") or []
        businesses = [m.get("business") for m in memberships if isinstance(m, dict)]
        return [Tenant(id=str(b["account_id"]), name=str(b.get("name") or b["account_id"])) for b in businesses
                if isinstance(b, dict) and b.get("account_id")]

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """Nothing to call without a token (those live in the database): whether paybot can read what it hears."""
        findings = oauth_findings(self.name, self.oauth_app())
        if not secrets(self.settings.verifier):
            findings.append(problem("FRESHBOOKS_VERIFIER is not set: payment callbacks are refused (401) until the "
                                    "callback's verifier is set (README, FreshBooks set-up step 4)"))
        return findings

    def body_limit(self, headers: Mapping[str, str]) -> int:
        return BODY_LIMIT

    def verify(self, request: InboundRequest) -> None:
        fields = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        keys = secrets(self.settings.verifier)
        if fields.get("name") == VERIFY:
            # The handshake that hands paybot its key: before FRESHBOOKS_VERIFIER is set any is taken (FreshBooks
            # itself refuses a confirmation it did not issue); afterwards only that verifier.
            if keys and not digest_matches(fields.get("verifier", ""), keys):
                raise SignatureInvalid("the verifier is not FRESHBOOKS_VERIFIER")
            return
        given = request.headers.get(HEADER, "").strip()
        if not given:
            raise SignatureInvalid(f"{HEADER} header missing")
        if not keys or not digest_matches(given, [sign(request.body, key) for key in keys]):
            raise SignatureInvalid(f"{HEADER} does not match")

    async def parse(self, request: InboundRequest) -> Received:
        fields = form(request.body)
        name, object_id = fields.get("name", ""), fields.get("object_id", "")
        if not name or not object_id:
            raise PayloadInvalid("missing field name or object_id")
        if name == VERIFY:
            verifier = fields.get("verifier", "")
            if not verifier:
                raise PayloadInvalid("missing field verifier")
            fingerprint = hashlib.sha256(verifier.encode()).hexdigest()[:16]  # never the verifier itself
            return Received(event_id=f"{VERIFY}-{object_id}-{fingerprint}", event_type=VERIFY,
                            reply=Reply(200, ""), resolve_later=True)
        return Received(event_id=f"{name}-{object_id}", event_type=name, reply=Reply(200, ""),
                        resolve_later=name in ACTS_ON)

    def account_of(self, fields: dict[str, str], connected: list[str]) -> str | None:
        account = fields.get("account_id") or self.settings.account_id
        return account or (connected[0] if len(connected) == 1 else None)

    async def resolve(self, stored: InboundRequest, access: PlatformAccess) -> Received:
        fields = form(stored.body)
        name, object_id = fields.get("name", ""), fields.get("object_id", "")
        received = await self.parse(stored)
        connected = await access.tenants()
        account = self.account_of(fields, connected)
        if account is None or account not in connected:
            return Received(event_id=received.event_id,
                            event_type=because(name, [f"account {account or '(none named)'} is not connected"]))
        if name == VERIFY:
            return Received(event_id=received.event_id,
                            event_type=await self.confirm_callback(access, account, object_id, fields["verifier"]))
        payment = result(await self._get(access, account, f"payments/payments/{path_segment(object_id)}",
                                         f"payment {object_id}"), "payment")
        if payment is None:
            return Received(event_id=received.event_id, event_type=because(name, [f"payment {object_id} not found"]))
        events, reason = await self.payments_of(access, account, payment, stored.received_at)
        return Received(event_id=received.event_id, event_type=name if events else because(name, [reason]),
                        payments=tuple(events))

    async def confirm_callback(self, access: PlatformAccess, account: str, callback_id: str, verifier: str) -> str:
        """`PUT …/events/callbacks/{id}` with the verifier: FreshBooks marks the callback verified."""
        url = (f"{self.settings.base_url.rstrip('/')}/events/account/{path_segment(account)}/events/callbacks/"
               f"{path_segment(callback_id)}")
        token = await access.token(account)
        for attempt in (1, 2):
            async with self.http.put(url, json={"callback": {"verifier": verifier}},
                                     headers={"Authorization": f"Bearer {token}"},
                                     timeout=aiohttp.ClientTimeout(total=self.api.timeout)) as resp:
                body = await resp.read()
                if resp.status == 401 and attempt == 1:
                    token = await access.refreshed(account, token)
                    continue
                if resp.status in RETRYABLE:
                    raise ProviderUnavailable(self.name, f"could not verify callback {callback_id}",
                                              status=resp.status, retry_after=seconds_after(resp.headers))
                if resp.status >= 300:  # not a verifier FreshBooks issued (or no such callback): nothing to retry
                    return because(VERIFY, [f"FreshBooks refused to confirm callback {callback_id} ({resp.status})"])
                return f"{VERIFY}: callback {callback_id} confirmed"
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get(self, access: PlatformAccess, account: str, path: str, what: str,
                   params: Any = None) -> dict[str, Any] | None:
        url = f"{self.settings.base_url.rstrip('/')}/accounting/account/{path_segment(account)}/{path}"
        return await self.api.get(access, account, url, what=what, params=params, missing=not_found)

    async def payments_of(self, access: PlatformAccess, account: str, payment: dict[str, Any],
                          when: datetime) -> tuple[list[PaymentEvent], str]:
        """The payment as paybot records it, with its invoice's number, total and what is still outstanding."""
        payment_id = str(payment.get("id") or payment.get("paymentid"))
        if str(payment.get("vis_state", 0)) != "0":
            return [], f"payment {payment_id} is deleted or archived"
        amount = payment.get("amount") or {}
        if not isinstance(amount, dict):
            raise PayloadInvalid("payment amount is not an object")
        money = book_money(amount.get("amount"), amount.get("code"), "amount")
        if money.minor <= 0:
            return [], f"payment {payment_id} is of nothing"
        invoice: dict[str, Any] = {}
        if payment.get("invoiceid"):
            invoice = result(await self._get(access, account, f"invoices/invoices/{path_segment(payment['invoiceid'])}",
                                             f"invoice {payment['invoiceid']}"), "invoice") or {}
        client = await self.client(access, account, invoice, payment)
        return [self._event(payment_id, payment, money, invoice, client, when)], ""

    async def client(self, access: PlatformAccess, account: str, invoice: dict[str, Any],
                     payment: dict[str, Any]) -> dict[str, Any]:
        """The client's email and phones (an invoice may carry the email, never the phone)."""
        client_id = payment.get("clientid") or invoice.get("customerid")
        if not client_id:
            return {}
        answer = await self._get(access, account, f"users/clients/{path_segment(client_id)}", f"client {client_id}")
        return result(answer, "client") or {}

    def _event(self, payment_id: str, payment: dict[str, Any], money: Any, invoice: dict[str, Any],
               client: dict[str, Any], when: datetime) -> PaymentEvent:
        currency = money.currency

        def invoice_money(key: str) -> Any:
            value = invoice.get(key)
            return book_money(value.get("amount"), value.get("code") or currency, key) if isinstance(value, dict) \
                else None

        person = " ".join(t for t in (text(client.get("fname") or invoice.get("fname")),
                                      text(client.get("lname") or invoice.get("lname"))) if t)
        number = text(invoice.get("invoice_number"))
        return PaymentEvent(
            source=self.name,
            kind=PaymentKind.PAYMENT,
            amount=money,
            occurred_at=parse_time(payment.get("date"), platform_time(payment.get("updated"), when)),
            date_only=is_bare_date(payment.get("date")),
            payment_ref=payment_id,
            invoice_numbers=(number,) if number else (),
            invoice_external_id=text(payment.get("invoiceid")),
            customer_external_id=text(payment.get("clientid") or invoice.get("customerid")),
            payer_email=text(client.get("email") or invoice.get("email")),
            payer_name=text(client.get("organization") or invoice.get("organization")) or person or None,
            payer_phone=text(client.get("mob_phone") or client.get("bus_phone")),
            texts=tuple(t for t in (text(payment.get("note")),) if t),
            reported_balance=invoice_money("outstanding"),
            invoice_total=invoice_money("amount"),
            details={"freshbooks_invoice": str(payment.get("invoiceid") or ""),
                     **method_details(payment.get("type"))},
        )

    async def sweep(self, since: datetime | None, access: PlatformAccess) -> Swept:
        """Payments updated since `since` (`search[updated_min]`, in FreshBooks' zone), every connected account,
        100 a page; the mark is the latest `updated` FreshBooks reported."""
        start = since or datetime.now(UTC) - SWEEP_LOOKBACK  # the sweeper always passes a time (its own clock)
        mark = start
        found: list[Received] = []
        for account in await access.tenants():
            for page in range(1, SWEEP_PAGES + 1):
                answer = await self._get(access, account, "payments/payments", f"payments updated since {start}",
                                         params={"search[updated_min]": start.astimezone(PLATFORM_ZONE)
                                                 .strftime("%Y-%m-%d %H:%M:%S"), "page": str(page),
                                                 "per_page": str(PAGE_SIZE)})
                listed = ((answer or {}).get("response") or {}).get("result") or {}
                for payment in [p for p in listed.get("payments") or [] if isinstance(p, dict)]:
                    changed = platform_time(payment.get("updated"), start)
                    mark = max(mark, changed)
                    events, _ = await self.payments_of(access, account, payment, changed)
                    if events:
                        found.append(Received(event_id=f"sweep-{account}-{payment.get('id')}-{payment.get('updated')}",
                                              event_type="payment swept", payments=tuple(events)))
                if page >= int(listed.get("pages") or 1):
                    break
        return Swept(received=tuple(found), mark=mark)

