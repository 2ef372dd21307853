"""Zoho Books: a workflow webhook on Customer Payments ("payment received"), signed, re-read through the API.

Zoho Books has no event stream: the operator attaches a webhook (default payload: the payment record as JSON,
`{"payment": {…, "invoices": [...]}}`) to a workflow rule on payment creation, with a secret. The signature is the
one Zoho documents for its finance apps: `X-Zoho-Webhook-Signature` = hex HMAC-SHA256, keyed with the secret, of
the query (and form) pairs sorted by key, each `key` then `value` with no separator, followed by the raw body.

The payload is whatever the rule sends, so paybot trusts only the payment id in it: after the answer it reads
`GET /books/v3/customerpayments/{id}?organization_id=…` and records one payment per invoice the money was applied
to (`amount_applied`; `balance_amount` says what is still owed). API hosts differ per data centre (`.com`, `.eu`,
`.in`, `.com.au`, …): ZOHO_BOOKS_DATA_CENTRE picks them, ZOHO_BOOKS_BASE_URL / _TOKEN_URL override them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import parse_qsl

import aiohttp
from pydantic import SecretStr

from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import PayloadInvalid, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, secrets, settings_config
from bot.integrations.checks import Finding
from bot.integrations.oauth import OAuthApp, Tenant
from bot.integrations.sources.base import InboundRequest, Received, Swept, WebhookSource
from bot.integrations.sources.books import because, book_money, oauth_findings, text
from bot.integrations.sources.common import (digest_matches, fetch_json, field, is_bare_date, json_object,
                                             method_details, parse_time, path_segment)
from bot.integrations.sources.tenant_api import TenantAPI
from bot.settings import Settings as CoreSettings

if TYPE_CHECKING:
    from bot.integrations.sources.base import PlatformAccess

HEADER = "X-Zoho-Webhook-Signature"
ORGANIZATION_HEADER = "X-Paybot-Zoho-Organization"  # where the stored event keeps the query's organization_id
WRAPPERS = ("payment", "customerpayment")  # the default payload's key, as Books names the module
EVENT_TYPE = "customer_payment.received"
PAGE_SIZE = 200
SWEEP_PAGES = 25
SWEEP_LOOKBACK = timedelta(hours=72)
MISSING_CODES = {"1002", "4", "1000"}  # "… does not exist." / invalid id
SCOPES = ("ZohoBooks.customerpayments.READ", "ZohoBooks.invoices.READ", "ZohoBooks.contacts.READ",
          "ZohoBooks.settings.READ")
#: Zoho's `payment_mode` words that differ from paybot's (see `bot.domain.receipt.METHODS`).
PAYMENT_MODES = {"banktransfer": "bank_transfer", "bankremittance": "bank_transfer", "creditcard": "card"}
DataCentre = Literal["com", "eu", "in", "com.au", "jp", "ca", "com.cn", "sa"]


class ZohoBooksSettings(IntegrationSettings):
    model_config = settings_config("ZOHO_BOOKS")
    required = ("webhook_secret",)

    webhook_secret: SecretStr | None = None  # the webhook's secret (12–50 letters/digits); several comma-separated
    client_id: str | None = None             # a Zoho API console "server-based" client (`paybot connect zoho-books`)
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None   # seeds the token store once (with ZOHO_BOOKS_ORGANIZATION_ID)
    organization_id: str | None = None
    data_centre: DataCentre = "com"          # where the Zoho account lives: com, eu, in, com.au, jp, ca, com.cn, sa
    base_url: str | None = None              # default https://www.zohoapis.<data centre>
    token_url: str | None = None             # default https://accounts.zoho.<data centre>/oauth/v2/token
    authorize_url: str | None = None         # default https://accounts.zoho.<data centre>/oauth/v2/auth

    def api_root(self) -> str:
        return (self.base_url or f"https://www.zohoapis.{self.data_centre}").rstrip("/")

    def accounts_root(self) -> str:
        return f"https://accounts.zoho.{self.data_centre}"

    def token_endpoint(self) -> str:
        return self.token_url or f"{self.accounts_root()}/oauth/v2/token"

    def authorize_endpoint(self) -> str:
        return self.authorize_url or f"{self.accounts_root()}/oauth/v2/auth"


def signed_text(query: Mapping[str, str], body: bytes, content_type: str) -> bytes:
    """Zoho's message: sorted `keyvalue` pairs of the query (and of a form body), then the raw body (a JSON one)."""
    pairs = list(query.items())
    is_form = content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded"
    if is_form:
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    joined = "".join(f"{k}{v}" for k, v in sorted(pairs, key=lambda pair: pair[0]))
    return joined.encode() + (b"" if is_form else body)


