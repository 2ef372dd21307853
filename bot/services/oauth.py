"""The OAuth2 token store: each platform's tokens per tenant, in the database, refreshed once however many ask.

QuickBooks and Xero rotate the refresh token on every refresh, and the old one stops working: a refreshed pair is
committed BEFORE its access token is handed out, so a crash can lose at most an access token, never the only
valid refresh token. A refresh happens once under concurrency: coroutines of a process queue on a lock, and
processes on the row (claimed by an UPDATE first: a row lock on PostgreSQL, the write lock on SQLite), and
whoever comes second finds the token the first one saved. A dead refresh token (the platform says
`invalid_grant`: revoked, or unused for 100 days) marks the row lost, audits it and tells finance, once, in the
same transaction; after that every caller gets ConnectionLost at once, without asking the platform again, until
`paybot connect` stores new tokens.

`<NAME>_REFRESH_TOKEN` (+ `<NAME>_REALM_ID` / `_TENANT_ID` / `_ACCOUNT_ID` / `_ORGANIZATION_ID`) seeds the store
once, when it has no row for that tenant.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import aiohttp
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import ConnectionLost
from bot.integrations import oauth
from bot.integrations.base import secret
from bot.integrations.sources.base import PaymentSource, PlatformAccess
from bot.services import alerts
from bot.services.notify import Notifier
from bot.storage import models
from bot.storage.database import Database, UnitOfWork
from bot.storage.sql import insert_or_ignore

log = logging.getLogger(__name__)
EARLY = timedelta(seconds=120)  # an access token this close to expiry is refreshed before use
TENANT_SETTINGS = ("realm_id", "tenant_id", "account_id", "organization_id")


def seed_of(source: PaymentSource) -> tuple[str, str] | None:
    """(tenant, refresh token) from the source's settings, when both are set."""
    settings = getattr(source, "settings", None)
    token = secret(getattr(settings, "refresh_token", None)) if settings is not None else ""
    if not isinstance(token, str) or not token:
        return None
    tenant = next((str(v) for n in TENANT_SETTINGS if (v := getattr(settings, n, None))), "")
    return tenant, token


