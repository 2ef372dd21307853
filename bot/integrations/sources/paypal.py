"""PayPal: IPN (form posts, confirmed afterwards by posting them back) and REST webhooks (verified through PayPal's
verify-webhook-signature API), both on `/webhooks/paypal`.

IPN carries no signature. PayPal wants an empty 200 at once, so the message is stored unconfirmed
(`Received.confirm_later`) and `confirm` later posts the raw bytes back, prefixed with `cmd=_notify-validate&`,
accepting only `VERIFIED`; then `receiver_email` must be ours. Acted on: `Completed` (a payment), `Pending`
(recorded only), `Refunded` and `Reversed` (a refund or chargeback of `parent_txn_id`: finance hears, the customer
does not). One IPN is one transaction: the event id is `txn_id` plus `payment_status`, so a resend is a duplicate
while a later refund of the same transaction is not.

REST events, told apart by their `PAYPAL-TRANSMISSION-*` headers, are verified before the answer: a `FAILURE` is a
401. Acted on: `PAYMENT.CAPTURE.COMPLETED` (one capture) and `INVOICING.INVOICE.PAID` (the invoice's state: what
is paid so far and what is due; it also fires for partial payments).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import aiohttp
from multidict import CIMultiDictProxy
from pydantic import SecretStr

from bot.domain.money import CurrencyError, Money
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import PayloadInvalid, ProviderRejected, ProviderUnavailable, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.http import raise_for_status
from bot.integrations.sources.base import InboundRequest, Received, Reply, WebhookSource
from bot.integrations.sources.common import field, json_object
from bot.settings import Settings as CoreSettings

POSTBACK_PREFIX = b"cmd=_notify-validate&"
IPN_KINDS = {"Completed": PaymentKind.PAYMENT, "Pending": PaymentKind.PENDING,
             "Refunded": PaymentKind.REFUND, "Reversed": PaymentKind.DISPUTE}
TRANSMISSION_HEADERS = ("PAYPAL-TRANSMISSION-ID", "PAYPAL-TRANSMISSION-TIME", "PAYPAL-TRANSMISSION-SIG",
                        "PAYPAL-CERT-URL", "PAYPAL-AUTH-ALGO")
INVOICE_PAID_STATES = frozenset({"PAID", "PARTIALLY_PAID", "MARKED_AS_PAID"})  # PAYMENT_PENDING: money not there yet
MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}
PACIFIC = {"PST": timezone(timedelta(hours=-8)), "PDT": timezone(timedelta(hours=-7))}
_PAYMENT_DATE = re.compile(r"(\d{1,2}):(\d{2}):(\d{2}) ([A-Z][a-z]{2}) (\d{1,2}), (\d{4}) ([A-Z]{3})")
TIMEOUT = aiohttp.ClientTimeout(total=25)  # PayPal gives a postback about 30 s


class PayPalSettings(IntegrationSettings):
    model_config = settings_config("PAYPAL")
    required = ("receiver_email",)  # or, for REST webhooks alone, the four REST settings (see `missing`)

    ipn_verify_url: str = "https://ipnpb.paypal.com/cgi-bin/webscr"
    receiver_email: str | None = None  # the account's address IPN names; several comma-separated
    webhook_id: str | None = None      # the REST webhook subscription's id, from the developer dashboard
    client_id: str | None = None
    client_secret: SecretStr | None = None
    base_url: str = "https://api-m.paypal.com"

    def rest_missing(self) -> list[str]:
        return [f"PAYPAL_{name.upper()}" for name in ("webhook_id", "client_id", "client_secret")
                if not getattr(self, name)]

    def missing(self) -> list[str]:
        """Enabled by IPN's receiver address, or by the REST settings alone."""
        if self.receiver_email or not self.rest_missing():
            return []
        return ["PAYPAL_RECEIVER_EMAIL (IPN) or " + " + ".join(self.rest_missing()) + " (REST webhooks)"]

    def receivers(self) -> set[str]:
        return {e.strip().lower() for e in (self.receiver_email or "").split(",") if e.strip()}


def is_rest(request: InboundRequest) -> bool:
    return any(h in request.headers for h in TRANSMISSION_HEADERS) or \
        request.headers.get("Content-Type", "").startswith("application/json")


def ipn_fields(body: bytes) -> dict[str, str]:
    """The form fields, percent-decoded in the message's own `charset` (windows-1252 unless it says otherwise)."""
    try:
        text = body.decode("ascii")
        charset = dict(parse_qsl(text, encoding="latin-1")).get("charset") or "windows-1252"
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, encoding=charset, errors="strict")
    except (UnicodeDecodeError, ValueError, LookupError) as exc:  # LookupError: a charset Python does not know
        raise PayloadInvalid(f"not an IPN form body: {exc}") from exc
    fields = dict(pairs)
    if not fields.get("payment_status") and not fields.get("txn_type"):
        raise PayloadInvalid("not an IPN message: neither payment_status nor txn_type")
    return fields


