"""OAuth2 authorization-code apps: what a platform's app is (pure data), and the calls to its token endpoint.

`paybot connect <source>` sends the operator to `consent_url`, the platform redirects back with a code, and
`exchange` turns it into tokens; `refresh` trades a refresh token for new ones (QuickBooks and Xero hand back a
NEW refresh token each time: the caller must save it before using the access token). The token store that keeps
them is `bot.services.oauth`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlencode

import aiohttp

from bot.errors import ConnectionLost, ProviderRejected, ProviderUnavailable
from bot.integrations.http import RETRYABLE, seconds_after

#: Token endpoint errors after which the refresh token (or the app's credentials) will never work again.
DEAD_GRANT = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


@dataclass(frozen=True, slots=True)
class OAuthApp:
    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    client_auth: Literal["basic", "body"] = "basic"      # client id/secret in Basic auth or in the form body
    authorize_params: Mapping[str, str] = field(default_factory=dict)  # e.g. Zoho access_type=offline


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str


@runtime_checkable
class UsesOAuth(Protocol):
    """A source connected with the authorization-code flow (`paybot connect <source>`)."""

    def oauth_app(self) -> OAuthApp | None:
        """None when its client id/secret are not configured."""
        ...

    async def connected(self, access_token: str, callback_query: Mapping[str, str]) -> list[Tenant]:
        """Which tenants this freshly granted token reaches, and their names, for the operator."""
        ...


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str | None  # None: the platform kept the old one
    expires_in: float | None  # seconds the access token lives


def consent_url(app: OAuthApp, redirect_uri: str, state: str) -> str:
    """Where the operator's browser goes to grant paybot access."""
    query = {"client_id": app.client_id, "response_type": "code", "scope": " ".join(app.scopes),
             "redirect_uri": redirect_uri, "state": state, **app.authorize_params}
    return f"{app.authorize_url}{'&' if '?' in app.authorize_url else '?'}{urlencode(query)}"


async def exchange(http: aiohttp.ClientSession, app: OAuthApp, provider: str, code: str,
                   redirect_uri: str) -> Tokens:
    """The authorization code from the callback, traded for tokens."""
    return await _token_call(http, app, provider, {"grant_type": "authorization_code", "code": code,
                                                   "redirect_uri": redirect_uri})


async def refresh(http: aiohttp.ClientSession, app: OAuthApp, provider: str, refresh_token: str, *,
                  tenant: str = "") -> Tokens:
    """New tokens for a refresh token. ConnectionLost when the platform says it is dead (revoked, expired, or the
    app's credentials refused): asking again will not help, someone must connect again."""
    return await _token_call(http, app, provider, {"grant_type": "refresh_token", "refresh_token": refresh_token},
                             tenant=tenant)


async def _token_call(http: aiohttp.ClientSession, app: OAuthApp, provider: str, form: dict[str, str], *,
                      tenant: str = "") -> Tokens:
    headers = {"Accept": "application/json"}
    if app.client_auth == "basic":
        pair = f"{app.client_id}:{app.client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    else:
        form = form | {"client_id": app.client_id, "client_secret": app.client_secret}
    try:
        async with http.post(app.token_url, data=form, headers=headers) as response:
            text = await response.text()
            status, answered = response.status, response.headers
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ProviderUnavailable(provider, f"token endpoint unreachable ({type(exc).__name__})") from exc
    body = _json(text)
    if status in RETRYABLE:
        raise ProviderUnavailable(provider, "token endpoint unavailable", status=status,
                                  retry_after=seconds_after(answered))
    error = str(body.get("error") or "")
    if status in (400, 401, 403) and (error in DEAD_GRANT or status != 400):
        raise ConnectionLost(provider, f"the platform refused the token ({error or status})", tenant=tenant,
                             status=status)
    if not 200 <= status < 300 or not isinstance(body.get("access_token"), str):
        raise ProviderRejected(provider, f"token endpoint answered {error or 'without an access token'}",
                               status=status)
    expires = body.get("expires_in")
    return Tokens(access_token=body["access_token"],
                  refresh_token=body["refresh_token"] if isinstance(body.get("refresh_token"), str) else None,
                  expires_in=float(str(expires)) if str(expires).isdigit() or isinstance(expires, int) else None)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
