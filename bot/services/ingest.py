"""Recording a verified webhook: in one transaction the raw event, each payment, its match and the outbox rows.

The caller answers 2xx only after `record` returns, i.e. after the commit. An event its source confirms later
(`Received.confirm_later`, PayPal IPN) is stored `pending_verification` with no payments, at most
`max_unverified` of them per source; the verifier (`bot.services.verifier`) then confirms it and `confirmed`
records its payments the same way, or `reject_pending` marks it `rejected`. A verified thin notification
(`Received.resolve_later`) is stored `waiting`, under its own id (it is genuine, so a redelivery is a duplicate);
the same consumer resolves it through the platform's API and `resolved` records what it named.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from multidict import CIMultiDict
from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import matching
from bot.domain.fingerprint import Report, fingerprint, is_same_payment, ref_key, refs_in
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.domain.ratelimit import TokenBucket
from bot.errors import InboundError, ProviderError
from bot.integrations.sources.base import InboundRequest, PaymentSource, Received, read
from bot.services.inbox import RECEIVED, Inbox
from bot.services import recording
from bot.services.notify import Notifier
from bot.services.receipts import receipt_of
from bot.storage import models, repo, unverified
from bot.storage.database import Database, UnitOfWork
from bot.storage.sql import insert_or_ignore

if TYPE_CHECKING:
    from bot.services.delivery import Handover

log = logging.getLogger(__name__)
PROCESSED, IGNORED, DUPLICATE = "processed", "ignored", "duplicate"
PENDING, REJECTED = unverified.PENDING, unverified.REJECTED  # stored unverified; found not genuine
WAITING = unverified.WAITING  # verified, thin: its payments are read from the platform after the answer
# INGEST_MODE=deferred: stored, its payments recorded by the web process right after answering (ACCEPTED), or by
# a worker (RECEIVED, when the web process runs without one).
ACCEPTED = "accepted"
UNVERIFIED = "#unverified-"
BURST_SECONDS = 10  # unverified events kept at once past the rate: ten seconds' worth


class Backlogged(Exception):
    """Too many of a source's events already wait for verification: this one is not stored (answer 503)."""


@dataclass(slots=True)
class Recorded:
    duplicate: bool = False
    pending: bool = False  # stored unverified, for the verifier
    deferred: int | None = None  # stored, its payments for `process` (the event's row id)
    last_seen: int | None = None  # a sweep's last event row id, to page through a backlog
    payment_ids: list[int] = field(default_factory=list)
    notification_ids: list[int] = field(default_factory=list)
    claimed: list[models.Notification] = field(default_factory=list)  # queued claimed for a `Handover`'s worker


def event_values(source: str, request: InboundRequest, received: Received, status: str,
                 event_id: str | None = None) -> dict[str, Any]:
    """A `webhook_events` row. Headers kept: the content type (to read the body again) and what the source asks."""
    headers = {"Content-Type": request.headers.get("Content-Type", "")} | received.headers_kept
    return {"source": source, "event_id": event_id or received.event_id, "event_type": received.event_type,
            "received_at": request.received_at, "body": request.body, "headers": headers, "status": status}


def received_audit(source: str, received: Received) -> dict[str, Any]:
    pending = ({"verification": "pending"} if received.confirm_later else
               {"resolution": "waiting"} if received.resolve_later else {})
    return {"source": source, "detail": {"event_id": received.event_id, "event_type": received.event_type,
                                         "payments": len(received.payments), **pending}}


#: What reading a stored event again takes (`stored_request`), and its id.
WAITING_COLUMNS = (models.WebhookEvent.id, models.WebhookEvent.source, models.WebhookEvent.event_id,
                   models.WebhookEvent.received_at, models.WebhookEvent.body, models.WebhookEvent.headers)


