"""Everything a paybot process runs on, built once at start-up from the settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from bot.integrations.base import IntegrationSettings
from bot.integrations.channels import CHANNELS
from bot.integrations.channels.base import Channel
from bot.integrations.sources import SOURCES
from bot.integrations.sources.base import PaymentSource, Received
from bot.metrics import Metrics
from bot.services.anchors import Anchors
from bot.services.delivery import DeliveryWorker
from bot.services.inbox import Inbox
from bot.services.ingest import Ingest
from bot.services.notify import Notifier
from bot.services.refusals import PRUNE_EVERY, WINDOW, Refusals
from bot.services.staff.escalations import Escalations
from bot.settings import Settings
from bot.storage import audit, migrate
from bot.storage.database import Clock, Database, utcnow
from bot.storage.engine import is_sqlite

log = logging.getLogger(__name__)

#: How often events stored unverified (PayPal IPN) are swept, besides right after each is answered.
CONFIRM_SWEEP = timedelta(seconds=60)
#: INGEST_MODE=deferred: how often workers look for events to record, and how long an event its web process
#: accepted may wait before a worker decides that process died and records it instead.
WAITING_SWEEP, ABANDONED_AFTER = timedelta(seconds=1), timedelta(seconds=30)
#: Deferred payments recorded at once, at most; beyond a backlog this long, a worker's sweep takes over.
PROCESSING_CONCURRENCY, PROCESSING_BACKLOG = 4, 10_000


@dataclass
class Runtime:
    settings: Settings
    db: Database
    http: aiohttp.ClientSession
    sources: dict[str, PaymentSource]
    channels: dict[str, Channel]
    notifier: Notifier
    ingest: Ingest
    worker: DeliveryWorker
    metrics: Metrics
    refusals: Refusals
    disabled: dict[str, list[str]] = field(default_factory=dict)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    process_here: bool = True  # deferred payments recorded by this process (false for `serve --no-worker`)
    processing: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(PROCESSING_CONCURRENCY))

    def confirm_soon(self) -> None:
        """Verify events stored unconfirmed now, after their request was answered, so the customer hears at once."""
        self._after_answer(self.confirm_pending())

    def process_soon(self, row_id: int, received: Received) -> None:
        """Record a stored event's payments now that its request is answered (INGEST_MODE=deferred)."""
        if len(self.background) < PROCESSING_BACKLOG:  # past it, the event waits in the database for a sweep
            self._after_answer(self._process(row_id, received))

    def _after_answer(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _process(self, row_id: int, received: Received) -> None:
        try:
            async with self.processing:
                recorded = await self.ingest.process(row_id, received)
        except Exception:  # nobody to raise to: a worker's sweep records it later
            log.exception("recording the payments of webhook event %s failed", row_id)
            return
        if recorded.notification_ids:
            self.worker.wake()

    async def process_waiting(self) -> None:
        after: int | None = 0
        while after is not None:  # page after page, until the backlog is gone
            recorded = await self.ingest.process_waiting(self.db.clock() - ABANDONED_AFTER, after)
            if recorded.notification_ids:
                self.worker.wake()
            after = recorded.last_seen

    async def confirm_pending(self) -> None:
        try:
            confirmed = await self.ingest.confirm_pending()
        except Exception:  # a background task has nobody to raise to; the periodic sweep tries again
            log.exception("confirming pending webhooks failed")
            return
        if confirmed.notification_ids:
            self.worker.wake()

    async def settle(self) -> None:
        """Wait for the work requests left running after their answer (at shutdown; in tests)."""
        while self.background:
            await asyncio.gather(*self.background)

    async def close(self) -> None:
        if self.ingest.inbox is not None:
            await self.ingest.inbox.close()
        await self.settle()
        try:
            await self.refusals.flush()  # the last window's counts, not lost at a restart
        except Exception:
            log.exception("flushing refusal summaries at shutdown failed")
        await self.http.close()
        await self.db.dispose()


def integration_settings(configs: Mapping[str, IntegrationSettings] | None, name: str,
                         cls: type[IntegrationSettings]) -> IntegrationSettings | None:
    """Given `configs` (tests, demo), exactly those integrations run; otherwise each reads its environment."""
    if configs is not None:
        return configs.get(name)
    return cls()


async def start(settings: Settings, *, configs: Mapping[str, IntegrationSettings] | None = None,
                clock: Clock = utcnow, migrate_sqlite: bool = True) -> Runtime:
    db = Database.open(settings.database_url, clock, audit_keys=settings.audit_keyring())
    if migrate_sqlite and is_sqlite(settings.database_url):
        await migrate.upgrade(db.engine)  # the zero-set-up default: an empty file becomes a database
    await adopt_audit_key(db)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    disabled: dict[str, list[str]] = {}
    sources: dict[str, PaymentSource] = {}
    channels: dict[str, Channel] = {}
    for registry, enabled in ((SOURCES, sources), (CHANNELS, channels)):
        for name, factory in registry.items():
            config = integration_settings(configs, name, factory.Settings)
            missing = config.missing() if config is not None else ["(not given)"]
            if config is None or missing:
                disabled[name] = missing
                continue
            enabled[name] = factory(config, http)  # type: ignore[assignment]
    if configs is None:  # read from the environment: say once what is off, and why
        for name, missing in disabled.items():
            log.info("integration %s disabled: %s not set", name, ", ".join(missing))
    metrics = Metrics()
    notifier = Notifier(settings, channels)
    worker = DeliveryWorker(db, channels, notifier, settings, metrics=metrics)
    runtime = Runtime(settings=settings, db=db, http=http, sources=sources, channels=channels, notifier=notifier,
                      ingest=Ingest(db, notifier, sources, inbox=Inbox(db) if settings.ingest_mode == "deferred" else None),
                      worker=worker, metrics=metrics, disabled=disabled,
                      refusals=Refusals(db, metrics, retention=timedelta(days=settings.refusals_retention_days)))
    worker.every("confirm-pending-webhooks", CONFIRM_SWEEP, runtime.confirm_pending)
    if settings.ingest_mode == "deferred":
        worker.every("process-waiting-webhooks", WAITING_SWEEP, runtime.process_waiting)
    escalations = Escalations(db, notifier, settings)
    worker.every("re-escalate", escalations.check_every, escalations.reescalate_due)
    worker.every("flush-refusals", WINDOW, runtime.refusals.flush)
    worker.every("prune-refusals", PRUNE_EVERY, runtime.refusals.prune)
    worker.every("publish-audit-anchor", timedelta(seconds=settings.audit_anchor_seconds),
                 Anchors(db, notifier).publish)
    return runtime


async def adopt_audit_key(db: Database) -> None:
    """Put AUDIT_KEY on record as the chain's key (a marker entry, if it is new), or warn that there is none."""
    try:
        async with db.transaction() as uow:
            key_id = await audit.adopt(uow.session, db.audit_keys, uow.clock())
    except SQLAlchemyError as exc:  # not migrated yet (`paybot worker` first): the first append does it instead
        log.error("could not check the audit chain's key at start-up: %s", exc)
        return
    if key_id is None:
        log.warning("AUDIT_KEY is not set: the audit chain is plain SHA-256, so anyone who can write the database "
                    "can rewrite it and recompute every hash undetected. Set AUDIT_KEY (see README, 'Audit trail').")
    else:
        log.info("audit chain keyed with key %s", key_id)
