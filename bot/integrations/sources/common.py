"""Helpers sources share: signature comparison, JSON bodies, timestamps, reading JSON back from a platform."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.errors import PayloadInvalid, ProviderUnavailable
from bot.integrations.http import raise_for_status


def digest_matches(expected: str | bytes, candidates: list[str] | list[bytes]) -> bool:
    """Constant-time: does any candidate equal the expected digest? Compared as bytes: a header is the sender's
    text, and `compare_digest` refuses non-ASCII `str` with a TypeError (a digest never has any)."""
    want = as_bytes(expected)
    return any(hmac.compare_digest(want, as_bytes(candidate)) for candidate in candidates)


def as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def unix_seconds(text: str) -> bool:
    """Is a header's `text` a plausible Unix time? ASCII digits only: `"²".isdigit()` is true, `int("²")` fails."""
    return text.isascii() and text.isdigit() and len(text) <= 12


def path_segment(value: object) -> str:
    """A payload's id made safe to paste into an outbound API path: one segment, every reserved character
    percent-encoded (`in_1/../charges?x` stays one id and never climbs to another endpoint)."""
    return quote(str(value), safe="")


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


async def fetch_json(http: aiohttp.ClientSession, provider: str, method: str, url: str, *, what: str,
                     timeout: float = 10, **kwargs: Any) -> dict[str, Any]:
    """A platform's JSON answer (numbers as Decimal). Unreachable, 429 or 5xx: ProviderUnavailable (the webhook is
    answered 503 and the platform retries); another 4xx: ProviderRejected. `what` names the read in the error."""
    try:
        async with http.request(method, url, timeout=aiohttp.ClientTimeout(total=timeout), **kwargs) as resp:
            body = await resp.read()
            raise_for_status(provider, resp.status, body.decode(errors="replace"), resp.headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ProviderUnavailable(provider, f"could not read {what}: {exc}") from exc
    try:
        return json_object(body)
    except PayloadInvalid as exc:
        raise ProviderUnavailable(provider, f"{what}: unreadable answer ({exc})") from exc


#: Platforms' words for how a customer paid, in paybot's (see `bot.domain.receipt.METHODS`).
METHOD_ALIASES = {"credit_card": "card", "debit_card": "card", "cheque": "check", "us_bank_account": "ach",
                  "ach_debit": "ach", "ach_credit_transfer": "ach", "bank_account": "ach", "sepa_debit": "bank_transfer",
                  "customer_balance": "bank_transfer", "bank_payment": "bank_transfer", "digital_wallet": "wallet"}


def method_details(method: Any, brand: Any = None, last4: Any = None) -> dict[str, str]:
    """How the customer paid, as `PaymentEvent.details` keeps it for the receipt: `method`, `card_brand`,
    `card_last4` (whichever the platform said)."""
    name = str(method or "").strip().lower().replace(" ", "_").replace("-", "_")
    values = {"method": METHOD_ALIASES.get(name, name), "card_brand": str(brand or "").strip(),
              "card_last4": str(last4 or "").strip()}
    return {k: v for k, v in values.items() if v}


def is_bare_date(value: Any) -> bool:
    """A platform's payment time that is only a day ("2026-11-28"): there is no time to show."""
    return isinstance(value, str) and len(value.strip()) == 10 and value.strip()[4:5] == "-"
