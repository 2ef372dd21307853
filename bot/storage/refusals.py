"""Refused-webhook summaries: written a window at a time, read by operators, pruned after their retention."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.refusals import Summary
from bot.storage.models import Refusal

EXPORT_FIELDS = ("window_start", "window_end", "source", "reason", "status", "remote", "count", "example")


async def save(session: AsyncSession, window: Sequence[Summary]) -> None:
    """One row per key of the window (a single executemany)."""
    if window:
        await session.execute(insert(Refusal), [{
            "source": s.key.source, "reason": s.key.reason, "remote": s.key.remote, "status": s.status,
            "count": s.count, "example": s.example, "window_start": s.window_start, "window_end": s.window_end,
        } for s in window])


async def prune(session: AsyncSession, before: datetime) -> int:
    """Delete the summaries of windows that ended before `before`; how many went."""
    pruned = await session.execute(delete(Refusal).where(Refusal.window_end < before))
    return int(pruned.rowcount)  # type: ignore[attr-defined]


async def rows(session: AsyncSession, *, since: datetime | None = None) -> AsyncIterator[dict[str, object]]:
    query = select(Refusal).order_by(Refusal.window_end, Refusal.id).execution_options(yield_per=500)
    if since is not None:
        query = query.where(Refusal.window_end >= since)
    async for row in await session.stream_scalars(query):
        summary = {name: getattr(row, name) for name in EXPORT_FIELDS}
        for name in ("window_start", "window_end"):
            summary[name] = getattr(row, name).isoformat().replace("+00:00", "Z")
        yield summary
