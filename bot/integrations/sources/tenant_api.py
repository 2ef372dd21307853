"""Reading an accounting platform's API for one connected tenant (Xero tenant, FreshBooks account, Zoho organization).

What the thin sources share once a notification is answered: a token from `PlatformAccess`, one refresh and one
retry when the API answers 401, the platform's rate-limit headers turned into `retry_after`, and "no such entity"
told apart from a failure (a deleted invoice is a reason to ignore a notification, not to retry it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import json
from decimal import Decimal

import aiohttp

from bot.errors import ConnectionLost, PayloadInvalid, ProviderRejected, ProviderUnavailable
from bot.integrations.http import RETRYABLE, Headers, raise_for_status, seconds_after
from bot.integrations.sources.common import json_object

if TYPE_CHECKING:
    from bot.integrations.sources.base import PlatformAccess

#: How a platform wants its token presented (`Bearer` for most; Zoho: `Zoho-oauthtoken`).
Authorize = Callable[[str], dict[str, str]]
#: Seconds to wait, from a platform's answer headers (429/503), when its rate-limit headers say.
RetryHint = Callable[[Headers], float | None]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True, slots=True)
class TenantAPI:
    """One platform's API, read on behalf of its connected tenants."""

    provider: str
    http: aiohttp.ClientSession
    authorize: Authorize = bearer
    retry_hint: RetryHint = seconds_after
    timeout: float = 15
    #: Xero answers 403 for a tenant whose organisation was disconnected from the app (the token itself is fine):
    #: that is a lost connection, told to finance once, not a failure to retry.
    forbidden_is_lost: bool = False

    async def get(self, access: PlatformAccess, tenant: str, url: str, *, what: str,
                  headers: Mapping[str, str] | None = None, params: Any = None,
                  missing: Callable[[int, dict[str, Any] | None], bool] | None = None) -> dict[str, Any] | None:
        """The JSON answer (numbers as Decimal), or None when the platform says the entity does not exist (404, or
        what `missing` recognises in an error body). 401: one refresh, one retry; a second 401 means the
        connection is gone (ConnectionLost). 429/5xx/unreachable: ProviderUnavailable with the platform's wait."""
        token = await access.token(tenant)
        for attempt in (1, 2):
            status, body, answer_headers = await self._request(url, what, {**(headers or {}), **self.authorize(token)},
                                                               params)
            if status == 401 and attempt == 1:
                token = await access.refreshed(tenant, token)
                continue
            data = readable(body)
            if 200 <= status < 300 and data is not None and not (missing and missing(status, data)):
                return data
            if status == 404 or (missing is not None and missing(status, data)):
                return None
            if status == 401 or (status == 403 and self.forbidden_is_lost):
                raise ConnectionLost(self.provider, f"refused reading {what} with a fresh token (HTTP {status})",
                                     tenant=tenant, status=status, body=body.decode(errors="replace"))
            if status in RETRYABLE or 200 <= status < 300:  # 2xx here: an unreadable answer, try again later
                raise ProviderUnavailable(self.provider, f"could not read {what}", status=status,
                                          body=body.decode(errors="replace"),
                                          retry_after=self.retry_hint(answer_headers))
            raise ProviderRejected(self.provider, f"refused reading {what}", status=status,
                                   body=body.decode(errors="replace"))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(self, url: str, what: str, headers: dict[str, str],
                       params: Any) -> tuple[int, bytes, Headers]:
        try:
            async with self.http.get(url, headers=headers, params=params,
                                     timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                return resp.status, await resp.read(), resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(self.provider, f"could not read {what}: {type(exc).__name__}") from exc


def readable(body: bytes) -> dict[str, Any] | None:
    try:
        return json_object(body)
    except PayloadInvalid:
        return None


async def fetch_list(http: aiohttp.ClientSession, provider: str, url: str, what: str,
                     headers: Mapping[str, str]) -> list[Any]:
    """A JSON array a platform answers with (Xero's `/connections`), for `paybot connect`."""
    try:
        async with http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=15)) as resp:
            body = await resp.read()
            raise_for_status(provider, resp.status, body.decode(errors="replace"), resp.headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ProviderUnavailable(provider, f"could not read {what}: {type(exc).__name__}") from exc
    try:
        value = json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise ProviderUnavailable(provider, f"{what}: unreadable answer") from exc
    if not isinstance(value, list):
        raise ProviderUnavailable(provider, f"{what}: not a list")
    return value
