"""Group commit for webhooks (`INGEST_MODE=deferred`): events that arrive together are stored in one transaction,
and each request is answered only after the commit that holds its event.

One writer task drains the queue: while it waits for a commit, newcomers gather, and the next transaction takes
them all. At low load a batch is one event and nothing waits; under load a commit serves hundreds. On SQLite the
batch is written in one call (`Database.run`), not a hop to the async driver's thread per statement.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.engine import Connection

from bot.domain.audit import AuditRecord, Keyring
from bot.storage import audit, models, wakeup
from bot.storage.database import Database
from bot.storage.sql import insert_or_ignore

log = logging.getLogger(__name__)
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
    ids = {(source, event_id): row_id
           for row_id, source, event_id in connection.execute(new_events(connection.dialect.name), rows)}
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


@cache
def new_events(dialect: str) -> Any:
    """The batch's INSERT, built once per engine kind (building it cost as much as running it)."""
    table = cast(Table, models.WebhookEvent.__table__)
    return insert_or_ignore(dialect, table, None).returning(table.c.id, table.c.source, table.c.event_id)


class Inbox:
    def __init__(self, db: Database, *, max_batch: int = 256) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

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
        return await self.db.run(lambda connection: write_batch(connection, rows, records, self.db.audit_keys))

    async def close(self) -> None:
        if self._writer is not None:
            await self._queue.join()  # everything handed in is written (or has failed) before we stop
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
