"""`paybot connect <source>`: the OAuth2 authorization-code flow, for an operator who is not a developer.

`begin` records a one-time `state` and returns the consent URL; the platform sends the operator's browser back to
`PUBLIC_BASE_URL/oauth/<source>/callback` (served by `paybot serve`, or by `paybot connect`'s own short-lived
listener when nothing else answers there), where `complete` checks the state (known, for this source, unused,
fresh), trades the code for tokens, asks the source which companies they reach, and stores the tokens per tenant.
The state lives in the database, so whichever process receives the callback, `paybot connect` sees the outcome.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy import select

from bot.errors import ConfigError, InboundError, ProviderError
from bot.integrations import oauth
from bot.integrations.oauth import OAuthApp, Tenant, UsesOAuth
from bot.integrations.sources.base import PaymentSource
from bot.services.oauth import TokenStore
from bot.storage import models
from bot.storage.database import Database

STATE_LIFETIME = timedelta(minutes=30)  # time to sign in and choose the company


class StateInvalid(InboundError):
    """the callback's state matches no `paybot connect` in progress"""

    status = 400


@dataclass(frozen=True, slots=True)
class Started:
    state: str
    url: str
    redirect_uri: str


class Connections:
    def __init__(self, db: Database, tokens: TokenStore, sources: Mapping[str, PaymentSource],
                 http: aiohttp.ClientSession, public_base_url: str) -> None:
        self.db = db
        self.tokens = tokens
        self.sources = sources
        self.http = http
        self.public_base_url = public_base_url.rstrip("/")

    def redirect_uri(self, name: str) -> str:
        return f"{self.public_base_url}/oauth/{name}/callback"

    def app(self, name: str) -> tuple[UsesOAuth, OAuthApp]:
        """The source and its OAuth app, or ConfigError saying what to set."""
        source = self.sources.get(name)
        if not isinstance(source, UsesOAuth):
            known = ", ".join(sorted(n for n, s in self.sources.items() if isinstance(s, UsesOAuth))) or "none"
            raise ConfigError(f"{name!r} is not an enabled source that connects with OAuth2 (enabled: {known})")
        app = source.oauth_app()
        if app is None:
            prefix = name.upper().replace("-", "_")
            raise ConfigError(f"{prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET must be set to connect {name}")
        return source, app

    async def begin(self, name: str) -> Started:
        _, app = self.app(name)
        state = secrets.token_urlsafe(32)
        async with self.db.transaction() as uow:
            uow.session.add(models.OAuthState(state=state, source=name, created_at=uow.clock()))
        redirect = self.redirect_uri(name)
        return Started(state, oauth.consent_url(app, redirect, state), redirect)

    async def complete(self, name: str, query: Mapping[str, str]) -> list[Tenant]:
        """The platform's redirect: StateInvalid unless it carries the state of a connect in progress for `name`;
        ProviderError if the platform refused (the operator declined, a stale code)."""
        state = query.get("state", "")
        async with self.db.transaction() as uow:
            row = await uow.session.get(models.OAuthState, state, with_for_update=True) if state else None
            if row is None or row.source != name or row.used_at is not None or \
                    uow.clock() - row.created_at > STATE_LIFETIME:
                raise StateInvalid()
            row.used_at = uow.clock()  # one use, whatever happens next
        source, app = self.app(name)
        try:
            if query.get("error"):
                raise ProviderError(name, f"access was not granted ({query['error'][:60]})")
            tokens = await oauth.exchange(self.http, app, name, query.get("code", ""), self.redirect_uri(name))
            tenants = await source.connected(tokens.access_token, query)
            for tenant in tenants:
                await self.tokens.connect(name, tenant.id, tenant.name, tokens)
        except ProviderError as exc:
            await self._outcome(state, {"error": str(exc)})
            raise
        await self._outcome(state, {"tenants": [{"id": t.id, "name": t.name} for t in tenants]})
        return tenants

    async def _outcome(self, state: str, outcome: dict[str, Any]) -> None:
        async with self.db.transaction() as uow:
            row = await uow.session.get(models.OAuthState, state)
            if row is not None:
                row.outcome = outcome

    async def outcome(self, state: str) -> dict[str, Any] | None:
        """What the callback of this connect found, once it came."""
        async with self.db.read() as session:
            return await session.scalar(select(models.OAuthState.outcome).where(models.OAuthState.state == state))
