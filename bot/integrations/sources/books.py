"""What the accounting-platform sources (Xero, FreshBooks, Zoho Books) share once they have read an entity back."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.domain.money import CurrencyError, Money
from bot.errors import PayloadInvalid
from bot.integrations.base import env_name
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.oauth import OAuthApp


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


def oauth_findings(name: str, app: OAuthApp | None) -> list[Finding]:
    """`paybot check` for a source whose tokens live in the database: nothing to call, but can it read what it hears?"""
    prefix = env_name(name)
    if app is None:
        return [problem(f"{prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET are not set: notifications are verified but "
                        f"cannot be read; set them, then run `paybot connect {name}`")]
    return [ok(f"OAuth app configured; `paybot connect {name}` connects an account (notifications for one not "
               "connected are recorded and ignored)")]
