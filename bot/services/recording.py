"""Recording the payments of many stored events in one transaction (INGEST_MODE=deferred), in Core statements.

The common case only: a payment (not a refund or dispute) that names its invoice, by number or by the platform's
invoice id, in the invoice's currency, with something new to record and no earlier report of the same money, and
whose messages render. Everything is looked up for the whole batch at once (the named invoices, locked; their
customers; both entities' external ids; earlier payments with the same fingerprints), then the payments, their
outbox rows and their audit entries are written with one executemany per statement kind, and the events marked
processed. An event outside the common case (or one that shares an invoice or a fingerprint with an earlier event
of the batch) is left for `Ingest.process`, which handles every case one event at a time, after this batch's commit.

`record_batch` runs on a synchronous connection: on SQLite on the inbox's writer thread (the whole batch is one
hop), on PostgreSQL through `run_sync`. Anything unexpected raises, the transaction rolls back and the caller
records each event the general way: the result is the same, only slower.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from types import SimpleNamespace
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, Select, Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection

from bot.domain import matching, parties
from bot.domain.audit import AuditRecord, Keyring
from bot.domain.fingerprint import fingerprint
from bot.domain.money import Money
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.integrations.sources.base import Received
from bot.services.notify import Notifier
from bot.services.receipts import receipt_of
from bot.storage import audit, consent, models, outbox, repo, sql, wakeup
from bot.storage.database import audit_record

if TYPE_CHECKING:
    from bot.services.delivery import Handover

Item = tuple[int, Received]  # a stored event's row id, and the event as its source read it
UNRECORDED = models.UNRECORDED  # stored, payments not yet recorded


@dataclass
class Batch:
    done: list[int] = field(default_factory=list)       # events recorded here
    left: list[Item] = field(default_factory=list)      # for the general path
    payment_ids: list[int] = field(default_factory=list)
    notification_ids: list[int] = field(default_factory=list)
    claimed: list[models.Notification] = field(default_factory=list)  # queued claimed, for the `Handover`'s worker


@dataclass
class Plan:
    """One payment of the common case, decided before anything is written."""

    row_id: int
    event: PaymentEvent
    invoice: parties.Invoice
    invoice_id: int
    customer: parties.Customer | None
    match: matching.Match
    amount: Money
    key: str
    outcome: matching.Outcome
    payment: dict[str, Any] = field(default_factory=dict)


def table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


def record_batch(connection: Connection, items: Sequence[Item], notifier: Notifier, keys: Keyring,
                 clock: Callable[[], datetime], *, locked: bool = False, handover: Handover | None = None) -> Batch:
    """`locked`: this transaction already holds the events' rows, locked and still waiting (a worker's claim).
    `handover`: the messages it has room for are queued claimed by its worker, which sends them after the commit."""
    batch = Batch()
    simple = [(row_id, received) for row_id, received in items if len(received.payments) == 1
              and plain_kind(received.payments[0])]
    batch.left = [item for item in items if item not in simple]
    if simple and not locked:
        # Ours to record: still waiting, and not being recorded by another worker this moment (PostgreSQL skips
        # the rows another transaction holds; that one records them). SQLite has one writer: no lock clause.
        ours = set(connection.execute(STILL_WAITING, {"ids": [row_id for row_id, _ in simple]}).scalars())
        simple = [(row_id, received) for row_id, received in simple if row_id in ours]
    if not simple:
        return batch
    found = look_up(connection, [received.payments[0] for _, received in simple])
    plans: list[Plan] = []
    invoices_taken: set[int] = set()
    keys_taken: set[str] = set()
    for row_id, received in simple:
        plan = planned(row_id, received.payments[0], found)
        if plan is None or plan.invoice_id in invoices_taken or plan.key in keys_taken:
            batch.left.append((row_id, received))
            # Later events on the invoices it names wait for it too: one invoice's reports in the order they came.
            invoices_taken.update(candidates_of(received.payments[0], found)[1].values())
            continue
        invoices_taken.add(plan.invoice_id)
        keys_taken.add(plan.key)
        plans.append(plan)
    if plans:  # an earlier report of the same money may be this one again: the general path decides
        earlier = set(connection.execute(EARLIER_REPORTS, {"keys": list(keys_taken)}).scalars())
        by_row = dict(simple)
        batch.left += [(p.row_id, by_row[p.row_id]) for p in plans if p.key in earlier]
        plans = [p for p in plans if p.key not in earlier]
    if plans:
        claimed = claim(connection, [p.row_id for p in plans])
        plans = [p for p in plans if p.row_id in claimed]  # the rest were recorded by someone else meanwhile
    if plans:
        write(connection, plans, notifier, keys, clock(), batch, handover)
    return batch


def plain_kind(event: PaymentEvent) -> bool:
    return event.kind is PaymentKind.PAYMENT and not event.reverses and bool(
        event.invoice_numbers or event.invoice_external_id)


@dataclass
class Found:
    invoices: list[tuple[int, parties.Invoice]]
    customers: list[parties.Customer]
    by_number: dict[str, list[tuple[int, parties.Invoice]]] = field(init=False)  # by `matching.invoice_key`
    by_ref: dict[tuple[str, str], list[tuple[int, parties.Invoice]]] = field(init=False)  # by platform id

    def __post_init__(self) -> None:
        self.by_number, self.by_ref = {}, {}
        for row_id, invoice in self.invoices:
            self.by_number.setdefault(matching.invoice_key(invoice.number), []).append((row_id, invoice))
            for source, external_id in invoice.external_ids.items():
                self.by_ref.setdefault((source, external_id), []).append((row_id, invoice))


def look_up(connection: Connection, events: Sequence[PaymentEvent]) -> Found:
    """Every invoice the events name and every customer they or those invoices point at, as
    `repo.candidates(customer_invoices=False)` finds them for one event; invoices locked (in id order)."""
    all_keys = [matching.lookup_keys(event) for event in events]
    numbers = set().union(*(k.invoice_numbers for k in all_keys))
    invoice_refs = by_source({k.invoice_external_id for k in all_keys if k.invoice_external_id})
    invoice_rows = list(connection.execute(invoices_named(bool(numbers), tuple(invoice_refs)), {
        "numbers": list(numbers), **refs_params("invoice", invoice_refs)})) if numbers or invoice_refs else []
    customer_refs = by_source({k.customer_external_id for k in all_keys if k.customer_external_id})
    emails = list({k.email for k in all_keys if k.email})
    phones = list({k.phone for k in all_keys if k.phone})
    customer_rows = list(connection.execute(customers_named(tuple(customer_refs), bool(emails), bool(phones)), {
        "ids": list({r.customer_id for r in invoice_rows}), "emails": emails, "phones": phones,
        **refs_params("customer", customer_refs)}))
    refs: dict[tuple[str, str], dict[str, str]] = {}
    wanted = {("invoice", r.number) for r in invoice_rows} | {("customer", c.id) for c in customer_rows}
    if wanted:  # by entity_id alone, which is indexed (a row-value IN is not, on SQLite)
        for entity, entity_id, source, external_id in connection.execute(
                EXTERNAL_IDS, {"ids": list({entity_id for _, entity_id in wanted})}):
            if (entity, entity_id) in wanted:
                refs.setdefault((entity, entity_id), {})[source] = external_id
    # Core rows carry the same attributes as the ORM instances `repo` converts.
    return Found(
        invoices=[(r.id, repo.to_invoice(cast(models.Invoice, r), refs.get(("invoice", r.number), {})))
                  for r in invoice_rows],
        customers=[repo.to_customer(cast(models.Customer, c), refs.get(("customer", c.id), {}))
                   for c in customer_rows])


# The hot path's statements are built once (per shape) with their lists as parameters (`sql.one_of`): building one
# and deriving its cache key cost twice as much as executing it.
_events = table(models.WebhookEvent)
_unrecorded = (sql.one_of(_events.c.id, "ids"), _events.c.status.in_(UNRECORDED))
STILL_WAITING = select(_events.c.id).where(*_unrecorded).with_for_update(skip_locked=True)
TAKEN = update(_events).where(*_unrecorded).values(status="processed").returning(_events.c.id)
EARLIER_REPORTS = select(models.Payment.fingerprint).where(
    sql.one_of(models.Payment.fingerprint, "keys"),
    models.Payment.kind == PaymentKind.PAYMENT.value, models.Payment.duplicate_of.is_(None))
EXTERNAL_IDS = select(models.ExternalRef.entity, models.ExternalRef.entity_id, models.ExternalRef.source,
                      models.ExternalRef.external_id).where(
    sql.one_of(models.ExternalRef.entity_id, "ids"))
_payments, _invoices, _notifications = table(models.Payment), table(models.Invoice), table(models.Notification)
# RETURNING each row's id beside a key of our own: asked to return them in the rows' order instead, SQLAlchemy
# sends SQLite one INSERT per row; this way a batch is one multi-row INSERT on both engines.
NEW_PAYMENTS = insert(_payments).returning(_payments.c.webhook_event_id, _payments.c.id)
PAID = update(_invoices).where(_invoices.c.id == bindparam("invoice_id")) \
    .values(paid_minor=_invoices.c.paid_minor + bindparam("paid"))
NEW_NOTIFICATIONS = insert(_notifications).returning(_notifications.c.idempotency_key, _notifications.c.id)


def by_source(refs: set[tuple[str, str]]) -> dict[str, list[str]]:
    """(source, id) pairs grouped by source, sources in name order (the statement's shape)."""
    grouped: dict[str, list[str]] = {}
    for source, external_id in sorted(refs):
        grouped.setdefault(source, []).append(external_id)
    return grouped


def refs_params(entity: str, refs: dict[str, list[str]]) -> dict[str, list[str]]:
    return {f"{entity}_refs_{n}": ids for n, ids in enumerate(refs.values())}


@lru_cache(maxsize=64)
def invoices_named(by_number: bool, ref_sources: tuple[str, ...]) -> Select[Any]:
    """The invoices named by number (`numbers`) or by a platform's ids (`invoice_refs_N`, one per source), locked
    in id order."""
    conditions: list[ColumnElement[bool]] = []
    if by_number:
        conditions.append(sql.one_of(sql.invoice_key(models.Invoice.number), "numbers"))
    if ref_sources:
        conditions.append(models.Invoice.number.in_(entities_known_as("invoice", ref_sources)))
    return select(models.Invoice).where(sql.any_of(models.Invoice.id, conditions)) \
        .order_by(models.Invoice.id).with_for_update()


@lru_cache(maxsize=64)
def customers_named(ref_sources: tuple[str, ...], by_email: bool, by_phone: bool) -> Select[Any]:
    """The customers with these `ids`, or known to a platform by `customer_refs_N`, or with these `emails` or
    `phones`."""
    conditions: list[ColumnElement[bool]] = [sql.one_of(models.Customer.id, "ids")]
    if ref_sources:
        conditions.append(models.Customer.id.in_(entities_known_as("customer", ref_sources)))
    if by_email:
        conditions.append(sql.one_of(models.Customer.email, "emails"))
    if by_phone:
        conditions.append(sql.one_of(models.Customer.phone, "phones"))
    return select(models.Customer).where(sql.any_of(models.Customer.id, conditions))


def entities_known_as(entity: str, sources: tuple[str, ...]) -> Select[Any]:
    """The ids of the customers or invoices a platform knows by the ids `<entity>_refs_N` of `sources[N]`, per
    source on the unique index."""
    return select(models.ExternalRef.entity_id).where(models.ExternalRef.entity == entity, or_(*(
        and_(models.ExternalRef.source == source,
             sql.one_of(models.ExternalRef.external_id, f"{entity}_refs_{n}"))
        for n, source in enumerate(sources))))


def candidates_of(event: PaymentEvent, found: Found) -> tuple[matching.Candidates, dict[str, int]]:
    """What `repo.candidates(…, customer_invoices=False)` would have found for this event alone."""
    keys = matching.lookup_keys(event)
    picked = dict(pair for number in keys.invoice_numbers for pair in found.by_number.get(number, ()))
    if keys.invoice_external_id is not None:
        picked.update(found.by_ref.get(keys.invoice_external_id, ()))
    invoices = sorted(picked.items())  # in id order, as the database returns them
    owners = {invoice.customer_id for _, invoice in invoices}
    customers = [c for c in found.customers if c.id in owners
                 or (keys.customer_external_id is not None
                     and c.external_ids.get(keys.customer_external_id[0]) == keys.customer_external_id[1])
                 or (keys.email is not None and c.email == keys.email)
                 or (keys.phone is not None and c.phone == keys.phone)]
    return (matching.Candidates(invoices=[i for _, i in invoices], customers=customers),
            {invoice.number: row_id for row_id, invoice in invoices})


def planned(row_id: int, event: PaymentEvent, found: Found) -> Plan | None:
    """The payment as `Ingest._record_payment` would record it, if it is of the common case; else None."""
    candidates, ids = candidates_of(event, found)
    match = matching.match(event, candidates)
    if match.rule not in (matching.MatchRule.INVOICE_NUMBER, matching.MatchRule.EXTERNAL_ID) or match.invoice is None:
        return None
    invoice = match.invoice
    amount = event.amount
    if event.cumulative and invoice.amount.currency == amount.currency:
        amount = amount - invoice.paid
    if amount.minor <= 0 or amount.currency != invoice.amount.currency:
        return None  # a restatement, or a duplicate to look into: the general path
    party = match.customer.id if match.customer else matching.normalise_email(event.payer_email)
    key = fingerprint(amount, invoice.number, party, event.payment_ref)
    return Plan(row_id, event, invoice, ids[invoice.number], match.customer, match, amount, key,
                matching.outcome(invoice, replace(event, amount=amount)))


def claim(connection: Connection, row_ids: Sequence[int]) -> set[int]:
    return set(connection.execute(TAKEN, {"ids": list(row_ids)}).scalars())


def write(connection: Connection, plans: list[Plan], notifier: Notifier, keys: Keyring, now: datetime,
          batch: Batch, handover: Handover | None = None) -> None:
    from bot.services.ingest import quoted  # the general path's own helper (ingest imports this module)

    for plan in plans:
        event, outcome = plan.event, plan.outcome
        plan.payment = dict(
            webhook_event_id=plan.row_id, source=event.source, kind=event.kind.value, payment_ref=event.payment_ref,
            currency=plan.amount.currency, amount_minor=plan.amount.minor, occurred_at=event.occurred_at,
            date_only=event.date_only, recorded_at=now, invoice_id=plan.invoice_id,
            customer_id=plan.customer.id if plan.customer else None, match_rule=plan.match.rule.value,
            match_reason=plan.match.reason, settlement=outcome.settlement.value,
            balance_minor=outcome.balance.minor, fingerprint=plan.key, duplicate_of=None,
            payer_email=event.payer_email, payer_name=event.payer_name, details=dict(event.details) | quoted(event))
    payment_ids: dict[int, int] = dict(connection.execute(NEW_PAYMENTS, [p.payment for p in plans]).all())
    ids = [payment_ids[p.row_id] for p in plans]
    connection.execute(PAID, [{"invoice_id": p.invoice_id, "paid": p.amount.minor} for p in plans])

    wanted = {pair for plan in plans if plan.customer for pair in notifier.addresses(plan.customer)}
    opted_out = consent.opted_out_of(connection, wanted)
    records: list[AuditRecord] = []
    queued: list[tuple[int, dict[str, Any], AuditRecord]] = []  # (index in records, outbox row, audit to finish)
    for plan, payment_id in zip(plans, ids, strict=True):
        # What `receipt_of` reads of the row, without an ORM instance (building one per payment cost more than the
        # statements that store it).
        payment = cast(models.Payment, SimpleNamespace(id=payment_id, **plan.payment))
        event, invoice, customer = plan.event, plan.invoice, plan.customer
        records.append(audit_record(now, "payment.matched", source=event.source, invoice=invoice.number,
                                    customer_id=payment.customer_id, amount=plan.amount, detail={
            "payment_id": payment_id, "kind": event.kind.value, "rule": plan.match.rule.value,
            "reason": plan.match.reason, "payment_ref": event.payment_ref, "settlement": payment.settlement,
            "balance": str(plan.outcome.balance.amount)}))
        receipt = receipt_of(payment, invoice, customer)
        for row, record in notifier.acknowledgements(receipt, customer, now, opted_out):  # a message that fails to render
            records.append(record)                                            # raises: the general path then
            if row is not None:
                queued.append((len(records) - 1, row, record))
        batch.payment_ids.append(payment_id)
        batch.done.append(plan.row_id)
    if queued:
        rows = claimed_for(handover, [row for _, row, _ in queued], now)
        by_key: dict[str, int] = dict(connection.execute(NEW_NOTIFICATIONS, rows).all())
        notification_ids = [by_key[row["idempotency_key"]] for row in rows]
        for (index, _, record), notification_id in zip(queued, notification_ids, strict=True):
            records[index] = replace(record, detail={"notification_id": notification_id, **record.detail})
        batch.notification_ids += notification_ids
        batch.claimed = [models.Notification(id=notification_id, **row)
                         for notification_id, row in zip(notification_ids, rows, strict=True)
                         if row["status"] == outbox.SENDING]
        if len(batch.claimed) < len(rows):  # as `outbox.enqueue`: listening workers look at once
            wakeup.notify(connection, outbox.CHANNEL)
    audit.append_rows(connection, records, keys)


def claimed_for(handover: Handover | None, rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """`rows`, the plain sends among them claimed by the handover's worker, as many as it has room for."""
    if handover is None:
        return rows
    sendable = [handover.sendable(row["channel"], row["payload"]) for row in rows]
    room = handover.take(sum(sendable))
    out = []
    for row, plain in zip(rows, sendable, strict=True):
        claimed = plain and room > 0
        out.append(outbox.claimed_at_once(row, now=now, lease=handover.lease,
                                          worker=handover.worker if claimed else None))
        room -= claimed
    return out

