"""paybot with Teams chat-ops on, driven the way Teams drives it: activities posted to `/api/messages`, each with
a Bot Framework JWT signed by the fake's keys (`tests.fakes.teams`), validated for real against its metadata."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.storage import models
from tests.fakes.teams import APP_ID, TENANT, FakeTeams
from tests.harness import Paybot, stripe_invoice_event

FINANCE_CONV = "19:finance0a1b2c3d@thread.tacv2"
ESCALATION_CONV = "19:oncall9f8e7d@thread.tacv2"
CUSTOMER_CONV = "19:acme-shared5e6f@thread.tacv2"
FINANCE = "5b1d7e52-0c3a-4a8e-9d0f-6a1b2c3d4e5f"     # an AAD object id listed in FINANCE_TEAMS_USERS
STRANGER = "9c0ffee0-1111-4222-8333-444455556666"    # a member of the tenant, not finance
ONCALL = "0ca11000-aaaa-4bbb-8ccc-dddddddddddd"
BOT = f"28:{APP_ID}"


@dataclass
class TeamsStaff:
    bot: Paybot
    teams: FakeTeams
    ops: Any  # bot.handlers.teams.TeamsOps
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def activity(self, kind: str, conversation: str = FINANCE_CONV, *, user: str = FINANCE,
                 **extra: Any) -> dict[str, Any]:
        return {
            "type": kind, "id": f"f:{next(self._ids)}", "timestamp": "2026-11-28T12:00:00.000Z",
            "serviceUrl": self.teams.service_url, "channelId": "msteams",
            "from": {"id": f"29:1{user[:8]}", "name": "Fin Ance", "aadObjectId": user},
            "conversation": {"isGroup": True, "conversationType": "channel", "tenantId": TENANT, "id": conversation},
            "recipient": {"id": BOT, "name": "paybot"},
            "channelData": {"tenant": {"id": TENANT}, "channel": {"id": conversation}},
        } | extra

    async def post(self, activity: dict[str, Any] | bytes, *, token: str | None = None,
                   authorization: str | None = None) -> Any:
        headers = {"Authorization": authorization if authorization is not None else
                   f"Bearer {token or self.teams.token()}", "Content-Type": "application/json"}
        data = activity if isinstance(activity, bytes) else None
        response = await self.bot.client.post("/api/messages", data=data, json=None if data else activity,
                                              headers=headers)
        await self.ops.staff.inflight.drain()
        return response

    async def install(self, conversation: str = FINANCE_CONV) -> Any:
        """The paybot app added to a team: Teams tells the bot with a conversationUpdate."""
        self.teams.installed.add(conversation)
        return await self.post(self.activity("conversationUpdate", conversation,
                                             membersAdded=[{"id": BOT}], channelData={
                                                 "tenant": {"id": TENANT}, "eventType": "teamMemberAdded",
                                                 "team": {"id": conversation}}))

    async def command(self, words: str, *, user: str = FINANCE, conversation: str = FINANCE_CONV) -> Any:
        return await self.post(self.activity(
            "message", conversation, user=user, text=f"<at>paybot</at> payments {words}", textFormat="plain",
            entities=[{"type": "mention", "text": "<at>paybot</at>", "mentioned": {"id": BOT, "name": "paybot"}}]))

    async def click(self, card_id: str, verb: str, data: dict[str, Any], *, user: str = FINANCE,
                    conversation: str = FINANCE_CONV) -> Any:
        """Action.Execute on the card posted as `card_id`: an `adaptiveCard/action` invoke."""
        return await self.post(self.activity("invoke", conversation, user=user, name="adaptiveCard/action",
                                             replyToId=card_id, value={
                                                 "action": {"type": "Action.Execute", "verb": verb, "data": data},
                                                 "trigger": "manual"}))

    def card(self, conversation: str = FINANCE_CONV, index: int = -1) -> tuple[str, dict[str, Any]]:
        return self.teams.card(conversation, index)

    def replies(self, conversation: str = FINANCE_CONV) -> list[str]:
        return [a.get("text", "") for c, a in self.teams.posts if c == conversation and "replyToId" in a]

    async def audit(self, kind: str) -> list[models.AuditEntry]:
        return await self.bot.rows(models.AuditEntry, models.AuditEntry.kind == kind)


def action(card: dict[str, Any], verb: str) -> dict[str, Any]:
    [found] = [a for a in card.get("actions", []) if a.get("verb") == verb]
    return found["data"]


@pytest.fixture
async def teams(aiohttp_server, clock):  # type: ignore[no-untyped-def]
    fake = FakeTeams(clock=clock)
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
def teams_configs(configs, teams):  # type: ignore[no-untyped-def]
    from bot.integrations.channels.teams import TeamsSettings
    from tests.fakes.teams import APP_PASSWORD

    return configs | {"teams": TeamsSettings(_env_file=None, app_id=APP_ID, app_password=APP_PASSWORD,
                                             app_tenant_id=TENANT, openid_metadata_url=teams.metadata_url,
                                             token_url=teams.token_url)}


@pytest.fixture
def teams_settings(settings_for):  # type: ignore[no-untyped-def]
    return settings_for(finance_slack_channel=None, finance_teams_conversation=FINANCE_CONV,
                        finance_teams_users=f"{FINANCE},11111111-2222-4333-8444-555566667777",
                        escalation_teams_conversation=ESCALATION_CONV, escalation_oncall_teams_users=ONCALL,
                        escalation_reescalate_seconds=600, escalation_max_rounds=3)


async def start(aiohttp_client, settings, configs, clock, teams) -> TeamsStaff:  # type: ignore[no-untyped-def]
    from bot.app import create_app
    from bot.handlers.teams import TEAMS_OPS
    from bot.keys import RUNTIME

    app = create_app(settings, configs=configs, clock=clock, run_worker=False)
    client = await aiohttp_client(app)
    return TeamsStaff(Paybot(client=client, runtime=app[RUNTIME], clock=clock), teams, app[TEAMS_OPS])


@pytest.fixture
async def staff(aiohttp_client, teams_settings, teams_configs, clock, teams):  # type: ignore[no-untyped-def]
    return await start(aiohttp_client, teams_settings, teams_configs, clock, teams)


async def paid_invoice(staff: TeamsStaff, **customer: Any) -> tuple[str, dict[str, Any]]:
    """The bot installed in the finance team; Jane pays INV-1042 through Stripe; finance gets its card."""
    await pay(staff, **customer)
    return staff.card()


async def pay(staff: TeamsStaff, **customer: Any) -> None:
    """As `paid_invoice`, whatever becomes of the posts."""
    await staff.install()
    await staff.bot.add_customer(**customer)
    await staff.bot.add_invoice("INV-1042", "1250.00")
    assert (await staff.bot.post_stripe(stripe_invoice_event())).status == 200
    await staff.bot.deliver()
