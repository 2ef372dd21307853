"""A worker recording deferred payments claims the messages it queues in the same transaction, and sends them right
after its commit: no claim of their own, no wait for the worker's next look (`DeliveryWorker.sending_at_once`).
Claimed that way, a message is exactly what `claim` and `renew` would have made of it, crash window included."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bot.app import create_app
from bot.keys import RUNTIME
from bot.services.delivery import DeliveryWorker, Handover
from bot.storage import outbox
from tests.harness import Paybot, stripe_invoice_event
from tests.scenario.test_batch_recording import waiting
from tests.scenario.test_crash_window import possible_duplicates, sent_details
from tests.scenario.test_processes import until


@pytest.fixture
async def paybot(aiohttp_client, settings_for, configs, clock):  # type: ignore[no-untyped-def]
    app = create_app(settings_for(ingest_mode="deferred", worker_concurrency=3), configs=configs, clock=clock,
                     run_worker=False)
    client = await aiohttp_client(app)
    app[RUNTIME].process_here = True  # as `paybot serve`: it records what it answered
    return Paybot(client=client, runtime=app[RUNTIME], clock=clock)


@contextlib.asynccontextmanager
async def running_worker(worker: DeliveryWorker) -> AsyncIterator[DeliveryWorker]:
    """`worker`, running as in `paybot serve`."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    while not worker._running:  # its first round has begun: it takes hand-overs from here on
        await asyncio.sleep(0)
    yield worker
    stop.set()
    await task


@pytest.fixture
async def running(paybot: Paybot) -> AsyncIterator[DeliveryWorker]:
    async with running_worker(paybot.runtime.worker) as worker:
        yield worker


@pytest.fixture
def claimed(monkeypatch):  # type: ignore[no-untyped-def]
    """The ids of the rows the workers' own claims took."""
    ids: list[int] = []
    original = outbox.claim

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        rows = original(*args, **kwargs)
        ids.extend(row.id for row in rows)
        return rows
    monkeypatch.setattr(outbox, "claim", counted)
    return ids


async def test_the_email_goes_on_the_claim_its_recording_made(paybot, running, claimed, sendgrid, slack):
    await paybot.add_customer()
    await paybot.add_invoice()
    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    await paybot.runtime.settle()  # recorded, the email claimed in that transaction and handed to the worker
    await running.finish_sending()

    [email] = [n for n in await paybot.notifications() if n.channel == "sendgrid"]
    assert len(sendgrid.accepted) == 1
    assert (email.status, email.attempts, email.claimed_by) == ("sent", 1, running.worker_id)
    assert email.attempt_started_at is None and email.provider_id
    assert (await sent_details(paybot))[email.id]["attempts"] == 1
    assert email.id not in claimed
    # The finance card waits for Slack's per-channel rate slot: not a plain send, it is left to the worker's claim.
    [card] = [n for n in await paybot.notifications() if n.purpose == "finance_card"]
    assert card.id in claimed or (card.status, card.claimed_by) == ("pending", None)


async def test_a_hand_over_takes_no_more_than_its_room_and_leaves_the_rest_queued(paybot, sendgrid):
    paybot.runtime.process_here = False  # stored, left for the test to record
    await paybot.add_customer()
    for n in range(3):
        await paybot.add_invoice(f"INV-{n}", "10.00")
        assert (await paybot.post_stripe(stripe_invoice_event(f"evt_{n}", number=f"INV-{n}",
                                                              amount_paid=1000))).status == 200
    handover = Handover("w1", timedelta(seconds=60), sendable=lambda channel, payload: channel == "sendgrid",
                        take=lambda rows: min(rows, 2))

    recorded = await paybot.runtime.ingest.process_many(await waiting(paybot), handover)

    assert len(recorded.payment_ids) == 3 and len(recorded.notification_ids) == 6
    emails = [n for n in await paybot.notifications() if n.channel == "sendgrid"]
    assert [(n.status, n.claimed_by, n.attempts) for n in emails] == [("sending", "w1", 1)] * 2 + [("pending", None, 0)]
    assert [n.id for n in recorded.claimed] == [n.id for n in emails[:2]]
    assert {n.status for n in await paybot.notifications() if n.channel == "slack"} == {"pending"}
    assert all(n.attempt_started_at == paybot.clock() for n in emails[:2])


async def test_a_worker_that_dies_after_its_recording_commits_leaves_the_crash_window_as_a_claim_does(
        paybot, sendgrid, clock):
    paybot.runtime.process_here = False
    await paybot.add_customer()
    await paybot.add_invoice()
    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    doomed = Handover("doomed", timedelta(seconds=paybot.runtime.settings.worker_lease_seconds),
                      sendable=lambda channel, payload: channel == "sendgrid", take=lambda rows: rows)
    await paybot.runtime.ingest.process_many(await waiting(paybot), doomed)  # committed; the send never happens

    assert await paybot.deliver() == 1 and sendgrid.accepted == []  # the finance card only: the email is leased
    clock.advance(paybot.runtime.settings.worker_lease_seconds + 1)
    await paybot.deliver()

    [email] = [n for n in await paybot.notifications() if n.channel == "sendgrid"]
    assert len(sendgrid.accepted) == 1 and email.status == "sent"
    assert (await sent_details(paybot))[email.id]["possible_duplicate"] is True  # SendGrid cannot be asked
    assert possible_duplicates(paybot, "sendgrid") == 1


async def test_the_room_taken_counts_in_worker_concurrency_until_given_back(paybot):
    worker = paybot.runtime.worker
    with worker.sending_at_once() as idle:
        assert idle.take(2) == 0  # a worker that is not running takes nothing over: its rows wait for a claim

    async with running_worker(worker):
        with worker.sending_at_once() as first:
            assert first.take(2) == 2
            with worker.sending_at_once() as second:
                assert second.take(5) == 1  # WORKER_CONCURRENCY=3
                assert worker._claim_limit(worker._in_flight) == 0  # nor may the worker's own claims take more
        assert worker._in_flight == 0  # nothing was claimed: the room is back


async def test_a_message_queued_while_the_room_is_full_is_claimed_once_there_is_room(
        aiohttp_client, settings_for, configs, clock, sendgrid):
    # No poll within the test: only the wake-up, kept until there is room to act on it, can make the worker look.
    app = create_app(settings_for(ingest_mode="deferred", worker_concurrency=3, worker_poll_seconds=3600),
                     configs=configs, clock=clock, run_worker=False)
    paybot = Paybot(client=await aiohttp_client(app), runtime=app[RUNTIME], clock=clock)
    await paybot.add_customer()
    await paybot.add_invoice()
    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    worker = paybot.runtime.worker
    async with running_worker(worker):
        with worker.sending_at_once() as full:
            assert full.take(3) == 3  # recordings in progress hold all of WORKER_CONCURRENCY
            await paybot.runtime.ingest.process_many(await waiting(paybot))  # queued, not claimed
            worker.wake()
            for _ in range(5):  # the worker sees the wake-up, and no room to claim in
                await asyncio.sleep(0)
        await until(lambda: sendgrid_accepted(sendgrid), "the email claimed and sent")

    [email] = [n for n in await paybot.notifications() if n.channel == "sendgrid"]
    assert email.status == "sent" and email.claimed_by == worker.worker_id


async def sendgrid_accepted(sendgrid) -> bool:  # type: ignore[no-untyped-def]
    return bool(sendgrid.accepted)
