"""One handle on the database: transactions as units of work that carry their audit entries to the commit."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.domain.audit import AuditRecord, Keyring
from bot.domain.money import Money
from bot.storage import audit
from bot.storage.engine import create_engine, create_sqlite_writer, is_sqlite, sessions
from bot.storage.turns import Turns

Clock = Callable[[], datetime]
T = TypeVar("T")
SQLITE_BUSY_RETRY = 0.1  # seconds: the longest sleep of SQLite's busy handler between two tries at a lock
WRITER_SWITCH_INTERVAL = 0.001  # seconds; measured: 26 % → 29 % of the bare handler (benchmarks/README.md)


def utcnow() -> datetime:
    return datetime.now(UTC)


def audit_record(at: datetime, kind: str, *, actor: str = "system", source: str | None = None,
                 channel: str | None = None, invoice: str | None = None, customer_id: str | None = None,
                 amount: Money | None = None, detail: dict[str, Any] | None = None) -> AuditRecord:
    """An audit entry to chain (`UnitOfWork.audit`, or a batch writer's `audit.append_rows`)."""
    return AuditRecord(kind=kind, at=at, actor=actor, source=source, channel=channel, invoice=invoice,
                       customer_id=customer_id, amount=str(amount.amount) if amount else None,
                       currency=amount.currency if amount else None, detail=detail or {})


class UnitOfWork:
    """A session plus the audit entries to chain at commit, so that a rolled-back change leaves no entry."""

    def __init__(self, session: AsyncSession, clock: Clock, keys: Keyring = Keyring()) -> None:
        self.session = session
        self.clock = clock
        self.keys = keys
        self._audit: list[AuditRecord] = []

    def audit(self, kind: str, *, actor: str = "system", source: str | None = None, channel: str | None = None,
              invoice: str | None = None, customer_id: str | None = None, amount: Money | None = None,
              detail: dict[str, Any] | None = None) -> None:
        self._audit.append(audit_record(self.clock(), kind, actor=actor, source=source, channel=channel,
                                        invoice=invoice, customer_id=customer_id, amount=amount, detail=detail))

    async def commit(self) -> None:
        # The pending changes first: the chain's head row, locked by the append, is then held only for the append
        # and the COMMIT (every writer of every process queues on it).
        await self.session.flush()
        await audit.append(self.session, self._audit, self.keys)
        self._audit.clear()
        await self.session.commit()


class SQLiteWriter:
    """Synchronous engines on the SQLite file: a whole transaction is one call, where the async driver makes
    every statement a hop to its thread and back (and between two hops the event loop serves requests while this
    process's one writer stays held). The call runs on the event loop itself: a transaction of Core statements
    is a few milliseconds of CPU, which a thread would spend too, waiting for the GIL at every statement. Only
    when another process holds the lock (an import, a command) does it run on a thread, to wait there."""

    def __init__(self, url: str) -> None:
        self.at_once = create_sqlite_writer(url, wait=False)
        self.patient = create_sqlite_writer(url)
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paybot-writer")
        # SQLite's threads (this one, and the async driver's) need the GIL for moments between SQLite calls; under
        # load the event loop never lets go of it, and the default 5 ms switch interval stretches each such moment.
        sys.setswitchinterval(min(sys.getswitchinterval(), WRITER_SWITCH_INTERVAL))

    async def run(self, work: Callable[[Connection], T]) -> T:
        with self.at_once.connect() as connection:
            try:
                transaction = connection.begin()  # BEGIN IMMEDIATE: the write lock at once, or "database is locked"
            except OperationalError:  # (anything else is raised again by the thread's try)
                pass
            else:
                with transaction:
                    return work(connection)
        return await asyncio.get_running_loop().run_in_executor(self.thread, self._run_patiently, work)

    def _run_patiently(self, work: Callable[[Connection], T]) -> T:
        with self.patient.begin() as connection:
            return work(connection)

    def close(self) -> None:
        self.thread.shutdown(wait=True)
        self.at_once.dispose()
        self.patient.dispose()


class Database:
    def __init__(self, engine: AsyncEngine, clock: Clock = utcnow, *, reader: AsyncEngine | None = None,
                 audit_keys: Keyring = Keyring()) -> None:
        self.engine = engine
        self.clock = clock
        self.audit_keys = audit_keys  # what new audit entries are chained with (AUDIT_KEY)
        self._reader = reader
        self._sessions = sessions(engine)
        self._read_sessions = sessions(reader or engine)
        # SQLite has one writer at a time. Writers of this process (the async engine's transactions, the inbox's
        # writer thread) take turns here, first come first served, instead of in SQLite's busy handler, which
        # sleeps up to 100 ms between tries and let a busy writer starve the others (the delivery worker behind
        # a stream of webhooks).
        self._write_turn = Turns() if engine.dialect.name == "sqlite" else None
        # A file's synchronous writer for `run`, made at the first call (most commands never need one); an
        # in-memory database is another database on every connection, so there `run` goes through the engine.
        self._writes_file = self._write_turn is not None and engine.url.database not in (None, "", ":memory:")
        self._writer: SQLiteWriter | None = None

    @classmethod
    def open(cls, url: str, clock: Clock = utcnow, *, audit_keys: Keyring = Keyring()) -> Database:
        """Writer and readers for `url` (on SQLite, separate engines so that reading never blocks writing)."""
        return cls(create_engine(url), clock, reader=create_engine(url, read_only=True) if is_sqlite(url) else None,
                   audit_keys=audit_keys)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """Commits (with the audit entries) when the block ends normally, rolls back otherwise."""
        async with self.write_turn(), self._sessions() as session:
            uow = UnitOfWork(session, self.clock, self.audit_keys)
            try:
                yield uow
                await uow.commit()
            except BaseException:
                await session.rollback()
                raise

    async def hand_over(self) -> None:
        """Between the transactions of a long run of writes (an import's chunks): on SQLite, leave the lock free long
        enough for another process's writer to take it. A writer waiting on SQLite's busy handler retries every
        100 ms once it has waited a while, so a lock released for less is seldom seen free, and a webhook would wait
        for the whole run (this process's own writers queue on `write_turn` instead, and need no pause)."""
        if self._write_turn is not None:
            await asyncio.sleep(SQLITE_BUSY_RETRY)

    async def analyze(self, *tables: str) -> None:
        """Refresh PostgreSQL's statistics of `tables` after a bulk load. Until autovacuum gets to it (a minute or
        more), the planner sees the tables as they were and picks whole-table scans for the matching lookups;
        SQLite plans from its indexes alone."""
        if self.dialect == "postgresql":
            async with self.engine.begin() as conn:
                for table in tables:
                    await conn.execute(text(f"ANALYZE {table}"))

    async def run(self, work: Callable[[Connection], T], *, background: bool = False) -> T:
        """`work` in one transaction on a synchronous connection, for the hot paths written in Core statements: on
        SQLite in one call (`SQLiteWriter`), in this process's turn to write (`background`: see `write_turn`); on
        PostgreSQL through the async engine, a round trip per statement as ever."""
        if not self._writes_file:
            async with self.engine.begin() as connection:
                return await connection.run_sync(work)
        if self._writer is None:
            self._writer = SQLiteWriter(self.engine.url.render_as_string(hide_password=False))
        async with self.write_turn(background=background):
            result = await self._writer.run(work)
        await asyncio.sleep(0)  # a write that did not wait never let the event loop turn: a loop of them starves it
        return result

    def write_turn(self, *, background: bool = False) -> AbstractAsyncContextManager[Any]:
        """This process's turn to write (SQLite; `background`: after every other writer waiting); on PostgreSQL,
        at once (row locks do the ordering)."""
        return self._write_turn.turn(background=background) if self._write_turn is not None else nullcontext()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading only (an export, a status page): on SQLite it never holds the write lock."""
        async with self._read_sessions() as session:
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        await self.engine.dispose()
        if self._reader is not None:
            await self._reader.dispose()