def payment_date(value: str | None, default: datetime) -> datetime:
    """IPN's `20:12:59 Jan 13, 2009 PST` (Pacific time, PST or PDT) as UTC."""
    found = _PAYMENT_DATE.fullmatch((value or "").strip())
    if not found or found[4] not in MONTHS or found[7] not in PACIFIC:
        return default
    hour, minute, second, _, day, year, zone = found.groups()
    try:
        local = datetime(int(year), MONTHS[found[4]], int(day), int(hour), int(minute), int(second),
                         tzinfo=PACIFIC[zone])
    except ValueError:
        return default
    return local.astimezone(UTC)


def iso_time(value: Any, default: datetime) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return default
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def money(value: Any, currency: Any, what: str) -> Money:
    try:
        return Money.of(abs(Decimal(str(value))), str(currency))
    except (InvalidOperation, ValueError, CurrencyError) as exc:
        raise PayloadInvalid(f"bad {what}: {value!r} {currency!r}") from exc


def rest_money(amount: Any, what: str) -> Money:
    if not isinstance(amount, dict):
        raise PayloadInvalid(f"missing field {what}")
    return money(amount.get("value"), amount.get("currency_code"), what)


def ipn_event_id(fields: dict[str, str], body: bytes) -> str:
    if fields.get("txn_id"):
        return f"{fields['txn_id']}:{fields.get('payment_status', '')}"
    return fields.get("ipn_track_id") or hashlib.sha256(body).hexdigest()


def ipn_payment(fields: dict[str, str], received_at: datetime) -> PaymentEvent | None:
    status = fields.get("payment_status", "")
    kind = IPN_KINDS.get(status)
    if kind is None:
        return None  # Denied, Failed, Voided, Canceled_Reversal, subscription notices: nothing to acknowledge
    for name in ("txn_id", "mc_gross", "mc_currency"):
        if not fields.get(name):
            raise PayloadInvalid(f"{status} IPN without {name}")
    undoes = kind in (PaymentKind.REFUND, PaymentKind.DISPUTE)
    name = " ".join(n for n in (fields.get("first_name"), fields.get("last_name")) if n)
    kept = ("txn_type", "payment_status", "pending_reason", "reason_code", "parent_txn_id", "ipn_track_id",
            "test_ipn", "payer_id")
    return PaymentEvent(
        source=PayPalSource.name,
        kind=kind,
        amount=money(fields["mc_gross"], fields["mc_currency"], "mc_gross"),  # negative for refunds: kept positive
        occurred_at=payment_date(fields.get("payment_date"), received_at),
        payment_ref=fields["txn_id"],
        invoice_numbers=tuple(n for n in (fields.get("invoice"),) if n),
        customer_external_id=fields.get("payer_id") or None,
        payer_email=fields.get("payer_email") or None,
        payer_name=name or fields.get("payer_business_name") or None,
        texts=tuple(t for t in (fields.get("custom"), fields.get("item_name"), fields.get("memo")) if t),
        details={k: fields[k] for k in kept if fields.get(k)},
        reverses=(fields["parent_txn_id"],) if undoes and fields.get("parent_txn_id") else (),
    )


def capture_payment(event_id: str, capture: dict[str, Any], occurred: datetime) -> PaymentEvent:
    related = ((capture.get("supplementary_data") or {}).get("related_ids") or {})
    return PaymentEvent(
        source=PayPalSource.name,
        kind=PaymentKind.PAYMENT,
        amount=rest_money(capture.get("amount"), "resource.amount"),
        occurred_at=iso_time(capture.get("create_time"), occurred),
        payment_ref=str(field(capture, "id")),
        invoice_numbers=tuple(str(n) for n in (capture.get("invoice_id"),) if n),
        texts=tuple(str(t) for t in (capture.get("custom_id"),) if t),
        details={"paypal_event": event_id, **({"order_id": str(related["order_id"])} if related.get("order_id") else {})},
    )


