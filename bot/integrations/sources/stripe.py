"""Stripe: signed Event objects (`Stripe-Signature`), amounts in Stripe's minor units.

Acts on `invoice.paid` / `invoice.payment_succeeded` (the invoice's state), `invoice_payment.paid` (one payment,
partial ones included; the event is answered at once and its invoice read back after the answer with
`GET /v1/invoices/{id}`: `resolve`, see `Received.resolve_later`), and `payment_intent.succeeded` /
`charge.succeeded` when their metadata names an invoice. `charge.refunded` and `charge.dispute.created` are
reversals of a payment already recorded: finance hears, the customer is never thanked. Since 2025-03-31.basil
neither the charge nor `invoice.paid` names the other, so with an API key a reversal's PaymentIntent is traced to its
invoice through `GET /v1/invoice_payments`. Everything else is answered 200 and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import replace
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import SecretStr

from bot.domain.money import CurrencyError, Money, exponent
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import PayloadInvalid, ProviderRejected, ProviderUnavailable, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, secrets, settings_config
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.sources.base import InboundRequest, PlatformAccess, Received, WebhookSource
from bot.integrations.sources.common import (digest_matches, fetch_json, field, from_unix, json_object,
                                             method_details, path_segment, unix_seconds)
from bot.settings import Settings as CoreSettings

log = logging.getLogger(__name__)
API_VERSION = "2025-05-28.basil"

# Stripe's own minor units differ from ISO 4217 for a few currencies (ISK is sent in hundredths, for one).
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
INVOICE_STATE_EVENTS = frozenset({"invoice.paid", "invoice.payment_succeeded"})
MONEY_MOVEMENT_EVENTS = frozenset({"payment_intent.succeeded", "charge.succeeded"})


class StripeSettings(IntegrationSettings):
    model_config = settings_config("STRIPE")
    required = ("webhook_secret",)

    webhook_secret: SecretStr | None = None  # whsec_…; several comma-separated while rotating
    api_key: SecretStr | None = None         # reads invoices back (invoice_payment.paid, refunds, disputes)
    base_url: str = "https://api.stripe.com"
    tolerance_seconds: int = 300


def stripe_money(minor: Any, currency: Any) -> Money:
    """Stripe's integer amount in its own minor units (a fraction or a string is a malformed payload)."""
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise PayloadInvalid(f"bad amount: {minor!r} is not an integer")
    try:
        code = str(currency).upper()
        places = 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2
        if places == exponent(code):
            return Money.from_minor(minor, code)
        return Money.rounded(Decimal(minor).scaleb(-places), code)
    except (TypeError, ValueError, CurrencyError) as exc:
        raise PayloadInvalid(f"bad amount or currency: {minor!r} {currency!r}") from exc


