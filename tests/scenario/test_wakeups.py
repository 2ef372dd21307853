"""How soon the delivery worker acts: without waiting for sends still out (the NOTIFY that wakes another
process's workers is tested in test_deferred_ingest.py and test_delivery.py). Every worker here polls once an hour on a clock that
does not move, so only a wake-up can explain what it does; the time-outs only keep a broken build from hanging."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


from bot.integrations.channels.base import Channel
from bot.integrations.http import Delivery
from bot.services.delivery import DeliveryWorker
from tests.harness import stripe_invoice_event

HANG_GUARD = 30.0  # seconds; never reached when the code works


def observe(queue: asyncio.Queue[Any], run: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """`run`, telling `queue` each time it has finished."""
    async def observed(*args: Any) -> Any:
        result = await run(*args)
        queue.put_nowait(args)
        return result
    return observed


async def next_of(queue: asyncio.Queue[Any]) -> Any:
    return await asyncio.wait_for(queue.get(), HANG_GUARD)


class HeldFirst:
    """A channel whose first send waits until the test lets it go (a slow provider call)."""

    def __init__(self, channel: Channel) -> None:
        self.channel, self.name = channel, channel.name
        self.release, self.first_started = asyncio.Event(), asyncio.Event()

    def rate_limit(self, payload: Any) -> Any:
        return self.channel.rate_limit(payload)

    async def send(self, payload: Any, *, key: str) -> Delivery:
        if not self.first_started.is_set():
            self.first_started.set()
            await self.release.wait()
        return await self.channel.send(payload, key=key)


async def test_a_message_queued_while_a_send_is_out_is_sent_without_waiting_for_it(paybot, sendgrid, configs):
    """Claims go on while an earlier claim's send is out: the second email is accepted before the first."""
    rt = paybot.runtime
    held = HeldFirst(rt.channels["sendgrid"])
    worker = DeliveryWorker(rt.db, {**rt.channels, "sendgrid": held}, rt.notifier,
                            rt.settings.model_copy(update={"worker_poll_seconds": 3600}), metrics=rt.metrics,
                            worker_id="pipelined")
    delivered: asyncio.Queue[Any] = asyncio.Queue()
    worker._deliver_claimed = observe(delivered, worker._deliver_claimed)  # type: ignore[method-assign]
    await paybot.add_customer(email="first@example.com")
    await paybot.add_customer("C2", email="second@example.com")
    await paybot.add_invoice()
    await paybot.add_invoice("INV-2", customer_id="C2")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
        worker.wake()  # what the web handler does for its own worker
        await asyncio.wait_for(held.first_started.wait(), HANG_GUARD)
        second = stripe_invoice_event("evt_2", number="INV-2", id="in_2", customer="cus_2", email="second@example.com")
        assert (await paybot.post_stripe(second)).status == 200
        worker.wake()
        await next_of(delivered)
        assert [to["email"] for m in sendgrid.accepted for p in m["personalizations"] for to in p["to"]] == \
            ["second@example.com"]
        held.release.set()
        await next_of(delivered)
        assert len(sendgrid.accepted) == 2
    finally:
        held.release.set()
        stop.set()
        await task
