"""Helpers sources share: signature comparison, JSON bodies, timestamps."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.errors import PayloadInvalid


def digest_matches(expected: str | bytes, candidates: list[str] | list[bytes]) -> bool:
    """Constant-time: does any candidate equal the expected digest?"""
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)  # type: ignore[arg-type]


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, numbers as Decimal (never float), or PayloadInvalid naming the problem."""
    try:
        data = json.loads(body, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadInvalid(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadInvalid("body is not a JSON object")
    return data


def field(data: dict[str, Any], *path: str) -> Any:
    """A nested field that must be present, or PayloadInvalid naming it."""
    value: Any = data
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise PayloadInvalid(f"missing field {'.'.join(path)}")
        value = value[key]
    return value


def from_unix(seconds: int | str | None, default: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(seconds), UTC) if seconds is not None else default
    except (TypeError, ValueError, OverflowError):
        return default


def parse_time(value: Any, default: datetime) -> datetime:
    """An ISO 8601 / RFC 3339 time (a bare date is midnight UTC; no offset means UTC), else `default`."""
    if not isinstance(value, str) or not value.strip():
        return default
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return default
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
