"""Staff on Teams: the same commands, answers, authorization and audit entries as on Slack."""

from __future__ import annotations

from bot.handlers.slack_commands import HELP
from bot.storage import models
from bot.text import teams_from_mrkdwn
from tests.harness import stripe_invoice_event
from tests.teams.conftest import (ESCALATION_CONV, FINANCE, FINANCE_CONV, ONCALL, STRANGER, TENANT, action,
                                  paid_invoice)


def lines(card: dict, block: str = "paybot_activity") -> list[str]:
    return [b["text"] for b in card["body"] if b.get("id") == block]


async def test_commands_answer_in_the_thread_with_the_slack_words(staff):
    await paid_invoice(staff)
    await staff.command("help")
    await staff.command("status INV-1042")
    await staff.command("nonsense")
    help_, status, unknown = staff.replies()
    assert help_ == teams_from_mrkdwn(HELP)
    assert status.startswith("**Invoice INV-1042** · customer C1 · paid in full")
    assert unknown.startswith("I don't know `nonsense`.")


async def test_the_mention_and_the_command_name_are_optional(staff):
    await staff.install()
    await staff.post(staff.activity("message", text="unmatched"))  # personal chat: no mention, no `payments`
    assert staff.replies() == ["Nothing to review: every payment is matched."]


async def test_a_command_from_a_non_finance_user_is_refused_and_audited(staff):
    await paid_invoice(staff)
    await staff.command("resend INV-1042", user=STRANGER)
    assert staff.replies()[-1].startswith("Sorry, that is only for the finance team")
    [refused] = await staff.audit("staff.refused")
    assert refused.actor == f"teams:{STRANGER}" and refused.channel == "teams"
    assert refused.detail["action"] == "command" and refused.detail["tenant_id"] == TENANT
    assert not await staff.audit("notification.resent")


async def test_a_guest_or_another_tenants_member_is_refused_even_if_listed(staff):
    await paid_invoice(staff)
    guest = staff.activity("message", text="payments unmatched")
    guest["from"]["userRole"] = "guest"
    await staff.post(guest)
    outsider = staff.activity("message", text="payments unmatched")
    outsider["channelData"]["tenant"]["id"] = "0badc0de-0000-4000-8000-000000000000"
    await staff.post(outsider)
    assert all(r.startswith("Sorry, that is only for the finance team") for r in staff.replies())
    assert len(await staff.audit("staff.refused")) == 2


async def test_a_button_from_a_non_finance_user_is_refused_and_audited(staff):
    card_id, card = await paid_invoice(staff)
    response = await staff.click(card_id, "payment_resend", action(card, "payment_resend"), user=STRANGER)
    answer = await response.json()
    assert answer["type"] == "application/vnd.microsoft.activity.message"
    assert answer["value"].startswith("Sorry, that is only for the finance team")
    [refused] = await staff.audit("staff.refused")
    assert refused.detail["action"] == "payment_resend"
    assert not await staff.audit("notification.resent")


async def test_a_double_click_or_a_teams_retry_resends_once(staff):
    card_id, card = await paid_invoice(staff)
    await staff.click(card_id, "payment_resend", action(card, "payment_resend"))
    response = await staff.click(card_id, "payment_resend", action(card, "payment_resend"))  # the card as it was
    answer = await response.json()
    assert lines(answer["value"], "paybot_notice")[0].startswith("This card was out of date, so nothing was done")
    assert len(await staff.audit("notification.resent")) == 1
    _, updated = staff.card()
    await staff.click(card_id, "payment_resend", action(updated, "payment_resend"))  # deliberately, again
    assert len(await staff.audit("notification.resent")) == 2


async def test_a_card_action_for_a_payment_that_does_not_exist_is_a_clear_message(staff):
    card_id, _ = await paid_invoice(staff)
    response = await staff.click(card_id, "payment_resend", {"payment_id": 999, "revision": 0})
    answer = await response.json()
    assert response.status == 200 and answer["type"] == "application/vnd.microsoft.activity.message"
    assert answer["value"] == "There is no payment #999 any more: this card is out of date."
    response = await staff.click(card_id, "payment_resend", {"payment_id": "x"})
    assert "does not know this button" in (await response.json())["value"]


async def test_edit_opens_a_form_saves_resends_and_audits_before_and_after(staff):
    card_id, card = await paid_invoice(staff)
    form = (await (await staff.click(card_id, "payment_edit", action(card, "payment_edit"))).json())["value"]
    [box] = [e for e in form["body"] if e.get("type") == "Input.Text"]
    before = box["value"]
    assert "INV-1042" in before
    same = await staff.click(card_id, "payment_edit_modal", action(form, "payment_edit_modal") | {"text": before})
    assert lines((await same.json())["value"], "paybot_notice") == [
        "⚠️ That is the message as it stands: change something, or cancel."]
    saved = await staff.click(card_id, "payment_edit_modal",
                              action(form, "payment_edit_modal") | {"text": "Dear Jane, thank you for INV-1042."})
    refreshed = (await saved.json())["value"]
    assert lines(refreshed)[0].startswith("Fin Ance edited the receipt and resent it via sendgrid")
    [edited] = await staff.audit("notification.edited")
    assert edited.actor == f"teams:{FINANCE}"
    assert edited.detail["before"] == before and edited.detail["after"] == "Dear Jane, thank you for INV-1042."
    again = await staff.click(card_id, "payment_edit_modal",
                              action(form, "payment_edit_modal") | {"text": "Dear Jane, thank you for INV-1042."})
    assert lines((await again.json())["value"], "paybot_notice")  # a double submit: out of date, nothing done
    assert len(await staff.audit("notification.edited")) == 1


