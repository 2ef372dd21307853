"""Group commit for webhooks (`INGEST_MODE=deferred`): events that arrive together are stored in one transaction,
and each request is answered only after the commit that holds its event.

One writer task drains the queue: while it waits for a commit, newcomers gather, and the next transaction takes
them all. At low load a batch is one event and nothing waits; under load a commit serves hundreds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from bot.storage import models
from bot.storage.database import Database
from bot.storage.sql import insert_or_ignore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stored:
    row_id: int | None  # None: the event was stored before (a duplicate)


class Inbox:
    def __init__(self, db: Database, *, max_batch: int = 256) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[dict[str, Any], dict[str, Any], asyncio.Future[Stored]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def store(self, values: dict[str, Any], audit: dict[str, Any]) -> Stored:
        """Store one `webhook_events` row (and its `webhook.received` audit entry); returns after the commit."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        await self._queue.put((values, audit, done))
        return await done

    async def _write_batches(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(0)  # one turn of the loop: requests already read and verified join this commit
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                stored = await self._write([(values, audit) for values, audit, _ in batch])
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

    async def _write(self, batch: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[Stored]:
        """INSERT … ON CONFLICT DO NOTHING RETURNING for the whole batch at once, then the audit entries."""
        async with self.db.transaction() as uow:
            table = models.WebhookEvent.__table__
            # Core executemany ("insertmanyvalues"): one cached statement, whatever the batch's size.
            statement = insert_or_ignore(uow.session, table, None).returning(table.c.id, table.c.source,
                                                                             table.c.event_id)
            connection = await uow.session.connection()
            inserted = await connection.execute(statement, [values for values, _ in batch])
            ids = {(source, event_id): row_id for row_id, source, event_id in inserted}
            results = []
            for values, audit in batch:
                # A key twice in one batch was inserted once: the first asking gets the row, the rest are duplicates.
                row_id = ids.pop((values["source"], values["event_id"]), None)
                if row_id is not None:
                    uow.audit("webhook.received", **audit)
                results.append(Stored(row_id))
            return results

    async def close(self) -> None:
        if self._writer is not None:
            await self._queue.join()  # everything handed in is written (or has failed) before we stop
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

