"""The catch-up sweep: every SWEEP_INTERVAL_SECONDS, each platform that can list what changed (`Sweeps`) is asked
for what changed since its high-water mark, per connected tenant, and any payment no webhook reported is recorded.

What a sweep finds carries the same payment_ref a webhook for that payment carries, so the usual duplicate rules
make webhook and sweep thank once, whichever comes first (and a found entity's event id makes two workers sweeping
at once harmless). The mark, the platform's own time of the answer, is kept in `sweep_marks` and moved only after
everything found was recorded: a crash repeats a sweep, it never skips one. The first sweep of a tenant looks back
SWEEP_LOOKBACK_HOURS. A lost connection is told to finance once and the sweep of that tenant waits for
`paybot connect`; a platform outage waits for the next interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from multidict import CIMultiDict
from sqlalchemy import select

from bot.errors import ConnectionLost, InboundError, ProviderError
from bot.integrations.oauth import UsesOAuth
from bot.integrations.sources.base import InboundRequest, PlatformAccess, Sweeps, checked
from bot.services import alerts
from bot.services.ingest import Ingest
from bot.services.oauth import Scoped
from bot.settings import Settings
from bot.storage import models
from bot.storage.database import Database

log = logging.getLogger(__name__)
SWEEP_BODY = b"(found by the catch-up sweep)"


@dataclass(slots=True)
class SweepResult:
    recorded: int = 0  # events stored (payments found, or found again: duplicates)
    notification_ids: int = 0


class Sweeper:
    def __init__(self, db: Database, ingest: Ingest, settings: Settings, *,
                 access_for: Callable[[str], PlatformAccess], on_notifications: Callable[[], None]) -> None:
        self.db = db
        self.ingest = ingest
        self.settings = settings
        self.access_for = access_for
        self.on_notifications = on_notifications

    async def run(self) -> SweepResult:
        """One sweep of every sweeping source and tenant."""
        done = SweepResult()
        for name, source in list(self.ingest.sources.items()):
            if not isinstance(source, Sweeps):
                continue
            access = self.access_for(name)
            try:
                tenants = await access.tenants() if isinstance(source, UsesOAuth) else [""]
            except ProviderError as exc:
                log.warning("sweep of %s: %s", name, exc)
                continue
            for tenant in tenants:
                await self._sweep(name, source, tenant, Scoped(access, tenant) if tenant else access, done)
        if done.notification_ids:
            self.on_notifications()
        return done

    async def _sweep(self, name: str, source: Sweeps, tenant: str, access: PlatformAccess, done: SweepResult) -> None:
        mark = await self.mark(name, tenant)
        since = mark or self.db.clock() - timedelta(hours=self.settings.sweep_lookback_hours)
        try:
            swept = await source.sweep(since, access)
        except ConnectionLost as exc:
            async with self.db.transaction() as uow:
                await alerts.connection_lost(uow, self.ingest.notifier, name, exc.tenant or tenant, str(exc), exc.since)
            log.warning("sweep of %s %s waits for its connection: %s", name, tenant, exc)
            return
        except (ProviderError, InboundError) as exc:
            log.warning("sweep of %s %s failed, tried again at the next interval: %s", name, tenant, exc)
            return
        for received in swept.received:
            try:
                recorded = await self.ingest.record(name, self._request(), checked(received))
            except InboundError as exc:
                log.warning("sweep of %s %s: %s found unusable: %s", name, tenant, received.event_id, exc)
                continue
            done.recorded += 0 if recorded.duplicate else 1
            done.notification_ids += len(recorded.notification_ids)
        await self._save(name, tenant, swept.mark)
        log.info("swept %s %s since %s: %d found", name, tenant or "-", since.isoformat(), len(swept.received))

    def _request(self) -> InboundRequest:
        return InboundRequest(method="GET", url="sweep", headers=CIMultiDict({"Content-Type": "text/plain"}),
                              query={}, body=SWEEP_BODY, received_at=self.db.clock())

    async def mark(self, source: str, tenant: str) -> datetime | None:
        async with self.db.read() as session:
            return await session.scalar(select(models.SweepMark.mark).where(
                models.SweepMark.source == source, models.SweepMark.tenant == tenant))

    async def _save(self, source: str, tenant: str, mark: datetime) -> None:
        async with self.db.transaction() as uow:
            row = await uow.session.get(models.SweepMark, (source, tenant), with_for_update=True)
            if row is None:
                uow.session.add(models.SweepMark(source=source, tenant=tenant, mark=mark, swept_at=uow.clock()))
            else:
                row.mark, row.swept_at = max(row.mark, mark), uow.clock()  # never backwards (two sweepers at once)
