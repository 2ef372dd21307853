"""Wave (waveapps) through a relay: a "Webhooks by Zapier" POST (JSON or form) with the `X-Webhook-Secret` header.

Zapier does not sign requests, so the shared secret in a header is the whole check. The body is the flat shape
the README documents (`invoice_number`, `status` PAID|PARTIAL, `amount_paid`, `payment_amount`, …). Amounts may
come as Zapier's formatter writes them (`$2,400.00`, `¥5,000`): read for the currency, never rounded. Wave's own
webhooks are not accepted: their signing scheme is not published where we could verify it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal, InvalidOperation
from typing import ClassVar
from urllib.parse import parse_qsl

from pydantic import SecretStr

from bot.domain.money import CurrencyError, Money, parse_amount
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import PayloadInvalid, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secrets, settings_config
from bot.integrations.sources.base import InboundRequest, Received, WebhookSource
from bot.integrations.sources.common import as_bytes, is_bare_date, json_object, method_details, parse_time

HEADER = "X-Webhook-Secret"
PAID_STATUSES = frozenset({"PAID", "PARTIAL"})


class WaveSettings(IntegrationSettings):
    model_config = settings_config("WAVE")
    required = ("webhook_secret",)

    webhook_secret: SecretStr | None = None  # the Zap's X-Webhook-Secret; several comma-separated while rotating


def flat_fields(request: InboundRequest) -> dict[str, str]:
    """The relay's fields, whichever payload type the Zap uses (JSON or form-encoded)."""
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise PayloadInvalid(f"body is not valid form data: {exc}") from exc
        return dict(pairs)
    data = json_object(request.body)
    return {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in data.items() if v is not None}


def money_of(fields: dict[str, str], name: str, currency: str) -> Money | None:
    """An amount as Zapier passes Wave's on: `2400.00`, or written (`$2,400.00`, `¥5,000`); see `parse_amount`."""
    value = fields.get(name, "").strip()
    if not value:
        return None
    try:
        return parse_amount(value, currency)
    except CurrencyError as exc:
        raise PayloadInvalid(f"bad currency: {currency!r}") from exc
    except ValueError as exc:
        raise PayloadInvalid(f"{name} is not an amount in {currency} (such as 2400.00 or $2,400.00)") from exc


def position_amount(value: str) -> str:
    """`amount_paid` as the event ids of payments without an id have always spelt it (`1250.00`)."""
    try:
        return str(Decimal(value)) if value else "None"
    except InvalidOperation:
        return value  # written, `$1,250.00`: as written


class WaveSource(WebhookSource[WaveSettings]):
    name: ClassVar[str] = "wave"
    Settings: ClassVar[type[IntegrationSettings]] = WaveSettings

    def verify(self, request: InboundRequest) -> None:
        given = as_bytes(request.headers.get(HEADER, ""))
        if not given or not any(hmac.compare_digest(given, key.encode())
                                for key in secrets(self.settings.webhook_secret)):
            raise SignatureInvalid(f"{HEADER} header missing or wrong")

    async def parse(self, request: InboundRequest) -> Received:
        fields = flat_fields(request)
        invoice_id = fields.get("invoice_id", "").strip()
        number = fields.get("invoice_number", "").strip()
        if not invoice_id and not number:
            raise PayloadInvalid("missing field invoice_id or invoice_number")
        status = fields.get("status", "").strip().upper()
        payment_id = fields.get("payment_id", "").strip()
        # Without a payment id, one invoice's state is one event: a replayed Zap run is recognised as such.
        position = f"{invoice_id or number}@{position_amount(fields.get('amount_paid', '').strip())}"
        event_id = payment_id or "wave:" + hashlib.sha256(position.encode()).hexdigest()[:40]
        event_type = f"invoice.{status.lower() or 'unknown'}"
        if status not in PAID_STATUSES:
            return Received(event_id=event_id, event_type=event_type)
        return Received(event_id=event_id, event_type=event_type,
                        payments=(self._payment(fields, invoice_id, number, payment_id or position, request),))

    def _payment(self, fields: dict[str, str], invoice_id: str, number: str, payment_ref: str,
                 request: InboundRequest) -> PaymentEvent:
        currency = fields.get("currency", "").strip()
        if not currency:
            raise PayloadInvalid("missing field currency")
        this_payment = money_of(fields, "payment_amount", currency)
        amount = this_payment if this_payment is not None else money_of(fields, "amount_paid", currency)
        if amount is None:
            raise PayloadInvalid("missing field payment_amount or amount_paid")
        return PaymentEvent(
            source=self.name,
            kind=PaymentKind.PAYMENT,
            amount=amount,
            cumulative=this_payment is None,  # amount_paid alone is everything paid so far
            occurred_at=parse_time(fields.get("payment_date"), request.received_at),
            date_only=is_bare_date(fields.get("payment_date")),
            payment_ref=payment_ref,
            invoice_numbers=(number,) if number else (),
            invoice_external_id=invoice_id or None,
            customer_external_id=fields.get("customer_id") or None,
            payer_email=fields.get("customer_email") or None,
            payer_name=fields.get("customer_name") or None,
            payer_phone=fields.get("customer_phone") or None,
            reported_balance=money_of(fields, "amount_due", currency),
            invoice_total=money_of(fields, "total", currency),
            details={"wave_invoice": invoice_id, **{k: fields[k] for k in ("view_url", "business_name") if fields.get(k)},
                     **method_details(fields.get("payment_method"))},
        )
