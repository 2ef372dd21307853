"""Outbound HTTP shared by integrations: turning provider responses into delivery outcomes."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from multidict import CIMultiDictProxy

from bot.errors import ProviderRejected, ProviderUnavailable

#: Statuses after which a provider has not processed the request, or asks us to come back.
RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Sent:
    provider_id: str | None = None
    status: str | None = None        # what "delivered" means here, when the provider says (CRMs: "event accepted")


@dataclass(frozen=True, slots=True)
class Retry:
    reason: str
    after: float | None = None       # seconds to wait, when the provider said so (Retry-After: 30)
    until: datetime | None = None    # or a time to wait for (Retry-After: <HTTP date>, X-RateLimit-Reset)
    once: str | None = None          # a fault of the integration, not of this message: finance hears once per key
    # The provider may have accepted it (a 5xx or a timeout after the request went out): before sending again the
    # worker asks the provider (`FindsSent`), so a provider without idempotency keys is not sent the message twice.
    unknown: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str
    once: str | None = None          # as for Retry: e.g. a refused token, told once per integration, not per payment
    opted_out: bool = False  # the recipient opted out of this channel (Twilio 21610): recorded, never tried again


Delivery = Sent | Retry | Failed


Headers = CIMultiDictProxy[str] | Mapping[str, str]


def retry_hint(headers: Headers) -> dict[str, Any]:
    """`Retry` arguments from `Retry-After` (seconds or an HTTP date) or an epoch `X-RateLimit-Reset`.

    Absolute times stay absolute: the worker compares them with its own (injected) clock."""
    value = (headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return {"after": float(value)}
    if value:
        try:
            return {"until": email.utils.parsedate_to_datetime(value).astimezone(UTC)}
        except (TypeError, ValueError):
            return {}
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    if reset.isdigit():
        return {"until": datetime.fromtimestamp(int(reset), UTC)}
    return {}


def seconds_after(headers: Headers) -> float | None:
    """For reads inside a request: a relative Retry-After only."""
    return retry_hint(headers).get("after")


def outcome_of_status(provider: str, status: int, reason: str, headers: Headers) -> Delivery:
    if 200 <= status < 300:
        return Sent()
    if status in RETRYABLE:
        return Retry(f"{provider} answered {status}: {reason}", **retry_hint(headers))
    return Failed(f"{provider} answered {status}: {reason}")


def raise_for_status(provider: str, status: int, body: str, headers: Headers) -> None:
    """For reads (fetching a payment's details): retryable statuses become ProviderUnavailable."""
    if 200 <= status < 300:
        return
    if status in RETRYABLE:
        raise ProviderUnavailable(provider, "temporarily unavailable", status=status, body=body,
                                  retry_after=seconds_after(headers))
    raise ProviderRejected(provider, "request refused", status=status, body=body)
