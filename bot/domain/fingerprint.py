"""Recognising one real payment reported twice: a platform's retry, or the same money seen by Stripe and QuickBooks."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    other_refs: Mapping[str, str] = field(default_factory=dict)  # source -> ref of later reports of this payment


def ref_key(source: str) -> str:
    """The `details` key under which a payment keeps another source's reference to it."""
    return f"{source}_ref"


def refs_in(details: Mapping[str, object]) -> dict[str, str]:
    """The other sources' references a recorded payment has gathered (see `ref_key`)."""
    return {k.removesuffix("_ref"): str(v) for k, v in details.items() if k.endswith("_ref") and v}


def fingerprint(amount: Money, invoice_number: str | None, party: str | None, payment_ref: str | None) -> str:
    """A key shared by every report of one payment: the invoice (or else the payer) and the exact amount.

    With neither invoice nor payer known, only the platform's own payment id can tie reports together.
    """
    anchor = f"invoice:{invoice_number.upper()}" if invoice_number else f"party:{party}" if party else f"ref:{payment_ref}"
    return hashlib.sha256(f"{anchor}|{amount.currency}|{amount.minor}".encode()).hexdigest()


def is_same_payment(new: Report, old: Report) -> bool:
    """Two reports with one fingerprint, close in time, are one payment unless one platform names two different
    payments (Stripe's `invoice.paid` names none, its `invoice_payment.paid` for the same money names one).

    A platform's reference already attached to the old payment counts as that platform naming it: two equal
    instalments reported by Stripe (pi_1, pi_2) and by a Wave relay are paired one to one, not both to pi_1.
    """
    if abs(new.occurred_at - old.occurred_at) > SAME_PAYMENT_WINDOW:
        return False
    known = {**old.other_refs, **({old.source: old.payment_ref} if old.payment_ref else {})}
    if new.payment_ref and known.get(new.source):
        return new.payment_ref == known[new.source]
    return True
