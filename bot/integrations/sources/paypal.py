"""PayPal: IPN (form posts, confirmed afterwards by posting them back) and REST webhooks (signed by PayPal, verified
before they are answered), both on `/webhooks/paypal`.

IPN carries no signature. PayPal wants an empty 200 at once, so the message is stored unconfirmed
(`Received.confirm_later`) and `confirm` later posts the raw bytes back, prefixed with `cmd=_notify-validate&`,
accepting only `VERIFIED`. Anyone can post an IPN, so before anything is stored it must look like one PayPal would
send us: at most `IPN_MAX_BYTES`, a known `charset`, a status paybot acts on (others are answered and kept
nowhere), the fields that status needs, and a `receiver_email` of ours. Acted on: `Completed` (a payment),
`Pending` (recorded only), `Refunded` and `Reversed` (a refund or chargeback of `parent_txn_id`: finance hears,
the customer does not). One IPN is one transaction: the event id is `txn_id` plus `payment_status`, so a resend
is a duplicate while a later refund of the same transaction is not.

REST events are told apart by their `PAYPAL-TRANSMISSION-*` headers. Acted on: `PAYMENT.CAPTURE.COMPLETED` (one
capture) and `INVOICING.INVOICE.PAID` (the invoice's state: what is paid so far and what is due; it also fires for
partial payments). First, without any call: the five headers present and printable, `PAYPAL-AUTH-ALGO`
SHA256withRSA, `PAYPAL-CERT-URL` on PayPal's own addresses (`PAYPAL_CERT_ORIGINS`). Then one of two checks:

- With `PAYPAL_CLIENT_ID` and `PAYPAL_CLIENT_SECRET`, PayPal's verify-webhook-signature API (`PAYPAL_BASE_URL`;
  a client-credentials token from `/v1/oauth2/token`, cached by `TokenCache`). The event goes in byte for byte as
  received (spliced into the request, never re-serialised: PayPal's signature covers the CRC32 of those bytes).
  `SUCCESS` accepts; `FAILURE`, or PayPal refusing the transmission's fields (400/422), is a 401. 429, 5xx and
  timeouts are a 503, and so are our credentials refused (401/403; named in the log and by `paybot check`):
  PayPal keeps the event and sends it again. A capture's payer (email, name, payer id) is then read from its
  order, `GET /v2/checkout/orders/{order_id}`: an order PayPal will not show us (404, 403) leaves the payment
  without them, PayPal unavailable is a 503 (retried); a payment is never lost for want of a name.
- Without them, locally, as PayPal documents self-verification: SHA256withRSA over
  `transmission_id|transmission_time|webhook_id|crc32(body)` with the certificate at `PAYPAL-CERT-URL`, fetched
  only from PayPal's addresses and kept per URL (a new URL at most once a minute). No payer lookup.

Why the API call is made before answering, not stored now and verified later as IPN is: IPN must be answered
before it is verified; REST delivery waits for the answer and retries any non-2xx up to 25 times over three days,
so nothing forces an answer first. Verifying first keeps the contract: a forgery is a 401 and leaves no row at
all (store-now would keep one per forged request, however capped); an event PayPal cannot vouch for right now is
a 503 and stays PayPal's to resend, rather than ours to retry until `VERIFY_MAX_ATTEMPTS` and then give up on
after PayPal was told 200. It costs PayPal's round trip inside the request (one call with a cached token; two
for a capture). An unauthenticated flood stays bounded: the cheap checks above first, nothing stored before
`SUCCESS`, and at most `VERIFY_RATE` verification calls a second per process after a burst of `VERIFY_BURST`;
past that a 503 without a call (PayPal resends a genuine event later; a forgery costs PayPal nothing).
"""
from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import logging
import re
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from pydantic import Field, SecretStr, ValidationInfo, field_validator

from bot.domain.money import CurrencyError, Money
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.domain.ratelimit import TokenBucket
from bot.errors import PayloadInvalid, ProviderRejected, ProviderUnavailable, SignatureInvalid
from bot.integrations.base import IntegrationSettings, given, secret, settings_config
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.client_credentials import ClientCredentials, TokenCache, read_with_token
from bot.integrations.sources.base import InboundRequest, Received, Reply, WebhookSource
from bot.integrations.sources.common import field, json_object, path_segment
from bot.settings import Settings as CoreSettings

log = logging.getLogger(__name__)

