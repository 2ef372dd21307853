"""How soon the delivery worker acts: at once when told (a NOTIFY from another process on PostgreSQL, a direct
wake-up in its own), and without waiting for sends still out. Every worker here polls once an hour on a clock that
does not move, so only a wake-up can explain what it does; the time-outs only keep a broken build from hanging."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot.app import create_app
from bot.integrations.channels.base import Channel
from bot.integrations.http import Delivery
from bot.keys import RUNTIME
from bot.services.delivery import DeliveryWorker
from bot.storage import models
from tests.harness import Paybot, stripe_invoice_event

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


@pytest.fixture
async def web_without_worker(aiohttp_client, settings_for, configs, clock):  # type: ignore[no-untyped-def]
    """`paybot serve --no-worker` (deferred): events are stored for a worker, which polls once an hour."""
    settings = settings_for(ingest_mode="deferred", worker_poll_seconds=3600)
    app = create_app(settings, configs=configs, clock=clock, run_worker=False)
    client = await aiohttp_client(app)
    app[RUNTIME].process_here = False
    return Paybot(client=client, runtime=app[RUNTIME], clock=clock)


async def test_events_left_for_workers_wake_a_listening_worker_at_once(web_without_worker, sendgrid, database_url):
    """The web process's commit NOTIFYs the workers: the waiting events are recorded and the email sent now, not at
    the next sweep."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no LISTEN/NOTIFY (and `serve --no-worker` needs PostgreSQL's workers)")
    paybot = web_without_worker
    worker = paybot.runtime.worker
    [sweep] = [job for job in worker.periodic if job.name == "process-waiting-webhooks"]
    swept: asyncio.Queue[Any] = asyncio.Queue()
    delivered: asyncio.Queue[Any] = asyncio.Queue()
    sweep.run = observe(swept, sweep.run)
    worker._deliver_claimed = observe(delivered, worker._deliver_claimed)  # type: ignore[method-assign]
    await paybot.add_customer()
    await paybot.add_invoice()
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await next_of(swept)  # the first round runs every job; from here on the clock never makes it due again
        assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
        [event] = await paybot.rows(models.WebhookEvent)
        assert event.status == "received"  # left for a worker
        await next_of(swept)  # woken by the NOTIFY
        await next_of(delivered)
        assert len(sendgrid.accepted) == 1
    finally:
        stop.set()
        await task


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
