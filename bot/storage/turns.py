"""SQLite's one writer, taken in turns by this process's writers: first come, first served (SQLite's own busy
handler sleeps up to 100 ms between tries and lets a busy writer starve the others), except that background work
(recording a backlog of payments, which nobody waits on) lets the writers someone is waiting on go first: the
delivery worker, and the webhooks being stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Turns:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()  # fair: waiters get it in the order they asked
        self._asked = 0  # turns asked for and not over, background ones aside
        self._nobody_asked = asyncio.Event()
        self._nobody_asked.set()

    @asynccontextmanager
    async def turn(self, *, background: bool = False) -> AsyncIterator[None]:
        if background:
            while self._asked:
                await self._nobody_asked.wait()
        else:
            self._asked += 1
            self._nobody_asked.clear()
        try:
            async with self._lock:
                yield
        finally:
            if not background:
                self._asked -= 1
                if not self._asked:
                    self._nobody_asked.set()
