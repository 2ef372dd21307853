"""The delivery worker: claims due outbox rows, sends them, records what happened.

Outcomes: sent; retried with exponential backoff and jitter (never sooner than the provider's Retry-After);
or dead after a permanent error, too many attempts or too much age. A dead customer message falls back to the
customer's next channel and is reported to finance.

A worker that dies between the provider accepting a message and recording it leaves the row marked "attempt
started" (see `outbox.renew`). Whoever takes it over first asks whether the provider already has it: the
provider's own status reports, then the provider itself where it can be asked (`FindsSent`). Only when neither
can tell is it sent again, counted and audited as a possible duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import uuid4

from sqlalchemy.engine import Connection

from bot.integrations.channels import CHANNELS
from bot.integrations.channels.base import CannotTell, Channel, ConsentChange, FindsSent
from bot.integrations.http import Delivery, Failed, Retry, Sent
from bot.metrics import Metrics
from bot.services import receipts
from bot.services.delivery_status import record_consent
from bot.services.notify import Notifier, redact
from bot.services.workqueue import first_of
from bot.settings import Settings
from bot.storage import audit, consent, outbox, wakeup
from bot.storage.connect import problem, unavailable
from bot.storage.database import Database, UnitOfWork, audit_record
from bot.storage.models import Notification

log = logging.getLogger(__name__)
#: The longest pause between two rounds while the database is unavailable.
OUTAGE_MAX_SECONDS = 60.0


@dataclass
class PeriodicJob:
    name: str
    every: timedelta
    run: Callable[[], Awaitable[None]]
    next_at: datetime | None = None


@dataclass
class Handover:
    """Messages claimed for `worker` by the transaction that queues them (`outbox.claimed_at_once`): those
    `sendable(channel, payload)`, as many as `take(n)` grants of n. `claimed`: those it claimed, once committed."""
    worker: str
    lease: timedelta
    sendable: Callable[[str, dict[str, Any]], bool]
    take: Callable[[int], int]
    claimed: list[Notification] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Claim:
    """Rows claimed in one transaction: `send` marked started (they go out now), `skip` (their recipient opted
    out), `rest` (each needs more than a send: `DeliveryWorker.deliver`)."""
    send: list[Notification]
    skip: list[Notification]
    rest: list[Notification]

    def __len__(self) -> int:
        return len(self.send) + len(self.skip) + len(self.rest)


class DeliveryWorker:
    def __init__(self, db: Database, channels: Mapping[str, Channel], notifier: Notifier, settings: Settings, *,
                 metrics: Metrics, rng: random.Random | None = None, worker_id: str | None = None) -> None:
        self.db = db
        self.channels = channels
        self.notifier = notifier
        self.settings = settings
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.worker_id = worker_id or f"{socket.gethostname()}:{uuid4().hex[:8]}"
        self.periodic: list[PeriodicJob] = []
        self._wake = asyncio.Event()
        self._lease = timedelta(seconds=settings.worker_lease_seconds)
        self._running = False  # the claiming loop runs (`run`): sends may be handed to it
        self._sending: set[asyncio.Future[None]] = set()  # claims being sent and recorded
        self._freed = asyncio.Event()  # room in WORKER_CONCURRENCY was given back
        self._in_flight = 0  # rows claimed by `_sending` (or taken by a `Handover`), not yet recorded
        self._room = threading.Lock()  # over `_in_flight`: a hand-over's transaction may run on another thread

    def every(self, name: str, interval: timedelta, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` about every `interval`, beside the deliveries (renewals, catch-up sweeps, re-escalations)."""
        self.periodic.append(PeriodicJob(name, interval, job))

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("delivery worker %s started", self.worker_id)
        async with wakeup.listen(self.db.engine, outbox.CHANNEL, self.wake):
            await asyncio.gather(self._loop(stop), self._jobs(stop))

    async def _jobs(self, stop: asyncio.Event) -> None:
        """The periodic jobs, beside the deliveries: a long one (a page of waiting events, a catch-up sweep asking
        a platform) does not hold up a claim."""
        while not stop.is_set():
            await self.run_periodic()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.worker_poll_seconds)

    async def _loop(self, stop: asyncio.Event) -> None:
        """Claims go on while earlier claims' sends are out (at most WORKER_CONCURRENCY rows in flight): a row
        queued now is sent at once, not after the slowest send of the claim before it."""
        failures = 0  # rounds failed in a row: each waits twice as long as the last, up to OUTAGE_MAX_SECONDS
        self._running = True
        try:
            while not stop.is_set():
                self._freed.clear()  # before counting the room: room freed during this round leads to another
                limit = self._claim_limit(self._in_flight)
                claimed = Claim([], [], [])
                try:
                    if limit:
                        self._wake.clear()  # before looking: a wake-up during this round must lead to another round
                        claimed = await self._claim(limit)
                    failures = 0
                except Exception as exc:  # the loop must outlive any one bad row or database outage
                    failures += 1
                    delay = self.outage_delay(failures)
                    if unavailable(exc):  # expected while the database restarts: one line, no traceback
                        log.warning("delivery worker: database unavailable (%s); retrying in %.0f s", problem(exc),
                                    delay, extra={"pause": delay})
                    else:
                        log.exception("delivery worker iteration failed; retrying in %.0f s", delay,
                                      extra={"pause": delay})
                    with suppress(TimeoutError):  # only a stop cuts the pause short: wake-ups are for new work
                        await asyncio.wait_for(stop.wait(), delay)
                    continue
                if claimed:
                    self._start(self._deliver_claimed(claimed), len(claimed))
                more_due = bool(limit) and len(claimed) == limit
                if more_due and self._claim_limit(self._in_flight):
                    continue
                # With more due than we could take (or new work we had no room to look for): wait for room. Else
                # for new work. Room alone is no reason to look: the hand-overs fill it with what they queue, and
                # a look would find nothing.
                wanted = self._freed if more_due or (not limit and self._wake.is_set()) else self._wake
                await first_of(wanted, stop, timeout=self.settings.worker_poll_seconds)
                if not (wanted.is_set() or stop.is_set()):
                    self._wake.set()  # the poll (a retry come due): look as soon as there is room
        finally:  # what is out is finished and recorded before we stop
            self._running = False
            await self.finish_sending()

    def _start(self, sends: Awaitable[None], rows: int) -> None:
        """Send (and record) `rows` claimed rows in a task of their own, counted in flight until it ends."""
        task = asyncio.ensure_future(sends)
        self._sending.add(task)
        with self._room:
            self._in_flight += rows
        task.add_done_callback(partial(self._finished, rows=rows))

    async def finish_sending(self) -> None:
        """Wait until every claim started is sent and recorded."""
        await asyncio.gather(*self._sending, return_exceptions=True)

    def _finished(self, task: asyncio.Future[None], rows: int) -> None:
        self._sending.discard(task)
        with self._room:
            self._in_flight -= rows
        self._freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("delivering a claim failed; its rows are taken over when their lease runs out",
                      exc_info=task.exception())

    @contextmanager
    def sending_at_once(self) -> Iterator[Handover]:
        """Recording claims the messages it queues for this worker (while it runs), in its own transaction: `send`
        them after that commit, with no claim of their own and no wait for this worker's next look. The room it
        takes counts in WORKER_CONCURRENCY from the moment it is taken; what goes unsent is given back at the end."""
        granted = 0

        def take(rows: int) -> int:  # in the recording transaction: on SQLite's writer thread, at times
            nonlocal granted
            with self._room:
                room = min(rows, self._claim_limit(self._in_flight)) if self._running else 0
                self._in_flight += room
            granted += room
            return room
        handover = Handover(self.worker_id, self._lease, self._sendable, take)
        try:
            yield handover
        finally:
            with self._room:
                self._in_flight -= granted
            if handover.claimed:
                self._start(self._deliver_together(handover.claimed, []), len(handover.claimed))
            if granted > len(handover.claimed):
                self._freed.set()  # room held from the claims, unused: they may have waited for it

    def _claim_limit(self, in_flight: int) -> int:
        """Rows to claim now: no more than WORKER_BATCH, nor than the sends WORKER_CONCURRENCY leaves free."""
        return max(0, min(self.settings.worker_batch, self.settings.worker_concurrency - in_flight))

    def outage_delay(self, failures: int) -> float:
        """The pause after `failures` failed rounds in a row: the poll interval, doubled each time, capped."""
        return min(OUTAGE_MAX_SECONDS, self.settings.worker_poll_seconds * 2 ** min(failures - 1, 30))

    async def run_periodic(self) -> None:
        now = self.db.clock()
        for job in self.periodic:
            if job.next_at is None or job.next_at <= now:
                job.next_at = now + job.every
                try:
                    await job.run()
                except Exception as exc:
                    if unavailable(exc):  # the deliveries' loop says so too, and backs off: one line here
                        log.warning("periodic job %s: database unavailable (%s)", job.name, problem(exc))
                    else:
                        log.exception("periodic job %s failed", job.name)

    async def run_once(self) -> int:
        """Claim what may be sent at once and deliver it; returns how many rows were handled."""
        claim = await self._claim(self._claim_limit(0))
        await self._deliver_claimed(claim)
        return len(claim)

    async def _claim(self, limit: int) -> Claim:
        """Claim due rows. In the same transaction, the plain sends among them (see `_plain`) are marked started
        (they go out right after the commit), and those whose recipient said STOP are set aside."""
        return await self.db.run(partial(self._claim_rows, limit=limit, now=self.db.clock()))

    def _claim_rows(self, connection: Connection, *, limit: int, now: datetime) -> Claim:
        rows = outbox.claim(connection, now=now, worker=self.worker_id, lease=self._lease, limit=limit)
        plain = [row for row in rows if self._plain(row)]
        out = self._opted_out_of(connection, [row for row in plain if row.audience == "customer"])
        send = [row for row in plain if row.id not in out]
        outbox.renew_many(connection, [row.id for row in send], self.worker_id, now, self._lease)
        return Claim(send, [row for row in plain if row.id in out], [row for row in rows if row not in plain])

    async def _deliver_claimed(self, claim: Claim) -> None:
        """The plain sends side by side, their outcomes recorded in one transaction; then the rows that need more
        than a send (a rate slot, a question to the provider after a crash, a missing channel), one by one."""
        if claim.send or claim.skip:
            await self._deliver_together(claim.send, claim.skip)
        for row in claim.rest:
            await self.deliver(row)

    def _plain(self, row: Notification) -> bool:
        return row.attempt_started_at is None and self._sendable(row.channel, row.payload)

    def _sendable(self, channel_name: str, payload: dict[str, Any]) -> bool:
        """A plain send: the channel is here and no rate limit holds the message to a slot."""
        channel = self.channels.get(channel_name)
        return channel is not None and channel.rate_limit(payload) is None

    async def _deliver_together(self, rows: list[Notification], opted_out: list[Notification]) -> None:
        """Send `rows` (claimed and marked started: by `_claim`, or so queued by recording) side by side; record
        their outcomes, and the opted-out rows as skipped, in one transaction."""
        skipped = [(row, Failed(f"{redact(row.recipient)} opted out of {CHANNELS[row.channel].serves}"),
                    {"skipped": "opted out"}, True) for row in opted_out]
        results = await asyncio.gather(*(self._send(self.channels[row.channel], row) for row in rows),
                                       return_exceptions=True)
        # A send that raised leaves its row "attempt started", as a crash would: whoever takes it over asks first;
        # so does an answer that may hide an accepted message (a 5xx).
        await self._record_all(skipped + [
            (row, result, {}, not (isinstance(result, Retry) and result.unknown))
            for row, result in zip(rows, results, strict=True) if not isinstance(result, BaseException)])
        raise_first(results)

    @staticmethod
    def _opted_out_of(connection: Connection, rows: list[Notification]) -> set[int]:
        """`_opted_out` for a group of rows, in one query: the ids of those whose recipient said STOP."""
        kinds = {row.id: CHANNELS[row.channel].serves for row in rows if row.channel in CHANNELS}
        if not kinds:
            return set()
        out = consent.opted_out_of(connection, {(kinds[row.id], row.recipient) for row in rows if row.id in kinds})
        return {row.id for row in rows if (kinds.get(row.id), row.recipient) in out}

    async def _send(self, channel: Channel, row: Notification) -> Delivery:
        started = self.db.clock()
        result = await channel.send(row.payload, key=row.idempotency_key)
        self.metrics.delivery_seconds.labels(row.channel).observe((self.db.clock() - started).total_seconds())
        return result

    async def deliver(self, row: Notification) -> None:
        channel = self.channels.get(row.channel)
        if channel is None:
            await self._finish(row, Failed(f"channel {row.channel} is not configured"))
            return
        limit = channel.rate_limit(row.payload)
        if limit is not None:
            async with self.db.transaction() as uow:
                slot = await outbox.reserve(uow.session, limit[0], limit[1], uow.clock())
                if slot > uow.clock():
                    # Not an attempt (only `renew` counts one): wait for the slot, retry budget untouched.
                    mine = await outbox.still_mine(uow.session, row.id, self.worker_id)
                    if mine is not None:
                        mine.status, mine.available_at = outbox.PENDING, slot
                    return
        async with self.db.transaction() as uow:
            if not await outbox.renew(uow.session, row.id, self.worker_id, uow.clock(), self._lease):
                log.warning("notification %s: our lease ran out before sending; another worker owns it", row.id)
                return
        if row.audience == "customer" and await self._opted_out(row):
            await self._finish(row, Failed(f"{redact(row.recipient)} opted out of {CHANNELS[row.channel].serves}"),
                               note={"skipped": "opted out"})
            return
        note: dict[str, Any] = {}
        if row.attempt_started_at is not None:  # the last attempt died mid-send: did the provider get it?
            match await self._ask_provider(channel, row, row.attempt_started_at):
                case Sent() as found:
                    await self._finish(row, found, note={"found_at_provider": True})
                    return
                case Retry() as later:
                    await self._finish(row, later, attempt_over=False)
                    return
                case CannotTell(reason):
                    log.warning("notification %s may have been sent before its worker died; sending it again (%s)",
                                row.id, reason)
                    note = {"possible_duplicate": True}
        result = await self._send(channel, row)
        if note and isinstance(result, Sent):
            self.metrics.possible_duplicates.labels(row.channel).inc()
        # After an answer that may hide an accepted message (a 5xx), the next attempt asks the provider first; so it
        # does after a re-send that may be a duplicate and failed: the message from before the crash may be there,
        # and whichever send gets through is flagged.
        await self._finish(row, result, note=note,
                           attempt_over=not (isinstance(result, Retry) and (result.unknown or bool(note))))

    async def _opted_out(self, row: Notification) -> bool:
        """The recipient said STOP (since this was queued, or on another of their messages): not sent."""
        factory = CHANNELS.get(row.channel)
        if factory is None:
            return False
        async with self.db.read() as session:
            return await consent.opted_out(session, factory.serves, row.recipient)

    async def _ask_provider(self, channel: Channel, row: Notification,
                            since: datetime) -> Sent | Retry | CannotTell | None:
        """Whether the provider already accepted this row's message: Sent (do not send), None (it did not),
        Retry (ask again later), CannotTell (send, knowing it may be a duplicate)."""
        if row.delivery_status is not None:  # a status report (SendGrid's Event Webhook) named our key
            return Sent(row.provider_id)
        if not isinstance(channel, FindsSent):
            return CannotTell(f"{row.channel} cannot be asked what it already accepted")
        return await channel.find_sent(row.payload, key=row.idempotency_key, since=since)

    async def _finish(self, row: Notification, result: Delivery, *, note: Mapping[str, Any] | None = None,
                      attempt_over: bool = True) -> None:
        """Record the outcome. `attempt_over=False` keeps the "attempt started" mark: the provider could not yet
        say whether an earlier attempt reached it, so the next attempt must ask again."""
        await self._record_all([(row, result, note or {}, attempt_over)])

    async def _record_all(self, outcomes: Sequence[tuple[Notification, Delivery, Mapping[str, Any], bool]]) -> None:
        """Record the outcome of each send: the accepted ones (the common case) in one transaction of Core
        statements, one call on SQLite (`_record_sent`); the rest in one transaction through the ORM (`_record`)."""
        sent = [(row, result, note) for row, result, note, attempt_over in outcomes
                if isinstance(result, Sent) and attempt_over]
        rest = [outcome for outcome in outcomes if not (isinstance(outcome[1], Sent) and outcome[3])]
        taken_over = [row for row, *_ in rest]
        if sent:
            recorded = await self.db.run(partial(self._record_sent, sent=sent, now=self.db.clock()))
            taken_over += [row for row, *_ in sent if row.id not in recorded]
            for row, *_ in sent:
                if row.id in recorded:
                    self.metrics.deliveries.labels(row.channel, "sent").inc()
                    log.info("notification %s sent via %s to %s", row.id, row.channel, redact(row.recipient))
        if rest:
            async with self.db.transaction() as uow:
                mine_by_id = await outbox.all_still_mine(uow.session, [row.id for row, *_ in rest], self.worker_id)
                payment_ids = [row.payment_id for row in mine_by_id.values() if row.payment_id is not None]
                subjects = await uow.session.run_sync(lambda sync: receipts.subjects_of(sync.connection(), payment_ids))
                for row, result, note, attempt_over in rest:
                    if (mine := mine_by_id.get(row.id)) is not None:
                        await self._record(uow, mine, result, note, attempt_over,
                                           subjects.get(mine.payment_id or 0, {}))
            taken_over = [row for row in taken_over if row.id not in mine_by_id]
        for row in taken_over:
            log.warning("notification %s was taken over by another worker before we recorded it", row.id)

    def _record_sent(self, connection: Connection, *, sent: Sequence[tuple[Notification, Sent, Mapping[str, Any]]],
                     now: datetime) -> set[int]:
        """Accepted sends of rows this worker's claim still holds: marked sent in one statement, audited; returns
        their ids (the others were taken over meanwhile)."""
        mine = outbox.lock_mine(connection, [row.id for row, *_ in sent], self.worker_id)
        sent = [(row, result, note) for row, result, note in sent if row.id in mine]
        if not sent:
            return mine
        subjects = receipts.subjects_of(connection, [row.payment_id for row, *_ in sent if row.payment_id is not None])
        outbox.mark_sent(connection, [(row.id, result.provider_id, result.status) for row, result, _ in sent], now)
        records = []
        for row, result, note in sent:
            detail: dict[str, Any] = {"notification_id": row.id, "purpose": row.purpose, "attempts": row.attempts,
                                      **note}
            if result.status is not None:  # what the provider's acceptance means (a CRM: event queued, …)
                detail["delivered"] = result.status
            detail["provider_id"] = result.provider_id
            records.append(audit_record(now, "notification.sent", channel=row.channel, detail=detail,
                                        **subjects.get(row.payment_id or 0, {})))
        audit.append_rows(connection, records, self.db.audit_keys)
        return mine

    async def _record(self, uow: UnitOfWork, mine: Notification, result: Delivery, note: Mapping[str, Any],
                      attempt_over: bool, subject: dict[str, Any]) -> None:
        now = uow.clock()
        if attempt_over:
            mine.attempt_started_at = None
        detail: dict[str, Any] = {"notification_id": mine.id, "purpose": mine.purpose,
                                  "attempts": mine.attempts} | dict(note)
        audit: dict[str, Any] = {"channel": mine.channel, "detail": detail}
        match result:
            case Sent(provider_id, status):
                mine.status, mine.sent_at, mine.provider_id, mine.last_error = outbox.SENT, now, provider_id, None
                if status is not None:  # what the provider's acceptance means (a CRM: event queued, …)
                    mine.delivery_status, detail["delivered"] = status, status
                detail["provider_id"] = provider_id
                uow.audit("notification.sent", **audit, **subject)
                self.metrics.deliveries.labels(mine.channel, "sent").inc()
                log.info("notification %s sent via %s to %s", mine.id, mine.channel, redact(mine.recipient))
            case Retry(reason, after, until) if not self._exhausted(mine, now, told=(after, until) != (None, None)):
                told = None if after is None and until is None else \
                    max(after or 0.0, (until - now).total_seconds() if until else 0.0)
                if told is not None:  # the provider said when to come back (a rate limit): not a failed attempt
                    mine.attempts -= 1
                mine.status, mine.last_error = outbox.PENDING, reason
                mine.available_at = now + timedelta(seconds=self.backoff(mine.attempts, told))
                self.metrics.deliveries.labels(mine.channel, "retry").inc()
                log.info("notification %s will retry at %s: %s", mine.id, mine.available_at, reason)
                if result.once is not None:  # e.g. a daily API quota spent: finance hears once, not per row
                    await self.notifier.tell_finance_once(uow, mine, result.once, reason)
            case Retry(reason) | Failed(reason):
                mine.status, mine.last_error = outbox.DEAD, reason
                detail["reason"] = reason
                if isinstance(result, Failed) and result.opted_out and mine.channel in CHANNELS:
                    await record_consent(uow, mine.channel, ConsentChange(
                        CHANNELS[mine.channel].serves, mine.recipient, True, reason, now))
                uow.audit("notification.failed", **audit, **subject)
                self.metrics.deliveries.labels(mine.channel, "dead").inc()
                log.warning("notification %s is dead: %s", mine.id, reason)
                # A refused token is told once per integration; a row that ran out of retries, for itself.
                await self.notifier.after_failure(uow, mine,
                                                  once=result.once if isinstance(result, Failed) else None)

    def _exhausted(self, row: Notification, now: datetime, *, told: bool = False) -> bool:
        """Too old, or out of attempts; a wait the provider asked for (`told`) spends no attempt, only time."""
        too_old = (now - row.created_at).total_seconds() >= self.settings.delivery_max_age_seconds
        return too_old or (not told and row.attempts >= self.settings.delivery_max_attempts)

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Exactly when the provider asked (Retry-After, a rate-limit reset), whatever the attempt; else exponential
        with full jitter in its upper half, capped."""
        if retry_after is not None:
            return max(retry_after, 0.0)
        ceiling = min(self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2 ** (attempts - 1))
        return ceiling * (0.5 + self.rng.random() / 2)



def raise_first(results: Sequence[object]) -> None:
    """After side-by-side work has all finished (and recorded what it could): raise what the first failure raised."""
    for result in results:
        if isinstance(result, BaseException):
            raise result
