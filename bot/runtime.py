"""Everything a paybot process runs on, built once at start-up from the settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import aiohttp
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import ConfigError
from bot.integrations.base import IntegrationSettings
from bot.integrations.channels import CHANNELS
from bot.integrations.channels.base import Channel, PollsStatus, UsesDatabase
from bot.integrations.sources import SOURCES
from bot.integrations.sources.base import PaymentSource, Received
from bot.metrics import Metrics
from bot.services import status_poll
from bot.services.anchors import Anchors
from bot.services.check import summary
from bot.services.delivery import DeliveryWorker, Handover
from bot.services import inbox
from bot.services.inbox import Inbox
from bot.services.ingest import Ingest, Recorded
from bot.services.notify import Notifier
from bot.services.refusals import PRUNE_EVERY, WINDOW, Refusals
from bot.services.staff.escalations import Escalations
from bot.services.connections import Connections
from bot.services.oauth import TokenStore
from bot.services.sweeper import Sweeper
from bot.services.verifier import Verifier
from bot.services.workqueue import BatchQueue, first_of
from bot.settings import Settings, setting_errors
from bot.storage import audit, outbox, repo, wakeup
from bot.storage.connect import open_database, problem, unavailable
from bot.storage.database import Clock, Database, utcnow

log = logging.getLogger(__name__)
#: The remote a refusal is counted under when it was found out after the answer (its sender is long gone).
AFTER_THE_ANSWER = "(after the answer)"

#: How often events stored unverified (PayPal IPN) are swept, besides right after each is answered.
CONFIRM_SWEEP = timedelta(seconds=60)
#: How often the bodies of events never proven genuine are looked at for purging (UNVERIFIED_RETENTION_HOURS).
PURGE_SWEEP = timedelta(minutes=10)
#: INGEST_MODE=deferred: how often workers look for events to record when nothing wakes them (PostgreSQL's NOTIFY
#: does, at each commit of events left for them), and how long an event its web process accepted may wait before a
#: worker decides that process died and records it instead.
WAITING_SWEEP, ABANDONED_AFTER = timedelta(seconds=1), timedelta(seconds=30)
#: Deferred payments recorded at once, at most; beyond a backlog this long, a worker's sweep takes over. On SQLite
#: one batch at a time: they would only queue for the one writer, each smaller (and dearer per payment) than the
#: batch that gathers while the one before is written.
PROCESSING_CONCURRENCY, PROCESSING_BACKLOG = 4, 10_000
#: Deferred events recorded in one transaction, at most (`Ingest.process_many`).
PROCESSING_BATCH = 100
#: Events answered but not yet recorded past which new webhooks wait before they are stored: answering alone
#: would take the event loop from recording, and the backlog would grow for as long as webhooks pour in.
PROCESSING_AHEAD = PROCESSING_CONCURRENCY * PROCESSING_BATCH
#: Messages due and not yet sent past which recording waits for the delivery worker (looking again every
#: DELIVERY_LOOK seconds, for DELIVERY_PATIENCE at most): recording faster than delivery would only move the
#: backlog into the outbox, and while recording waits so do new webhooks (`PROCESSING_AHEAD`). Counted again only
#: once recording has queued the room the last count left, or DELIVERY_RECOUNT seconds later: the count was most
#: of a small batch's time on a busy event loop.
DELIVERY_AHEAD, DELIVERY_LOOK, DELIVERY_PATIENCE, DELIVERY_RECOUNT = 1000, 0.05, 0.5, 1.0
#: Customers' locales a message is written in at start-up (`Runtime.warm_up`), at most; and PostgreSQL connections
#: opened then: recording's consumers, the inbox's writer and the delivery worker's.
WARM_LOCALES, WARM_CONNECTIONS = 20, PROCESSING_CONCURRENCY + 2


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
    verifier: Verifier
    tokens: TokenStore
    sweeper: Sweeper
    connections: Connections
    disabled: dict[str, list[str]] = field(default_factory=dict)
    process_here: bool = True  # deferred payments recorded by this process (false for `serve --no-worker`)
    recording: BatchQueue[tuple[int, Received]] = field(init=False)
    _swept_to: int = field(default=0, init=False)  # the waiting-events sweep's place in the backlog
    _delivery_room: int = field(default=0, init=False)  # messages recording may queue before counting again
    _recount_at: float = field(default=0.0, init=False)  # and the event loop's time it counts again anyway

    def __post_init__(self) -> None:
        # SQLite has one writer, whose turns go round in the order asked: one batch recording at a time leaves
        # the delivery worker's transactions a turn in every two or three, four left it one in six.
        consumers = 1 if self.db.dialect == "sqlite" else PROCESSING_CONCURRENCY
        self.recording = BatchQueue("recording deferred payments", self._process,
                                    consumers=consumers, capacity=PROCESSING_BACKLOG,
                                    max_batch=PROCESSING_BATCH, high_water=PROCESSING_AHEAD)

    def confirm_soon(self) -> None:
        """Verify events stored unconfirmed now, after their request was answered, so the customer hears at once."""
        self.verifier.wake()

    def process_soon(self, row_id: int, received: Received) -> None:
        """Record a stored event's payments now that its request is answered (INGEST_MODE=deferred)."""
        self.recording.offer((row_id, received))  # full: the event waits in the database for a worker's sweep

    async def _process(self, items: list[tuple[int, Received]]) -> None:
        await self._delivery_caught_up()
        with self.worker.sending_at_once() as handover:
            recorded = await self.ingest.process_many(items, handover)  # what fails is logged, and a sweep records it
            self._queued(recorded, handover)

    def _queued(self, recorded: Recorded, handover: Handover) -> None:
        """After a commit that queued messages: those it claimed go to the worker, which looks for the rest."""
        handover.claimed = recorded.claimed
        self._delivery_room -= len(recorded.notification_ids) - len(recorded.claimed)
        if len(recorded.notification_ids) > len(recorded.claimed):
            self.worker.wake()

    async def run_worker(self, stop: asyncio.Event) -> None:
        """The delivery worker, and beside it (INGEST_MODE=deferred) the recording of events left for workers: two
        tasks, so that neither waits behind the other's backlog."""
        jobs = [self.worker.run(stop)]
        if self.settings.ingest_mode == "deferred":
            jobs.append(self.record_waiting(stop))
        await asyncio.gather(*jobs)

    async def record_waiting(self, stop: asyncio.Event) -> None:
        """Record stored events as they come: woken by the commit that stored them (NOTIFY, PostgreSQL), else
        every WAITING_SWEEP; a backlog page after page (each worker its own pages, see `Ingest.process_waiting`)."""
        wake = asyncio.Event()
        async with wakeup.listen(self.db.engine, inbox.CHANNEL, wake.set):
            while not stop.is_set():
                wake.clear()  # before looking: an event stored during this round leads to another round
                try:
                    await self.process_waiting()
                except Exception as exc:  # the loop outlives any outage; the events wait in the database
                    if unavailable(exc):
                        log.warning("recording waiting webhooks: database unavailable (%s)", problem(exc))
                    else:
                        log.exception("recording waiting webhooks failed")
                await first_of(wake, stop, timeout=WAITING_SWEEP.total_seconds())

    async def _delivery_caught_up(self) -> None:
        """Until fewer than DELIVERY_AHEAD messages are due, or DELIVERY_PATIENCE has passed. A provider that is
        down holds nothing up for long: its messages wait for their retry (not due), and the patience is short."""
        loop = asyncio.get_running_loop()
        if self._delivery_room > 0 and loop.time() < self._recount_at:
            return
        give_up = loop.time() + DELIVERY_PATIENCE
        while True:
            async with self.db.read() as session:
                due = await outbox.due(session, self.db.clock(), DELIVERY_AHEAD)
            if due < DELIVERY_AHEAD:
                self._delivery_room, self._recount_at = DELIVERY_AHEAD - due, loop.time() + DELIVERY_RECOUNT
                return
            if loop.time() >= give_up:
                return
            await asyncio.sleep(DELIVERY_LOOK)

    async def process_waiting(self) -> None:
        """Every waiting event, page by page from where the last round stopped (and round to the start)."""
        while True:
            with self.worker.sending_at_once() as handover:
                recorded = await self.ingest.process_waiting(self.db.clock() - ABANDONED_AFTER, self._swept_to,
                                                             limit=PROCESSING_BATCH, handover=handover)
                self._queued(recorded, handover)
            self._swept_to = recorded.last_seen or 0
            if recorded.last_seen is None:  # the end of the backlog: the next round starts from the beginning
                return

    async def warm_up(self) -> None:
        """Before the first payment: each channel writes a made-up message for the business's readers and its
        customers' most common locales (`Notifier.warm`), and on PostgreSQL the connections a burst holds are
        opened (each 15 ms: connecting, and asyncpg learning the types). What cannot be written is said now."""
        try:
            async with self.db.read() as session:
                locales = await repo.common_locales(session, WARM_LOCALES)
        except (SQLAlchemyError, OSError) as exc:  # a warm-up only: the payments will find the database
            log.warning("warming up without the customers' locales: %s", problem(exc))
            locales = []
        for problem_ in self.notifier.warm([self.settings.business_locale, *locales], self.db.clock()):
            log.warning("a message cannot be written: %s", problem_)
        if self.db.dialect == "postgresql":  # what a burst holds at once, connected now rather than during it
            async with AsyncExitStack() as held:
                await asyncio.gather(*(held.enter_async_context(self.db.engine.connect())
                                       for _ in range(WARM_CONNECTIONS)), return_exceptions=True)

    async def confirm_pending(self) -> None:
        await self.verifier.drain()

    async def catch_up(self) -> None:
        await self.sweeper.run()

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
        await self.worker.finish_sending()  # what recording claimed for it as the worker stopped
        await self.verifier.close()
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
    try:
        return cls()
    except ValidationError as exc:  # e.g. STRIPE_TOLERANCE_SECONDS=soon: one line, exit 2
        raise ConfigError(f"bad setting: {setting_errors(exc, cls.model_config.get('env_prefix', ''))}") from exc


