"""Who may act, signatures, and Slack's retries: nothing is done twice, nothing for strangers."""

from __future__ import annotations

from bot.storage import models
from tests.slack.conftest import SIGNING_SECRET, paid_invoice


async def test_a_non_finance_user_is_refused_politely_and_audited(staff):
    card = await paid_invoice(staff)
    await staff.command("resend INV-1042", user="U0INTERN")
    await staff.click(card, "payment_resend", user="U0INTERN")
    command, button = staff.slack.replies()
    assert command == button and command.startswith("Sorry, that is only for the finance team")
    refused = await staff.audit("staff.refused")
    assert [(r.actor, r.detail["action"]) for r in refused] == [("slack:U0INTERN", "command"),
                                                               ("slack:U0INTERN", "payment_resend")]
    assert await staff.audit("notification.resent") == []
    assert len([n for n in await staff.bot.notifications() if n.purpose == "receipt"]) == 1
    assert staff.slack.to("/chat.update") == []
    # The stranger's click did not use up the card's revision: finance can still press Resend on it.
    await staff.click(card, "payment_resend")
    assert len(await staff.audit("notification.resent")) == 1


async def test_a_customer_in_a_shared_channel_cannot_run_staff_commands(staff):
    await paid_invoice(staff, channels=("slack",), slack_channel="C0SHARED")
    response = await staff.command("status INV-1042", user="U0CUSTOMER", channel="C0SHARED", team="T0CUSTOMER")
    assert response.status == 200
    [reply] = staff.slack.responses
    assert reply["response_type"] == "ephemeral" and "INV-1042" not in reply["text"] and "$" not in reply["text"]
    [refused] = await staff.audit("staff.refused")
    assert refused.detail == {"action": "command", "team_id": "T0CUSTOMER", "user_team_id": "T0CUSTOMER",
                              "channel_id": "C0SHARED"}


async def test_an_unreadable_usergroup_fails_closed(staff):
    staff.slack.usergroup_members.clear()  # Slack answers no_such_subteam
    await staff.command("unmatched", user="U0GROUPIE")
    assert staff.slack.replies()[0].startswith("Sorry")
    await staff.command("unmatched")  # listed users still get in
    assert staff.slack.replies()[1].startswith("Nothing to review")


async def test_a_retried_command_is_done_once(staff):
    await paid_invoice(staff)
    body = staff.command_body("resend INV-1042", trigger="111.222.abc")
    first = await staff.post(body)
    again = await staff.post(body, retry=1)
    assert (first.status, again.status) == (200, 200)
    assert len(await staff.audit("notification.resent")) == 1
    assert len(staff.slack.replies()) == 1
    assert len(await staff.bot.rows(models.StaffAction)) == 1


async def test_a_retried_button_and_a_retried_submission_are_done_once(staff):
    card = await paid_invoice(staff)
    click = staff.click_body(card, "payment_escalate")
    await staff.post(click)
    await staff.post(click, retry=1)
    await staff.post(click, retry=2)
    assert len(await staff.bot.rows(models.Escalation)) == 1
    await staff.click(staff.card(), "payment_edit")
    submission = staff.submit_body({"edit_text": {"text": {"type": "plain_text_input", "value": "Thanks, Jane!"}}})
    await staff.post(submission)
    await staff.post(submission, retry=1)
    assert len(await staff.audit("notification.edited")) == 1
    assert len([n for n in await staff.bot.notifications() if n.purpose == "receipt"]) == 2


async def test_a_refused_retry_is_audited_once(staff):
    body = staff.command_body("unmatched", user="U0INTERN")
    await staff.post(body)
    await staff.post(body, retry=1)
    assert len(await staff.audit("staff.refused")) == 1


async def test_bad_signatures_and_stale_timestamps_are_401(staff):
    body = staff.command_body("help")
    wrong = await staff.post(body, secret="not-" + SIGNING_SECRET)
    stale = await staff.post(body, timestamp=int(staff.bot.clock().timestamp()) - 301)
    assert (wrong.status, stale.status) == (401, 401)
    # Bolt checks against paybot's clock: a request signed now is still good 299 s later, not after 301.
    staff.bot.clock.advance(299)
    assert (await staff.post(body, timestamp=int(staff.bot.clock().timestamp()) - 299)).status == 200
    assert len(staff.slack.responses) == 1
    assert staff.slack.to("/auth.test")  # bolt authorised the good request with the fake's auth.test


async def test_oversized_body_is_413(staff):
    size = staff.bot.runtime.settings.max_body_bytes
    response = await staff.post("payload=" + "x" * size)
    assert response.status == 413


async def test_events_url_verification_challenge(staff):
    body = '{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}'
    response = await staff.post(body, content_type="application/json")
    assert response.status == 200
    assert (await response.json())["challenge"] == "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"


async def test_a_modal_submitted_by_a_non_finance_user_is_refused(staff):
    card = await paid_invoice(staff)
    await staff.click(card, "payment_edit")
    response = await staff.submit({"edit_text": {"text": {"type": "plain_text_input", "value": ""}}}, user="U0INTERN")
    assert response.status == 200 and await response.text() == ""  # no validation feedback for strangers
    [refused] = await staff.audit("staff.refused")
    assert refused.detail["action"] == "payment_edit_modal"
    assert await staff.audit("notification.edited") == []
