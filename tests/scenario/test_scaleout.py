"""Workers side by side on one outbox: a claim in flight is skipped by the next worker's claim, never shared."""

from __future__ import annotations

import asyncio
from datetime import timedelta

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
        async with db.transaction() as first:
            mine = await outbox.claim(first.session, now=clock(), lease=LEASE, worker="a", limit=2)
            if db.dialect == "postgresql":  # a's claim not yet committed: b skips its rows, without waiting
                async with db.transaction() as second:
                    theirs = await asyncio.wait_for(outbox.claim(
                        second.session, now=clock(), lease=LEASE, worker="b", limit=4), 30)
        if db.dialect != "postgresql":  # SQLite: one writer at a time, so b claims after a's commit
            async with db.transaction() as second:
                theirs = await outbox.claim(second.session, now=clock(), lease=LEASE, worker="b", limit=4)
        assert len(mine) == 2 and len(theirs) == 2
        assert {row.id for row in mine}.isdisjoint(row.id for row in theirs)
    finally:
        await db.dispose()
