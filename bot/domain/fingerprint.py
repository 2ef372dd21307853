"""Recognising one real payment reported twice: a platform's retry, or the same money seen by Stripe and QuickBooks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.money import Money

#: Reports of the same money by two platforms arrive within this window (bank settlement lags a gateway by days).
SAME_PAYMENT_WINDOW = timedelta(days=3)


@dataclass(frozen=True, slots=True)
class Report:
    """What is known of one recorded report of a payment."""

    source: str
    payment_ref: str | None
    occurred_at: datetime


def fingerprint(amount: Money, invoice_number: str | None, party: str | None, payment_ref: str | None) -> str:
    """A key shared by every report of one payment: the invoice (or else the payer) and the exact amount.

    With neither invoice nor payer known, only the platform's own payment id can tie reports together.
    """
    anchor = f"invoice:{invoice_number.upper()}" if invoice_number else f"party:{party}" if party else f"ref:{payment_ref}"
    return hashlib.sha256(f"{anchor}|{amount.currency}|{amount.minor}".encode()).hexdigest()


def is_same_payment(new: Report, old: Report) -> bool:
    """Two reports with one fingerprint, close in time, are one payment unless one platform names two different
    payments (Stripe's `invoice.paid` names none, its `invoice_payment.paid` for the same money names one)."""
    if abs(new.occurred_at - old.occurred_at) > SAME_PAYMENT_WINDOW:
        return False
    if new.source == old.source and new.payment_ref and old.payment_ref:
        return new.payment_ref == old.payment_ref
    return True