class TokenStore:
    def __init__(self, db: Database, notifier: Notifier, http: aiohttp.ClientSession) -> None:
        self.db = db
        self.notifier = notifier
        self.http = http
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def access_for(self, sources: Mapping[str, PaymentSource]) -> Callable[[str], PlatformAccess]:
        """Each source's access: the database's tokens for an OAuth source with its app configured, else none."""
        from bot.services.verifier import NotConnected

        made: dict[str, PlatformAccess] = {}

        def access(name: str) -> PlatformAccess:
            if name not in made:
                source = sources.get(name)
                app = source.oauth_app() if isinstance(source, oauth.UsesOAuth) else None
                made[name] = (Access(self, name, app, seed_of(source)) if app is not None and source is not None
                              else NotConnected(name))
            return made[name]

        return access

    async def seed(self, source: str, tenant: str, refresh_token: str) -> bool:
        """Store an env-given refresh token, unless the store already has this tenant (its token has rotated
        since: the env's is stale). True if it was stored."""
        async with self.db.transaction() as uow:
            stored = (await uow.session.execute(insert_or_ignore(uow.session, models.OAuthToken, {
                "source": source, "tenant": tenant, "refresh_token": refresh_token, "connected_at": uow.clock(),
                "refreshes": 0}))).scalar_one_or_none()
            if stored is not None:
                uow.audit("oauth.seeded", source=source, detail={"tenant": tenant})
        return stored is not None

    async def connect(self, source: str, tenant: str, name: str | None, tokens: oauth.Tokens) -> None:
        """`paybot connect`: the tenant's new tokens replace whatever was stored (a lost connection is mended)."""
        async with self.db.transaction() as uow:
            now = uow.clock()
            row = await uow.session.scalar(select(models.OAuthToken).where(
                models.OAuthToken.source == source, models.OAuthToken.tenant == tenant).with_for_update())
            if row is None:
                row = models.OAuthToken(source=source, tenant=tenant, refresh_token="", connected_at=now, refreshes=0)
                uow.session.add(row)
            row.tenant_name, row.refresh_token, row.connected_at = name, tokens.refresh_token or "", now
            row.lost_at = row.lost_reason = None
            self._save(row, tokens, now)
            uow.audit("oauth.connected", source=source, detail={"tenant": tenant, "name": name or ""})

    async def tenants(self, source: str) -> list[str]:
        async with self.db.read() as session:
            return list(await session.scalars(select(models.OAuthToken.tenant).where(
                models.OAuthToken.source == source).order_by(models.OAuthToken.id)))

    async def token(self, source: str, app: oauth.OAuthApp, tenant: str) -> str:
        async with self.db.read() as session:
            row = await self._row(session, source, tenant)
            usable = self._usable(row, self.db.clock(), source, tenant)
        return usable if usable is not None else await self.refreshed(source, app, tenant, rejected=None)

    async def refreshed(self, source: str, app: oauth.OAuthApp, tenant: str, rejected: str | None) -> str:
        """A fresh access token: refreshed here unless someone else already did since `rejected` was handed out."""
        async with self._locks.setdefault((source, tenant), asyncio.Lock()):
            async with self.db.transaction() as uow:
                # Claim the row for writing first: every other refresher (any process) waits here until we commit.
                await uow.session.execute(update(models.OAuthToken).where(
                    models.OAuthToken.source == source, models.OAuthToken.tenant == tenant,
                ).values(refreshes=models.OAuthToken.refreshes).execution_options(synchronize_session=False))
                row = await self._row(uow.session, source, tenant, populate=True)
                now = uow.clock()
                usable = self._usable(row, now, source, tenant)
                if row is not None and usable is not None and usable != rejected:
                    return usable  # refreshed by whoever held the row before us
                assert row is not None  # _usable raised otherwise
                try:
                    tokens = await oauth.refresh(self.http, app, source, row.refresh_token, tenant=tenant)
                except ConnectionLost as exc:
                    await self._lost(uow, row, str(exc))
                    lost = ConnectionLost(source, f"refresh token refused: {exc}", tenant=tenant,
                                          since=row.lost_at.isoformat() if row.lost_at else "")
                else:
                    self._save(row, tokens, now)
                    row.refreshes += 1
                    log.info("%s tenant %s: access token refreshed", source, tenant)
                    return tokens.access_token  # committed (with the rotated refresh token) as this block ends
            raise lost  # after the commit that recorded it

    @staticmethod
    def _usable(row: models.OAuthToken | None, now: datetime, source: str, tenant: str) -> str | None:
        """The stored access token if it is still good; None if a refresh is due; ConnectionLost if none can be."""
        if row is None:
            raise ConnectionLost(source, f"not connected: run `paybot connect {source}`", tenant=tenant)
        if row.lost_at is not None:
            raise ConnectionLost(row.source, f"connection lost ({row.lost_reason}): run `paybot connect {row.source}`",
                                 tenant=row.tenant, since=row.lost_at.isoformat())
        if row.access_token and row.access_expires_at and row.access_expires_at - EARLY > now:
            return row.access_token
        return None

    @staticmethod
    def _save(row: models.OAuthToken, tokens: oauth.Tokens, now: datetime) -> None:
        row.access_token = tokens.access_token
        row.refresh_token = tokens.refresh_token or row.refresh_token  # rotated: the new one, or the old one kept
        row.access_expires_at = now + timedelta(seconds=tokens.expires_in or 3600)
        row.refreshed_at = now

    async def _lost(self, uow: UnitOfWork, row: models.OAuthToken, reason: str) -> None:
        row.lost_at, row.lost_reason, row.access_token = uow.clock(), reason[:255], None
        log.error("%s tenant %s: connection lost: %s", row.source, row.tenant, reason)
        uow.audit("oauth.lost", source=row.source, detail={"tenant": row.tenant, "reason": reason[:200]})
        await alerts.connection_lost(uow, self.notifier, row.source, row.tenant, reason, row.lost_at.isoformat())

    @staticmethod
    async def _row(session: AsyncSession, source: str, tenant: str,
                   populate: bool = False) -> models.OAuthToken | None:
        query = select(models.OAuthToken).where(models.OAuthToken.source == source, models.OAuthToken.tenant == tenant)
        if populate:
            query = query.execution_options(populate_existing=True)
        return await session.scalar(query)


class Access:
    """One source's `PlatformAccess`, backed by the token store; seeds it from the env on first use."""

    def __init__(self, store: TokenStore, source: str, app: oauth.OAuthApp, seed: tuple[str, str] | None) -> None:
        self.store = store
        self.source = source
        self.app = app
        self._seed = seed
        self._seeding = asyncio.Lock()

    async def _seeded(self) -> None:
        # Everyone waits for the seed to commit: a caller that went past it would find no tenant, and the event
        # it resolves would be recorded as from a company paybot is not connected to.
        async with self._seeding:
            if self._seed is not None:
                tenant, token = self._seed
                await self.store.seed(self.source, tenant, token)
                self._seed = None

    async def token(self, tenant: str) -> str:
        await self._seeded()
        return await self.store.token(self.source, self.app, tenant)

    async def refreshed(self, tenant: str, rejected: str) -> str:
        await self._seeded()
        return await self.store.refreshed(self.source, self.app, tenant, rejected)

    async def tenants(self) -> list[str]:
        await self._seeded()
        return await self.store.tenants(self.source)


class Scoped:
    """An access narrowed to one tenant: what a per-tenant sweep is given (its `tenants()` is that one)."""

    def __init__(self, access: PlatformAccess, tenant: str) -> None:
        self.access = access
        self.tenant = tenant

    async def token(self, tenant: str) -> str:
        return await self.access.token(tenant)

    async def refreshed(self, tenant: str, rejected: str) -> str:
        return await self.access.refreshed(tenant, rejected)

    async def tenants(self) -> list[str]:
        return [self.tenant]