async def test_match_form_matches_the_payment_and_tells_the_customer(staff):
    await staff.install()
    await staff.bot.add_customer()
    await staff.bot.add_invoice("INV-1042", "1250.00")
    await staff.bot.post_stripe(stripe_invoice_event("evt_stray", number="INV-9999", email="stray@example.net"))
    await staff.bot.deliver()
    card_id, card = staff.card()
    assert card["body"][0]["text"].startswith("🔍 Payment needs review")
    form = (await (await staff.click(card_id, "payment_match", action(card, "payment_match"))).json())["value"]
    [choices] = [e for e in form["body"] if e.get("type") == "Input.ChoiceSet"]
    assert choices["choices"][0]["value"] == "INV-1042"
    done = await staff.click(card_id, "payment_match_modal",
                             action(form, "payment_match_modal") | {"invoice": "INV-1042"})
    refreshed = (await done.json())["value"]
    assert refreshed["body"][0]["text"].startswith("✅ Payment received")  # the review card became a payment card
    assert lines(refreshed)[0].startswith("Fin Ance matched it to INV-1042")
    assert [e.actor for e in await staff.audit("payment.matched_by_staff")] == [f"teams:{FINANCE}"]


async def test_escalation_mentions_on_call_is_re_escalated_and_acknowledged(staff):
    card_id, card = await paid_invoice(staff)
    await staff.install(ESCALATION_CONV)
    await staff.click(card_id, "payment_escalate", action(card, "payment_escalate"))
    staff.bot.clock.advance(1)
    await staff.bot.deliver()
    _, posted = staff.card(ESCALATION_CONV)
    assert posted["body"][0]["text"] == "🚨 <at>on call 1</at> Payment escalated by Fin Ance"
    assert posted["msteams"]["entities"] == [{"type": "mention", "text": "<at>on call 1</at>",
                                              "mentioned": {"id": ONCALL, "name": "on call 1"}}]
    oncall = staff.activity("message", ESCALATION_CONV, user=ONCALL, text="hello")
    oncall["from"]["name"] = "Olive <Oncall>"  # heard from once: later mentions use the name, escaped
    await staff.post(oncall)
    staff.bot.clock.advance(601)
    await staff.bot.runtime.worker.run_once()
    await staff.ops.staff.escalations.reescalate_due()
    await staff.bot.deliver()
    escalation_id, reminder = staff.card(ESCALATION_CONV)
    assert reminder["body"][0]["text"] == ("🚨 <at>Olive &lt;Oncall&gt;</at> Payment escalated by Fin Ance "
                                           "(reminder 1: nobody has acknowledged it yet)")
    assert reminder["msteams"]["entities"][0]["mentioned"] == {"id": ONCALL, "name": "Olive &lt;Oncall&gt;"}
    response = await staff.click(escalation_id, "escalation_acknowledge", {"escalation_id": 1},
                                 conversation=ESCALATION_CONV)
    acknowledged = (await response.json())["value"]
    assert "actions" not in acknowledged
    assert acknowledged["body"][-1]["text"] == "✅ Acknowledged by Fin Ance · 2026-11-28 12:10 UTC"
    [entry] = await staff.audit("escalation.acknowledged")
    assert entry.actor == f"teams:{FINANCE}"
    [row] = await staff.bot.rows(models.Escalation)
    assert row.acknowledged_by == f"teams:{FINANCE}"


async def test_uninstall_retires_the_reference_and_a_later_post_fails_for_good(staff):
    await staff.install()
    await staff.post(staff.activity("installationUpdate", action="remove"))
    [row] = await staff.bot.rows(models.TeamsConversation)
    assert row.removed_at is not None and row.conversation_id == FINANCE_CONV
    await staff.install()  # added back: the reference is live again
    [row] = await staff.bot.rows(models.TeamsConversation)
    assert row.removed_at is None


async def test_outside_text_in_answers_cannot_link_or_mention(staff):
    await paid_invoice(staff, name="Jane [Open in Stripe](https://evil.example) <at>everyone</at>")
    await staff.command("find Jane")
    [answer] = staff.replies()
    assert "[Open in Stripe](" not in answer and "<at>" not in answer
    assert "\\[Open in Stripe\\](https://evil.example) &lt;at&gt;everyone&lt;/at&gt;" in answer


async def test_the_message_extension_answers_status_with_a_card_and_refuses_strangers(staff):
    await paid_invoice(staff)

    def submit(command: str, query: str, user: str = FINANCE) -> dict:
        return staff.activity("invoke", user=user, name="composeExtension/submitAction", value={
            "commandId": command, "commandContext": "compose", "data": {"query": query}})

    answer = await (await staff.post(submit("paymentsStatus", "INV-1042"))).json()
    [attachment] = answer["composeExtension"]["attachments"]
    assert attachment["content"]["body"][0]["text"].startswith("**Invoice INV-1042** · customer C1 · paid in full")
    answer = await (await staff.post(submit("paymentsStatus", "INV-404"))).json()
    assert answer == {"task": {"type": "message", "value": "There is no invoice `INV-404`."}}
    answer = await (await staff.post(submit("paymentsFind", "Jane", user=STRANGER))).json()
    assert answer["task"]["value"].startswith("Sorry, that is only for the finance team")
    assert [e.detail["action"] for e in await staff.audit("staff.refused")] == ["find"]