def sign(body: bytes, secret_key: str, timestamp: int) -> str:
    """The `Stripe-Signature` header Stripe would send (used by `paybot demo` and the tests)."""
    mac = hmac.new(secret_key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def invoice_refs(metadata: Any) -> tuple[str, ...]:
    """Invoice numbers a payer's metadata names (keys such as `invoice`, `invoice_number`)."""
    if not isinstance(metadata, dict):
        return ()
    return tuple(str(v) for k, v in metadata.items() if "invoice" in str(k).lower() and v)


class StripeSource(WebhookSource[StripeSettings]):
    name: ClassVar[str] = "stripe"
    Settings: ClassVar[type[IntegrationSettings]] = StripeSettings

    def verify(self, request: InboundRequest) -> None:
        header = request.headers.get("Stripe-Signature", "")
        pairs = [item.split("=", 1) for item in header.split(",") if "=" in item]
        timestamps = [v for k, v in pairs if k.strip() == "t"]
        signatures = [v.strip() for k, v in pairs if k.strip() == "v1"]
        if not timestamps or not signatures or not unix_seconds(timestamps[0].strip()):
            raise SignatureInvalid("Stripe-Signature header missing or malformed")
        timestamp = int(timestamps[0])
        signed = f"{timestamp}.".encode() + request.body
        expected = [hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
                    for key in secrets(self.settings.webhook_secret)]
        if not any(digest_matches(e, signatures) for e in expected):
            raise SignatureInvalid("no v1 signature matches")
        if abs(request.received_at.timestamp() - timestamp) > self.settings.tolerance_seconds:
            raise SignatureInvalid("timestamp outside the tolerance: a replay?")

    async def parse(self, request: InboundRequest) -> Received:
        event = json_object(request.body)
        event_id, event_type = str(field(event, "id")), str(field(event, "type"))
        obj = field(event, "data", "object")
        if not isinstance(obj, dict):
            raise PayloadInvalid("data.object is not an object")
        occurred = from_unix(event.get("created"), request.received_at)
        payments: tuple[PaymentEvent, ...] = ()
        if event_type in INVOICE_STATE_EVENTS and int(obj.get("amount_paid") or 0) > 0:
            payments = (self._from_invoice(obj, occurred),)
        elif event_type == "invoice_payment.paid":
            if not isinstance(obj.get("invoice"), str):
                raise PayloadInvalid("invoice_payment.invoice is missing")
            # Its invoice is read after the answer: Stripe never waits on, nor retries for, Stripe's own API.
            return Received(event_id=event_id, event_type=event_type, resolve_later=True)
        elif event_type in MONEY_MOVEMENT_EVENTS and (obj.get("invoice") or invoice_refs(obj.get("metadata"))):
            payments = (self._from_movement(event_type, obj, occurred),)
        elif event_type == "charge.refunded":
            payments = (await self._with_invoice(self._from_refund(obj, event["data"].get("previous_attributes"),
                                                                   occurred)),)
        elif event_type == "charge.dispute.created":
            payments = (await self._with_invoice(self._from_dispute(obj, occurred)),)
        return Received(event_id=event_id, event_type=event_type, payments=payments)

    async def resolve(self, stored: InboundRequest, access: PlatformAccess) -> Received:
        """A stored `invoice_payment.paid`, with its invoice read back (STRIPE_API_KEY; Stripe's tokens need no
        `access`). A 429/5xx, or no key yet, waits and is retried; a refused key is retried, then given up on."""
        event = json_object(stored.body)
        obj = field(event, "data", "object")
        if not isinstance(obj, dict):
            raise PayloadInvalid("data.object is not an object")
        occurred = from_unix(event.get("created"), stored.received_at)
        return Received(event_id=str(field(event, "id")), event_type=str(field(event, "type")),
                        payments=(await self._from_invoice_payment(obj, occurred),))

    def _from_invoice(self, invoice: dict[str, Any], occurred: Any, **overrides: Any) -> PaymentEvent:
        currency = field(invoice, "currency")
        metadata = invoice.get("metadata") or {}
        # Before API 2025-03-31.basil the invoice names its PaymentIntent: a later refund can then find it.
        legacy_ref = next((v for v in (invoice.get("payment_intent"), invoice.get("charge")) if isinstance(v, str)), None)
        values: dict[str, Any] = dict(
            source=self.name,
            kind=PaymentKind.PAYMENT,
            amount=stripe_money(invoice.get("amount_paid", 0), currency),
            cumulative=True,
            payment_ref=legacy_ref,
            occurred_at=occurred,
            invoice_numbers=tuple(n for n in (invoice.get("number"),) if n) + invoice_refs(metadata),
            invoice_external_id=invoice.get("id"),
            customer_external_id=invoice.get("customer") if isinstance(invoice.get("customer"), str) else None,
            payer_email=invoice.get("customer_email"),
            payer_name=invoice.get("customer_name"),
            payer_phone=invoice.get("customer_phone"),
            texts=tuple(str(v) for v in (invoice.get("description"), *metadata.values()) if v),
            reported_balance=stripe_money(invoice["amount_remaining"], currency)
            if invoice.get("amount_remaining") is not None else None,
            invoice_total=stripe_money(invoice["total"], currency) if invoice.get("total") is not None else None,
            details={"stripe_invoice": str(invoice.get("id")), "hosted_invoice_url": str(invoice.get("hosted_invoice_url") or "")},
        )
        values.update(overrides)
        return PaymentEvent(**values)

    async def _from_invoice_payment(self, invoice_payment: dict[str, Any], occurred: Any) -> PaymentEvent:
        invoice_id = invoice_payment.get("invoice")
        if not isinstance(invoice_id, str):
            raise PayloadInvalid("invoice_payment.invoice is missing")
        invoice = await self.fetch_invoice(invoice_id)
        payment = invoice_payment.get("payment") or {}
        ref = payment.get("payment_intent") or payment.get("charge") or invoice_payment.get("id")
        paid_at = (invoice_payment.get("status_transitions") or {}).get("paid_at")
        return self._from_invoice(
            invoice, from_unix(paid_at, occurred),
            amount=stripe_money(field(invoice_payment, "amount_paid"), field(invoice_payment, "currency")),
            cumulative=False,
            payment_ref=str(ref) if ref else None,
        )

    def _from_movement(self, event_type: str, obj: dict[str, Any], occurred: Any) -> PaymentEvent:
        is_charge = event_type == "charge.succeeded"
        amount_key = "amount_captured" if is_charge else "amount_received"
        billing = obj.get("billing_details") or {}
        metadata = obj.get("metadata") or {}
        ref = (obj.get("payment_intent") if is_charge else None) or obj.get("id")
        legacy_invoice = obj.get("invoice") if isinstance(obj.get("invoice"), str) else None
        return PaymentEvent(
            source=self.name,
            kind=PaymentKind.PAYMENT,
            amount=stripe_money(obj.get(amount_key, obj.get("amount")), field(obj, "currency")),
            occurred_at=from_unix(obj.get("created"), occurred),
            payment_ref=str(ref),
            invoice_numbers=invoice_refs(metadata),
            invoice_external_id=legacy_invoice,
            customer_external_id=obj.get("customer") if isinstance(obj.get("customer"), str) else None,
            payer_email=billing.get("email") or obj.get("receipt_email"),
            payer_name=billing.get("name"),
            payer_phone=billing.get("phone"),
            texts=tuple(str(v) for v in (obj.get("description"), *metadata.values()) if v),
            details=charge_method(obj),
        )

    def _from_refund(self, charge: dict[str, Any], previous: Any, occurred: Any) -> PaymentEvent:
        """The refund this event announces. `amount_refunded` is the charge's running total, so the amount is the
        newest refund in `refunds` (older API versions expand it), else the growth since `previous_attributes`."""
        refunds = [r for r in (charge.get("refunds") or {}).get("data") or [] if isinstance(r, dict)]
        latest = max(refunds, key=lambda r: int(r.get("created") or 0)) if refunds else None
        before = (previous or {}).get("amount_refunded") if isinstance(previous, dict) else None
        if latest is not None:
            minor, ref, when = latest.get("amount"), latest.get("id"), latest.get("created")
        else:
            total = int(field(charge, "amount_refunded"))
            minor, ref, when = total - int(before or 0), f"{charge.get('id')}:refunded:{total}", None
        return self._reversal(PaymentKind.REFUND, charge, charge, stripe_money(minor, field(charge, "currency")),
                              str(ref), from_unix(when, occurred))

    def _from_dispute(self, dispute: dict[str, Any], occurred: Any) -> PaymentEvent:
        charge: dict[str, Any] = dispute["charge"] if isinstance(dispute.get("charge"), dict) else {}
        money = stripe_money(field(dispute, "amount"), field(dispute, "currency"))
        event = self._reversal(PaymentKind.DISPUTE, dispute, charge, money, str(field(dispute, "id")),
                               from_unix(dispute.get("created"), occurred))
        return replace(event, details={**event.details, "reason": str(dispute.get("reason") or "")})

    def _reversal(self, kind: PaymentKind, obj: dict[str, Any], charge: dict[str, Any], amount: Money, ref: str,
                  occurred: Any) -> PaymentEvent:
        """A refund or dispute, tied to the charge and PaymentIntent it undoes (how the payment was recorded)."""
        undone = tuple(str(i) for i in (obj.get("payment_intent"), charge.get("id") or obj.get("charge")) if i
                       and isinstance(i, str))
        billing = charge.get("billing_details") or {}
        metadata = {**(charge.get("metadata") or {}), **(obj.get("metadata") or {})}
        return PaymentEvent(
            source=self.name, kind=kind, amount=amount, occurred_at=occurred, payment_ref=ref,
            invoice_numbers=invoice_refs(metadata), reverses=undone,
            customer_external_id=charge.get("customer") if isinstance(charge.get("customer"), str) else None,
            payer_email=billing.get("email") or charge.get("receipt_email"), payer_name=billing.get("name"),
            payer_phone=billing.get("phone"),
            details={"reverses": ",".join(undone)},
        )

    async def _with_invoice(self, reversal: PaymentEvent) -> PaymentEvent:
        """The reversal naming the invoice its PaymentIntent paid, when Stripe says (an `invoice.paid` of API basil
        recorded the payment without its PaymentIntent, so only the invoice leads back to it). A refused read is not
        fatal: the reversal is matched as before; an unavailable Stripe answers 503 and the event comes again."""
        intent = next((ref for ref in reversal.reverses if ref.startswith("pi_")), None)
        if not self.settings.api_key or intent is None:
            return reversal
        try:
            invoice = await self.invoice_paid_by(intent)
        except ProviderRejected as exc:
            log.warning("stripe: could not trace %s %s to an invoice, matching without it: %s",
                        reversal.kind.value, reversal.payment_ref, exc)
            return reversal
        if invoice is None:
            return reversal
        number = invoice.get("number")
        return replace(reversal, invoice_external_id=str(invoice["id"]),
                       invoice_numbers=reversal.invoice_numbers + ((str(number),) if number else ()),
                       details={**reversal.details, "stripe_invoice": str(invoice["id"])})

    async def invoice_paid_by(self, payment_intent: str) -> dict[str, Any] | None:
        """The invoice a PaymentIntent paid (its InvoicePayment, with the invoice expanded), or None."""
        listed = await self._get("/v1/invoice_payments", f"the invoice payments of {payment_intent}", params=[
            ("payment[type]", "payment_intent"), ("payment[payment_intent]", payment_intent),
            ("expand[]", "data.invoice"), ("limit", "10")])
        found = [p for p in listed.get("data") or [] if isinstance(p, dict)]
        paid = sorted(found, key=lambda p: p.get("status") != "paid")  # a paid one first, then canceled or open
        invoice = paid[0].get("invoice") if paid else None
        if isinstance(invoice, str):  # not expanded: the id alone still leads to a tracked `stripe:` invoice
            return {"id": invoice}
        return invoice if isinstance(invoice, dict) and invoice.get("id") else None

    async def fetch_invoice(self, invoice_id: str) -> dict[str, Any]:
        if not self.settings.api_key:
            raise ProviderUnavailable(self.name, "STRIPE_API_KEY is needed to read invoice_payment.paid's invoice")
        return await self._get(f"/v1/invoices/{path_segment(invoice_id)}", f"invoice {invoice_id}")

    async def _get(self, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {secret(self.settings.api_key)}", "Stripe-Version": API_VERSION}
        return await fetch_json(self.http, self.name, "GET", f"{self.settings.base_url.rstrip('/')}{path}",
                                what=what, headers=headers, **kwargs)

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """`GET /v1/account` with STRIPE_API_KEY. A restricted key may not read the account (403): accepted all
        the same, as paybot needs only invoices and invoice payments."""
        if self.settings.api_key is None:
            return [ok("nothing to call: STRIPE_API_KEY not set (the first signed webhook proves the secret)")]
        mode = " (test mode)" if "_test_" in secret(self.settings.api_key) else ""
        try:
            account = await self._get("/v1/account", "the account")
        except ProviderRejected as exc:
            if exc.status == 403:
                return [ok(f"STRIPE_API_KEY accepted{mode}, a restricted key")]
            return [problem(f"STRIPE_API_KEY was refused (HTTP {exc.status}): copy a secret or restricted key "
                            "from Developers → API keys")]
        return [ok(f"STRIPE_API_KEY accepted{mode}, account {account.get('id')}")]


def charge_method(obj: dict[str, Any]) -> dict[str, str]:
    """A charge's `payment_method_details` (`{"type": "card", "card": {"brand", "last4"}}`); a PaymentIntent names
    only its method types."""
    used = obj.get("payment_method_details")
    if isinstance(used, dict) and used.get("type"):
        kind = str(used["type"])
        specifics = used.get(kind)
        if not isinstance(specifics, dict):
            specifics = {}
        return method_details(kind, specifics.get("brand"), specifics.get("last4"))
    types = obj.get("payment_method_types")
    return method_details(types[0]) if isinstance(types, list) and len(types) == 1 else {}
