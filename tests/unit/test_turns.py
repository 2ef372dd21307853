"""SQLite's writer turns: first come, first served, but background work goes after every writer someone waits on."""

from __future__ import annotations

import asyncio

from bot.storage.turns import Turns


async def settled() -> None:
    for _ in range(10):  # turns of the event loop, not time
        await asyncio.sleep(0)


async def test_background_work_lets_every_waiting_writer_go_first():
    turns, order, release = Turns(), list[str](), asyncio.Event()

    async def write(name: str, background: bool = False, hold: asyncio.Event | None = None) -> None:
        async with turns.turn(background=background):
            order.append(name)
            if hold is not None:
                await hold.wait()

    first = asyncio.create_task(write("webhooks", hold=release))
    await settled()
    recording = asyncio.create_task(write("recording", background=True))
    await settled()
    delivery = asyncio.create_task(write("delivery"))
    more = asyncio.create_task(write("more webhooks"))
    await settled()
    assert order == ["webhooks"]  # the others wait for the turn

    release.set()
    await asyncio.gather(first, recording, delivery, more)
    assert order == ["webhooks", "delivery", "more webhooks", "recording"]


async def test_writers_in_a_hurry_keep_their_order_and_background_work_goes_when_nobody_waits():
    turns, order = Turns(), list[str]()

    async def write(name: str, background: bool = False) -> None:
        async with turns.turn(background=background):
            order.append(name)
            await asyncio.sleep(0)

    await asyncio.gather(write("a"), write("b", background=True), write("c"))
    await write("d", background=True)
    assert order == ["a", "c", "b", "d"]


async def test_writers_that_keep_coming_do_not_starve_background_work():
    turns, order = Turns(), list[str]()

    async def stream() -> None:
        for n in range(50):
            async with turns.turn():
                order.append(f"webhooks {n}")
                await asyncio.sleep(0)

    async def recording() -> None:
        await asyncio.sleep(0)  # once the stream has begun
        async with turns.turn(background=True):
            order.append("recording")

    await asyncio.gather(stream(), recording())
    assert order.index("recording") < 5
