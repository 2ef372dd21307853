"""Refused webhooks: counted in metrics, summarised in memory, flushed a window at a time, pruned.

A refusal answers someone who proved nothing, so it must cost paybot a constant: no database write per request,
no log line per request above DEBUG, no entry in the permanent audit chain. The worker's scheduler writes one
`refusals` row per (source, reason class, remote) per window and deletes rows past REFUSALS_RETENTION_DAYS.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from bot.domain.refusals import RefusalTally
from bot.errors import InboundError
from bot.metrics import Metrics
from bot.storage import refusals
from bot.storage.database import Database

log = logging.getLogger(__name__)

#: One summary row per key per window: how often the tally is flushed.
WINDOW = timedelta(seconds=60)
PRUNE_EVERY = timedelta(hours=1)
#: Distinct (source, reason class, remote) keys held between flushes; further remotes share one overflow row.
MAX_KEYS = 5_000


class Refusals:
    def __init__(self, db: Database, metrics: Metrics, *, retention: timedelta, max_keys: int = MAX_KEYS) -> None:
        self.db = db
        self.metrics = metrics
        self.retention = retention
        self.tally = RefusalTally(since=db.clock(), max_keys=max_keys)

    def count(self, source: str, exc: InboundError, remote: str | None) -> None:
        """Record one refused request, in memory only."""
        reason = type(exc).__name__
        self.metrics.rejected.labels(source, reason).inc()
        self.tally.add(source, reason, remote, exc.status, str(exc))
        log.debug("webhook %s refused (%s) from %s: %s", source, exc.status, remote, exc)

    async def flush(self) -> None:
        """Write the window ending now: one row per key. On failure the counts go back into the tally."""
        window = self.tally.take(self.db.clock())
        if not window:
            return
        try:
            async with self.db.transaction() as uow:
                await refusals.save(uow.session, window)
        except BaseException:
            self.tally.give_back(window)
            raise
        total = sum(s.count for s in window)
        log.warning("refused %d webhook requests in the last window (%d source/reason/remote rows; "
                    "`paybot audit refusals` lists them)", total, len(window))

    async def prune(self) -> None:
        async with self.db.transaction() as uow:
            pruned = await refusals.prune(uow.session, uow.clock() - self.retention)
        if pruned:
            log.info("pruned %d refusal summaries older than %s", pruned, self.retention)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every window until `stop` (for a process without a worker: `serve --no-worker`)."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), WINDOW.total_seconds())
            except TimeoutError:
                pass
            try:
                await self.flush()
            except Exception:
                log.exception("flushing refusal summaries failed; kept for the next window")
