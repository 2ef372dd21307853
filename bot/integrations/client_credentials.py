"""OAuth2 client credentials (RFC 6749 §4.4) for platforms read as an app, not as a user: Sage Intacct, Business Central.

No refresh token and nothing to keep across restarts: a token is fetched when needed and held in memory until
shortly before it expires. Concurrent readers share one fetch (one lock per cache), so a burst of notifications
costs the token endpoint one call. A 401 from the API drops the token it refused (`rejected`), once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import aiohttp

from bot.errors import ProviderRejected, ProviderUnavailable

#: A token is renewed this long before its stated expiry: a read started with it must not outlive it.
EARLY = timedelta(seconds=60)
DEFAULT_LIFETIME = timedelta(seconds=3600)  # when the token endpoint states no `expires_in`


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None
    client_auth: Literal["basic", "body"] = "body"  # id/secret in the form body (Intacct, Entra ID) or Basic auth
    extra: Mapping[str, str] | None = None          # e.g. Intacct's `username`


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: datetime


class TokenCache:
    """One app's access token, in memory. `clock` is injected (tests move it past the expiry)."""

    def __init__(self, provider: str, credentials: ClientCredentials, http: aiohttp.ClientSession,
                 clock: Callable[[], datetime]) -> None:
        self.provider = provider
        self.credentials = credentials
        self.http = http
        self.clock = clock
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many times the token endpoint was called (for `paybot check` and tests)

    async def token(self) -> str:
        current = self._token
        if current is not None and self.clock() < current.expires_at:
            return current.value
        async with self._lock:  # whoever waited here finds the token the first one fetched
            current = self._token
            if current is None or self.clock() >= current.expires_at:
                current = self._token = await self._fetch()
            return current.value

    async def refreshed(self, rejected: str) -> str:
        """A new token after the API answered 401 to `rejected` (revoked early, or the clock is off). Concurrent
        callers refused the same token share one fetch."""
        async with self._lock:
            if self._token is None or self._token.value == rejected:
                self._token = await self._fetch()
            return self._token.value

    async def _fetch(self) -> _Token:
        creds = self.credentials
        form = {"grant_type": "client_credentials", **(creds.extra or {})}
        if creds.scope:
            form["scope"] = creds.scope
        auth = None
        if creds.client_auth == "basic":
            auth = aiohttp.BasicAuth(creds.client_id, creds.client_secret)
        else:
            form |= {"client_id": creds.client_id, "client_secret": creds.client_secret}
        self.fetches += 1
        try:
            answer = await fetch_json(self.http, self.provider, "POST", creds.token_url, what="an access token",
                                      data=form, auth=auth, headers={"Accept": "application/json"})
        except ProviderRejected as exc:  # 400 invalid_client and the like: the settings are wrong, not the moment
            raise ProviderRejected(self.provider, f"token endpoint refused the client credentials "
                                                  f"({oauth_error(exc.body)})", status=exc.status) from exc
        value = answer.get("access_token")
        if not isinstance(value, str) or not value:
            raise ProviderUnavailable(self.provider, "token endpoint answered without an access_token")
        try:
            lifetime = timedelta(seconds=int(answer.get("expires_in") or DEFAULT_LIFETIME.total_seconds()))
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME
        return _Token(value, self.clock() + max(lifetime - EARLY, lifetime / 2))


def oauth_error(body: str) -> str:
    """RFC 6749 §5.2's `error` code from a token endpoint's refusal (never its description: it may quote input)."""
    try:
        data = json.loads(body)
    except ValueError:
        return "no error code"
    code = data.get("error") if isinstance(data, dict) else None
    return str(code)[:60] if code else "no error code"


async def read_with_token(tokens: TokenCache, method: str, url: str, *, what: str, timeout: float = 10,
                          headers: Mapping[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """A JSON read with the cached Bearer token; a 401 gets one fresh token and one more try (then ProviderRejected)."""
    token = await tokens.token()
    for attempt in (1, 2):
        try:
            return await fetch_json(tokens.http, tokens.provider, method, url, what=what, timeout=timeout,
                                    headers={**(headers or {}), "Authorization": f"Bearer {token}"}, **kwargs)
        except ProviderRejected as exc:
            if exc.status != 401 or attempt == 2:
                raise
            token = await tokens.refreshed(token)
    raise AssertionError("unreachable")


async def fetch_json(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """`sources.common.fetch_json`, imported when first called: the sources package imports this module."""
    from bot.integrations.sources.common import fetch_json as fetch

    return await fetch(*args, **kwargs)
