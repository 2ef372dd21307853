"""Square: `x-square-hmacsha256-signature` over the notification URL and the raw body; amounts in minor units.

Acts on `payment.created` / `payment.updated` once the payment is `COMPLETED` (both may arrive for one payment:
the payment id is the `payment_ref`, so the second is recognised as the same money) and on `invoice.payment_made`
(the Square invoice's state: everything completed so far, `PARTIALLY_PAID` while something is owed).

A payment of a Square invoice carries no `reference_id`, only the invoice's `order_id`: with `SQUARE_ACCESS_TOKEN`
paybot finds that invoice (`POST /v2/invoices/search` at the payment's location, for its customer) and names it,
after the answer (`Received.resolve_later`, `resolve`): Square is never kept waiting on its own API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from dataclasses import replace
from typing import Any, ClassVar

from pydantic import SecretStr

from bot.domain.money import CurrencyError, Money
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import PayloadInvalid, ProviderRejected, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, secrets, settings_config
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.sources.base import InboundRequest, PlatformAccess, Received, WebhookSource
from bot.integrations.sources.common import (digest_matches, fetch_json, field, json_object, method_details,
                                             parse_time)
from bot.settings import Settings as CoreSettings

log = logging.getLogger(__name__)
PAYMENT_EVENTS = frozenset({"payment.created", "payment.updated"})
API_VERSION = "2025-07-16"
SEARCH_PAGES = 5  # newest first, 200 a page: an invoice being paid now is among a location's latest 1,000


class SquareSettings(IntegrationSettings):
    model_config = settings_config("SQUARE")
    required = ("signature_key",)

    signature_key: SecretStr | None = None  # the subscription's signature key; several comma-separated while rotating
    notification_url: str | None = None     # exactly as registered; default PUBLIC_BASE_URL + /webhooks/square
    access_token: SecretStr | None = None   # INVOICES_READ: names the Square invoice a payment pays
    base_url: str = "https://connect.squareup.com"


def sign(body: bytes, key: str, notification_url: str) -> str:
    """The `x-square-hmacsha256-signature` Square would send (used by the tests and the contract samples)."""
    mac = hmac.new(key.encode(), notification_url.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def square_money(money: Any, what: str) -> Money:
    """`{"amount": 20000, "currency": "USD"}`: Square's amounts are ISO 4217 minor units."""
    if not isinstance(money, dict):
        raise PayloadInvalid(f"missing field {what}")
    try:
        return Money.from_minor(int(money["amount"]), str(money["currency"]))
    except (KeyError, TypeError, ValueError, CurrencyError) as exc:
        raise PayloadInvalid(f"bad {what}: {money!r}") from exc


def total(moneys: list[Money], currency: str) -> Money:
    return sum(moneys, Money.zero(currency))


