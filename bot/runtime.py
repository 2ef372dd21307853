"""Everything a paybot process runs on, built once at start-up from the settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp

from bot.integrations.base import IntegrationSettings
from bot.integrations.channels import CHANNELS
from bot.integrations.channels.base import Channel
from bot.integrations.sources import SOURCES
from bot.integrations.sources.base import PaymentSource, Received
from bot.metrics import Metrics
from bot.services.delivery import DeliveryWorker
from bot.services.inbox import Inbox
from bot.services.ingest import Ingest
from bot.services.notify import Notifier
from bot.services.staff.escalations import Escalations
from bot.services.verifier import Verifier
from bot.services.workqueue import WorkQueue
from bot.settings import Settings
from bot.storage import migrate
from bot.storage.database import Clock, Database, utcnow
from bot.storage.engine import is_sqlite

log = logging.getLogger(__name__)

#: How often events stored unverified (PayPal IPN) are swept, besides right after each is answered.
CONFIRM_SWEEP = timedelta(seconds=60)
#: How often the bodies of events never proven genuine are looked at for purging (UNVERIFIED_RETENTION_HOURS).
PURGE_SWEEP = timedelta(minutes=10)
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
    verifier: Verifier
    disabled: dict[str, list[str]] = field(default_factory=dict)
    process_here: bool = True  # deferred payments recorded by this process (false for `serve --no-worker`)
    recording: WorkQueue[tuple[int, Received]] = field(init=False)

    def __post_init__(self) -> None:
        self.recording = WorkQueue("recording deferred payments", self._process,
                                   consumers=PROCESSING_CONCURRENCY, capacity=PROCESSING_BACKLOG)

    def confirm_soon(self) -> None:
        """Verify events stored unconfirmed now, after their request was answered, so the customer hears at once."""
        self.verifier.wake()

    def process_soon(self, row_id: int, received: Received) -> None:
        """Record a stored event's payments now that its request is answered (INGEST_MODE=deferred)."""
        self.recording.offer((row_id, received))  # full: the event waits in the database for a worker's sweep

    async def _process(self, item: tuple[int, Received]) -> None:
        row_id, received = item
        try:
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
        await self.verifier.drain()

    async def purge_unverified(self) -> None:
        await self.verifier.purge()

    async def settle(self) -> None:
        """Wait for the work requests left behind after their answer (at shutdown; in tests)."""
        await self.recording.join()
        await self.verifier.settle()

    async def close(self) -> None:
        if self.ingest.inbox is not None:
            await self.ingest.inbox.close()
        await self.recording.close()
        await self.verifier.close()
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
    db = Database.open(settings.database_url, clock)
    if migrate_sqlite and is_sqlite(settings.database_url):
        await migrate.upgrade(db.engine)  # the zero-set-up default: an empty file becomes a database
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
    ingest = Ingest(db, notifier, sources, inbox=Inbox(db) if settings.ingest_mode == "deferred" else None,
                    max_unverified=settings.unverified_max_pending)
    verifier = Verifier(db, ingest, settings, worker_id=worker.worker_id, on_notifications=worker.wake)
    runtime = Runtime(settings=settings, db=db, http=http, sources=sources, channels=channels, notifier=notifier,
                      ingest=ingest, worker=worker, metrics=metrics, verifier=verifier, disabled=disabled)
    worker.every("confirm-pending-webhooks", CONFIRM_SWEEP, runtime.confirm_pending)
    worker.every("purge-unverified-webhooks", PURGE_SWEEP, runtime.purge_unverified)
    if settings.ingest_mode == "deferred":
        worker.every("process-waiting-webhooks", WAITING_SWEEP, runtime.process_waiting)
    escalations = Escalations(db, notifier, settings)
    worker.every("re-escalate", escalations.check_every, escalations.reescalate_due)
    return runtime