def invoice_payment(event_id: str, resource: dict[str, Any], occurred: datetime) -> PaymentEvent | None:
    """The invoice's state after a payment, partial or full. PayPal's documented example is flat (`invoice_number`
    under `resource`); real events nest the v2 invoice under `resource.invoice`: both are read."""
    invoice = resource["invoice"] if isinstance(resource.get("invoice"), dict) else resource
    payments = invoice.get("payments") or {}
    if invoice.get("status") not in INVOICE_PAID_STATES or not payments.get("paid_amount"):
        return None
    detail = invoice.get("detail") or {}
    number = detail.get("invoice_number") or invoice.get("invoice_number")
    transactions = [t for t in payments.get("transactions") or [] if isinstance(t, dict)]
    billing = next((r.get("billing_info") or {} for r in invoice.get("primary_recipients") or []
                    if isinstance(r, dict)), {})
    person = billing.get("name") or {}
    name = person.get("full_name") or " ".join(p for p in (person.get("given_name"), person.get("surname")) if p)
    due = invoice.get("due_amount")
    return PaymentEvent(
        source=PayPalSource.name,
        kind=PaymentKind.PAYMENT,
        amount=rest_money(payments["paid_amount"], "payments.paid_amount"),
        cumulative=True,
        occurred_at=occurred,
        payment_ref=str(transactions[-1]["payment_id"]) if transactions and transactions[-1].get("payment_id") else None,
        invoice_numbers=(str(number),) if number else (),
        invoice_external_id=str(invoice["id"]) if invoice.get("id") else None,
        payer_email=billing.get("email_address") or invoice.get("payer_email"),
        payer_name=name or None,
        reported_balance=rest_money(due, "due_amount") if due else None,
        invoice_total=rest_money(invoice["amount"], "amount") if isinstance(invoice.get("amount"), dict) else None,
        details={"paypal_event": event_id, "paypal_invoice": str(invoice.get("id") or ""),
                 "invoice_status": str(invoice.get("status"))},
    )


