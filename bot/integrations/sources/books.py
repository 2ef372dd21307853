"""What the accounting-platform sources (Xero, FreshBooks, Zoho Books) share once they have read an entity back."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.domain.money import CurrencyError, Money
from bot.errors import PayloadInvalid


def book_money(value: Any, currency: Any, what: str) -> Money:
    """An amount as an accounting API writes it (a JSON number, read as Decimal, or a string such as "10.00"),
    rounded to the currency's precision (Xero keeps four decimals on some lines)."""
    if isinstance(value, bool) or value is None:
        raise PayloadInvalid(f"missing amount {what}")
    try:
        return Money.rounded(Decimal(str(value)), str(currency))
    except (InvalidOperation, CurrencyError, ValueError, TypeError) as exc:
        raise PayloadInvalid(f"bad amount {what}") from exc


def because(what: str, reasons: Iterable[str]) -> str:
    """A notification's `event_type` when it records nothing: what it was, and why each entity was passed over."""
    unique = list(dict.fromkeys(r for r in reasons if r))
    return f"{what}: ignored ({'; '.join(unique)})" if unique else what


def http_date(moment: datetime) -> str:
    """`If-Modified-Since` wants an RFC 7231 date in GMT."""
    return moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def text(value: Any) -> str | None:
    """A platform's optional string field: None when absent or blank."""
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value).strip() or None
