"""SQLite's one writer, taken in turns by this process's writers: first come, first served (SQLite's own busy
handler sleeps up to 100 ms between tries and lets a busy writer starve the others), except that background work
(recording a backlog of payments, which nobody waits on) lets the writers someone is waiting on go first: the
delivery worker, and the webhooks being stored. Those that asked before it, that is: a stream of writers that
keeps coming never starves it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Turns:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()  # fair: waiters get it in the order they asked
        self._asked = self._over = 0  # turns asked for, and turns over, background ones aside
        self._moved = asyncio.Event()  # set (and replaced) whenever a turn is over

    @asynccontextmanager
    async def turn(self, *, background: bool = False) -> AsyncIterator[None]:
        if background:
            ahead = self._asked
            while self._over < ahead:  # the lock is fair: they are over in the order they asked
                await self._moved.wait()
        else:
            self._asked += 1
        try:
            async with self._lock:
                yield
        finally:
            if not background:
                self._over += 1
                moved, self._moved = self._moved, asyncio.Event()
                moved.set()