class AccessToken:
    """An OAuth2 client-credentials token, fetched when first needed and reused until shortly before it expires."""

    def __init__(self, http: aiohttp.ClientSession, settings: PayPalSettings) -> None:
        self.http = http
        self.settings = settings
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        self._token = None

    async def get(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires:
                self._token, lifetime = await self._fetch()
                self._expires = time.monotonic() + max(lifetime - 60, 0)
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        url = f"{self.settings.base_url.rstrip('/')}/v1/oauth2/token"
        auth = aiohttp.encode_basic_auth(self.settings.client_id or "", secret(self.settings.client_secret))
        headers = {"Authorization": auth, "Accept": "application/json"}
        try:
            async with self.http.post(url, data={"grant_type": "client_credentials"}, headers=headers,
                                      timeout=TIMEOUT) as resp:
                body = await resp.read()
                raise_for_status(PayPalSource.name, resp.status, body.decode(errors="replace"), resp.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(PayPalSource.name, f"could not get an access token: {exc}") from exc
        answer = json_object(body)
        if not answer.get("access_token"):
            raise ProviderRejected(PayPalSource.name, "token response without access_token")
        return str(answer["access_token"]), float(answer.get("expires_in") or 0)


class PayPalSource(WebhookSource[PayPalSettings]):
    name: ClassVar[str] = "paypal"
    Settings: ClassVar[type[IntegrationSettings]] = PayPalSettings

    def __init__(self, settings: PayPalSettings, http: aiohttp.ClientSession) -> None:
        super().__init__(settings, http)
        self.token = AccessToken(http, settings)

    def verify(self, request: InboundRequest) -> None:
        """REST: the transmission headers must be there (PayPal's API checks them, in `parse`). IPN has nothing to
        check before the postback, which `confirm` makes once PayPal has had its empty 200."""
        if is_rest(request):
            missing = [h for h in TRANSMISSION_HEADERS if not request.headers.get(h)]
            if missing:
                raise SignatureInvalid(f"missing {', '.join(missing)}")
            if self.settings.rest_missing():
                raise SignatureInvalid(f"REST webhooks are not configured: {', '.join(self.settings.rest_missing())}")
        elif not self.settings.receiver_email:
            raise SignatureInvalid("IPN is not configured: PAYPAL_RECEIVER_EMAIL is unset")

    async def parse(self, request: InboundRequest) -> Received:
        if is_rest(request):
            return await self._rest(request)
        fields = ipn_fields(request.body)
        payment = ipn_payment(fields, request.received_at)
        return Received(
            event_id=ipn_event_id(fields, request.body),
            event_type=f"ipn.{fields.get('payment_status') or fields.get('txn_type')}",
            payments=(payment,) if payment else (),
            reply=Reply(200, ""),             # PayPal asks for an empty 200 before anything else
            confirm_later=payment is not None,  # nothing to act on, nothing to confirm
        )

    async def confirm(self, stored: InboundRequest) -> Received:
        """Post the stored IPN back unchanged; VERIFIED and addressed to us, it is what `parse` made of it."""
        await self._postback(stored.body)
        received = await self.parse(stored)
        receiver = ipn_fields(stored.body).get("receiver_email", "").strip().lower()
        if receiver not in self.settings.receivers():
            raise PayloadInvalid("receiver_email is not one of PAYPAL_RECEIVER_EMAIL")
        return Received(event_id=received.event_id, event_type=received.event_type, payments=received.payments)

    async def _postback(self, body: bytes) -> None:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "paybot-ipn-verifier"}
        try:
            async with self.http.post(self.settings.ipn_verify_url, data=POSTBACK_PREFIX + body, headers=headers,
                                      timeout=TIMEOUT) as resp:
                status, answer = resp.status, (await resp.read()).decode(errors="replace").strip()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(self.name, f"IPN postback failed: {exc}") from exc
        if status == 200 and answer == "VERIFIED":
            return
        if status == 200 and answer == "INVALID":
            raise SignatureInvalid("PayPal answered INVALID to the IPN postback")
        raise ProviderUnavailable(self.name, "unexpected IPN postback answer", status=status, body=answer)

    async def _rest(self, request: InboundRequest) -> Received:
        event = json_object(request.body)
        event_id, event_type = str(field(event, "id")), str(field(event, "event_type"))
        resource = field(event, "resource")
        if not isinstance(resource, dict):
            raise PayloadInvalid("resource is not an object")
        await self._verify_signature(request)
        occurred = iso_time(event.get("create_time"), request.received_at)
        payment = None
        if event_type == "PAYMENT.CAPTURE.COMPLETED" and resource.get("status", "COMPLETED") == "COMPLETED":
            payment = capture_payment(event_id, resource, occurred)
        elif event_type == "INVOICING.INVOICE.PAID":
            payment = invoice_payment(event_id, resource, occurred)
        kept = {h: request.headers[h] for h in ("PAYPAL-TRANSMISSION-ID", "PAYPAL-TRANSMISSION-TIME")}
        return Received(event_id=event_id, event_type=event_type, payments=(payment,) if payment else (),
                        headers_kept=kept)

    async def _verify_signature(self, request: InboundRequest) -> None:
        h = request.headers
        fields = {"auth_algo": h["PAYPAL-AUTH-ALGO"], "cert_url": h["PAYPAL-CERT-URL"],
                  "transmission_id": h["PAYPAL-TRANSMISSION-ID"], "transmission_sig": h["PAYPAL-TRANSMISSION-SIG"],
                  "transmission_time": h["PAYPAL-TRANSMISSION-TIME"], "webhook_id": self.settings.webhook_id}
        # The event goes back byte for byte: a re-serialised event can fail PayPal's check.
        body = json.dumps(fields).encode()[:-1] + b', "webhook_event": ' + request.body + b"}"
        status, answer, headers = await self._ask_to_verify(body)
        if status == 401:  # the token was revoked or expired early: one fresh token, one more try
            self.token.forget()
            status, answer, headers = await self._ask_to_verify(body)
        if status in (400, 422):  # PayPal refuses the transmission headers themselves
            raise SignatureInvalid(f"PayPal could not verify the transmission (HTTP {status})")
        raise_for_status(self.name, status, answer.decode(errors="replace"), headers)
        try:
            verdict = json.loads(answer).get("verification_status")
        except (ValueError, AttributeError) as exc:
            raise ProviderUnavailable(self.name, "verify-webhook-signature answered no verdict") from exc
        if verdict != "SUCCESS":
            raise SignatureInvalid(f"PayPal's verify-webhook-signature answered {verdict}")

    async def _ask_to_verify(self, body: bytes) -> tuple[int, bytes, CIMultiDictProxy[str]]:
        url = f"{self.settings.base_url.rstrip('/')}/v1/notifications/verify-webhook-signature"
        headers = {"Authorization": f"Bearer {await self.token.get()}", "Content-Type": "application/json"}
        try:
            async with self.http.post(url, data=body, headers=headers, timeout=TIMEOUT) as resp:
                return resp.status, await resp.read(), resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(self.name, f"verify-webhook-signature failed: {exc}") from exc

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """REST webhooks: an OAuth2 token for the client id and secret (`POST /v1/oauth2/token`). IPN has no
        credential: each message is verified by its postback."""
        if self.settings.rest_missing():
            return [ok("IPN only: nothing to call (each message is verified by posting it back to PayPal)")]
        try:
            await self.token.get()
        except ProviderRejected as exc:
            return [problem(f"PAYPAL_CLIENT_ID / PAYPAL_CLIENT_SECRET were refused (HTTP {exc.status}): copy both "
                            "from the REST app of the same environment as PAYPAL_BASE_URL")]
        return [ok("PAYPAL_CLIENT_ID / PAYPAL_CLIENT_SECRET accepted (an OAuth2 token was issued)")]
