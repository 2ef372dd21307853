"""The delivery worker against fake providers: retries, dead letters, fallbacks, leases, rate limits."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial

import pytest

from bot.services.delivery import DeliveryWorker
from bot.storage import models, outbox
from tests.fakes import sendgrid as sg
from tests.fakes.sendgrid import errors, too_many_requests
from tests.fakes.slack import rate_limited
from tests.harness import stripe_invoice_event


def second_worker(paybot, name: str = "worker-b") -> DeliveryWorker:
    rt = paybot.runtime
    return DeliveryWorker(rt.db, rt.channels, rt.notifier, rt.settings, metrics=rt.metrics, worker_id=name)


async def paid(paybot, **customer):
    await paybot.add_customer(**customer)
    await paybot.add_invoice()
    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200


async def test_rate_limited_then_accepted_sends_one_email(paybot, sendgrid, clock):
    sendgrid.script("/v3/mail/send", too_many_requests(reset_epoch=int(clock().timestamp()) + 30))
    await paid(paybot)
    await paybot.deliver()
    assert sendgrid.accepted == []
    [receipt] = [n for n in await paybot.notifications() if n.channel == "sendgrid"]
    assert receipt.status == "pending" and receipt.available_at >= clock() + timedelta(seconds=30)

    clock.advance(29)
    await paybot.deliver()
    assert sendgrid.accepted == []  # not before SendGrid's reset time
    clock.advance(2)
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    assert len(sendgrid.to("/v3/mail/send")) == 2


async def test_permanent_error_dead_letters_alerts_finance_and_falls_back(paybot, sendgrid, slack, clock):
    sendgrid.script("/v3/mail/send", errors(400, "The from email does not contain a valid address.", "from.email"))
    await paid(paybot, channels=("email", "slack"), slack_channel="C0SHARED")
    await paybot.deliver()
    clock.advance(1)  # the alert waits its turn behind the finance card: one message per second per channel
    await paybot.deliver()

    by_purpose = {(n.purpose, n.channel): n for n in await paybot.notifications()}
    dead = by_purpose[("receipt", "sendgrid")]
    assert dead.status == "dead" and "valid address" in dead.last_error
    assert by_purpose[("receipt", "slack")].status == "sent"  # the customer's next channel
    assert by_purpose[("dead_letter", "slack")].status == "sent"
    [shared] = slack.posted("C0SHARED")
    assert "INV-1042" in shared["text"] and not any(b["type"] == "actions" for b in shared["blocks"])
    alert = [m for m in slack.posted("C0FINANCE") if "Could not deliver" in m["text"]]
    assert len(alert) == 1 and "sendgrid" in alert[0]["text"]
    assert "notification.failed" in await paybot.audit_kinds()


async def test_retries_are_bounded_then_dead(paybot, sendgrid, clock):
    attempts = paybot.runtime.settings.delivery_max_attempts
    sendgrid.script("/v3/mail/send", *[errors(503, "Service Unavailable") for _ in range(attempts)])
    await paid(paybot)
    for _ in range(attempts):
        await paybot.deliver()
        clock.advance(paybot.runtime.settings.retry_max_seconds)
    [receipt] = [n for n in await paybot.notifications() if n.channel == "sendgrid"]
    assert receipt.status == "dead" and receipt.attempts == attempts
    assert sendgrid.accepted == []


async def test_waits_the_provider_asked_for_spend_no_attempts(paybot, sendgrid, clock):
    # Found by benchmarks/soak.py: a message that met SendGrid's rate limit a few times among other faults died
    # of "too many attempts", though a 429 with Retry-After says when to come back, not that the send failed.
    attempts = paybot.runtime.settings.delivery_max_attempts
    sendgrid.script("/v3/mail/send", *[sg.errors(429, "too many requests", None, **{"Retry-After": "5"})
                                       for _ in range(attempts)], sg.errors(500, "Internal Server Error"))
    await paid(paybot)
    for _ in range(attempts + 1):
        await paybot.deliver()
        clock.advance(paybot.runtime.settings.retry_max_seconds)
    [receipt] = [n for n in await paybot.notifications() if n.channel == "sendgrid"]
    assert receipt.status == "pending" and receipt.attempts == 1  # the 500 counted; the 429s did not
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_a_crashed_workers_claim_is_taken_over_and_sent_once(paybot, sendgrid, clock):
    await paid(paybot)
    # a worker claims the batch, then dies before sending
    claimed = await paybot.runtime.db.run(partial(outbox.claim, now=clock(), lease=timedelta(seconds=60),
                                                  worker="doomed", limit=10))
    assert len(claimed) == 2

    assert await paybot.deliver() == 0  # the lease still holds: nobody else may take it
    clock.advance(61)
    assert await second_worker(paybot).run_once() == 2
    assert len(sendgrid.accepted) == 1

    # The doomed worker wakes up and tries to record its stale claim: refused, nothing changes.
    stale = DeliveryWorker(paybot.runtime.db, paybot.runtime.channels, paybot.runtime.notifier,
                           paybot.runtime.settings, metrics=paybot.runtime.metrics, worker_id="doomed")
    await stale.deliver(claimed[0])
    assert len(sendgrid.to("/v3/mail/send")) == 1
    statuses = {n.status for n in await paybot.notifications()}
    assert statuses == {"sent"}


async def test_a_claim_that_runs_out_before_its_send_spends_no_attempt(paybot, sendgrid, clock):
    # Found by benchmarks/soak.py: a batch waiting behind slow sends lost its lease again and again, each claim
    # counted as an attempt, and the message died of "too many attempts" having been tried only a few times.
    await paid(paybot)
    lease = timedelta(seconds=paybot.runtime.settings.worker_lease_seconds)
    for _ in range(paybot.runtime.settings.delivery_max_attempts):
        assert await paybot.runtime.db.run(partial(outbox.claim, now=clock(), lease=lease, worker="slow", limit=10))
        clock.advance(lease.total_seconds() + 1)
    sendgrid.script("/v3/mail/send", errors(503, "Service Unavailable"))
    await paybot.deliver()
    [receipt] = [n for n in await paybot.notifications() if n.channel == "sendgrid"]
    assert receipt.status == "pending" and receipt.attempts == 1  # one send began: one attempt, seven left
    clock.advance(paybot.runtime.settings.retry_max_seconds)
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_concurrent_workers_never_send_one_row_twice(paybot, sendgrid):
    await paybot.add_customer()
    for n in range(6):
        await paybot.add_invoice(f"INV-{n}", "10.00")
        await paybot.post_stripe(stripe_invoice_event(f"evt_{n}", number=f"INV-{n}", amount_paid=1000))
    workers = [second_worker(paybot, f"w{i}") for i in range(3)]
    for _ in range(4):
        await asyncio.gather(*(w.run_once() for w in workers))
    recipients = [m["custom_args"]["payment_id"] for m in sendgrid.accepted]
    assert sorted(recipients) == sorted(set(recipients)) and len(recipients) == 6


async def test_slack_channel_gets_at_most_one_message_per_second(paybot, slack, clock):
    await paybot.add_customer(email="")
    for n in range(3):
        await paybot.add_invoice(f"INV-{n}", "10.00")
        await paybot.post_stripe(stripe_invoice_event(f"evt_{n}", number=f"INV-{n}", amount_paid=1000, email=""))
    await paybot.deliver()
    assert len(slack.posted("C0FINANCE")) == 1
    clock.advance(1)
    await paybot.deliver()
    assert len(slack.posted("C0FINANCE")) == 2
    clock.advance(1)
    await paybot.deliver()
    assert len(slack.posted("C0FINANCE")) == 3
    assert {n.attempts for n in await paybot.notifications()} == {1}  # waiting for a slot is not an attempt


async def test_slack_ratelimited_honours_retry_after(paybot, slack, clock):
    slack.script("/chat.postMessage", rate_limited(retry_after=30))
    await paid(paybot)
    await paybot.deliver()
    [card] = [n for n in await paybot.notifications() if n.channel == "slack"]
    assert card.status == "pending" and card.available_at >= clock() + timedelta(seconds=30)
    clock.advance(30)
    await paybot.deliver()
    assert len(slack.posted("C0FINANCE")) == 1


async def test_unmatched_payment_gets_a_review_card_and_no_customer_message(paybot, sendgrid, slack):
    await paybot.post_stripe(stripe_invoice_event(number="UNKNOWN-1", email="stranger@example.com"))
    await paybot.deliver()
    assert sendgrid.accepted == []
    [card] = slack.posted("C0FINANCE")
    assert "needs review" in card["text"].lower() or "Unmatched" in card["text"]
    actions = [e["action_id"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "payment_match" in actions
    [payment] = await paybot.rows(models.Payment)
    assert payment.match_rule == "unmatched"


def test_backoff_grows_with_jitter_and_respects_retry_after(paybot):
    worker = paybot.runtime.worker
    worker.rng.seed(7)
    delays = [worker.backoff(n, None) for n in range(1, 12)]
    base, cap = paybot.runtime.settings.retry_base_seconds, paybot.runtime.settings.retry_max_seconds
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(cap, base * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert worker.backoff(1, 120.0) == 120.0
    # A provider that says when is taken at its word however often it said so: a CRM's seventh 429 with
    # Retry-After: 7 waits seven seconds, not the worker's grown backoff.
    assert worker.backoff(7, 7.0) == 7.0 and worker.backoff(11, 0.0) == 0.0


async def test_periodic_jobs_run_on_the_injected_clock(paybot, clock):
    runs: list[object] = []

    async def job() -> None:
        runs.append(clock())

    async def broken() -> None:
        raise RuntimeError("a failing job must not stop the others")

    worker = paybot.runtime.worker
    worker.every("broken", timedelta(minutes=1), broken)
    worker.every("sweep", timedelta(minutes=5), job)
    await worker.run_periodic()
    clock.advance(60)
    await worker.run_periodic()
    clock.advance(240)
    await worker.run_periodic()
    assert len(runs) == 2


async def test_postgres_workers_hear_of_new_rows_at_once(paybot, sendgrid, database_url):
    """LISTEN/NOTIFY: a worker on another connection wakes at the commit, not at its next poll (an hour here)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no LISTEN/NOTIFY: one process, whose web handler wakes its own worker directly")
    rt = paybot.runtime
    sleepy = DeliveryWorker(rt.db, rt.channels, rt.notifier, rt.settings.model_copy(update={"worker_poll_seconds": 3600}),
                            metrics=rt.metrics, worker_id="sleepy")
    claims: asyncio.Queue[int] = asyncio.Queue()
    claim = sleepy._claim

    async def observed(limit: int):  # type: ignore[no-untyped-def]
        claimed = await claim(limit)
        claims.put_nowait(len(claimed))
        return claimed

    sleepy._claim = observed  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(sleepy.run(stop))
    try:
        assert await asyncio.wait_for(claims.get(), 30) == 0  # its first look, listening by then: nothing yet
        await paid(paybot)  # the web handler wakes only its own worker: `sleepy` hears the NOTIFY
        assert await asyncio.wait_for(claims.get(), 30) >= 1
    finally:
        stop.set()
        await task
    assert len(sendgrid.accepted) == 1  # its claim was delivered before it stopped