# A page of the events waiting to be recorded (`Ingest.process_waiting`); built once, for every worker's every look.
WAITING_PAGE = select(*WAITING_COLUMNS).where(
    or_(models.WebhookEvent.status == RECEIVED,
        and_(models.WebhookEvent.status == ACCEPTED, models.WebhookEvent.received_at < bindparam(
            "abandoned_before", type_=models.WebhookEvent.received_at.type))),
    models.WebhookEvent.id > bindparam("after_id"),
).order_by(models.WebhookEvent.id).limit(bindparam("page"))
WAITING_PAGE_UNCLAIMED = WAITING_PAGE.with_for_update(skip_locked=True)  # PostgreSQL: none that another worker holds


def stored_request(row: Any) -> InboundRequest:
    """A stored event (its ORM instance, or a row of WAITING_COLUMNS) as its source reads it (again)."""
    return InboundRequest(method="POST", url="", headers=CIMultiDict(row.headers), query={}, body=row.body,
                          received_at=row.received_at)


class Ingest:
    def __init__(self, db: Database, notifier: Notifier, sources: Mapping[str, PaymentSource] | None = None, *,
                 inbox: Inbox | None = None, max_unverified: int | None = None,
                 unverified_rate: float | None = None) -> None:
        self.db = db
        self.notifier = notifier
        self.sources = sources or {}
        self.inbox = inbox
        self.max_unverified = max_unverified
        self.unverified_rate = unverified_rate
        self._unverified_buckets: dict[str, TokenBucket] = {}

    def _unverified_allowed(self, source: str) -> bool:
        """Unverified events kept per second and source (in this process), after a burst of ten seconds' worth:
        a flood of forgeries past it costs no database work at all."""
        if self.unverified_rate is None:
            return True
        now = self.db.clock()
        bucket = self._unverified_buckets.setdefault(
            source, TokenBucket.full(self.unverified_rate, max(self.unverified_rate * BURST_SECONDS, 1.0), now))
        return bucket.take(now)

    async def record(self, source: str, request: InboundRequest, received: Received) -> Recorded:
        """The event, its payments, their matches and outbox rows, in one transaction (INGEST_MODE=inline)."""
        if received.confirm_later and not self._unverified_allowed(source):
            raise Backlogged(f"more than {self.unverified_rate:g} unverified {source} events a second")
        async with self.db.transaction() as uow:
            stored_id = received.event_id
            if received.confirm_later:
                if await self._known(uow, source, received.event_id):
                    return Recorded(duplicate=True)
                # Anyone can send these: past the cap, nothing more is kept until the verifier catches up. (Counted
                # then inserted, so concurrent requests may pass it by a few; the cap bounds, it does not meter.)
                if self.max_unverified is not None and \
                        await unverified.waiting(uow.session, source) >= self.max_unverified:
                    raise Backlogged(f"{self.max_unverified} {source} events already wait for verification")
                # Unverified, it must not hold the event's id: a forgery would shadow the genuine message. The id
                # is claimed when the platform confirms it (`confirm_pending`).
                stored_id = f"{received.event_id[:200]}{UNVERIFIED}{uuid4().hex}"
            status = (PENDING if received.confirm_later else WAITING if received.resolve_later
                      else PROCESSED if received.payments else IGNORED)
            event_id = (await uow.session.execute(insert_or_ignore(
                uow.session, models.WebhookEvent, event_values(source, request, received, status, stored_id),
            ))).scalar_one_or_none()
            if event_id is None:
                return Recorded(duplicate=True)
            if received.confirm_later:
                # Anyone can send one: until the platform vouches for it (`webhook.verified`) the event's row, its
                # body purged after a while, is its only record, never a permanent entry of the chain.
                return Recorded(pending=True)
            uow.audit("webhook.received", **received_audit(source, received))
            if received.resolve_later:
                return Recorded(pending=True)  # for the consumer, after the answer
            return await self._record_payments(uow, event_id, received.payments)

    async def accept(self, source: str, request: InboundRequest, received: Received, *,
                     process_here: bool) -> Recorded:
        """INGEST_MODE=deferred: store the event alone, group-committed with its neighbours. Its payments are
        recorded by `process`: here right after the answer (`process_here`), else by a worker's `process_waiting`
        (which also takes over the events of a web process that died before it got to them)."""
        if received.confirm_later or received.resolve_later or self.inbox is None:
            return await self.record(source, request, received)
        status = (ACCEPTED if process_here else RECEIVED) if received.payments else IGNORED
        stored = await self.inbox.store(event_values(source, request, received, status),
                                        received_audit(source, received))
        if stored.row_id is None:
            return Recorded(duplicate=True)
        return Recorded(deferred=stored.row_id if received.payments else None)

    async def process(self, row_id: int, received: Received) -> Recorded:
        """Record the payments of a stored event, once (the row is locked and must still be waiting)."""
        async with self.db.transaction() as uow:
            event = await uow.session.scalar(select(models.WebhookEvent).where(
                models.WebhookEvent.id == row_id, models.WebhookEvent.status.in_((ACCEPTED, RECEIVED)),
            ).with_for_update())
            if event is None:
                return Recorded()
            event.status = PROCESSED
            return await self._record_payments(uow, row_id, received.payments)

    async def process_many(self, items: Sequence[tuple[int, Received]], handover: Handover | None = None) -> Recorded:
        """`process` for many stored events: those of the common case together, in one transaction of Core
        statements (`bot.services.recording`), the rest one by one. An event that fails is logged and left waiting
        (a worker's sweep takes it up again). `handover`: the batch queues the messages it has room for claimed."""
        done, left = Recorded(), list(items)
        if self.inbox is not None and items:
            try:
                batch = await self.db.run(lambda connection: self._record_batch(connection, items, handover=handover),
                                          background=True)
            except Exception:  # the same events, the general way: slower, same result
                log.warning("recording %d events together failed; one by one instead", len(items), exc_info=True)
            else:
                left = self._took(done, batch)
        return await self._one_by_one(left, done)

    def _record_batch(self, connection: Connection, items: Sequence[tuple[int, Received]],
                      locked: bool = False, handover: Handover | None = None) -> recording.Batch:
        return recording.record_batch(connection, items, self.notifier, self.db.audit_keys, self.db.clock,
                                      locked=locked, handover=handover)

    @staticmethod
    def _took(done: Recorded, batch: recording.Batch) -> list[tuple[int, Received]]:
        """What a batch recorded, added to `done`; returns what it left for the general path."""
        done.payment_ids += batch.payment_ids
        done.notification_ids += batch.notification_ids
        done.claimed += batch.claimed
        return batch.left

    async def _one_by_one(self, items: Sequence[tuple[int, Received]], done: Recorded) -> Recorded:
        for row_id, received in items:
            try:
                result = await self.process(row_id, received)
            except Exception:
                log.exception("recording the payments of webhook event %s failed", row_id)
                continue
            done.payment_ids += result.payment_ids
            done.notification_ids += result.notification_ids
        return done

    async def process_waiting(self, abandoned_before: datetime, after_id: int = 0, limit: int = 50,
                              handover: Handover | None = None) -> Recorded:
        """Events left for a worker, and those their web process accepted but never got to (it died, or its
        backlog overflowed): read them again and record them. One page of `limit`, from `after_id` on.

        On PostgreSQL the page is claimed: read `FOR UPDATE SKIP LOCKED` in the transaction that records it, so
        workers sweeping side by side each read, parse and record pages of their own instead of one page twice."""
        page = {"abandoned_before": abandoned_before, "after_id": after_id, "page": limit}
        if self.inbox is None or self.db.dialect != "postgresql":
            async with self.db.read() as session:
                rows = list(await session.execute(WAITING_PAGE, page))
            done = await self.process_many(await self._readable(rows), handover)
        else:
            done, items = Recorded(), None
            try:
                async with self.db.engine.begin() as connection:
                    rows = list(await connection.execute(WAITING_PAGE_UNCLAIMED, page))
                    items = await self._readable(rows)
                    left = self._took(done, await connection.run_sync(self._record_batch, items, True, handover))
            except Exception:
                if items is None:  # the claim itself failed (the database is away): the caller's retry
                    raise
                log.warning("recording %d events together failed; one by one instead", len(items), exc_info=True)
                done, left = Recorded(), items
            await self._one_by_one(left, done)  # after the claim's commit: `process` locks each row again
        done.last_seen = rows[-1].id if len(rows) == limit else None
        return done

    async def _readable(self, rows: Sequence[Any]) -> list[tuple[int, Received]]:
        """Stored events read again by their source; those it cannot read now are left waiting, and said so."""
        items: list[tuple[int, Received]] = []
        for row in rows:
            source = self.sources.get(row.source)
            if source is None:
                continue  # disabled now: the event waits for it
            try:
                received = await read(source.parse, stored_request(row))
            except ProviderError as exc:
                log.warning("webhook %s %s waits: %s", row.source, row.event_id, exc)
                continue
            except InboundError as exc:  # it parsed when it arrived; now it does not: keep it, tell the logs
                log.error("webhook %s %s no longer parses: %s", row.source, row.event_id, exc)
                continue
            items.append((row.id, received))
        return items

    async def confirmed(self, row_id: int, received: Received) -> Recorded:
        """The platform vouched for a stored event: it claims its id and its payments are recorded, unless a copy
        of it already did (the platform resent it while we could not ask)."""
        try:
            return await self._confirmed(row_id, received)
        except IntegrityError:  # another copy of the same message claimed its id at this very moment
            return await self._confirmed(row_id, received)

    async def _confirmed(self, row_id: int, received: Received) -> Recorded:
        async with self.db.transaction() as uow:
            event = await self._still_pending(uow, row_id)
            if event is None:
                return Recorded()  # another sweep got there first
            if await self._known(uow, event.source, received.event_id):
                event.status = DUPLICATE
                return Recorded(duplicate=True)
            event.event_id, event.status = received.event_id, PROCESSED if received.payments else IGNORED
            await uow.session.flush()  # claim the id now: a racing copy fails here, before any payment is written
            uow.audit("webhook.verified", source=event.source, detail={
                "event_id": event.event_id, "event_type": received.event_type, "payments": len(received.payments)})
            return await self._record_payments(uow, event.id, received.payments)

    async def resolved(self, row_id: int, received: Received, *, ignored: str | None = None) -> Recorded:
        """A waiting thin notification was resolved: its payments are recorded (each a duplicate alone if a webhook
        or a sweep already reported it). No payments, or `ignored` (why it could not be read: an entity that no
        longer exists, a realm we are not connected to): recorded as ignored, with the reason."""
        async with self.db.transaction() as uow:
            event = await uow.session.scalar(select(models.WebhookEvent).where(
                models.WebhookEvent.id == row_id, models.WebhookEvent.status == WAITING).with_for_update())
            if event is None:
                return Recorded()  # another consumer got there first
            event.status, event.claimed_by, event.next_attempt_at = (
                PROCESSED if received.payments and ignored is None else IGNORED, None, None)
            reason = ignored or (None if received.payments else received.event_type)
            uow.audit("webhook.resolved", source=event.source, detail={
                "event_id": event.event_id, "event_type": event.event_type, "attempts": event.attempts,
                "payments": 0 if ignored else len(received.payments), **({"ignored": reason} if reason else {})})
            if ignored is not None:
                return Recorded()
            return await self._record_payments(uow, event.id, received.payments)

    async def _known(self, uow: UnitOfWork, source: str, event_id: str) -> bool:
        return await uow.session.scalar(select(models.WebhookEvent.id).where(
            models.WebhookEvent.source == source, models.WebhookEvent.event_id == event_id)) is not None

    async def reject_pending(self, row_id: int, exc: InboundError) -> bool:
        """Mark a stored event the platform disowned; True if this call did. Like any refusal it is counted (by the
        caller), not chained: the row, its body purged after a while, is its record."""
        async with self.db.transaction() as uow:
            event = await self._still_pending(uow, row_id)
            if event is None:
                return False
            claimed_id = event.event_id.split(UNVERIFIED)[0]  # the sender's words: %r keeps them on one log line
            log.warning("webhook %s %r rejected after it was answered: %s", event.source, claimed_id, exc)
            event.status = REJECTED
            return True

    async def _still_pending(self, uow: UnitOfWork, row_id: int) -> models.WebhookEvent | None:
        return await uow.session.scalar(select(models.WebhookEvent).where(
            models.WebhookEvent.id == row_id, models.WebhookEvent.status == PENDING).with_for_update())

    async def _record_payments(self, uow: UnitOfWork, webhook_event_id: int,
                               payments: tuple[PaymentEvent, ...]) -> Recorded:
        result = Recorded()
        for event in payments:
            await self._record_payment(uow, webhook_event_id, event, result)
        return result

    async def _record_payment(self, uow: UnitOfWork, webhook_event_id: int, event: PaymentEvent,
                              result: Recorded) -> None:
        session = uow.session
        match = await self._match(session, event)
        invoice_row = None
        invoice = match.invoice
        if invoice is not None:
            # Lock the invoice: a concurrent report of the same money waits here, then sees this one.
            invoice_row = await session.scalar(
                select(models.Invoice).where(models.Invoice.number == invoice.number).with_for_update()
                .execution_options(populate_existing=True))  # the row as it is now, not as matching read it
            assert invoice_row is not None
            invoice = repo.to_invoice(invoice_row, invoice.external_ids)
            match = matching.Match(match.rule, invoice, match.customer, match.reason)

        amount = event.amount
        if event.cumulative and invoice is not None and invoice.amount.currency == amount.currency:
            amount = amount - invoice.paid  # the invoice's state: what is new since what we recorded
        party = match.customer.id if match.customer else matching.normalise_email(event.payer_email)
        payment_key = fingerprint(amount, invoice.number if invoice else None, party, event.payment_ref)
        new_report = Report(event.source, event.payment_ref, event.occurred_at)
        if amount.minor > 0:
            original = await self._same_payment(uow, payment_key, new_report, event.kind)
        else:  # an invoice's state with nothing new: it restates payments already recorded, most likely the last
            original = await self._latest_on(uow, invoice_row, new_report) if invoice_row else None

        payment = models.Payment(
            webhook_event_id=webhook_event_id, source=event.source, kind=event.kind.value,
            payment_ref=event.payment_ref, currency=amount.currency, amount_minor=amount.minor,
            occurred_at=event.occurred_at, date_only=event.date_only, recorded_at=uow.clock(),
            invoice_id=invoice_row.id if invoice_row else None,
            customer_id=match.customer.id if match.customer else None, match_rule=match.rule.value,
            match_reason=match.reason, fingerprint=payment_key, payer_email=event.payer_email,
            payer_name=event.payer_name, details=dict(event.details) | quoted(event),
        )
        audit_base: dict[str, Any] = dict(source=event.source, invoice=invoice.number if invoice else None,
                          customer_id=payment.customer_id, amount=amount)
        if amount.minor <= 0 or original is not None:
            # Already acknowledged: keep the report (it may add a reference), tell nobody again.
            payment.duplicate_of = original.id if original else None
            payment.amount_minor = max(amount.minor, 0)
            session.add(payment)
            if original is not None:
                original.details = {**original.details, ref_key(event.source): event.payment_ref or "",
                                    **{k: v for k, v in event.details.items() if k not in original.details}}
                original.payer_email = original.payer_email or event.payer_email
            await session.flush()
            uow.audit("payment.duplicate", **audit_base, detail={
                "payment_id": payment.id, "duplicate_of": payment.duplicate_of, "payment_ref": event.payment_ref})
            return

        outcome = None
        if invoice is not None and invoice_row is not None:
            if event.kind is PaymentKind.PAYMENT:
                outcome = matching.outcome(invoice, replace(event, amount=amount))
                invoice_row.paid_minor += amount.minor
            elif event.kind is PaymentKind.REFUND:
                invoice_row.paid_minor -= amount.minor
        if outcome is not None:
            payment.settlement = outcome.settlement.value
            payment.balance_minor = outcome.balance.minor
        session.add(payment)
        await session.flush()
        result.payment_ids.append(payment.id)

        uow.audit("payment.matched" if match.matched else "payment.unmatched", **audit_base, detail={
            "payment_id": payment.id, "kind": event.kind.value, "rule": match.rule.value, "reason": match.reason,
            "payment_ref": event.payment_ref, "settlement": payment.settlement,
            "balance": str(outcome.balance.amount) if outcome else None})
        receipt = receipt_of(payment, invoice, match.customer)
        result.notification_ids += await self.notifier.acknowledge(uow, receipt, match.customer)

    async def _same_payment(self, uow: UnitOfWork, payment_key: str, new: Report,
                            kind: PaymentKind) -> models.Payment | None:
        earlier = await uow.session.scalars(select(models.Payment).where(
            models.Payment.fingerprint == payment_key, models.Payment.kind == kind.value,
            models.Payment.duplicate_of.is_(None)).order_by(models.Payment.id))
        for old in earlier:
            if is_same_payment(new, report_of(old)):
                return old
        return None

    async def _latest_on(self, uow: UnitOfWork, invoice: models.Invoice, new: Report) -> models.Payment | None:
        recorded = await uow.session.scalars(select(models.Payment).where(
            models.Payment.invoice_id == invoice.id, models.Payment.kind == PaymentKind.PAYMENT.value,
            models.Payment.duplicate_of.is_(None)).order_by(models.Payment.id.desc()))
        return next((old for old in recorded if is_same_payment(new, report_of(old))), None)

    async def _match(self, session: AsyncSession, event: PaymentEvent) -> matching.Match:
        """A refund or dispute belongs where the payment it undoes went; anything else is matched afresh."""
        if event.reverses:
            undone = await session.scalar(select(models.Payment).where(
                models.Payment.source == event.source, models.Payment.payment_ref.in_(event.reverses),
                models.Payment.kind == PaymentKind.PAYMENT.value, models.Payment.invoice_id.is_not(None),
            ).order_by(models.Payment.id))
            row = await session.get(models.Invoice, undone.invoice_id) if undone and undone.invoice_id else None
            if undone is not None and row is not None and row.currency == event.amount.currency:
                [invoice] = await repo.invoices(session, [row])
                customers = await repo.customers_by_id(session, [invoice.customer_id])
                return matching.Match(matching.MatchRule.EXTERNAL_ID, invoice, customers[0] if customers else None,
                                      f"{event.kind.value} of payment {undone.payment_ref}")
        keys = matching.lookup_keys(event)
        if keys.invoice_numbers or keys.invoice_external_id:
            # A named invoice decides the match before the customer's other invoices count: try it alone first.
            named = matching.match(event, await repo.candidates(session, keys, customer_invoices=False))
            if named.rule in (matching.MatchRule.INVOICE_NUMBER, matching.MatchRule.EXTERNAL_ID):
                return named
        return matching.match(event, await repo.candidates(session, keys))


def quoted(event: PaymentEvent) -> dict[str, str]:
    """What the payer named the payment for (invoice numbers, the platform's invoice id), kept for finance's review."""
    named = [*event.invoice_numbers, *([event.invoice_external_id] if event.invoice_external_id else [])]
    return {"quoted": ", ".join(dict.fromkeys(named))} if named else {}


def report_of(payment: models.Payment) -> Report:
    return Report(payment.source, payment.payment_ref, payment.occurred_at, refs_in(payment.details))

