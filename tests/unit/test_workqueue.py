"""A work queue past its high-water mark holds back the producers that can wait, until its consumers catch up."""

from __future__ import annotations

import asyncio

from bot.services.workqueue import BatchQueue


async def settled() -> None:
    for _ in range(10):  # turns of the event loop, not time: every ready task runs as far as it can
        await asyncio.sleep(0)


async def test_a_producer_waits_for_room_past_the_high_water_mark_and_goes_on_once_it_is_caught_up():
    gate, handled = asyncio.Event(), list[list[int]]()

    async def handle(batch: list[int]) -> None:
        await gate.wait()
        handled.append(batch)

    queue = BatchQueue("test", handle, consumers=1, capacity=100, max_batch=3, high_water=4)
    for n in range(3):
        assert queue.offer(n)
    await asyncio.wait_for(queue.room(), 1)  # 3 unfinished: below the mark, at once
    assert queue.offer(3) and queue.backlog == 4
    waiting = asyncio.create_task(queue.room())
    await settled()
    assert not waiting.done()  # 4 unfinished: the producer holds back

    gate.set()
    await settled()
    assert waiting.done() and handled[0] == [0, 1, 2]
    await queue.close()
    assert handled == [[0, 1, 2], [3]] and queue.backlog == 0


async def test_without_a_high_water_mark_nobody_waits():
    queue = BatchQueue("test", lambda batch: asyncio.sleep(0), consumers=1, capacity=10, max_batch=5)
    for n in range(10):
        queue.offer(n)
    await asyncio.wait_for(queue.room(), 1)
    await queue.close()
