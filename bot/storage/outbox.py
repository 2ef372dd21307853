"""The transactional outbox: rows written in the payment's transaction, claimed by workers under a lease.

On PostgreSQL workers claim with `FOR UPDATE SKIP LOCKED`, so any number run side by side; a row whose lease ran
out (its worker died) is due again. SQLite ignores the locking clause: there one process writes at a time.

A delivery's common path (claim, renew, record the sends) is written for a synchronous connection: the worker runs
each of its transactions in one call (`Database.run`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, literal, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.storage.models import Notification, RateSlot
from bot.storage.sql import insert_or_ignore, one_of

PENDING, SENDING, SENT, DEAD = "pending", "sending", "sent", "dead"
CANCELLED = "cancelled"  # a fallback not sent: the message before it was delivered after all
CHANNEL = "paybot_outbox"  # NOTIFY: notifications queued
ANNOUNCED = "paybot_outbox_announced"
log = logging.getLogger(__name__)
NOTIFICATIONS = cast(Table, Notification.__table__)  # for Core statements (no ORM identity to keep)


async def enqueue(session: AsyncSession, *, now: datetime, **fields: Any) -> int | None:
    """Queue a notification; None when its idempotency key is already queued (nothing is queued twice)."""
    values = {"status": PENDING, "attempts": 0, "available_at": now, "created_at": now, "fallbacks": []} | fields
    queued = (await session.execute(insert_or_ignore(session, Notification, values))).scalar_one_or_none()
    if queued is not None and session.get_bind().dialect.name == "postgresql" and not session.info.get(ANNOUNCED):
        # Delivered at COMMIT to every listening worker, on any machine: they look at once instead of at the
        # next poll. Nothing depends on it arriving; polling still finds the row.
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
        session.info[ANNOUNCED] = True
    return queued


def claimed_at_once(row: dict[str, Any], *, now: datetime, lease: timedelta, worker: str | None) -> dict[str, Any]:
    """A row to queue already claimed by `worker`, its first attempt started, as `claim` and `renew_many` leave
    one: the commit that queues it is the claim, and the worker sends it right after (`delivery.Handover`).
    With no worker, the row as queued for any (with the same columns, for an executemany beside claimed rows)."""
    if worker is None:
        return row | {"claimed_by": None, "lease_until": None, "attempt_started_at": None}
    return row | {"status": SENDING, "claimed_by": worker, "lease_until": now + lease, "attempts": 1,
                  "attempt_started_at": now}


def claim(connection: Connection, *, now: datetime, lease: timedelta, worker: str,
          limit: int) -> list[Notification]:
    """Due rows, leased to `worker`. Not yet an attempt: a claim whose lease runs out before its send begins (the
    batch ahead of it was slow) is claimed again without spending the row's retry budget; `renew` counts it."""
    due = or_(
        and_(Notification.status == PENDING, Notification.available_at <= now),
        and_(Notification.status == SENDING, Notification.lease_until < now),
    )
    ids = (select(Notification.id).where(due).order_by(Notification.available_at, Notification.id)
           .limit(limit).with_for_update(skip_locked=True))
    claimed = (
        update(Notification)
        .where(Notification.id.in_(ids.scalar_subquery()))
        .values(status=SENDING, lease_until=now + lease, claimed_by=worker)
        .returning(Notification)
        .execution_options(synchronize_session=False)
    )
    with Session(bind=connection) as session:  # its instances outlive it, detached, every column loaded
        return list(session.scalars(claimed).all())


async def renew(session: AsyncSession, notification_id: int, worker: str, now: datetime, lease: timedelta) -> bool:
    """Extend this worker's lease right before sending; False if the lease ran out or was taken over (a stalled
    worker must not send what another worker now owns).

    Committed before the send, it also counts the attempt and marks it started: should the worker die before
    recording the outcome, whoever takes the row over knows the provider may already have it, and since when."""
    renewed = await session.execute(
        update(Notification)
        .where(Notification.id == notification_id, Notification.claimed_by == worker,
               Notification.status == SENDING, Notification.lease_until > now)
        .values(lease_until=now + lease, attempts=Notification.attempts + 1,
                attempt_started_at=func.coalesce(Notification.attempt_started_at,
                                                 literal(now, Notification.attempt_started_at.type)))
        .execution_options(synchronize_session=False))
    return bool(renewed.rowcount)  # type: ignore[attr-defined]