POSTBACK_PREFIX = b"cmd=_notify-validate&"
IPN_MAX_BYTES = 20_480  # IPN messages are a few KB; nothing larger is kept or posted back
REST_MAX_BYTES = 1_048_576  # signed, and checked before anything is kept: the general limit applies
EMPTY_200 = Reply(200, "")  # what PayPal asks IPN to be answered with, before anything else
#: The `charset`s an IPN may declare (PayPal's list, as Python names them); never any other codec.
IPN_CHARSETS = frozenset({
    *(f"windows-{n}" for n in range(1250, 1259)), *(f"iso-8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 15)),
    "utf-8", "us-ascii", "utf-16", "utf-16be", "utf-16le", "utf-32", "utf-32be", "utf-32le", "koi8-r",
    "shift_jis", "euc-jp", "euc-kr", "iso-2022-jp", "iso-2022-kr", "big5", "gb2312", "gbk",
})
IPN_KINDS = {"Completed": PaymentKind.PAYMENT, "Pending": PaymentKind.PENDING,
             "Refunded": PaymentKind.REFUND, "Reversed": PaymentKind.DISPUTE}
TRANSMISSION_HEADERS = ("PAYPAL-TRANSMISSION-ID", "PAYPAL-TRANSMISSION-TIME", "PAYPAL-TRANSMISSION-SIG",
                        "PAYPAL-CERT-URL", "PAYPAL-AUTH-ALGO")
INVOICE_PAID_STATES = frozenset({"PAID", "PARTIALLY_PAID", "MARKED_AS_PAID"})  # PAYMENT_PENDING: money not there yet
MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}
PACIFIC = {"PST": timezone(timedelta(hours=-8)), "PDT": timezone(timedelta(hours=-7))}
_PAYMENT_DATE = re.compile(r"(\d{1,2}):(\d{2}):(\d{2}) ([A-Z][a-z]{2}) (\d{1,2}), (\d{4}) ([A-Z]{3})")
TIMEOUT = aiohttp.ClientTimeout(total=25)  # PayPal gives a postback about 30 s
SIGNING_ALGORITHM = "SHA256withRSA"  # the only PAYPAL-AUTH-ALGO PayPal uses
CERT_PATH = "/v1/notifications/certs/"
CERT_MAX_BYTES = 65_536
CERT_TIMEOUT = aiohttp.ClientTimeout(total=10)
CERTS_KEPT = 16  # PayPal signs with one certificate at a time; a few more cover a rotation
#: An unseen certificate URL is fetched at most this often: forged events naming made-up certificates on PayPal's
#: host cost PayPal one request a minute at most (a genuine event with a brand-new certificate caught in such a
#: flood is answered 503, and PayPal sends it again).
NEW_CERT_INTERVAL = timedelta(seconds=60)
PAYPAL_CERT_ORIGINS = ("https://api.paypal.com", "https://api-m.paypal.com", "https://api.sandbox.paypal.com",
                       "https://api-m.sandbox.paypal.com")
CREDENTIALS = "PAYPAL_CLIENT_ID/PAYPAL_CLIENT_SECRET"
TOKEN_PATH = "/v1/oauth2/token"
VERIFY_PATH = "/v1/notifications/verify-webhook-signature"
ORDER_PATH = "/v2/checkout/orders/"
#: verify-webhook-signature's fields, from the transmission's headers (and `webhook_id`, ours).
VERIFY_FIELDS = {"auth_algo": "PAYPAL-AUTH-ALGO", "cert_url": "PAYPAL-CERT-URL",
                 "transmission_id": "PAYPAL-TRANSMISSION-ID", "transmission_sig": "PAYPAL-TRANSMISSION-SIG",
                 "transmission_time": "PAYPAL-TRANSMISSION-TIME"}
API_TIMEOUT = 10  # seconds per PayPal API call, inside the webhook's request
#: Verification calls a second per process, after a burst: a shop gets a few REST events a minute; a flood of
#: well-formed forgeries past this is answered 503 without a call (PayPal resends a genuine event later).
VERIFY_RATE, VERIFY_BURST = 5.0, 20.0