def sign(query: Mapping[str, str], body: bytes, content_type: str, secret: str) -> str:
    """The `X-Zoho-Webhook-Signature` Zoho sends."""
    return hmac.new(secret.encode(), signed_text(query, body, content_type), hashlib.sha256).hexdigest()


def zoho_auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Zoho-oauthtoken {token}"}


def not_found(status: int, answer: dict[str, Any] | None) -> bool:
    """Zoho's envelope is `{"code": 0, "message": "success", …}`; a missing record is a non-zero code."""
    return status >= 400 and str((answer or {}).get("code")) in MISSING_CODES


def payment_of(document: dict[str, Any]) -> dict[str, Any]:
    """The payment record of a webhook's default payload (or of a user-defined one shaped like it)."""
    for key in WRAPPERS:
        if isinstance(document.get(key), dict):
            return dict(document[key])
    if "payment_id" in document:
        return document
    raise PayloadInvalid("missing field payment")


class ZohoBooksSource(WebhookSource[ZohoBooksSettings]):
    name: ClassVar[str] = "zoho-books"
    Settings: ClassVar[type[IntegrationSettings]] = ZohoBooksSettings

    def __init__(self, settings: ZohoBooksSettings, http: aiohttp.ClientSession) -> None:
        super().__init__(settings, http)
        self.api = TenantAPI(self.name, http, authorize=zoho_auth)

    def oauth_app(self) -> OAuthApp | None:
        if not self.settings.client_id or not secret(self.settings.client_secret):
            return None
        # Zoho separates scopes with commas, and gives a refresh token only for offline access, on fresh consent.
        return OAuthApp(authorize_url=self.settings.authorize_endpoint(), token_url=self.settings.token_endpoint(),
                        client_id=self.settings.client_id, client_secret=secret(self.settings.client_secret),
                        scopes=(",".join(SCOPES),), client_auth="body",
                        authorize_params={"access_type": "offline", "prompt": "consent"})

    async def connected(self, access_token: str, callback_query: Mapping[str, str]) -> list[Tenant]:
        """`GET /books/v3/organizations`: the organizations this Zoho user can reach."""
        answer = await fetch_json(self.http, self.name, "GET", f"{self.settings.api_root()}/books/v3/organizations",
                                  what="the organizations", headers=zoho_auth(access_token))
        return [Tenant(id=str(o["organization_id"]), name=str(o.get("name") or o["organization_id"]))
                for o in answer.get("organizations") or [] if isinstance(o, dict) and o.get("organization_id")]

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """Nothing to call without a token (those live in the database): whether paybot can read what it hears."""
        return oauth_findings(self.name, self.oauth_app())

    def verify(self, request: InboundRequest) -> None:
        given = request.headers.get(HEADER, "").strip().lower()
        if not given:
            raise SignatureInvalid(f"{HEADER} header missing")
        content_type = request.headers.get("Content-Type", "")
        expected = [sign(request.query, request.body, content_type, key)
                    for key in secrets(self.settings.webhook_secret)]
        if not digest_matches(given, expected):
            raise SignatureInvalid(f"{HEADER} does not match")

    async def parse(self, request: InboundRequest) -> Received:
        payment = payment_of(json_object(request.body))
        payment_id = field(payment, "payment_id")
        if not isinstance(payment_id, (str, int)) or isinstance(payment_id, bool) or not str(payment_id).strip():
            raise PayloadInvalid("bad field payment.payment_id")
        # The webhook's `organization_id` query parameter (signed) is kept with the body, which is all that is stored.
        named = request.query.get("organization_id")
        return Received(event_id=str(payment_id), event_type=EVENT_TYPE, resolve_later=True,
                        headers_kept={ORGANIZATION_HEADER: named} if named else {})

    def organization_of(self, stored: InboundRequest, payment: dict[str, Any], connected: list[str]) -> str | None:
        """The organization: the webhook's `organization_id` query parameter or payload field, the setting, or the
        only connected one."""
        named = stored.headers.get(ORGANIZATION_HEADER) or text(payment.get("organization_id"))
        return named or self.settings.organization_id or (connected[0] if len(connected) == 1 else None)

    async def resolve(self, stored: InboundRequest, access: PlatformAccess) -> Received:
        sent = payment_of(json_object(stored.body))
        payment_id = str(sent["payment_id"])
        connected = await access.tenants()
        organization = self.organization_of(stored, sent, connected)
        if organization is None or organization not in connected:
            return Received(event_id=payment_id, event_type=because(
                EVENT_TYPE, [f"organization {organization or '(none named)'} is not connected"]))
        payment = await self.payment(access, organization, payment_id)
        if payment is None:
            return Received(event_id=payment_id, event_type=because(EVENT_TYPE, [f"payment {payment_id} not found"]))
        events, reason = self.payments_of(payment, stored.received_at)
        return Received(event_id=payment_id, event_type=EVENT_TYPE if events else because(EVENT_TYPE, [reason]),
                        payments=tuple(events))

    async def payment(self, access: PlatformAccess, organization: str, payment_id: str) -> dict[str, Any] | None:
        answer = await self._get(access, organization, f"/books/v3/customerpayments/{path_segment(payment_id)}",
                                 f"payment {payment_id}")
        found = (answer or {}).get("payment")
        return found if isinstance(found, dict) else None

    async def _get(self, access: PlatformAccess, organization: str, path: str, what: str,
                   params: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        return await self.api.get(access, organization, f"{self.settings.api_root()}{path}", what=what,
                                  params={"organization_id": organization, **(params or {})}, missing=not_found)

    def payments_of(self, payment: dict[str, Any], when: datetime) -> tuple[list[PaymentEvent], str]:
        """One payment per invoice the money was applied to (its own reference when there are several), or the
        whole payment when it was applied to none yet."""
        payment_id = str(payment.get("payment_id"))
        currency = payment.get("currency_code")
        if str(payment.get("status") or "success").lower() != "success":
            return [], f"payment {payment_id} did not succeed"
        applied = [i for i in payment.get("invoices") or [] if isinstance(i, dict)
                   and book_money(i.get("amount_applied", 0), currency, "invoices[].amount_applied").minor > 0]
        if not applied:
            amount = book_money(payment.get("amount"), currency, "amount")
            return ([self._event(payment, payment_id, amount, None, when)] if amount.minor > 0 else []), \
                f"payment {payment_id} is of nothing"
        return [self._event(payment, payment_id if len(applied) == 1 else f"{payment_id}:{i.get('invoice_id')}",
                            book_money(i["amount_applied"], currency, "invoices[].amount_applied"), i, when)
                for i in applied], ""

    def _event(self, payment: dict[str, Any], ref: str, amount: Any, invoice: dict[str, Any] | None,
               when: datetime) -> PaymentEvent:
        currency = payment.get("currency_code")
        invoice = invoice or {}
        number = text(invoice.get("invoice_number"))
        total = invoice.get("total", invoice.get("invoice_amount"))
        mode = payment.get("payment_mode")
        return PaymentEvent(
            source=self.name,
            kind=PaymentKind.PAYMENT,
            amount=amount,
            occurred_at=parse_time(payment.get("date"), when),
            date_only=is_bare_date(payment.get("date")),
            payment_ref=ref,
            invoice_numbers=(number,) if number else (),
            invoice_external_id=text(invoice.get("invoice_id")),
            customer_external_id=text(payment.get("customer_id")),
            payer_email=text(payment.get("email")),
            payer_name=text(payment.get("customer_name")),
            texts=tuple(t for t in (text(payment.get("reference_number")), text(payment.get("description"))) if t),
            reported_balance=book_money(invoice["balance_amount"], currency, "balance_amount")
            if invoice.get("balance_amount") is not None else None,
            invoice_total=book_money(total, currency, "invoice total") if total is not None else None,
            details={"zoho_payment": str(payment.get("payment_id")),
                     "payment_number": str(payment.get("payment_number") or ""),
                     **method_details(PAYMENT_MODES.get(str(mode), mode))},
        )

    async def sweep(self, since: datetime | None, access: PlatformAccess) -> Swept:
        """Payments modified since `since`, newest first (`sort_column=last_modified_time`), each read whole for its
        invoices; paging stops at the first one older than `since`. The mark is the latest modification seen."""
        start = since or datetime.now(UTC) - SWEEP_LOOKBACK  # the sweeper always passes a time (its own clock)
        mark = start
        found: list[Received] = []
        for organization in await access.tenants():
            for page in range(1, SWEEP_PAGES + 1):
                answer = await self._get(access, organization, "/books/v3/customerpayments",
                                         f"payments modified since {start}",
                                         params={"sort_column": "last_modified_time", "sort_order": "D",
                                                 "page": str(page), "per_page": str(PAGE_SIZE)}) or {}
                listed = [p for p in answer.get("customerpayments") or [] if isinstance(p, dict)]
                older = False
                for item in listed:
                    changed = parse_time(item.get("last_modified_time"), start)
                    if changed < start:
                        older = True
                        break
                    mark = max(mark, changed)
                    payment = await self.payment(access, organization, str(item.get("payment_id")))
                    events, _ = self.payments_of(payment, changed) if payment else ([], "")
                    if events:
                        found.append(Received(
                            event_id=f"sweep-{organization}-{item.get('payment_id')}-{item.get('last_modified_time')}",
                            event_type="customer payment swept", payments=tuple(events)))
                if older or not (answer.get("page_context") or {}).get("has_more_page"):
                    break
        return Swept(received=tuple(found), mark=mark)
