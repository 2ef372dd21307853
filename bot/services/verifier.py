"""The one consumer of events settled after their answer: those stored before they could be verified ("store now,
verify later": PayPal IPN, and any source whose `Received.confirm_later` asks for it), and verified thin
notifications stored waiting to be resolved through the platform's API ("answer now, read later": QuickBooks,
Xero, …, any source whose `Received.resolve_later` asks for it; see "Resolving" below).

Anyone can post such an event, so nothing about it may cost more than a constant: each is claimed by one
verifier (a lease on its row, safe across processes) and verified once, by at most `VERIFY_CONCURRENCY` calls
at a time per process. Genuine or forged, each answer settles it: confirmed (its payments recorded) or rejected.
When the platform cannot answer, that event alone backs off (`VERIFY_RETRY_BASE_SECONDS`, doubling) and after
`VERIFY_MAX_ATTEMPTS` it is given up on (`unverifiable`, audited once); the others carry on. A round takes the
due events oldest first until none is left, so a genuine event behind a flood waits for the flood's answers,
never for its retries. Woken after each answer and by the worker's periodic sweep; the bodies of events never
proven genuine are purged after `UNVERIFIED_RETENTION_HOURS` (`purge`).

Resolving: the same claim, lease and concurrency; the source's `resolve` reads what the notification names with
the platform's tokens (`PlatformAccess`). The platform down or rate-limiting (ProviderUnavailable) → that event backs
off, `RESOLVE_RETRY_BASE_SECONDS` doubling, or as long as the platform's Retry-After says; any other ProviderError
counts the same way; after `RESOLVE_MAX_ATTEMPTS` it is given up on (`unresolved`, audited, finance card). A lost
connection (ConnectionLost) is nobody's attempt: the event waits (an hour at a time) until `paybot connect` mends it,
and finance is told once. A notification that names nothing paybot can use is recorded ignored, with why. A
genuine, signed notification is never refused because the platform's API is down: it was answered long before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from bot.errors import ConnectionLost, InboundError, ProviderError, ProviderUnavailable
from bot.integrations.sources.base import (ConfirmsLater, PlatformAccess, Received, ResolvesLater, checked,
                                           read)
from bot.messages import Purpose
from bot.services import alerts
from bot.services.ingest import UNVERIFIED, Ingest, Recorded, stored_request
from bot.settings import Settings
from bot.storage import models, unverified
from bot.storage.database import Database, UnitOfWork

log = logging.getLogger(__name__)
RETRY_CAP = timedelta(hours=1)  # the longest wait between two tries of one event
PURGE_BATCH = 500  # rows per purge transaction: short locks, however large the backlog


class NotConnected:
    """The platform access of a source nobody connected (the default, and what sources without tokens get)."""

    def __init__(self, source: str) -> None:
        self.source = source

    async def token(self, tenant: str) -> str:
        raise ConnectionLost(self.source, "not connected: run `paybot connect`", tenant=tenant)

    async def refreshed(self, tenant: str, rejected: str) -> str:
        return await self.token(tenant)

    async def tenants(self) -> list[str]:
        return []


class Verifier:
    def __init__(self, db: Database, ingest: Ingest, settings: Settings, *, worker_id: str,
                 on_notifications: Callable[[], None],
                 on_refused: Callable[[str, InboundError], None] = lambda source, exc: None,
                 access_for: Callable[[str], PlatformAccess] = NotConnected) -> None:
        self.db = db
        self.access_for = access_for  # the platform's tokens, per source, for `ResolvesLater.resolve`
        self.ingest = ingest
        self.settings = settings
        self.worker_id = worker_id
        self.on_notifications = on_notifications  # the delivery worker's wake-up
        self.on_refused = on_refused  # a forgery found out: counted with the other refusals
        self._lease = timedelta(seconds=settings.worker_lease_seconds)
        self._round = asyncio.Lock()  # one round at a time in this process (its calls are the concurrent part)
        self._wanted = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._consumer: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """An event was stored unverified: verify it soon, after its request is answered. Never blocks."""
        self._idle.clear()
        self._wanted.set()
        if self._consumer is None or self._consumer.done():
            self._consumer = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                await self.drain()
            except Exception:  # nobody to raise to: the periodic sweep tries again
                log.exception("verifying stored webhooks failed")
            if not self._wanted.is_set():
                self._idle.set()

    async def drain(self) -> Recorded:
        """One round: every due event, oldest first, `VERIFY_CONCURRENCY` at a time, until none is left."""
        done = Recorded()
        async with self._round:
            slots = range(self.settings.verify_concurrency)
            await asyncio.gather(*(self._verify_until_none_due(done) for _ in slots))
        if done.notification_ids:
            self.on_notifications()
        return done

    async def _verify_until_none_due(self, done: Recorded) -> None:
        while (row := await self._claim()) is not None:
            try:
                result = await self._verify(row)
            except Exception as exc:  # noqa: BLE001  one event's failure is that event's attempt, nobody else's
                log.exception("verifying webhook event %s failed", row.id)
                await self._later(row, exc)
                continue
            done.payment_ids += result.payment_ids
            done.notification_ids += result.notification_ids

    async def _claim(self) -> models.WebhookEvent | None:
        async with self.db.transaction() as uow:
            return await unverified.claim(uow.session, now=uow.clock(), lease=self._lease, worker=self.worker_id)

    async def _verify(self, row: models.WebhookEvent) -> Recorded:
        if row.status == unverified.WAITING:
            return await self._resolve(row)
        source = self.ingest.sources.get(row.source)
        if not isinstance(source, ConfirmsLater):  # disabled here (another process may have it): it waits
            await self._later(row, None)
            return Recorded()
        try:
            received = await read(source.confirm, stored_request(row))
        except ProviderError as exc:
            await self._later(row, exc)
            return Recorded()
        except InboundError as exc:
            if await self.ingest.reject_pending(row.id, exc):
                self.on_refused(row.source, exc)
            return Recorded()
        return await self.ingest.confirmed(row.id, received)

    async def _resolve(self, row: models.WebhookEvent) -> Recorded:
        source = self.ingest.sources.get(row.source)
        if not isinstance(source, ResolvesLater):  # disabled here (another process may have it): it waits
            await self._later(row, None)
            return Recorded()
        access = self.access_for(row.source)

        try:
            # Not through `read`: an answer of a shape the source did not foresee is the platform's (or our)
            # surprise, not a sender's bad input; it is retried like a failure, then given up on with a card.
            received = checked(await source.resolve(stored_request(row), access))
        except ConnectionLost as exc:
            await self._connection_lost(row, exc)
            return Recorded()
        except ProviderError as exc:
            await self._later(row, exc)
            return Recorded()
        except InboundError as exc:  # genuine, but nothing paybot can read in it: on record, with why
            log.warning("webhook %s %r ignored after it was answered: %s", row.source, row.event_id, exc)
            return await self.ingest.resolved(row.id, Received(row.event_id, row.event_type), ignored=str(exc))
        return await self.ingest.resolved(row.id, received)

    async def _connection_lost(self, row: models.WebhookEvent, exc: ConnectionLost) -> None:
        """Nobody's attempt: the event waits for `paybot connect`, looked at again hourly; finance hears once."""
        async with self.db.transaction() as uow:
            event = await unverified.held(uow.session, row.id, self.worker_id)
            if event is None:
                return
            event.claimed_by, event.attempts = None, event.attempts - 1
            event.next_attempt_at = uow.clock() + RETRY_CAP
            log.warning("webhook %s %r waits for its connection: %s", event.source, event.event_id, exc)
            await alerts.connection_lost(uow, self.ingest.notifier, event.source, exc.tenant, str(exc), exc.since)

    async def _later(self, row: models.WebhookEvent, failure: Exception | None) -> None:
        """Back off this event alone; give up on it after its last attempt. Without `failure` (its source is not
        enabled in this process) the attempt does not count."""
        async with self.db.transaction() as uow:
            event = await unverified.held(uow.session, row.id, self.worker_id)
            if event is None:
                return  # our lease ran out and another verifier took it over
            now, claimed_id = uow.clock(), event.event_id.split(UNVERIFIED)[0]
            event.claimed_by = None
            if failure is None:
                event.attempts -= 1
                event.next_attempt_at = now + self._lease
            elif event.status == unverified.WAITING:
                await self._resolve_later(uow, event, failure)
            elif event.attempts >= self.settings.verify_max_attempts:
                event.status, event.next_attempt_at = unverified.UNVERIFIABLE, None
                log.warning("webhook %s %r given up after %d attempts: %s", event.source, claimed_id,
                            event.attempts, failure)
                uow.audit("webhook.unverifiable", source=event.source, detail={
                    "event_id": claimed_id, "attempts": event.attempts, "reason": str(failure)[:200]})
            else:
                event.next_attempt_at = now + self.backoff(event.attempts)
                log.info("webhook %s %r not verified yet (attempt %d), next at %s: %s", event.source, claimed_id,
                         event.attempts, event.next_attempt_at.isoformat(), failure)

    async def _resolve_later(self, uow: UnitOfWork, event: models.WebhookEvent, failure: Exception) -> None:
        """A waiting notification the platform could not answer for: back off (as long as the platform asked, if
        it did), or, after RESOLVE_MAX_ATTEMPTS, give it up: audited, and finance told to look by hand."""
        now = uow.clock()
        if event.attempts >= self.settings.resolve_max_attempts:
            event.status, event.next_attempt_at = unverified.UNRESOLVED, None
            log.warning("webhook %s %r given up after %d attempts: %s", event.source, event.event_id,
                        event.attempts, failure)
            uow.audit("webhook.unresolved", source=event.source, detail={
                "event_id": event.event_id, "attempts": event.attempts, "reason": str(failure)[:200]})
            await alerts.tell_finance(
                uow, self.ingest.notifier, Purpose.UNRESOLVED, key=f"unresolved:{event.id}", source=event.source,
                event_id=event.event_id, attempts=event.attempts, reason=str(failure)[:200],
                received_at=event.received_at.strftime("%Y-%m-%d %H:%M UTC"))
            return
        asked = failure.retry_after if isinstance(failure, ProviderUnavailable) else None
        wait = self.backoff(event.attempts, self.settings.resolve_retry_base_seconds)
        if asked is not None:  # never sooner than the platform asked
            wait = max(wait, min(timedelta(seconds=asked), RETRY_CAP))
        event.next_attempt_at = now + wait
        log.info("webhook %s %r not resolved yet (attempt %d), next at %s: %s", event.source, event.event_id,
                 event.attempts, event.next_attempt_at.isoformat(), failure)

    def backoff(self, attempts: int, base: float | None = None) -> timedelta:
        """Doubling from `base` (VERIFY_RETRY_BASE_SECONDS) after each failed attempt, at most RETRY_CAP."""
        first = self.settings.verify_retry_base_seconds if base is None else base
        return min(timedelta(seconds=first * 2 ** (attempts - 1)), RETRY_CAP)

    async def purge(self) -> int:
        """Drop the bodies of events never proven genuine once they are older than the retention period, in
        batches; their small record stays. Returns how many were purged."""
        purged = 0
        while True:
            async with self.db.transaction() as uow:
                now = uow.clock()
                count = await unverified.purge(
                    uow.session, now=now, limit=PURGE_BATCH,
                    received_before=now - timedelta(hours=self.settings.unverified_retention_hours))
            purged += count
            if count < PURGE_BATCH:
                break
        if purged:
            log.info("purged the bodies of %d webhook events never proven genuine", purged)
        return purged

    async def settle(self) -> None:
        """Wait until what was woken for has been verified (at shutdown; in tests)."""
        await self._idle.wait()

    async def close(self) -> None:
        await self.settle()
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
