"""Engines and sessions for either engine: SQLite tuned for one process, PostgreSQL for many."""

from __future__ import annotations

import json
from typing import Any

import orjson
from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_

#: The schemes a DATABASE_URL may use, and the async driver paybot runs each on. Hosting platforms hand out
#: `postgres://` and `postgresql://`; SQLAlchemy's own docs write `sqlite:///`.
DRIVERS = {
    "postgres": "postgresql+asyncpg", "postgresql": "postgresql+asyncpg", "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite", "sqlite+aiosqlite": "sqlite+aiosqlite",
}
EXAMPLES = "sqlite+aiosqlite:///./paybot.db or postgresql+asyncpg://user:password@host:5432/dbname"


def normalise_url(url: str) -> str:
    """`url` on the driver paybot runs (`postgres://…` → `postgresql+asyncpg://…`); ValueError saying what is wrong,
    without repeating the URL (it may hold a password)."""
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise ValueError(f"not a database URL (expected {EXAMPLES})") from None
    driver = DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(f"unsupported database {parsed.drivername!r} (expected {EXAMPLES})")
    parsed = parsed.set(drivername=driver)
    if driver == "postgresql+asyncpg":
        if not parsed.database:
            raise ValueError("names no database (…/dbname at the end)")
        if "sslmode" in parsed.query:  # libpq's name, in platforms' URLs; asyncpg takes the same values as `ssl`
            query = dict(parsed.query)
            query["ssl"] = query.pop("sslmode")
            parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=False)


def json_text(value: Any) -> str:
    """A JSON column's stored text, by orjson (several times json's speed; every row of the hot path has one). What
    orjson declines (an integer beyond 64 bits, a key that is not a string) json writes; a datetime or a dataclass
    json refuses, and so does this."""
    try:
        return orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def json_value(text: str) -> Any:
    """A JSON column's value from its stored text, by orjson; by json where orjson declines, or where it may have
    read an integer beyond 64 bits as a float (any float: json reads it again, exactly)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
    return json.loads(text) if _holds_float(value) else value


def _holds_float(value: Any) -> bool:
    """Whether `value` is or contains a float (type checks only, no copies)."""
    kind = type(value)
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return kind is float
    for item in value:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _holds_float(item)):
            return True
    return False


#: Every engine reads and writes JSON columns so.
JSON_CODEC = {"json_serializer": json_text, "json_deserializer": json_value}


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, read_only: bool = False, **kwargs: Any) -> AsyncEngine:
    """An engine for `url`. On SQLite, `read_only` gives the readers' engine: several connections that begin
    deferred and, under WAL, never block (or wait for) the single writer."""
    if not is_sqlite(url):
        # No pre-ping: on asyncpg it is three round trips (BEGIN, a ping, ROLLBACK) before every transaction, a
        # third of all of them under load. A connection the server dropped (a restart) fails its first statement
        # instead; that invalidates the whole pool, and the caller's retry (a worker's next round, the platform's
        # redelivery after a 503) gets a fresh connection. Recycled hourly for proxies that drop idle ones.
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("pool_recycle", 3600)
        engine = create_async_engine(url, **JSON_CODEC, **kwargs)
        event.listen(engine.sync_engine, "connect", _arrays_known)
        return engine
    # One connection: every transaction begins IMMEDIATE (below), so two connections could never work at once
    # anyway; with one, waiting writers queue on the pool instead of in SQLite's busy handler, which polls with
    # sleeps of up to 100 ms. Other processes on the same file still wait through busy_timeout.
    kwargs.setdefault("pool_size", 4 if read_only else 1)
    kwargs.setdefault("max_overflow", 0)
    kwargs.setdefault("pool_timeout", 30)
    engine = create_async_engine(url, connect_args={"timeout": 30}, **JSON_CODEC, **kwargs)
    sqlite_setup(engine.sync_engine, read_only=read_only)
    return engine


#: The arrays paybot binds (`sql.one_of`). asyncpg knows only text[] and oid[] by heart: the first statement on a
#: connection that binds another asks the server what it is, 8–14 ms. Asked once for all, as each connection opens.
ARRAYS = "SELECT $1::int8[], $2::varchar[]"


def _arrays_known(dbapi_connection: Any, _record: Any) -> None:
    await_(dbapi_connection.driver_connection.prepare(ARRAYS))


def create_sqlite_writer(url: str, *, wait: bool = True) -> Engine:
    """A synchronous engine on the same SQLite file, to write a whole transaction in one call (the async driver
    makes every statement a round trip to its own thread). Set up exactly as the async writer; `wait=False`: a
    lock held by another process fails the BEGIN at once instead of waiting."""
    engine = sa_create_engine(make_url(url).set(drivername="sqlite"), pool_size=1, max_overflow=0,
                              connect_args={"timeout": 30 if wait else 0}, **JSON_CODEC)
    sqlite_setup(engine, busy_timeout_ms=30_000 if wait else 0)
    return engine


def sqlite_setup(engine: Engine, *, read_only: bool = False, busy_timeout_ms: int = 30_000) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the writer; NORMAL keeps durability across process crashes without an
        # fsync per commit; foreign keys are off by default in SQLite.
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Writers take the lock at BEGIN, so two of them queue instead of failing with "database is locked".
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
