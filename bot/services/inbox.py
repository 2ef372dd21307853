"""Group commit for webhooks (`INGEST_MODE=deferred`): events that arrive together are stored in one transaction,
and each request is answered only after the commit that holds its event.

One writer task drains the queue: while it waits for a commit, newcomers gather, and the next transaction takes
them all. At low load a batch is one event and nothing waits; under load a commit serves hundreds. On SQLite the
batch is written by a thread of its own in one hop (the async driver would make each statement a round trip).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy import Table
from sqlalchemy.engine import Connection

from bot.domain.audit import AuditRecord, Keyring
from bot.storage import audit, models, wakeup
from bot.storage.database import Database
from bot.storage.engine import create_sqlite_writer
from bot.storage.sql import insert_or_ignore

log = logging.getLogger(__name__)
WRITER_SWITCH_INTERVAL = 0.001  # seconds; measured: 26 % → 29 % of the bare handler (benchmarks/README.md)
T = TypeVar("T")
Item = tuple[dict[str, Any], dict[str, Any], "asyncio.Future[Stored]"]
#: The status of an event stored for the workers to record (`paybot serve --no-worker`), and the channel that
#: wakes them when one is committed.
RECEIVED, CHANNEL = "received", "paybot_inbox"


@dataclass(frozen=True, slots=True)
class Stored:
    row_id: int | None  # None: the event was stored before (a duplicate)


def write_batch(connection: Connection, rows: list[dict[str, Any]], records: list[AuditRecord],
                keys: Keyring) -> list[Stored]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING for the whole batch (executemany), then the audit entries of the
    events that were new."""
    table = cast(Table, models.WebhookEvent.__table__)
    statement = insert_or_ignore(connection, table, None).returning(table.c.id, table.c.source, table.c.event_id)
    ids = {(source, event_id): row_id for row_id, source, event_id in connection.execute(statement, rows)}
    results, new = [], []
    for row, record in zip(rows, records, strict=True):
        # A key twice in one batch was inserted once: the first asking gets the row, the rest are duplicates.
        row_id = ids.pop((row["source"], row["event_id"]), None)
        if row_id is not None:
            new.append(record)
        results.append(Stored(row_id))
    if any(stored.row_id is not None and row["status"] == RECEIVED for row, stored in zip(rows, results)):
        wakeup.notify(connection, CHANNEL)  # the workers record it at once instead of at their next look
    if new:  # last: the chain's head stays locked until the commit
        audit.append_rows(connection, new, keys)
    return results


class Inbox:
    def __init__(self, db: Database, *, max_batch: int = 256) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        sqlite = db.dialect == "sqlite"
        self._sync = create_sqlite_writer(db.engine.url.render_as_string(hide_password=False)) if sqlite else None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paybot-inbox") if sqlite else None
        if sqlite:
            # The writer thread needs the GIL for moments between SQLite calls; under load the event loop never
            # lets go of it, and the default 5 ms switch interval would stretch every group commit by that much.
            sys.setswitchinterval(min(sys.getswitchinterval(), WRITER_SWITCH_INTERVAL))

    async def store(self, values: dict[str, Any], audit_fields: dict[str, Any]) -> Stored:
        """Store one `webhook_events` row (and its `webhook.received` audit entry); returns after the commit."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        await self._queue.put((values, audit_fields, done))
        return await done

    async def _write_batches(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(0)  # one turn of the loop: requests already read and verified join this commit
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                stored = await self._write(batch)
            except Exception as exc:  # the database failed: every waiting request hears it (a 503)
                log.warning("storing %d webhooks failed: %s", len(batch), exc)
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for (*_, done), result in zip(batch, stored, strict=True):
                    if not done.done():
                        done.set_result(result)
            for _ in batch:
                self._queue.task_done()

    async def _write(self, batch: list[Item]) -> list[Stored]:
        rows = [values for values, _, _ in batch]
        records = [AuditRecord(kind="webhook.received", at=self.db.clock(), **fields) for _, fields, _ in batch]
        return await self.in_transaction(lambda connection: write_batch(connection, rows, records,
                                                                        self.db.audit_keys))

    async def in_transaction(self, work: Callable[[Connection], T], *, background: bool = False) -> T:
        """`work` in one transaction on a synchronous connection: on SQLite on the writer thread (the whole
        transaction one hop, serialised with the group commits; `background`: after every other writer waiting,
        see `Database.write_turn`), elsewhere through the async engine."""
        if self._sync is not None and self._thread is not None:
            engine = self._sync

            def in_thread() -> T:
                with engine.begin() as connection:
                    return work(connection)

            async with self.db.write_turn(background=background):
                return await asyncio.get_running_loop().run_in_executor(self._thread, in_thread)
        async with self.db.engine.begin() as connection:
            return await connection.run_sync(work)

    async def close(self) -> None:
        if self._writer is not None:
            await self._queue.join()  # everything handed in is written (or has failed) before we stop
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._thread is not None and self._sync is not None:
            self._thread.shutdown(wait=True)
            self._sync.dispose()
