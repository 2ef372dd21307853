"""The normalised payment event every source produces, whatever the platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from bot.domain.money import Money


class PaymentKind(StrEnum):
    PAYMENT = "payment"    # money arrived: thank the customer
    PENDING = "pending"    # announced, not settled: record only
    REFUND = "refund"      # money went back: tell finance, never thank
    DISPUTE = "dispute"    # chargeback opened: tell finance, never thank


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """One payment as a platform reported it.

    `amount` is this payment alone, or with `cumulative` everything paid on the invoice so far (platforms such as
    Xero or Stripe's `invoice.paid` report the invoice's state, not the money movement). `reported_balance` is what the platform says is still owed on the invoice,
    when it says so (it knows about payments we never saw). References are hints for matching; any may be absent.
    """

    source: str
    kind: PaymentKind
    amount: Money
    occurred_at: datetime
    date_only: bool = False                   # the platform gave a date, not a time: `occurred_at` is its midnight UTC
    payment_ref: str | None = None            # the platform's id of the money movement (pi_…, txn_id, …)
    invoice_numbers: tuple[str, ...] = ()     # printed invoice numbers the platform names
    invoice_external_id: str | None = None    # the platform's own invoice id
    customer_external_id: str | None = None
    payer_email: str | None = None
    payer_name: str | None = None
    payer_phone: str | None = None
    texts: tuple[str, ...] = ()               # free text (description, memo, metadata) that may hold a number
    cumulative: bool = False
    reported_balance: Money | None = None
    invoice_total: Money | None = None        # the invoice total the platform states, if any
    details: dict[str, str] = field(default_factory=dict)  # extra platform facts kept on the record
    reverses: tuple[str, ...] = ()            # refunds, disputes: the platform's ids of the payment they undo