class PayPalSettings(IntegrationSettings):
    model_config = settings_config("PAYPAL")
    required = ("receiver_email",)  # or, for REST webhooks alone, the webhook id (see `missing`)

    ipn_verify_url: str = "https://ipnpb.paypal.com/cgi-bin/webscr"
    receiver_email: str | None = None  # the account's address IPN names; several comma-separated
    webhook_id: str | None = None      # the REST webhook subscription's id, from the developer dashboard
    cert_origins: str = ",".join(PAYPAL_CERT_ORIGINS)  # where signing certificates may be fetched from
    client_id: str | None = None       # the REST app's (Apps & Credentials): REST events verified through the API
    client_secret: SecretStr | None = Field(default=None, validate_default=True)
    base_url: str = "https://api-m.paypal.com"  # the REST API (sandbox: https://api-m.sandbox.paypal.com)

    @field_validator("client_secret")
    @classmethod
    def _with_client_id(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Half a credential pair is a mistake, not a choice: falling back to the certificate would hide it."""
        if given(info.data.get("client_id")) != given(value):
            raise ValueError("PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET go together: both (REST events verified "
                             "through PayPal's API) or neither (checked with PayPal's certificate)")
        return value

    def missing(self) -> list[str]:
        """Enabled by IPN's receiver address, or by the REST webhook's id."""
        if self.receiver_email or self.webhook_id:
            return []
        return ["PAYPAL_RECEIVER_EMAIL (IPN) or PAYPAL_WEBHOOK_ID (REST webhooks)"]

    def receivers(self) -> set[str]:
        return {e.strip().lower() for e in (self.receiver_email or "").split(",") if e.strip()}

    def origins(self) -> set[str]:
        return {o.strip().rstrip("/").lower() for o in self.cert_origins.split(",") if o.strip()}

    def uses_api(self) -> bool:
        return given(self.client_id) and given(self.client_secret)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


def is_rest(headers: Mapping[str, str]) -> bool:
    return any(h in headers for h in TRANSMISSION_HEADERS) or \
        headers.get("Content-Type", "").startswith("application/json")


def ipn_charset(text: str) -> str:
    """The message's declared `charset` (windows-1252 if none), if it is a text encoding PayPal uses."""
    declared = dict(parse_qsl(text, keep_blank_values=True, encoding="latin-1")).get("charset") or "windows-1252"
    charset = declared.lower()
    if charset not in IPN_CHARSETS:  # never named in the reason: it is the sender's text
        raise PayloadInvalid("not an IPN message: unsupported charset")
    return charset


def ipn_fields(body: bytes) -> dict[str, str]:
    """The form fields, percent-decoded in the message's own `charset` (windows-1252 unless it says otherwise).
    Every reason is ours alone: none repeats the body."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise PayloadInvalid("not an IPN form body: not URL-encoded ASCII") from None
    charset = ipn_charset(text)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, encoding=charset, errors="strict")
    except UnicodeDecodeError:
        raise PayloadInvalid(f"not an IPN form body: text that is not {charset}") from None
    except ValueError:
        raise PayloadInvalid("not an IPN form body: not name=value pairs") from None
    fields = dict(pairs)
    if any("\x00" in name or "\x00" in value for name, value in pairs):  # never from PayPal; PostgreSQL refuses it
        raise PayloadInvalid("not an IPN message: a NUL character")
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
        raise PayloadInvalid(f"bad {what}: not an amount and currency") from exc


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


def printable(value: str, limit: int = 500) -> bool:
    return 0 < len(value) <= limit and value.isascii() and value.isprintable()


def signed_message(transmission_id: str, transmission_time: str, webhook_id: str, body: bytes) -> bytes:
    """What PayPal signs: the transmission, our webhook's id and the body's CRC32 as an unsigned decimal."""
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}".encode()


def utf8_event(body: bytes) -> dict[str, Any]:
    """The event as a JSON object, from UTF-8 only: its bytes go into PayPal's verification request unchanged."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadInvalid("body is not UTF-8 JSON") from None
    return json_object(body)


def verification_request(headers: Mapping[str, str], webhook_id: str, event: bytes) -> bytes:
    """verify-webhook-signature's JSON body, the event spliced in as received: PayPal checks the CRC32 of the
    event's bytes, so a re-serialised event (other spacing, key order or number forms) would be a false FAILURE."""
    fields = {name: headers[header] for name, header in VERIFY_FIELDS.items()} | {"webhook_id": webhook_id}
    return json.dumps(fields).encode()[:-1] + b', "webhook_event": ' + event + b"}"


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def with_payer(payment: PaymentEvent, order: dict[str, Any]) -> PaymentEvent:
    """The payer of a v2 order: `payer` (email_address, name.given_name/surname, payer_id), or where an order has
    none, `payment_source.paypal` (the same, with account_id)."""
    payer, wallet = _object(order.get("payer")), _object(_object(order.get("payment_source")).get("paypal"))
    name = _object(payer.get("name")) or _object(wallet.get("name"))
    full = " ".join(p for p in (_text(name.get("given_name")), _text(name.get("surname"))) if p)
    return replace(payment, payer_email=_text(payer.get("email_address")) or _text(wallet.get("email_address")),
                   payer_name=full or None,
                   customer_external_id=_text(payer.get("payer_id")) or _text(wallet.get("account_id")))


def credentials_refused(exc: ProviderRejected) -> ProviderRejected:
    """Our REST app's credentials refused (by the token endpoint, or by the API with a fresh token): the settings
    are wrong, not the event. The webhook is answered 503, so PayPal keeps the event until they are fixed."""
    return ProviderRejected(PayPalSource.name, f"{CREDENTIALS} were refused", status=exc.status, body=exc.body)


class SigningCertificates:
    """PayPal's webhook signing certificates, fetched only from `origins` under CERT_PATH (over HTTPS in
    production: TLS to PayPal's own host is what vouches for the certificate) and kept per URL. A URL anywhere
    else is refused without a request."""

    def __init__(self, http: aiohttp.ClientSession, origins: set[str]) -> None:
        self.http = http
        self.origins = origins
        self._kept: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._fetching = asyncio.Lock()
        self._last_new: datetime | None = None

    def allowed(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            origin = f"{parts.scheme}://{parts.netloc}".lower()
        except ValueError:
            return False
        return origin in self.origins and parts.path.startswith(CERT_PATH) and not parts.query \
            and not parts.fragment and ".." not in parts.path and "@" not in parts.netloc

    async def get(self, url: str, now: datetime) -> x509.Certificate:
        if not self.allowed(url):
            raise SignatureInvalid("PAYPAL-CERT-URL is not one of PayPal's certificate addresses")
        if url in self._kept:
            self._kept.move_to_end(url)
            return self._kept[url]
        async with self._fetching:  # one fetch at a time; those waiting for the same URL then find it kept
            if url in self._kept:
                return self._kept[url]
            if self._last_new is not None and now - self._last_new < NEW_CERT_INTERVAL:
                raise ProviderUnavailable(PayPalSource.name, "another new signing certificate was fetched a moment "
                                          "ago; try again later")
            self._last_new = now
            certificate = await self._fetch(url)
            self._kept[url] = certificate
            while len(self._kept) > CERTS_KEPT:
                self._kept.popitem(last=False)
            return certificate

    async def _fetch(self, url: str) -> x509.Certificate:
        try:
            async with self.http.get(url, timeout=CERT_TIMEOUT, allow_redirects=False) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise ProviderUnavailable(PayPalSource.name, "could not fetch the signing certificate",
                                              status=resp.status)
                if resp.status != 200:  # PayPal has no certificate there: whoever named it is not PayPal
                    raise SignatureInvalid(f"PAYPAL-CERT-URL names no certificate (HTTP {resp.status})")
                pem = await resp.content.read(CERT_MAX_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(PayPalSource.name, f"could not fetch the signing certificate: {exc}") from exc
        try:
            if len(pem) > CERT_MAX_BYTES:
                raise ValueError("too large")
            return x509.load_pem_x509_certificates(pem)[0]  # the signer first, then its chain
        except ValueError as exc:
            raise SignatureInvalid("PAYPAL-CERT-URL does not hold a PEM certificate") from exc


class PayPalSource(WebhookSource[PayPalSettings]):
    name: ClassVar[str] = "paypal"
    Settings: ClassVar[type[IntegrationSettings]] = PayPalSettings

    def __init__(self, settings: PayPalSettings, http: aiohttp.ClientSession) -> None:
        super().__init__(settings, http)
        self.certificates = SigningCertificates(http, settings.origins())
        self.clock: Callable[[], datetime] = functools.partial(datetime.now, UTC)  # tests replace it (token expiry)
        self.tokens: TokenCache | None = None  # None: REST events are checked with PayPal's certificate
        if settings.uses_api():
            self.tokens = TokenCache(self.name, ClientCredentials(
                token_url=settings.url(TOKEN_PATH), client_id=settings.client_id or "",
                client_secret=secret(settings.client_secret), client_auth="basic"), http, lambda: self.clock())
        self.verifications = TokenBucket.full(VERIFY_RATE, VERIFY_BURST, datetime.min.replace(tzinfo=UTC))

    def body_limit(self, headers: Mapping[str, str]) -> int:
        return REST_MAX_BYTES if is_rest(headers) else IPN_MAX_BYTES

    def verify(self, request: InboundRequest) -> None:
        """REST: the transmission headers must be there and well-formed, the certificate on PayPal's addresses (the
        signature is checked in `parse`, by PayPal or with the certificate). IPN has nothing to check before the
        postback, which `confirm` makes once PayPal has had its empty 200."""
        if is_rest(request.headers):
            missing = [h for h in TRANSMISSION_HEADERS if not request.headers.get(h)]
            if missing:
                raise SignatureInvalid(f"missing {', '.join(missing)}")
            if not self.settings.webhook_id:
                raise SignatureInvalid("REST webhooks are not configured: PAYPAL_WEBHOOK_ID is unset")
            if not all(printable(request.headers[h]) for h in TRANSMISSION_HEADERS):
                raise SignatureInvalid("malformed PAYPAL-TRANSMISSION headers")
            if request.headers["PAYPAL-AUTH-ALGO"] != SIGNING_ALGORITHM:
                raise SignatureInvalid(f"PAYPAL-AUTH-ALGO is not {SIGNING_ALGORITHM}")
            if not self.certificates.allowed(request.headers["PAYPAL-CERT-URL"]):
                raise SignatureInvalid("PAYPAL-CERT-URL is not one of PayPal's certificate addresses")
        elif not self.settings.receiver_email:
            raise SignatureInvalid("IPN is not configured: PAYPAL_RECEIVER_EMAIL is unset")

    async def parse(self, request: InboundRequest) -> Received:
        if is_rest(request.headers):
            return await self._rest(request)
        fields = ipn_fields(request.body)
        status = fields.get("payment_status") or fields.get("txn_type") or ""
        event_id, event_type = ipn_event_id(fields, request.body)[:255], f"ipn.{status}"[:120]
        payment = ipn_payment(fields, request.received_at)
        if payment is None:  # Denied, Voided, subscription notices…: nothing to act on, so nothing to keep
            return Received(event_id=event_id, event_type=event_type, reply=EMPTY_200, store=False)
        if fields.get("receiver_email", "").strip().lower() not in self.settings.receivers():
            raise PayloadInvalid("receiver_email is not one of PAYPAL_RECEIVER_EMAIL")
        return Received(event_id=event_id, event_type=event_type, payments=(payment,), reply=EMPTY_200,
                        confirm_later=True)

    async def confirm(self, stored: InboundRequest) -> Received:
        """Post the stored IPN back unchanged; VERIFIED, it is what `parse` made of it."""
        await self._postback(stored.body)
        received = await self.parse(stored)
        return Received(event_id=received.event_id, event_type=received.event_type, payments=received.payments)

    async def _postback(self, body: bytes) -> None:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "paybot-ipn-verifier"}
        try:
            async with self.http.post(self.settings.ipn_verify_url, data=POSTBACK_PREFIX + body, headers=headers,
                                      timeout=TIMEOUT) as resp:
                status = resp.status
                answer = (await resp.content.read(64)).decode(errors="replace").strip()  # one word is expected
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(self.name, f"IPN postback failed: {exc}") from exc
        if status == 200 and answer == "VERIFIED":
            return
        if status == 200 and answer == "INVALID":
            raise SignatureInvalid("PayPal answered INVALID to the IPN postback")
        raise ProviderUnavailable(self.name, "unexpected IPN postback answer", status=status, body=answer)

    async def _rest(self, request: InboundRequest) -> Received:
        if self.tokens is None:
            await self._verify_signature(request)
            event = json_object(request.body)
        else:
            event = utf8_event(request.body)  # a 400 before any call: it must be JSON to be spliced in
            await self._verify_with_paypal(request, self.tokens)
        event_id, event_type = str(field(event, "id")), str(field(event, "event_type"))
        resource = field(event, "resource")
        if not isinstance(resource, dict):
            raise PayloadInvalid("resource is not an object")
        occurred = iso_time(event.get("create_time"), request.received_at)
        payment = None
        if event_type == "PAYMENT.CAPTURE.COMPLETED" and resource.get("status", "COMPLETED") == "COMPLETED":
            payment = capture_payment(event_id, resource, occurred)
            if self.tokens is not None and payment.details.get("order_id"):
                payment = await self._with_payer(payment, payment.details["order_id"], self.tokens)
        elif event_type == "INVOICING.INVOICE.PAID":
            payment = invoice_payment(event_id, resource, occurred)
        kept = {h: request.headers[h] for h in ("PAYPAL-TRANSMISSION-ID", "PAYPAL-TRANSMISSION-TIME")}
        return Received(event_id=event_id, event_type=event_type, payments=(payment,) if payment else (),
                        headers_kept=kept)

    async def _verify_with_paypal(self, request: InboundRequest, tokens: TokenCache) -> None:
        """PayPal's own verdict on this transmission of this event, for our webhook."""
        if not self.verifications.take(request.received_at):
            raise ProviderUnavailable(self.name, "too many events to verify right now; PayPal will send it again")
        try:
            await tokens.token()  # first, alone: a refusal here is our credentials', never the sender's
        except ProviderRejected as exc:
            raise credentials_refused(exc) from exc
        body = verification_request(request.headers, self.settings.webhook_id or "", request.body)
        try:
            answer = await read_with_token(tokens, "POST", self.settings.url(VERIFY_PATH), data=body,
                                           headers={"Content-Type": "application/json"},
                                           what="verify-webhook-signature", timeout=API_TIMEOUT)
        except ProviderRejected as exc:
            if exc.status in (401, 403):  # refused with a fresh token too
                raise credentials_refused(exc) from exc
            raise SignatureInvalid(f"PayPal refused to verify the transmission (HTTP {exc.status})") from exc
        verdict = answer.get("verification_status")
        if verdict == "FAILURE":
            raise SignatureInvalid("PayPal's verify-webhook-signature answered FAILURE")
        if verdict != "SUCCESS":
            raise ProviderUnavailable(self.name, "verify-webhook-signature answered without a verdict")

    async def _with_payer(self, payment: PaymentEvent, order_id: str, tokens: TokenCache) -> PaymentEvent:
        """The capture's payer, from its order. PayPal unavailable: ProviderUnavailable (503, the event is sent
        again). An order PayPal will not show us (404, 403…): the payment is recorded without a payer."""
        url = self.settings.url(ORDER_PATH + path_segment(order_id))
        try:
            order = await read_with_token(tokens, "GET", url, what=f"order {order_id}", timeout=API_TIMEOUT)
        except ProviderRejected as exc:
            log.warning("paypal capture %s: order %s could not be read (HTTP %s); recorded without the payer",
                        payment.payment_ref, order_id, exc.status)
            return replace(payment, details=payment.details | {"payer_lookup": f"order unreadable (HTTP {exc.status})"})
        return with_payer(payment, order)

    async def _verify_signature(self, request: InboundRequest) -> None:
        """PayPal's self-verification: its certificate's key must have signed this transmission of this body for
        our webhook (used when no REST app credentials are set)."""
        h = request.headers
        try:
            signature = base64.b64decode(h["PAYPAL-TRANSMISSION-SIG"], validate=True)
        except ValueError:
            raise SignatureInvalid("PAYPAL-TRANSMISSION-SIG is not base64") from None
        certificate = await self.certificates.get(h["PAYPAL-CERT-URL"], request.received_at)
        if not certificate.not_valid_before_utc <= request.received_at <= certificate.not_valid_after_utc:
            raise SignatureInvalid("PayPal's signing certificate is not valid now")
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names or not str(names[0].value).lower().endswith(".paypal.com"):
            raise SignatureInvalid("the signing certificate is not PayPal's")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureInvalid("the signing certificate holds no RSA key")
        message = signed_message(h["PAYPAL-TRANSMISSION-ID"], h["PAYPAL-TRANSMISSION-TIME"],
                                 self.settings.webhook_id or "", request.body)
        try:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise SignatureInvalid("PayPal's signature does not match this event and webhook") from None

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """With REST app credentials, a token proves them; without, there is nothing to call (IPN is verified by
        its postback, REST events with PayPal's certificate)."""
        if self.tokens is None:
            return [ok("nothing to call (IPN is verified by posting each message back; REST events by PayPal's "
                       "certificate)")]
        try:
            await self.tokens.token()
        except ProviderRejected as exc:
            return [problem(f"{CREDENTIALS} were refused (HTTP {exc.status}): use the REST app's live credentials, "
                            f"or sandbox ones with PAYPAL_BASE_URL=https://api-m.sandbox.paypal.com")]
        return [ok(f"{CREDENTIALS} accepted; REST events are verified through PayPal's verify-webhook-signature API")]
