"""A worker that dies after the provider accepted a message and before it recorded that: the crash window.

The next worker to take the row over asks the provider first where it can answer (Slack: the message's metadata
in `conversations.history`; SendGrid: an Event Webhook report that named the message). Where nobody can tell, the
message is sent again, at most once per crash, and the second send is counted and audited as a possible duplicate.
"""

from __future__ import annotations

import pytest

from bot.integrations.channels.base import Channel
from bot.integrations.channels.sendgrid import SendGridSettings
from bot.integrations.http import Delivery, Sent
from bot.services.delivery import DeliveryWorker
from bot.storage import models
from tests.fakes.sendgrid import API_KEY, errors
from tests.fakes.sendgrid_events import EventSigner, body, event
from tests.fakes.slack import rate_limited, slack_error
from tests.harness import stripe_invoice_event

SIGNER = EventSigner()


class WorkerDied(Exception):
    pass


class DiesAfterSending:
    """The provider accepts the message; then the worker's process dies before `_finish` can commit."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.name = channel.name

    def rate_limit(self, payload):  # type: ignore[no-untyped-def]
        return self.channel.rate_limit(payload)

    async def send(self, payload, *, key: str) -> Delivery:  # type: ignore[no-untyped-def]
        assert isinstance(await self.channel.send(payload, key=key), Sent)
        raise WorkerDied


def worker(paybot, name: str, dies_on: str | None = None) -> DeliveryWorker:
    rt = paybot.runtime
    channels = {n: DiesAfterSending(c) if n == dies_on else c for n, c in rt.channels.items()}
    return DeliveryWorker(rt.db, channels, rt.notifier, rt.settings, metrics=rt.metrics, worker_id=name)


async def crash_mid_send(paybot, clock, channel: str, **customer) -> models.Notification:
    """A payment; a worker sends its first `channel` message and dies; the lease runs out. Returns that row."""
    await paybot.add_customer(**customer)
    await paybot.add_invoice()
    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    await paybot.runtime.settle()
    with pytest.raises(WorkerDied):
        await worker(paybot, "doomed", dies_on=channel).run_once()
    [crashed] = [n for n in await paybot.notifications() if n.attempt_started_at is not None]
    assert crashed.channel == channel and crashed.status == "sending"
    clock.advance(paybot.runtime.settings.worker_lease_seconds + 1)
    return crashed


async def sent_details(paybot) -> dict[int, dict]:
    return {e.detail["notification_id"]: e.detail
            for e in await paybot.rows(models.AuditEntry, models.AuditEntry.kind == "notification.sent")}


def possible_duplicates(paybot, channel: str) -> float:
    value = paybot.runtime.metrics.registry.get_sample_value("paybot_possible_duplicates_total",
                                                             {"channel": channel})
    return value or 0.0


async def test_slack_message_accepted_before_the_crash_is_found_not_posted_again(paybot, slack, clock):
    crashed = await crash_mid_send(paybot, clock, "slack", email="", channels=("slack",), slack_channel="C0SHARED")
    [first] = slack.posted(crashed.recipient)
    assert first["metadata"] == {"event_type": "paybot_notification", "event_payload": {"key": crashed.idempotency_key}}

    await worker(paybot, "survivor").run_once()

    assert [m["ts"] for m in slack.posted(crashed.recipient)] == [first["ts"]]  # not posted twice
    assert len(slack.posted("C0FINANCE")) == len(slack.posted("C0SHARED")) == 1  # the other row: sent normally
    rows = {n.id: n for n in await paybot.notifications()}
    assert {n.status for n in rows.values()} == {"sent"}
    assert rows[crashed.id].provider_id == f"{crashed.recipient}:{first['ts']}"
    assert rows[crashed.id].attempt_started_at is None
    assert (await sent_details(paybot))[crashed.id]["found_at_provider"] is True
    assert len(slack.to("/conversations.history")) == 1  # only the row whose attempt died was looked up
    assert possible_duplicates(paybot, "slack") == 0


async def test_slack_history_rate_limited_asks_again_later_and_never_posts_blind(paybot, slack, clock):
    crashed = await crash_mid_send(paybot, clock, "slack")
    slack.script("/conversations.history", rate_limited(retry_after=30))

    await worker(paybot, "survivor").run_once()
    row = next(n for n in await paybot.notifications() if n.id == crashed.id)
    assert row.status == "pending" and row.attempt_started_at == crashed.attempt_started_at  # still to be asked
    assert len(slack.posted(crashed.recipient)) == 1

    clock.advance(paybot.runtime.settings.retry_max_seconds)
    await worker(paybot, "survivor").run_once()
    assert len(slack.posted(crashed.recipient)) == 1
    assert next(n for n in await paybot.notifications() if n.id == crashed.id).status == "sent"


async def test_slack_without_history_scope_posts_again_once_flagged_as_possible_duplicate(paybot, slack, clock):
    crashed = await crash_mid_send(paybot, clock, "slack")
    slack.script("/conversations.history", slack_error("missing_scope"))

    await worker(paybot, "survivor").run_once()
    assert len(slack.posted(crashed.recipient)) == 2
    assert (await sent_details(paybot))[crashed.id]["possible_duplicate"] is True
    assert possible_duplicates(paybot, "slack") == 1


async def test_sendgrid_cannot_be_asked_so_the_email_goes_at_most_twice_and_is_counted(paybot, sendgrid, clock):
    crashed = await crash_mid_send(paybot, clock, "sendgrid")
    [first] = sendgrid.accepted
    assert first["personalizations"][0]["custom_args"]["notification_key"] == crashed.idempotency_key

    await worker(paybot, "survivor").run_once()
    await worker(paybot, "survivor").run_once()
    assert len(sendgrid.accepted) == 2  # one duplicate for one crash, and no more
    detail = (await sent_details(paybot))[crashed.id]
    assert detail["possible_duplicate"] is True
    assert possible_duplicates(paybot, "sendgrid") == 1
    assert {n.status for n in await paybot.notifications()} == {"sent"}


async def test_a_resend_that_fails_after_a_crash_still_flags_the_one_that_gets_through(paybot, sendgrid, clock):
    # Found by benchmarks/soak.py: the re-send after the crash met a 500, the next attempt went out as a plain send,
    # and the second email was neither audited nor counted as a possible duplicate.
    crashed = await crash_mid_send(paybot, clock, "sendgrid")
    sendgrid.script("/v3/mail/send", errors(500, "Internal Server Error"))
    await worker(paybot, "survivor").run_once()
    row = next(n for n in await paybot.notifications() if n.id == crashed.id)
    assert row.status == "pending" and row.attempt_started_at == crashed.attempt_started_at  # still in doubt

    clock.advance(paybot.runtime.settings.retry_max_seconds)
    await worker(paybot, "survivor").run_once()
    assert len(sendgrid.accepted) == 2
    assert (await sent_details(paybot))[crashed.id]["possible_duplicate"] is True
    assert possible_duplicates(paybot, "sendgrid") == 1


class TestSendGridEventWebhook:
    @pytest.fixture
    def configs(self, configs, sendgrid):
        return configs | {"sendgrid": SendGridSettings(
            _env_file=None, api_key=API_KEY, from_email="billing@weld.example", event_public_key=SIGNER.public_key,
            base_url=str(sendgrid.server.make_url("/")))}

    async def test_a_processed_event_that_arrived_before_the_takeover_prevents_the_resend(self, paybot, sendgrid,
                                                                                         clock):
        crashed = await crash_mid_send(paybot, clock, "sendgrid")
        [mail] = sendgrid.accepted
        ts = int(clock().timestamp())
        raw = body(event("processed", mail, ts))
        answer = await paybot.client.post("/callbacks/sendgrid", data=raw, headers=SIGNER.headers(raw, ts))
        assert answer.status == 200

        await worker(paybot, "survivor").run_once()
        assert len(sendgrid.accepted) == 1
        row = next(n for n in await paybot.notifications() if n.id == crashed.id)
        assert (row.status, row.delivery_status) == ("sent", "processed")
        assert (await sent_details(paybot))[crashed.id]["found_at_provider"] is True
        assert possible_duplicates(paybot, "sendgrid") == 0


async def test_an_attempt_that_ended_normally_leaves_no_mark(paybot, sendgrid, slack):
    await paybot.add_customer()
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    await paybot.deliver()
    assert {n.attempt_started_at for n in await paybot.notifications()} == {None}
    assert slack.to("/conversations.history") == []