async def start(settings: Settings, *, configs: Mapping[str, IntegrationSettings] | None = None,
                clock: Clock = utcnow, migrate_sqlite: bool = True, announce: bool = True) -> Runtime:
    # Every setting is read (and a bad one refused) before anything is opened or created.
    chosen = {name: integration_settings(configs, name, factory.Settings)
              for registry in (SOURCES, CHANNELS) for name, factory in registry.items()}
    # The zero-set-up default: on SQLite an empty file becomes a database; PostgreSQL must have been migrated.
    db = await open_database(settings.database_url, clock, upgrade=None if migrate_sqlite else False,
                             audit_keys=settings.audit_keyring())
    await adopt_audit_key(db)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    disabled: dict[str, list[str]] = {}
    sources: dict[str, PaymentSource] = {}
    channels: dict[str, Channel] = {}
    for registry, enabled in ((SOURCES, sources), (CHANNELS, channels)):
        for name, factory in registry.items():
            config = chosen[name]
            missing = config.missing() if config is not None else ["(not given)"]
            if config is None or missing:
                disabled[name] = missing
                continue
            enabled[name] = factory(config, http)  # type: ignore[assignment]
            if isinstance(enabled.get(name), UsesDatabase):
                enabled[name].attach(db)  # type: ignore[union-attr]
    if configs is None and announce:  # from the environment: say once what is on, what is off, and why
        for finding in summary(sources, channels, disabled, settings):
            log.log(logging.WARNING if finding.problem else logging.INFO, "%s", finding.text)
    metrics = Metrics()
    notifier = Notifier(settings, channels)
    worker = DeliveryWorker(db, channels, notifier, settings, metrics=metrics)
    ingest = Ingest(db, notifier, sources, inbox=Inbox(db) if settings.ingest_mode == "deferred" else None,
                    max_unverified=settings.unverified_max_pending, unverified_rate=settings.unverified_max_rate)
    refusals = Refusals(db, metrics, retention=timedelta(days=settings.refusals_retention_days))
    tokens = TokenStore(db, notifier, http)
    access_for = tokens.access_for(sources)
    verifier = Verifier(db, ingest, settings, worker_id=worker.worker_id, on_notifications=worker.wake,
                        on_refused=lambda source, exc: refusals.count(source, exc, AFTER_THE_ANSWER),
                        access_for=access_for)
    sweeper = Sweeper(db, ingest, settings, access_for=access_for, on_notifications=worker.wake)
    runtime = Runtime(settings=settings, db=db, http=http, sources=sources, channels=channels, notifier=notifier,
                      ingest=ingest, worker=worker, metrics=metrics, verifier=verifier, disabled=disabled,
                      refusals=refusals, tokens=tokens, sweeper=sweeper,
                      connections=Connections(db, tokens, sources, http, settings.public_base_url))
    worker.every("confirm-pending-webhooks", CONFIRM_SWEEP, runtime.confirm_pending)
    worker.every("purge-unverified-webhooks", PURGE_SWEEP, runtime.purge_unverified)
    escalations = Escalations(db, notifier, settings)
    worker.every("re-escalate", escalations.check_every, escalations.reescalate_due)
    worker.every("flush-refusals", WINDOW, runtime.refusals.flush)
    worker.every("prune-refusals", PRUNE_EVERY, runtime.refusals.prune)
    worker.every("catch-up-sweep", timedelta(seconds=settings.sweep_interval_seconds), runtime.catch_up)
    worker.every("publish-audit-anchor", timedelta(seconds=settings.audit_anchor_seconds),
                 Anchors(db, notifier).publish)
    for name, channel in channels.items():  # providers asked how an accepted message ended (HubSpot's sends)
        if isinstance(channel, PollsStatus):
            worker.every(f"{name}-send-status", status_poll.EVERY, partial(status_poll.poll, db, notifier, name, channel))
    renew_subscriptions(runtime)
    return runtime


def renew_subscriptions(runtime: Runtime) -> None:
    """Business Central's subscriptions expire in three days: the worker renews them."""
    from bot.integrations.sources.business_central import BusinessCentralSource
    from bot.services.bc_subscriptions import CHECK_EVERY, BcSubscriptions

    source = runtime.sources.get("business-central")
    if isinstance(source, BusinessCentralSource):
        runtime.worker.every("renew-business-central-subscriptions", CHECK_EVERY,
                             BcSubscriptions(runtime.db, runtime.notifier, source).renew_due)


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
