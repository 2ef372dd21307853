"""A bounded in-memory queue drained by a fixed number of consumer tasks: work a request leaves behind for after
its answer, without a task per request. Full, it refuses (`offer` is False) and the caller's fallback applies.
Past its `high_water` mark, callers that can wait (`room`) hold back until the consumers catch up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


async def first_of(*events: asyncio.Event, timeout: float) -> None:
    """Wait until one of `events` is set, or `timeout` seconds."""
    waiters = {asyncio.ensure_future(event.wait()) for event in events}
    _, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()


class WorkQueue(Generic[T]):
    def __init__(self, name: str, handle: Callable[[T], Awaitable[None]], *, consumers: int, capacity: int,
                 high_water: int | None = None) -> None:
        self.name = name
        self.handle = handle
        self.consumers = consumers
        self.high_water = high_water
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize=capacity)
        self._tasks: list[asyncio.Task[None]] = []
        self._unfinished = 0  # offered, not yet handled
        self._room = asyncio.Event()
        self._room.set()

    @property
    def backlog(self) -> int:
        """Items offered and not yet handled (waiting, or being handled)."""
        return self._unfinished

    async def room(self) -> None:
        """Return once fewer than `high_water` items are unfinished: a producer that can wait (a webhook not yet
        stored, its platform holding on) lets the consumers catch up instead of growing the backlog."""
        while self.high_water is not None and self._unfinished >= self.high_water:
            self._room.clear()
            await self._room.wait()

    def _done(self, count: int = 1) -> None:
        self._unfinished -= count
        for _ in range(count):
            self._queue.task_done()
        if self.high_water is None or self._unfinished < self.high_water:
            self._room.set()

    def offer(self, item: T) -> bool:
        """Queue `item` unless the queue is full; never blocks."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        self._unfinished += 1
        if not self._tasks:  # started on first use: the event loop is the one serving requests
            self._tasks = [asyncio.create_task(self._consume()) for _ in range(self.consumers)]
        return True

    async def _consume(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self.handle(item)
            except Exception:  # nobody to raise to; `handle` says what its fallback is
                log.exception("%s: an item failed", self.name)
            finally:
                self._done()

    async def join(self) -> None:
        """Wait until everything queued so far is handled."""
        await self._queue.join()

    async def close(self) -> None:
        await self.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


class BatchQueue(WorkQueue[T]):
    """A WorkQueue whose consumers take everything waiting, up to `max_batch`, and handle it at once."""

    def __init__(self, name: str, handle_many: Callable[[list[T]], Awaitable[None]], *, consumers: int,
                 capacity: int, max_batch: int, high_water: int | None = None) -> None:
        super().__init__(name, self._unused, consumers=consumers, capacity=capacity, high_water=high_water)
        self.handle_many = handle_many
        self.max_batch = max_batch

    async def _unused(self, item: T) -> None:
        await self.handle_many([item])

    async def _consume(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.handle_many(batch)
            except Exception:  # nobody to raise to; `handle_many` says what its fallback is
                log.exception("%s: a batch of %d failed", self.name, len(batch))
            finally:
                self._done(len(batch))