class SquareSource(WebhookSource[SquareSettings]):
    name: ClassVar[str] = "square"
    Settings: ClassVar[type[IntegrationSettings]] = SquareSettings

    def verify(self, request: InboundRequest) -> None:
        given = request.headers.get("x-square-hmacsha256-signature", "").strip()
        if not given:
            raise SignatureInvalid("x-square-hmacsha256-signature header missing")
        # Behind a proxy the URL we reconstruct may differ from the registered one: the setting wins.
        url = self.settings.notification_url or request.url
        expected = [sign(request.body, key, url) for key in secrets(self.settings.signature_key)]
        if not digest_matches(given, expected):
            raise SignatureInvalid("x-square-hmacsha256-signature does not match")

    async def parse(self, request: InboundRequest) -> Received:
        event = json_object(request.body)
        event_id, event_type = str(field(event, "event_id")), str(field(event, "type"))
        occurred = parse_time(event.get("created_at"), request.received_at)
        payments: tuple[PaymentEvent, ...] = ()
        if event_type in PAYMENT_EVENTS:
            payment = field(event, "data", "object", "payment")
            if not isinstance(payment, dict):
                raise PayloadInvalid("data.object.payment is not an object")
            if payment.get("status") == "COMPLETED":
                found = self._from_payment(payment, occurred)
                if self._needs_lookup(found, payment):
                    return Received(event_id=event_id, event_type=event_type, resolve_later=True,
                                    headers_kept=self._kept(request))
                payments = (found,)
        elif event_type == "invoice.payment_made":
            invoice = field(event, "data", "object", "invoice")
            if not isinstance(invoice, dict):
                raise PayloadInvalid("data.object.invoice is not an object")
            payments = (self._from_invoice(invoice, occurred),)
        return Received(event_id=event_id, event_type=event_type, payments=payments, headers_kept=self._kept(request))

    @staticmethod
    def _kept(request: InboundRequest) -> dict[str, str]:
        return {k: request.headers[k] for k in ("square-environment", "square-retry-number") if k in request.headers}

    async def resolve(self, stored: InboundRequest, access: PlatformAccess) -> Received:
        """A stored completed payment of a Square invoice, named by the invoice search (SQUARE_ACCESS_TOKEN; no
        `access` needed). Square unavailable or rate-limiting: it waits and is retried."""
        event = json_object(stored.body)
        payment = field(event, "data", "object", "payment")
        if not isinstance(payment, dict):
            raise PayloadInvalid("data.object.payment is not an object")
        found = self._from_payment(payment, parse_time(event.get("created_at"), stored.received_at))
        return Received(event_id=str(field(event, "event_id")), event_type=str(field(event, "type")),
                        payments=(await self._with_invoice(found, payment),))

    def _needs_lookup(self, event: PaymentEvent, payment: dict[str, Any]) -> bool:
        """Only a payment naming no invoice but an order (a Square invoice's payment) is looked up, with a token."""
        return bool(self.settings.access_token and not event.invoice_numbers and payment.get("order_id")
                    and payment.get("location_id"))

    def _from_payment(self, payment: dict[str, Any], occurred: Any) -> PaymentEvent:
        reference = payment.get("reference_id")
        return PaymentEvent(
            source=self.name,
            kind=PaymentKind.PAYMENT,
            amount=square_money(payment.get("amount_money"), "amount_money"),
            occurred_at=parse_time(payment.get("updated_at") or payment.get("created_at"), occurred),
            payment_ref=str(field(payment, "id")),
            invoice_numbers=(str(reference),) if reference else (),
            customer_external_id=payment.get("customer_id"),
            payer_email=payment.get("buyer_email_address"),
            texts=tuple(str(t) for t in (payment.get("note"),) if t),
            details={**{k: str(payment[k]) for k in ("order_id", "receipt_url", "location_id") if payment.get(k)},
                     **payment_method(payment)},
        )

    def _from_invoice(self, invoice: dict[str, Any], occurred: Any) -> PaymentEvent:
        requests = invoice.get("payment_requests")
        if not isinstance(requests, list) or not requests:
            raise PayloadInvalid("missing field data.object.invoice.payment_requests")
        computed = [square_money(r.get("computed_amount_money"), "payment_requests[].computed_amount_money")
                    for r in requests]
        currency = computed[0].currency
        completed = [square_money(r["total_completed_amount_money"], "total_completed_amount_money")
                     for r in requests if r.get("total_completed_amount_money")]
        try:
            invoice_total, paid = total(computed, currency), total(completed, currency)
        except CurrencyError as exc:
            raise PayloadInvalid(f"payment requests in several currencies: {exc}") from exc
        recipient = invoice.get("primary_recipient") or {}
        name = " ".join(str(n) for n in (recipient.get("given_name"), recipient.get("family_name")) if n)
        number = invoice.get("invoice_number")
        return PaymentEvent(
            source=self.name,
            kind=PaymentKind.PAYMENT,
            amount=paid,
            cumulative=True,  # the invoice's state: everything completed so far
            occurred_at=parse_time(invoice.get("updated_at"), occurred),
            invoice_numbers=(str(number),) if number else (),
            invoice_external_id=invoice.get("id"),
            customer_external_id=recipient.get("customer_id"),
            payer_email=recipient.get("email_address"),
            payer_name=name or recipient.get("company_name"),
            payer_phone=recipient.get("phone_number"),
            reported_balance=invoice_total - paid,
            invoice_total=invoice_total,
            details={"square_invoice": str(invoice.get("id")), "square_status": str(invoice.get("status")),
                     "public_url": str(invoice.get("public_url") or "")},
        )

    async def _with_invoice(self, event: PaymentEvent, payment: dict[str, Any]) -> PaymentEvent:
        """The payment naming the Square invoice it pays, when it names none itself (its `reference_id` is what a
        merchant fills in; an invoice payment leaves it empty). A refused read is not fatal: the payment is matched
        as before; an unavailable Square leaves the notification waiting, tried again after a backoff."""
        order_id, location_id = payment.get("order_id"), payment.get("location_id")
        if not self._needs_lookup(event, payment):
            return event
        try:
            invoice = await self.invoice_of_order(str(order_id), str(location_id), payment.get("customer_id"))
        except ProviderRejected as exc:
            log.warning("square: could not look up the invoice of payment %s, matching without it: %s [%s]",
                        event.payment_ref, exc, error_codes(exc.body))
            return event
        if invoice is None:
            return event
        number = invoice.get("invoice_number")
        return replace(event, invoice_numbers=(str(number),) if number else (), invoice_external_id=str(invoice["id"]),
                       details={**event.details, "square_invoice": str(invoice["id"])})

    async def invoice_of_order(self, order_id: str, location_id: str, customer_id: Any) -> dict[str, Any] | None:
        """The invoice whose order this is: Square searches one location, and one customer when the payment has one."""
        query: dict[str, Any] = {"filter": {"location_ids": [location_id]},
                                 "sort": {"field": "INVOICE_SORT_DATE", "order": "DESC"}}
        if isinstance(customer_id, str) and customer_id:
            query["filter"]["customer_ids"] = [customer_id]
        headers = {"Authorization": f"Bearer {secret(self.settings.access_token)}", "Square-Version": API_VERSION}
        url = f"{self.settings.base_url.rstrip('/')}/v2/invoices/search"
        cursor = None
        for _ in range(SEARCH_PAGES):
            page = await fetch_json(self.http, self.name, "POST", url, what=f"the invoice of order {order_id}",
                                    headers=headers, json={"query": query, "limit": 200,
                                                           **({"cursor": cursor} if cursor else {})})
            invoices = [i for i in page.get("invoices") or [] if isinstance(i, dict)]
            found = next((i for i in invoices if i.get("order_id") == order_id and i.get("id")), None)
            cursor = page.get("cursor")
            if found is not None or not cursor:
                return found
        return None


    async def check(self, settings: CoreSettings) -> list[Finding]:
        """`GET /v2/locations` with SQUARE_ACCESS_TOKEN. A token without MERCHANT_PROFILE_READ (403) is accepted
        all the same: paybot itself needs only INVOICES_READ."""
        if self.settings.access_token is None:
            return [ok("nothing to call: SQUARE_ACCESS_TOKEN not set (the first signed webhook proves the key)")]
        headers = {"Authorization": f"Bearer {secret(self.settings.access_token)}", "Square-Version": API_VERSION}
        url = f"{self.settings.base_url.rstrip('/')}/v2/locations"
        try:
            answer = await fetch_json(self.http, self.name, "GET", url, what="the locations", headers=headers)
        except ProviderRejected as exc:
            if exc.status == 403:
                return [ok("SQUARE_ACCESS_TOKEN accepted (it may not list locations, which paybot does not need)")]
            return [problem(f"SQUARE_ACCESS_TOKEN was refused (HTTP {exc.status}, {error_codes(exc.body)}): "
                            "copy the access token of the same environment as SQUARE_BASE_URL")]
        return [ok(f"SQUARE_ACCESS_TOKEN accepted, {len(answer.get('locations') or [])} location(s)")]


def error_codes(body: str) -> str:
    """Square's error envelope, `{"errors": [{"category", "code", "detail"}]}`, as its codes (details may quote
    the request)."""
    try:
        errors = json.loads(body).get("errors") or []
        return ",".join(str(e.get("code")) for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError):
        return ""


def payment_method(payment: dict[str, Any]) -> dict[str, str]:
    """`source_type` (CARD, BANK_ACCOUNT, CASH, WALLET, EXTERNAL…) and, for a card, its brand and last four."""
    source_type = str(payment.get("source_type") or "")
    if source_type == "CARD":
        card = (payment.get("card_details") or {}).get("card") or {}
        return method_details("card", card.get("card_brand"), card.get("last_4"))
    if source_type == "EXTERNAL":
        return method_details((payment.get("external_details") or {}).get("type"))
    return method_details(source_type)
