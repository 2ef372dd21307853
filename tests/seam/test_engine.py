"""The database engine across a server that drops paybot's connections (a PostgreSQL restart, a failover)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.storage.connect import unavailable
from bot.storage.database import Database
from bot.storage.engine import create_engine


async def test_a_dropped_connection_fails_one_attempt_as_an_outage_then_the_pool_reconnects(database_url):
    db = Database.open(database_url)
    try:
        await db.ping()  # one connection, back in the pool
        if db.dialect == "postgresql":
            admin = create_engine(database_url)
            try:
                async with admin.connect() as conn:  # the server ends every other session of this database
                    await conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            finally:
                await admin.dispose()
            with pytest.raises(DBAPIError) as failed:  # no pre-ping: the first statement finds out
                await db.ping()
            assert unavailable(failed.value)  # retried by the caller as an outage, not reported as a bug
        await db.ping()  # the pool was renewed (SQLite has no server to drop it)
    finally:
        await db.dispose()
