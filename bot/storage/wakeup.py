"""Wake-ups between processes through PostgreSQL's LISTEN/NOTIFY.

A notification sent inside a transaction reaches every process listening on its channel when (and only if) the
transaction commits, on any machine. Nothing depends on it arriving: whoever listens also looks on a timer.
SQLite has no such thing; there one process does the work and wakes itself directly.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


def notify(connection: Connection, channel: str) -> None:
    """Wake the listeners of `channel` at this transaction's commit (PostgreSQL; nothing elsewhere)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


@asynccontextmanager
async def listen(engine: AsyncEngine, channel: str, wake: Callable[[], None]) -> AsyncIterator[None]:
    """While inside, `wake()` is called whenever another transaction notifies `channel` (PostgreSQL only; a
    connection of its own, outside the pool's count of busy ones)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    try:
        conn = await engine.connect()
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        callback = lambda *_: wake()  # noqa: E731  (asyncpg passes connection, pid, channel, payload)
        await driver.add_listener(channel, callback)
    except Exception:  # no LISTEN is no outage: the timer carries on
        log.warning("could not LISTEN on %s; relying on polling", channel, exc_info=True)
        yield
        return
    try:
        yield
    finally:
        try:
            await driver.remove_listener(channel, callback)
        finally:
            await conn.close()
