"""Workers side by side on one outbox: a claim in flight is skipped by the next worker's claim, never shared."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial

from bot.storage import outbox
from bot.storage.database import Database

LEASE = timedelta(seconds=60)


async def test_two_workers_claiming_at_once_take_different_rows(database_url, clock):
    db = Database.open(database_url, clock)
    try:
        async with db.transaction() as uow:
            for n in range(4):
                await outbox.enqueue(uow.session, now=clock(), idempotency_key=f"k{n}", payment_id=None,
                                     channel="sendgrid", audience="finance", purpose="finance_card",
                                     recipient=f"f{n}@example.com", payload={"n": n})
        claim = partial(outbox.claim, now=clock(), lease=LEASE)
        if db.dialect == "postgresql":
            async with db.engine.begin() as first:
                mine = await first.run_sync(claim, worker="a", limit=2)
                async with db.engine.begin() as second:  # a's claim not yet committed: b skips its rows, not waiting
                    theirs = await asyncio.wait_for(second.run_sync(claim, worker="b", limit=4), 30)
        else:  # SQLite: one writer at a time, so b claims after a's commit
            mine = await db.run(partial(claim, worker="a", limit=2))
            theirs = await db.run(partial(claim, worker="b", limit=4))
        assert len(mine) == 2 and len(theirs) == 2
        assert {row.id for row in mine}.isdisjoint(row.id for row in theirs)
    finally:
        await db.dispose()
