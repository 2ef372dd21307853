"""Events stored to be settled after their answer: those stored before they could be verified (PayPal IPN) and
verified thin ones waiting to be resolved (QuickBooks, Xero, …): how many wait, claiming one, and purging the
bodies of those that never proved genuine.

A claimed event stays `pending_verification` (or `waiting`); its claim is `claimed_by` plus a lease, kept in `next_attempt_at`,
so one column says when anybody may try it next: after the lease (its verifier died) or after its backoff. On
PostgreSQL verifiers claim with `FOR UPDATE SKIP LOCKED`, so any number run side by side; SQLite has one writer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import WebhookEvent

PENDING, REJECTED, UNVERIFIABLE = "pending_verification", "rejected", "unverifiable"
#: Verified but thin: waits to be resolved through the platform's API; `unresolved` once given up on.
WAITING, UNRESOLVED = "waiting", "unresolved"
#: What the consumer (`bot.services.verifier`) claims, oldest first.
AFTER_THE_ANSWER = (PENDING, WAITING)
#: Never proven genuine: what an unauthenticated request left behind, its body kept only for a while.
PURGEABLE = (REJECTED, UNVERIFIABLE)


async def waiting(session: AsyncSession, source: str) -> int:
    """How many of `source`'s events wait for verification (claimed or not)."""
    count = await session.scalar(select(func.count()).select_from(WebhookEvent).where(
        WebhookEvent.status == PENDING, WebhookEvent.source == source))
    return int(count or 0)


async def resolving(session: AsyncSession) -> dict[str, int]:
    """How many verified notifications wait to be resolved, per source (claimed or not): what `paybot check` and
    /metrics show, so a long wait (the platform down, a connection lost) is seen."""
    rows = await session.execute(select(WebhookEvent.source, func.count()).where(
        WebhookEvent.status == WAITING).group_by(WebhookEvent.source))
    return {source: int(count) for source, count in rows.all()}


async def claim(session: AsyncSession, *, now: datetime, lease: timedelta, worker: str) -> WebhookEvent | None:
    """The oldest event due for verification, now held by `worker` for `lease` (one more attempt counted)."""
    due = (select(WebhookEvent.id)
           .where(WebhookEvent.status.in_(AFTER_THE_ANSWER),
                  or_(WebhookEvent.next_attempt_at.is_(None), WebhookEvent.next_attempt_at <= now))
           .order_by(WebhookEvent.id).limit(1).with_for_update(skip_locked=True))
    claimed = (update(WebhookEvent)
               .where(WebhookEvent.id.in_(due.scalar_subquery()))
               .values(claimed_by=worker, next_attempt_at=now + lease, attempts=WebhookEvent.attempts + 1)
               .returning(WebhookEvent)
               .execution_options(synchronize_session=False))
    return (await session.scalars(claimed)).one_or_none()


async def held(session: AsyncSession, row_id: int, worker: str) -> WebhookEvent | None:
    """The event, locked, if it still waits and is still `worker`'s."""
    return await session.scalar(select(WebhookEvent).where(
        WebhookEvent.id == row_id, WebhookEvent.status.in_(AFTER_THE_ANSWER), WebhookEvent.claimed_by == worker,
    ).with_for_update())


async def purge(session: AsyncSession, *, received_before: datetime, now: datetime, limit: int) -> int:
    """Drop the bodies of up to `limit` events never proven genuine and received before `received_before`; the
    row stays (source, event id, status, size, times). Returns how many were purged."""
    batch = (select(WebhookEvent.id)
             .where(WebhookEvent.status.in_(PURGEABLE), WebhookEvent.received_at < received_before,
                    WebhookEvent.purged_at.is_(None))
             .order_by(WebhookEvent.id).limit(limit).with_for_update(skip_locked=True))
    result = await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id.in_(batch.scalar_subquery()))
        .values(body_bytes=func.length(WebhookEvent.body), body=b"", purged_at=now)
        .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
