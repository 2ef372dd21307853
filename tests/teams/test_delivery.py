"""Teams posts go through the outbox: the token is fetched once and reused until it expires; 429/412/502/504 are
retried with backoff; a conversation the bot is not in (a stale reference, a removed bot) fails for good, the
customer's next channel is tried and finance is told."""

from __future__ import annotations

import pytest
from aiohttp import web

from tests.fakes.teams import REGION, TENANT, connector_error
from bot.storage import models
from tests.teams.conftest import CUSTOMER_CONV, FINANCE_CONV, paid_invoice, pay


TOKEN = f"/{TENANT}/oauth2/v2.0/token"


def path(conversation: str) -> str:
    return f"/{REGION}/v3/conversations/{conversation}/activities"


async def test_the_token_is_cached_until_it_expires(staff):
    await staff.install(CUSTOMER_CONV)
    await paid_invoice(staff, channels=("teams",), teams_conversation=CUSTOMER_CONV)
    assert len(staff.teams.to(TOKEN)) == 1
    assert len(staff.teams.posts) == 2  # the customer's receipt and finance's card, one token
    staff.bot.clock.advance(3600)  # past its 3599 s
    await staff.command("resend INV-1042")
    await staff.bot.deliver()
    assert len(staff.teams.to(TOKEN)) == 2


@pytest.mark.parametrize("status", [429, 412, 502, 504])
async def test_throttling_and_gateway_errors_are_retried_with_backoff(staff, status):
    await staff.install()
    headers = {"Retry-After": "7"} if status == 429 else {}
    staff.teams.script(path(FINANCE_CONV), connector_error(status, "Throttled" if status == 429 else "Busy",
                                                          "try later", **headers))
    await pay(staff)
    [card] = [n for n in await staff.bot.notifications() if n.purpose == "finance_card"]
    spent = 0 if status == 429 else 1  # a wait the provider asked for (Retry-After) spends no attempt
    assert card.status == "pending" and card.attempts == spent and str(status) in (card.last_error or "")
    assert not staff.teams.posted(FINANCE_CONV)
    staff.bot.clock.advance(8 if status == 429 else 60)
    await staff.bot.deliver()
    [card] = [n for n in await staff.bot.notifications() if n.purpose == "finance_card"]
    assert card.status == "sent" and len(staff.teams.posted(FINANCE_CONV)) == 1


async def test_a_removed_bot_fails_for_good_falls_back_and_tells_finance(staff):
    await staff.install(CUSTOMER_CONV)
    staff.teams.installed.discard(CUSTOMER_CONV)  # removed from the team without paybot hearing of it
    await paid_invoice(staff, channels=("teams", "email"), teams_conversation=CUSTOMER_CONV)
    staff.bot.clock.advance(1)
    await staff.bot.deliver()
    notes = {n.purpose + ":" + n.channel: n for n in await staff.bot.notifications()}
    assert notes["receipt:teams"].status == "dead"
    assert "BotNotInConversationRoster" in (notes["receipt:teams"].last_error or "")
    assert notes["receipt:sendgrid"].status == "sent"  # the customer's next channel
    _, dead_letter = staff.card(FINANCE_CONV)
    assert dead_letter["body"][0]["text"].startswith("🚨 Could not deliver the receipt via teams")
    rows = await staff.bot.rows(models.TeamsConversation)
    assert [r.removed_at is not None for r in rows if r.conversation_id == CUSTOMER_CONV] == [True]


async def test_a_conversation_never_installed_fails_at_once_without_a_call(staff):
    await staff.install()
    await pay(staff, channels=("teams", "email"), teams_conversation="19:nobody@thread.tacv2")
    staff.bot.clock.advance(1)
    await staff.bot.deliver()
    [receipt] = [n for n in await staff.bot.notifications() if n.channel == "teams" and n.purpose == "receipt"]
    assert receipt.status == "dead" and "never installed" in (receipt.last_error or "")
    assert not staff.teams.to(path("19:nobody@thread.tacv2"))


async def test_a_refused_app_secret_is_a_permanent_failure(staff):
    await staff.install()
    staff.teams.script(TOKEN, web.json_response(
        {"error": "invalid_client", "error_description": "AADSTS7000222: The provided client secret keys are "
         "expired."}, status=401))
    await pay(staff)
    [card] = [n for n in await staff.bot.notifications() if n.purpose == "finance_card"]
    assert card.status == "dead" and "AADSTS7000222" in (card.last_error or "")
    assert "teams-client-secret" not in (card.last_error or "")


async def test_check_gets_a_token_and_finds_each_staff_conversation(staff):
    await staff.install()
    channel = staff.bot.runtime.channels["teams"]
    found = await channel.check(staff.bot.runtime.settings)
    assert [f.mark for f in found] == ["ok", "ok", "PROBLEM"]
    assert "ESCALATION_TEAMS_CONVERSATION" in found[2].text and "never installed" in found[2].text
