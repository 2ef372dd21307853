"""INGEST_MODE=deferred: events group-committed before the answer, payments recorded right after; a crash in
between loses nothing."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.keys import RUNTIME
from bot.storage import models
from bot.storage.audit import verify
from tests.harness import Paybot, stripe_invoice_event


@pytest.fixture
async def paybot(aiohttp_client, settings_for, configs, clock):  # type: ignore[no-untyped-def]
    app = create_app(settings_for(ingest_mode="deferred"), configs=configs, clock=clock, run_worker=False)
    client = await aiohttp_client(app)
    app[RUNTIME].process_here = True  # as `paybot serve` (its worker runs; the tests drive it by hand)
    return Paybot(client=client, runtime=app[RUNTIME], clock=clock)


async def test_answered_after_the_event_commits_then_thanked(paybot, sendgrid, slack):
    await paybot.add_customer()
    await paybot.add_invoice()
    response = await paybot.post_stripe(stripe_invoice_event())
    assert response.status == 200
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status in ("accepted", "processed")  # stored before the answer; processed just after
    await paybot.deliver()
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "processed"
    assert len(sendgrid.accepted) == 1 and len(slack.posted("C0FINANCE")) == 1


async def test_a_burst_is_group_committed_with_duplicates_seen(paybot, sendgrid):
    await paybot.add_customer()
    for n in range(20):
        await paybot.add_invoice(f"INV-{n}", "10.00")
    events = [stripe_invoice_event(f"evt_{n}", number=f"INV-{n}", amount_paid=1000) for n in range(20)]
    events += [events[3], events[7]]  # retries arriving in the same burst
    responses = await asyncio.gather(*(paybot.post_stripe(e) for e in events))
    assert [r.status for r in responses] == [200] * 22
    duplicates = [(await r.json())["duplicate"] for r in responses]
    assert duplicates.count(True) == 2
    await paybot.deliver()
    assert len(sendgrid.accepted) == 20
    async with paybot.runtime.db.read() as session:
        result = await verify(session)
    assert result.broken is None and result.count > 20


async def test_an_event_whose_process_died_is_recorded_by_the_sweep(paybot, sendgrid, clock):
    await paybot.add_customer()
    await paybot.add_invoice()
    body = json.dumps(stripe_invoice_event()).encode()
    received = await paybot.runtime.sources["stripe"].parse(await _stored_only(paybot, body))
    assert received.payments  # the event is in the database, its payments nowhere: the process died here

    await paybot.runtime.process_waiting()
    assert sendgrid.accepted == [] and (await paybot.rows(models.Payment)) == []  # too fresh: maybe in flight
    clock.advance(31)
    await paybot.runtime.process_waiting()
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    async with paybot.runtime.db.read() as session:
        assert await session.scalar(select(models.WebhookEvent.status)) == "processed"


async def _stored_only(paybot, body: bytes, status: str = "accepted"):
    """Store an event the way `accept` does, without the processing that follows the answer."""
    from multidict import CIMultiDict

    from bot.integrations.sources.base import InboundRequest
    from bot.services.ingest import event_values, received_audit

    request = InboundRequest(method="POST", url="", headers=CIMultiDict({"Content-Type": "application/json"}),
                             query={}, body=body, received_at=paybot.clock())
    received = await paybot.runtime.sources["stripe"].parse(request)
    stored = await paybot.runtime.ingest.inbox.store(event_values("stripe", request, received, status),
                                                     received_audit("stripe", received))
    assert stored.row_id is not None
    return request


async def test_a_storage_failure_is_a_503_not_a_500(paybot):
    from sqlalchemy import text

    async def rename(old: str, new: str) -> None:
        async with paybot.runtime.db.engine.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))

    await rename("webhook_events", "webhook_events_away")  # where the events go is gone
    try:
        response = await paybot.post_stripe(stripe_invoice_event())
    finally:
        await rename("webhook_events_away", "webhook_events")
    assert response.status == 503
    assert "retry" in (await response.json())["error"]


async def test_the_sweep_pages_through_a_backlog(paybot, sendgrid, clock):
    await paybot.add_customer()
    for n in range(5):
        await paybot.add_invoice(f"INV-{n}", "10.00")
        body = json.dumps(stripe_invoice_event(f"evt_{n}", number=f"INV-{n}", amount_paid=1000)).encode()
        await _stored_only(paybot, body)
    clock.advance(31)
    ingest = paybot.runtime.ingest
    first = await ingest.process_waiting(clock() - abandoned(), after_id=0, limit=2)
    second = await ingest.process_waiting(clock() - abandoned(), after_id=first.last_seen, limit=2)
    assert first.last_seen is not None and second.last_seen is not None and second.last_seen > first.last_seen
    await paybot.runtime.process_waiting()  # the rest, page by page
    await paybot.deliver()
    assert len(sendgrid.accepted) == 5


def abandoned():
    from bot.runtime import ABANDONED_AFTER

    return ABANDONED_AFTER


async def test_a_web_process_without_a_worker_leaves_payments_to_the_workers(paybot, sendgrid):
    """`paybot serve --no-worker` with INGEST_MODE=deferred only stores; a worker records at once, no grace."""
    paybot.runtime.process_here = False
    await paybot.add_customer()
    await paybot.add_invoice()
    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    await paybot.runtime.settle()
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "received" and await paybot.rows(models.Payment) == []
    await paybot.runtime.process_waiting()  # a worker's round
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_a_burst_is_recorded_by_a_fixed_number_of_consumers_not_a_task_per_request(paybot, sendgrid):
    from bot.runtime import PROCESSING_CONCURRENCY

    await paybot.add_customer()
    for n in range(30):
        await paybot.add_invoice(f"INV-{n}", "10.00")
    loop = asyncio.get_running_loop()
    default = loop.get_task_factory()
    started: list[str] = []

    def counting(loop, coro, **kwargs):  # type: ignore[no-untyped-def]
        started.append(getattr(coro, "__qualname__", ""))
        return default(loop, coro, **kwargs) if default is not None else asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        events = [stripe_invoice_event(f"evt_{n}", number=f"INV-{n}", amount_paid=1000) for n in range(30)]
        responses = await asyncio.gather(*(paybot.post_stripe(e) for e in events))
        await paybot.deliver()
    finally:
        loop.set_task_factory(default)
    assert [r.status for r in responses] == [200] * 30
    assert len(sendgrid.accepted) == 30
    ours = [name for name in started if name.startswith(("Runtime.", "WorkQueue.", "BatchQueue.", "Ingest."))]
    assert 0 < len(ours) <= PROCESSING_CONCURRENCY, ours


async def test_two_workers_sweeping_at_once_record_each_event_once(paybot, sendgrid):
    """Worker A holds a page while it reads it; worker B's sweep at that moment takes the next page instead of
    waiting for A's (PostgreSQL: `FOR UPDATE SKIP LOCKED`) or recording A's twice (either engine)."""
    await paybot.add_customer()
    for n in range(4):
        await paybot.add_invoice(f"INV-{n}", "10.00")
        body = json.dumps(stripe_invoice_event(f"evt_{n}", number=f"INV-{n}", amount_paid=1000)).encode()
        await _stored_only(paybot, body, status="received")  # left for the workers (`serve --no-worker`)
    ingest, source = paybot.runtime.ingest, paybot.runtime.sources["stripe"]
    parse, reading, go_on = source.parse, asyncio.Event(), asyncio.Event()

    async def held_at_first(request):  # type: ignore[no-untyped-def]
        if not reading.is_set():  # A's first event: A stops here, its page claimed, until B is done
            reading.set()
            await go_on.wait()
        return await parse(request)

    source.parse = held_at_first
    a = asyncio.create_task(ingest.process_waiting(paybot.clock(), after_id=0, limit=2))
    await reading.wait()
    b = await ingest.process_waiting(paybot.clock(), after_id=0, limit=2)
    go_on.set()
    a_done = await a
    assert not set(a_done.payment_ids) & set(b.payment_ids)
    if paybot.runtime.db.dialect == "postgresql":  # B took the page A did not hold, without waiting for A
        assert len(a_done.payment_ids) == len(b.payment_ids) == 2
    await paybot.runtime.process_waiting()  # SQLite: B recorded A's page (one writer), A found it done; the rest
    payments = await paybot.rows(models.Payment)
    assert sorted(p.webhook_event_id for p in payments) == [e.id for e in await paybot.rows(models.WebhookEvent)]
    await paybot.deliver()
    assert len(sendgrid.accepted) == 4


async def test_workers_hear_of_events_left_for_them_at_once(paybot, sendgrid, monkeypatch):
    """`serve --no-worker` on PostgreSQL: the commit that stores an event wakes the workers (NOTIFY), who record it
    then, not at their next look (an hour here)."""
    if paybot.runtime.db.dialect != "postgresql":
        pytest.skip("SQLite has no LISTEN/NOTIFY: one process, which records what it accepts itself")
    import bot.runtime
    from datetime import timedelta

    monkeypatch.setattr(bot.runtime, "WAITING_SWEEP", timedelta(hours=1))
    runtime, ingest = paybot.runtime, paybot.runtime.ingest
    runtime.process_here = False
    await paybot.add_customer()
    await paybot.add_invoice()
    looked, recorded = asyncio.Event(), asyncio.Event()
    sweep = ingest.process_waiting

    async def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        done = await sweep(*args, **kwargs)
        looked.set()  # the first look is over: the worker listens and waits
        if done.payment_ids:
            recorded.set()
        return done

    monkeypatch.setattr(ingest, "process_waiting", watched)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.record_waiting(stop))
    try:
        await asyncio.wait_for(looked.wait(), 30)
        assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
        await asyncio.wait_for(recorded.wait(), 30)  # a bound for a broken build, not a measurement
    finally:
        stop.set()
        await task
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "processed"

async def test_while_the_outbox_is_behind_recording_waits_and_new_webhooks_wait_for_recording(paybot, sendgrid,
                                                                                             slack, monkeypatch):
    from bot import runtime as runtime_module
    from bot.storage import outbox

    monkeypatch.setattr(runtime_module, "DELIVERY_AHEAD", 1)  # one message due is already behind
    monkeypatch.setattr(runtime_module, "DELIVERY_PATIENCE", 20.0)  # does not run out here
    paybot.runtime.recording.high_water = 1  # one event answered and not recorded: the next webhook waits
    looks, looked_again = [], asyncio.Event()
    due = outbox.due

    async def counted(*args):  # type: ignore[no-untyped-def]
        looks.append(await due(*args))
        if len(looks) >= 3:
            looked_again.set()
        return looks[-1]
    monkeypatch.setattr(outbox, "due", counted)

    await paybot.add_customer()
    for n in range(3):
        await paybot.add_invoice(f"INV-{n}", "10.00")
    events = [stripe_invoice_event(f"evt_{n}", number=f"INV-{n}", amount_paid=1000) for n in range(3)]
    assert (await paybot.post_stripe(events[0])).status == 200
    await paybot.runtime.settle()
    assert len(await paybot.rows(models.Payment)) == 1  # nothing was due: recorded at once

    assert (await paybot.post_stripe(events[1])).status == 200  # stored and answered; its recording waits
    third = asyncio.create_task(paybot.post_stripe(events[2]))
    await asyncio.wait_for(looked_again.wait(), 30)  # it looked, and looked again: the first one's messages wait
    assert len(await paybot.rows(models.Payment)) == 1
    assert not third.done() and len(await paybot.rows(models.WebhookEvent)) == 2  # not even stored yet

    await paybot.runtime.worker.run_once()  # the worker sends the first payment's email and card
    assert (await asyncio.wait_for(third, 30)).status == 200
    while paybot.runtime.recording.backlog:  # each payment's messages sent lets the next one be recorded
        await paybot.runtime.worker.run_once()
    await paybot.deliver()
    assert len(await paybot.rows(models.Payment)) == 3 and len(sendgrid.accepted) == 3
