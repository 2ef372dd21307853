"""Escalation until acknowledged; the customer's shared channel; Slack's rate limits through the outbox."""

from __future__ import annotations

from bot.storage import models
from tests.fakes.slack import rate_limited
from tests.slack.conftest import paid_invoice


async def test_unacknowledged_escalation_is_posted_again_until_acknowledged(staff):
    await paid_invoice(staff)
    await staff.command("escalate INV-1042 double charge?")
    await staff.bot.deliver()
    worker = staff.bot.runtime.worker
    await worker.run_periodic()  # nothing is due yet
    await staff.bot.deliver()
    assert len(staff.slack.posted("C0ESCALATE")) == 1

    staff.bot.clock.advance(601)  # ESCALATION_REESCALATE_SECONDS=600
    await worker.run_periodic()
    await staff.bot.deliver()
    first, reminder = staff.slack.posted("C0ESCALATE")
    assert "reminder 1: nobody has acknowledged it yet" in reminder["blocks"][0]["text"]["text"]
    assert reminder["text"].startswith("<@U0ONCALL> <!subteam^S0ONCALL>")
    [escalation] = await staff.bot.rows(models.Escalation)
    assert escalation.rounds == 2

    await staff.click(reminder, "escalation_acknowledge", user="U0FIN2")
    acked = staff.card("C0ESCALATE")
    assert acked["blocks"][-1]["elements"][0]["text"].startswith(":white_check_mark: Acknowledged by <@U0FIN2>")
    assert not [b for b in acked["blocks"] if b["type"] == "actions"]
    [entry] = await staff.audit("escalation.acknowledged")
    assert entry.actor == "slack:U0FIN2" and entry.detail == {"escalation_id": escalation.id, "rounds": 2}

    staff.bot.clock.advance(3600)
    await worker.run_periodic()
    await staff.bot.deliver()
    assert len(staff.slack.posted("C0ESCALATE")) == 2  # acknowledged: no more reminders
    rounds = [e.detail["round"] for e in await staff.audit("notification.escalated")]
    assert rounds == [1, 2]


async def test_acknowledging_twice_keeps_the_first(staff):
    await paid_invoice(staff)
    await staff.command("escalate INV-1042")
    await staff.bot.deliver()
    post = staff.card("C0ESCALATE")
    await staff.click(post, "escalation_acknowledge")
    await staff.click(post, "escalation_acknowledge", user="U0FIN2")
    assert staff.slack.replies()[-1] == "Escalation #1 was already acknowledged by <@U0FIN1>."
    assert len(await staff.audit("escalation.acknowledged")) == 1


async def test_re_escalation_stops_after_the_configured_rounds(staff):
    await paid_invoice(staff)
    await staff.command("escalate INV-1042")
    for _ in range(5):
        await staff.bot.deliver()
        staff.bot.clock.advance(601)
        await staff.bot.runtime.worker.run_periodic()
    await staff.bot.deliver()
    assert len(staff.slack.posted("C0ESCALATE")) == 3  # ESCALATION_MAX_ROUNDS=3
    [escalation] = await staff.bot.rows(models.Escalation)
    assert escalation.next_at is None and escalation.acknowledged_at is None


async def test_customer_in_a_shared_channel_gets_a_plain_confirmation(staff):
    await staff.bot.add_customer("C2", "Other Co", "ap@other.example")
    await staff.bot.add_invoice("INV-2001", "80.00", customer_id="C2")
    await paid_invoice(staff, channels=("slack", "email"), slack_channel="C0SHARED")
    [message] = staff.slack.posted("C0SHARED")
    assert "INV-1042" in message["text"] and "$1,250.00" in message["text"]
    assert all(b["type"] != "actions" for b in message["blocks"])  # no staff buttons
    shown = str(message)
    for other in ("Other Co", "INV-2001", "C2", "ap@other.example", "payment_"):
        assert other not in shown


async def test_ratelimited_post_waits_for_retry_after_through_the_outbox(staff):
    await paid_invoice(staff)
    await staff.command("escalate INV-1042")
    staff.slack.script("/chat.postMessage", rate_limited(30))
    await staff.bot.deliver()
    [row] = [n for n in await staff.bot.notifications() if n.purpose == "escalation"]
    assert row.status == "pending" and row.last_error == "slack: ratelimited"
    assert (row.available_at - staff.bot.clock()).total_seconds() >= 30
    staff.bot.clock.advance(29)
    await staff.bot.deliver()
    assert staff.slack.posted("C0ESCALATE") == []
    staff.bot.clock.advance(31)
    await staff.bot.deliver()
    assert len(staff.slack.posted("C0ESCALATE")) == 1


async def test_posts_to_one_channel_are_spaced_a_second_apart(staff):
    await paid_invoice(staff)
    await staff.command("resend INV-1042 sendgrid")
    await staff.command("escalate INV-1042")
    [escalation] = [n for n in await staff.bot.notifications() if n.purpose == "escalation"]
    await staff.command(f"resend n{escalation.id}")  # a second post to C0ESCALATE, queued at the same moment
    await staff.bot.deliver()
    assert len(staff.slack.posted("C0ESCALATE")) == 1
    staff.bot.clock.advance(1)
    await staff.bot.deliver()
    assert len(staff.slack.posted("C0ESCALATE")) == 2


async def test_slack_events_is_404_without_slack_configured(aiohttp_client, settings_for, clock):
    from bot.app import create_app

    client = await aiohttp_client(create_app(settings_for(), configs={}, clock=clock, run_worker=False))
    response = await client.post("/slack/events", data=b"payload=%7B%7D")
    assert response.status == 404
    assert "SLACK_SIGNING_SECRET" in (await response.json())["error"]