def renew_many(connection: Connection, ids: Sequence[int], worker: str, now: datetime,
               lease: timedelta) -> set[int]:
    """`renew` for a batch of rows in one statement; the ids it renewed (the others must not be sent)."""
    if not ids:
        return set()
    renewed = connection.execute(RENEWED, {"ids": list(ids), "worker": worker, "now": now, "until": now + lease})
    return set(renewed.scalars())


async def all_still_mine(session: AsyncSession, ids: Sequence[int], worker: str) -> dict[int, Notification]:
    """`still_mine` for a batch of rows in one statement: those this worker's claim still holds, locked."""
    if not ids:
        return {}
    rows = await session.scalars(
        select(Notification).where(Notification.id.in_(ids), Notification.claimed_by == worker,
                                   Notification.status == SENDING).with_for_update())
    return {row.id: row for row in rows}


def lock_mine(connection: Connection, ids: Sequence[int], worker: str) -> set[int]:
    """`all_still_mine` when only the ids are needed: those this worker's claim still holds, locked."""
    if not ids:
        return set()
    return set(connection.execute(LOCKED_MINE, {"ids": list(ids), "worker": worker}).scalars())


def mark_sent(connection: Connection, sent: Sequence[tuple[int, str | None, str | None]], now: datetime) -> None:
    """Record rows locked by `lock_mine` as sent, (id, provider id, delivery status if the provider told one), in
    one executemany: the attempt is over."""
    if not sent:
        return
    connection.execute(MARKED_SENT, [{"sent_id": id_, "sent_provider_id": provider_id, "sent_status": status,
                                      "sent_now": now} for id_, provider_id, status in sent])


# A delivery's common path, its statements built once (building one cost more than running it).
_table = NOTIFICATIONS
RENEWED = update(_table).where(
    one_of(_table.c.id, "ids"), _table.c.claimed_by == bindparam("worker"),
    _table.c.status == SENDING, _table.c.lease_until > bindparam("now", type_=_table.c.lease_until.type),
).values(lease_until=bindparam("until", type_=_table.c.lease_until.type), attempts=_table.c.attempts + 1,
         attempt_started_at=func.coalesce(_table.c.attempt_started_at,
                                          bindparam("now", type_=_table.c.attempt_started_at.type))
         ).returning(_table.c.id)
LOCKED_MINE = select(_table.c.id).where(one_of(_table.c.id, "ids"),
                                        _table.c.claimed_by == bindparam("worker"),
                                        _table.c.status == SENDING).with_for_update()
MARKED_SENT = update(_table).where(_table.c.id == bindparam("sent_id")).values(
    status=SENT, sent_at=bindparam("sent_now", type_=_table.c.sent_at.type), last_error=None,
    attempt_started_at=None, provider_id=bindparam("sent_provider_id"),
    delivery_status=func.coalesce(bindparam("sent_status", type_=_table.c.delivery_status.type),
                                  _table.c.delivery_status))


async def still_mine(session: AsyncSession, notification_id: int, worker: str) -> Notification | None:
    """The row, locked, if this worker's claim on it still holds (a lease can be taken over)."""
    return await session.scalar(
        select(Notification).where(Notification.id == notification_id, Notification.claimed_by == worker,
                                   Notification.status == SENDING).with_for_update())


async def reserve(session: AsyncSession, key: str, interval: float, now: datetime) -> datetime:
    """Take the next send slot for `key`; returns when it is (now, or later if another send holds it)."""
    await session.execute(insert_or_ignore(session, RateSlot, {"key": key, "next_at": now}).returning(RateSlot.key))
    slot = await session.scalar(select(RateSlot).where(RateSlot.key == key).with_for_update())
    assert slot is not None
    at = max(slot.next_at, now)
    if at <= now:
        slot.next_at = now + timedelta(seconds=interval)
    return at


async def depth(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Notification.status, func.count()).group_by(Notification.status))
    return {status: count for status, count in rows.all()}


async def due(session: AsyncSession, now: datetime, limit: int) -> int:
    """How many messages wait to be sent now, counted up to `limit`: how far behind the workers are, read from
    the due index alone, whatever the size of the table."""
    waiting = select(Notification.id).where(Notification.status == PENDING, Notification.available_at <= now)
    return int(await session.scalar(select(func.count()).select_from(waiting.limit(limit).subquery())) or 0)
