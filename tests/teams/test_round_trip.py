"""Done means: install → proactive finance card → staff clicks Resend → card updated → customer message resent;
and the same after a restart, from the references stored in the database."""

from __future__ import annotations

from bot.storage import models
from tests.harness import stripe_invoice_event
from tests.teams.conftest import CUSTOMER_CONV, FINANCE_CONV, action, paid_invoice, start


def activity_lines(card: dict) -> list[str]:
    return [b["text"] for b in card["body"] if b.get("id") == "paybot_activity"]


async def test_install_card_resend_updates_the_card_and_resends_to_the_customer(staff):
    staff.teams.installed.add(CUSTOMER_CONV)
    await staff.install(CUSTOMER_CONV)
    card_id, card = await paid_invoice(staff, channels=("teams",), teams_conversation=CUSTOMER_CONV)
    assert card["body"][0]["text"].startswith("✅ Payment received — $1,250.00 from Jane Doe")
    [(_, receipt)] = staff.teams.posted(CUSTOMER_CONV)
    assert "actions" not in receipt["attachments"][0]["content"]  # the customer sees no staff buttons

    response = await staff.click(card_id, "payment_resend", action(card, "payment_resend"))
    assert response.status == 200
    answer = await response.json()
    assert answer["statusCode"] == 200 and answer["type"] == "application/vnd.microsoft.card.adaptive"
    refreshed = answer["value"]
    assert activity_lines(refreshed) == ["Fin Ance resent the receipt via teams · 2026-11-28 12:00 UTC"]
    assert action(refreshed, "payment_resend") == {"payment_id": 1, "revision": 1}
    assert staff.card(FINANCE_CONV) == (card_id, refreshed)  # PUT: everyone sees the update
    [resent] = await staff.audit("notification.resent")
    assert resent.actor == "teams:5b1d7e52-0c3a-4a8e-9d0f-6a1b2c3d4e5f" and resent.channel == "teams"
    staff.bot.clock.advance(1)  # one post per second per conversation
    await staff.bot.deliver()
    assert len(staff.teams.posted(CUSTOMER_CONV)) == 2


async def test_after_a_restart_the_stored_references_still_reach_teams(aiohttp_client, teams_settings,
                                                                         teams_configs, clock, teams, staff):
    await staff.install()
    await staff.install(CUSTOMER_CONV)
    await staff.bot.runtime.close()  # the process ends: nothing of the installs is left in memory
    again = await start(aiohttp_client, teams_settings, teams_configs, clock, teams)  # same database, new process
    await again.bot.add_customer(channels=("teams",), teams_conversation=CUSTOMER_CONV)
    await again.bot.add_invoice("INV-1042", "1250.00")
    assert (await again.bot.post_stripe(stripe_invoice_event())).status == 200
    await again.bot.deliver()
    card_id, card = again.card(FINANCE_CONV)  # proactive, from the stored reference
    assert len(teams.posted(CUSTOMER_CONV)) == 1
    answer = await (await again.click(card_id, "payment_resend", action(card, "payment_resend"))).json()
    assert activity_lines(answer["value"])[0].endswith("resent the receipt via teams · 2026-11-28 12:00 UTC")
    assert again.card(FINANCE_CONV) == (card_id, answer["value"])
    clock.advance(1)
    await again.bot.deliver()
    assert len(teams.posted(CUSTOMER_CONV)) == 2
    [row] = await again.bot.rows(models.TeamsConversation, models.TeamsConversation.conversation_id == FINANCE_CONV)
    assert row.service_url == teams.service_url and row.reference["bot"]["id"].startswith("28:")


async def test_a_staff_conversation_the_bot_was_never_installed_in_is_a_warning_and_a_failure(staff, caplog):
    card_id, card = await paid_invoice(staff)
    assert any("ESCALATION_TEAMS_CONVERSATION" in r.getMessage() and "never installed" in r.getMessage()
               for r in caplog.get_records("setup"))
    await staff.click(card_id, "payment_escalate", action(card, "payment_escalate"))
    await staff.bot.deliver()
    [row] = await staff.bot.rows(models.Notification, models.Notification.purpose == "escalation")
    assert row.status == "dead" and "never installed" in (row.last_error or "")
