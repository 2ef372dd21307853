"""Which tracked invoice and customer a payment belongs to, and what it leaves owing.

Rules, in order: an invoice number named in the payment (reference, metadata, description) → the platform's
invoice id → the platform's customer id, email or phone plus an open invoice the amount fits → unmatched.
A payment in another currency than the invoice it names is unmatched (kept for staff), never counted against it.
The storage layer fetches candidates for the keys `lookup_keys` names; `match` decides among them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.domain.money import Money
from bot.domain.parties import Customer, Invoice
from bot.domain.payments import PaymentEvent

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-/#.]*[A-Za-z0-9]|[0-9]")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class MatchRule(StrEnum):
    INVOICE_NUMBER = "invoice_number"
    EXTERNAL_ID = "external_id"
    CUSTOMER_AMOUNT = "customer_amount"
    UNMATCHED = "unmatched"


class Settlement(StrEnum):
    FULL = "paid"
    PARTIAL = "partially_paid"
    OVER = "overpaid"


@dataclass(frozen=True, slots=True)
class LookupKeys:
    """What to fetch from storage before matching."""

    invoice_numbers: frozenset[str]
    invoice_external_id: tuple[str, str] | None
    customer_external_id: tuple[str, str] | None
    email: str | None
    phone: str | None


@dataclass(frozen=True, slots=True)
class Candidates:
    invoices: Sequence[Invoice]
    customers: Sequence[Customer]


@dataclass(frozen=True, slots=True)
class Match:
    rule: MatchRule
    invoice: Invoice | None
    customer: Customer | None
    reason: str

    @property
    def matched(self) -> bool:
        return self.invoice is not None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The invoice after this payment."""

    paid_before: Money
    paid_now: Money
    balance: Money
    settlement: Settlement


def invoice_key(number: str) -> str:
    """What invoice numbers are compared by: `inv-1042`, ` INV-1042 ` and `INV-1042` are one invoice. Only ASCII
    letters are folded, as SQL does it on every engine (`bot.storage.sql.invoice_key`), so a look-up in the
    database and a comparison here always agree; numbers are still shown as printed."""
    return number.strip().translate(_ASCII_UPPER)


def tokens(texts: Iterable[str]) -> set[str]:
    """Every word-like run in free text, upper-cased, with '#'-prefixes stripped ("Inv #1042" → {"INV", "1042"})."""
    found: set[str] = set()
    for text in texts:
        for token in _TOKEN.findall(text or ""):
            found.add(invoice_key(token).lstrip("#"))
    return found


def normalise_email(email: str | None) -> str | None:
    return email.strip().lower() if email and "@" in email else None


def lookup_keys(event: PaymentEvent) -> LookupKeys:
    numbers = {invoice_key(n) for n in event.invoice_numbers if n.strip()}
    numbers |= tokens(event.texts)
    return LookupKeys(
        invoice_numbers=frozenset(numbers),
        invoice_external_id=(event.source, event.invoice_external_id) if event.invoice_external_id else None,
        customer_external_id=(event.source, event.customer_external_id) if event.customer_external_id else None,
        email=normalise_email(event.payer_email),
        phone=event.payer_phone,
    )


def match(event: PaymentEvent, found: Candidates) -> Match:
    customers = {c.id: c for c in found.customers}
    keys = lookup_keys(event)

    def result(rule: MatchRule, invoice: Invoice, reason: str) -> Match:
        customer = customers.get(invoice.customer_id)
        if invoice.amount.currency != event.amount.currency:
            # Named, but paid in another currency: staff decide what it settles; the customer is not told it did.
            return Match(MatchRule.UNMATCHED, None, customer,
                         f"{reason}, but paid in {event.amount.currency}, not the invoice's {invoice.amount.currency}")
        return Match(rule, invoice, customer, reason)

    # Explicit references outrank free text: a named number first, then tokens in descriptions.
    named = [i for i in found.invoices if invoice_key(i.number) in {invoice_key(n) for n in event.invoice_numbers}]
    by_number = named or [i for i in found.invoices if invoice_key(i.number) in keys.invoice_numbers]
    if len(by_number) == 1:
        return result(MatchRule.INVOICE_NUMBER, by_number[0], f"invoice number {by_number[0].number}")

    if keys.invoice_external_id:
        source, ext = keys.invoice_external_id
        by_ext = [i for i in found.invoices if i.external_ids.get(source) == ext]
        if len(by_ext) == 1:
            return result(MatchRule.EXTERNAL_ID, by_ext[0], f"{source} invoice id {ext}")

    customer = _customer_of(event, keys, found.customers)
    if customer is None:
        reason = "several invoices named" if len(by_number) > 1 else "no tracked invoice or customer named"
        return Match(MatchRule.UNMATCHED, None, None, reason)
    open_invoices = [
        i for i in found.invoices
        if i.customer_id == customer.id and i.amount.currency == event.amount.currency and i.balance.minor > 0
    ]
    exact = [i for i in open_invoices if i.balance == event.amount]
    if len(exact) == 1:
        return Match(MatchRule.CUSTOMER_AMOUNT, exact[0], customer, f"customer {customer.id}, open amount")
    if len(open_invoices) == 1 and not exact:
        only = open_invoices[0]
        return Match(MatchRule.CUSTOMER_AMOUNT, only, customer, f"customer {customer.id}, only open invoice")
    reason = f"customer {customer.id} has {len(open_invoices)} open invoices; none fits {event.amount}"
    return Match(MatchRule.UNMATCHED, None, customer, reason)


def _customer_of(event: PaymentEvent, keys: LookupKeys, customers: Sequence[Customer]) -> Customer | None:
    if keys.customer_external_id:
        source, ext = keys.customer_external_id
        for customer in customers:
            if customer.external_ids.get(source) == ext:
                return customer
    for customer in customers:
        if keys.email and normalise_email(customer.email) == keys.email:
            return customer
        if keys.phone and customer.phone == keys.phone:
            return customer
    return None


def outcome(invoice: Invoice, event: PaymentEvent) -> Outcome:
    """What the invoice owes after this payment; the platform's own balance wins when it states one."""
    paid_before = invoice.paid
    balance = invoice.amount - paid_before - event.amount
    if event.reported_balance is not None and event.reported_balance.currency == invoice.amount.currency:
        balance = event.reported_balance
    if balance.minor > 0:
        settlement = Settlement.PARTIAL
    elif balance.minor == 0:
        settlement = Settlement.FULL
    else:
        settlement = Settlement.OVER
    return Outcome(paid_before, event.amount, balance, settlement)
