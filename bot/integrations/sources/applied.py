"""A posted ERP payment applied to invoices (Sage Intacct's ARPYMT, SAP Business One's incoming payment), as
PaymentEvents: one per invoice it pays, each with its own `payment_ref` (`{payment}/{invoice}`), so that a
redelivery, a sweep or the other invoice of the same payment is recognised for what it is.

A payment applied to no invoice (received "on account") names nothing a customer could be thanked for: it is
recorded for finance's review, with no customer lookup key, so no message goes to the customer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.domain.money import CurrencyError, Money
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import PayloadInvalid


@dataclass(frozen=True, slots=True)
class AppliedInvoice:
    key: str                      # the platform's own invoice id
    number: str | None            # as printed on the invoice
    applied: Money                # what this payment put on it
    total: Money | None = None
    due: Money | None = None      # still owed after it, as the platform says
    other_numbers: tuple[str, ...] = ()  # further names it goes by (B1's DocNum beside NumAtCard)


@dataclass(frozen=True, slots=True)
class PostedPayment:
    source: str
    key: str
    amount: Money
    occurred_at: datetime
    date_only: bool = False
    customer_id: str | None = None
    customer_name: str | None = None
    email: str | None = None
    phone: str | None = None
    invoices: tuple[AppliedInvoice, ...] = ()
    details: dict[str, str] = field(default_factory=dict)


def money(value: Any, currency: str, what: str) -> Money:
    """An ERP amount (`"1250.00"`, `1250`, a Decimal) in major units; rounding would change the money, so a
    value with more decimals than the currency has is refused with the field named."""
    try:
        return Money.of(Decimal(str(value).strip()), currency)
    except (InvalidOperation, ValueError, CurrencyError) as exc:
        raise PayloadInvalid(f"{what} is not an amount in {currency}") from exc


def optional_money(value: Any, currency: str, what: str) -> Money | None:
    return None if value is None or str(value).strip() == "" else money(value, currency, what)


def text(value: Any) -> str | None:
    shown = str(value).strip() if value is not None else ""
    return shown or None


def payment_events(payment: PostedPayment) -> tuple[PaymentEvent, ...]:
    if not payment.invoices:
        return (on_account(payment),)
    return tuple(_applied(payment, invoice) for invoice in payment.invoices)


def _applied(payment: PostedPayment, invoice: AppliedInvoice) -> PaymentEvent:
    numbers = tuple(n for n in (invoice.number, *invoice.other_numbers) if n)
    return PaymentEvent(
        source=payment.source, kind=PaymentKind.PAYMENT, amount=invoice.applied,
        occurred_at=payment.occurred_at, date_only=payment.date_only,
        payment_ref=f"{payment.key}/{invoice.key}",
        invoice_numbers=tuple(dict.fromkeys(numbers)), invoice_external_id=invoice.key,
        customer_external_id=payment.customer_id, payer_email=payment.email, payer_name=payment.customer_name,
        payer_phone=payment.phone, reported_balance=invoice.due, invoice_total=invoice.total,
        details={**payment.details, f"{payment.source}_payment": payment.key},
    )


def on_account(payment: PostedPayment) -> PaymentEvent:
    """Unapplied money: for finance to apply by hand. No lookup key, so it matches nothing and nobody is thanked
    for an invoice we cannot name; who paid is kept on the record for the review card."""
    return PaymentEvent(
        source=payment.source, kind=PaymentKind.PAYMENT, amount=payment.amount,
        occurred_at=payment.occurred_at, date_only=payment.date_only, payment_ref=payment.key,
        payer_name=payment.customer_name,
        details={**payment.details, f"{payment.source}_payment": payment.key, "on_account": "true",
                 "platform_customer": payment.customer_id or ""},
    )


#: How far a sweep asked without a mark looks back (the sweeper always passes one: SWEEP_LOOKBACK_HOURS).
LOOKBACK = timedelta(hours=72)


def sweep_stamp(payments: tuple[PaymentEvent, ...]) -> str:
    """What a swept payment looked like (its refs and amounts): a sweep seeing it unchanged stores nothing new."""
    seen = ";".join(f"{p.payment_ref}={p.amount.minor}" for p in payments)
    return hashlib.sha256(seen.encode()).hexdigest()[:16]
