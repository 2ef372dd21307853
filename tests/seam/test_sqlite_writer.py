"""`Database.run` on SQLite: the whole transaction in one call on the event loop while the write lock is free; on a
thread of its own, waiting there, while another process holds it, so that the event loop goes on serving."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection, make_url

from bot.storage.database import Database
from bot.storage.models import RateSlot


def slot(key: str, ran_on: list[int], clock):  # type: ignore[no-untyped-def]
    def work(connection: Connection) -> None:
        ran_on.append(threading.get_ident())
        connection.execute(insert(RateSlot).values(key=key, next_at=clock()))
    return work


async def test_a_write_runs_at_once_or_waits_for_another_process_off_the_event_loop(database_url, clock):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's one writer; on PostgreSQL every statement is a round trip and rows are locked")
    db = Database.open(database_url, clock)
    other = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)  # as `paybot import`
    ran_on: list[int] = []
    try:
        await db.run(slot("free", ran_on, clock))
        assert ran_on == [threading.get_ident()]  # the lock was free: written right here

        other.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(db.run(slot("waited", ran_on, clock)))
        for _ in range(20):
            await asyncio.sleep(0)  # the event loop turns while the write waits
        assert not write.done()
        other.execute("COMMIT")
        await asyncio.wait_for(write, 30)  # a bound for a broken build, not a measurement
        assert ran_on[-1] != threading.get_ident()  # it waited on the writer's thread

        async with db.read() as session:
            assert await session.scalar(select(func.count()).select_from(RateSlot)) == 2
    finally:
        other.close()
        await db.dispose()