async def test_a_send_whose_row_was_taken_over_meanwhile_is_not_recorded_over_the_new_claim(paybot, sendgrid, clock):
    """A stalled worker's lease runs out mid-send and another worker claims the row: the first worker's outcome is
    dropped (the new owner asks the provider before sending), not written over the new claim."""
    rt = paybot.runtime

    class Stalls:
        name = "sendgrid"

        def rate_limit(self, payload):  # type: ignore[no-untyped-def]
            return None

        async def send(self, payload, *, key: str):  # type: ignore[no-untyped-def]
            result = await rt.channels["sendgrid"].send(payload, key=key)
            clock.advance(rt.settings.worker_lease_seconds + 1)
            taken = await rt.db.run(partial(outbox.claim, now=clock(), lease=timedelta(seconds=60), worker="b",
                                            limit=10))
            assert "sendgrid" in [row.channel for row in taken]
            return result

    await paid(paybot)
    stalled = DeliveryWorker(rt.db, {**rt.channels, "sendgrid": Stalls()}, rt.notifier, rt.settings,
                             metrics=rt.metrics, worker_id="a")
    await stalled.run_once()
    [receipt] = [n for n in await paybot.notifications() if n.channel == "sendgrid"]
    assert receipt.status == "sending" and receipt.claimed_by == "b" and receipt.sent_at is None
    assert "notification.sent" not in await paybot.audit_kinds()
    assert len(sendgrid.accepted) == 1
