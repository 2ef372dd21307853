"""Outbound HTTP shared by integrations: turning provider responses into delivery outcomes."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime

from multidict import CIMultiDictProxy

from bot.errors import ProviderRejected, ProviderUnavailable

#: Statuses after which a provider has not processed the request, or asks us to come back.
RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Sent:
    provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    reason: str
    after: float | None = None  # seconds, when the provider said (Retry-After, X-RateLimit-Reset)


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str


Delivery = Sent | Retry | Failed


def retry_after(headers: CIMultiDictProxy[str] | dict[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or an HTTP date) or an epoch `X-RateLimit-Reset`."""
    value = headers.get("Retry-After")
    now = now or datetime.now(UTC)
    if value:
        if value.strip().isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - now).total_seconds())
    reset = headers.get("X-RateLimit-Reset")
    if reset and reset.strip().isdigit():
        return max(0.0, float(reset) - now.timestamp())
    return None


def outcome_of_status(provider: str, status: int, reason: str, headers: CIMultiDictProxy[str] | dict[str, str]) -> Delivery:
    if 200 <= status < 300:
        return Sent()
    if status in RETRYABLE:
        return Retry(f"{provider} answered {status}: {reason}", retry_after(headers))
    return Failed(f"{provider} answered {status}: {reason}")


def raise_for_status(provider: str, status: int, body: str, headers: CIMultiDictProxy[str] | dict[str, str]) -> None:
    """For reads (fetching a payment's details): retryable statuses become ProviderUnavailable."""
    if 200 <= status < 300:
        return
    if status in RETRYABLE:
        raise ProviderUnavailable(provider, "temporarily unavailable", status=status, body=body,
                                  retry_after=retry_after(headers))
    raise ProviderRejected(provider, "request refused", status=status, body=body)
