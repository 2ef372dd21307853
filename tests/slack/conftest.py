"""paybot with Slack chat-ops on, driven the way Slack drives it: signed form posts to `/slack/events`.

Requests are signed with slack_sdk's `SignatureVerifier.generate_signature` at the injected clock's time; paybot
verifies them with bolt's own middleware reading that same clock (see bot/handlers/slack_events.py), so the
5-minute tolerance is tested by moving the clock, never by sleeping.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.storage import models
from tests.harness import Paybot, stripe_invoice_event

SIGNING_SECRET = "slack-signing-secret"  # as in the `configs` fixture
FINANCE = "U0FIN1"
TEAM = "T0ACME"


@dataclass
class SlackStaff:
    """One workspace's people pressing things in paybot's Slack app."""

    bot: Paybot
    slack: Any  # tests.fakes.slack.FakeSlack
    ops: Any    # bot.handlers.slack_events.SlackOps
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _response_url(self, kind: str) -> str:
        return str(self.slack.server.make_url(f"/{kind}/{TEAM}/{next(self._ids)}/secret"))

    async def post(self, body: str, *, retry: int | None = None, secret: str = SIGNING_SECRET,
                   timestamp: int | None = None, content_type: str = "application/x-www-form-urlencoded") -> Any:
        ts = str(int(self.bot.clock().timestamp()) if timestamp is None else timestamp)
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
                   "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body) or ""}
        if retry is not None:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        response = await self.bot.client.post("/slack/events", data=body.encode(), headers=headers)
        await self.ops.inflight.drain()  # the work each listener does after its ack()
        return response

    def command_body(self, text: str, *, user: str = FINANCE, channel: str = "C0FINANCE", team: str = TEAM,
                     trigger: str | None = None) -> str:
        return urlencode({
            "token": "deprecated-verification-token", "team_id": team, "team_domain": "acme",
            "channel_id": channel, "channel_name": "finance", "user_id": user, "user_name": user.lower(),
            "command": "/payments", "text": text, "api_app_id": "A0PAYBOT", "is_enterprise_install": "false",
            "response_url": self._response_url("commands"),
            "trigger_id": trigger or f"{next(self._ids)}.1234.abcdef"})

    async def command(self, text: str, **kwargs: Any) -> Any:
        return await self.post(self.command_body(text, **kwargs))

    def click_body(self, card: dict[str, Any], action_id: str, *, user: str = FINANCE, user_team: str = TEAM,
                   value: str | None = None) -> str:
        element = next(e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                       if e["action_id"] == action_id)
        block = next(b for b in card["blocks"] if b["type"] == "actions" and element in b["elements"])
        payload = {
            "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": user_team},
            "api_app_id": "A0PAYBOT", "token": "deprecated-verification-token",
            "container": {"type": "message", "message_ts": card["ts"], "channel_id": card["channel"],
                          "is_ephemeral": False},
            "trigger_id": f"{next(self._ids)}.5678.fedcba", "team": {"id": TEAM, "domain": "acme"},
            "enterprise": None, "is_enterprise_install": False, "channel": {"id": card["channel"], "name": "finance"},
            "message": {k: card[k] for k in ("type", "text", "blocks", "ts", "bot_id")},
            "state": {"values": {}}, "response_url": self._response_url("actions"),
            "actions": [{"action_id": action_id, "block_id": block["block_id"], "text": element["text"],
                         "value": value or element["value"], "type": "button", "action_ts": "1764331300.000100"}],
        }
        return urlencode({"payload": json.dumps(payload)})

    async def click(self, card: dict[str, Any], action_id: str, **kwargs: Any) -> Any:
        return await self.post(self.click_body(card, action_id, **kwargs))

    def submit_body(self, values: dict[str, dict[str, dict[str, Any]]], *, user: str = FINANCE, user_team: str = TEAM,
                    view: dict[str, Any] | None = None) -> str:
        view = view or self.slack.views[-1]
        payload = {
            "type": "view_submission", "team": {"id": TEAM, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "team_id": user_team}, "api_app_id": "A0PAYBOT",
            "token": "deprecated-verification-token", "trigger_id": f"{next(self._ids)}.9.abc",
            "view": {"id": f"V{len(self.slack.views):04d}"} | view | {
                "team_id": TEAM, "app_id": "A0PAYBOT", "bot_id": "B0PAYBOT", "hash": "1764331400.abcdef",
                "state": {"values": values}},
            "response_urls": [], "is_enterprise_install": False, "enterprise": None,
        }
        return urlencode({"payload": json.dumps(payload)})

    async def submit(self, values: dict[str, dict[str, dict[str, Any]]], **kwargs: Any) -> Any:
        return await self.post(self.submit_body(values, **kwargs))

    def card(self, channel: str = "C0FINANCE", index: int = -1) -> dict[str, Any]:
        """A message as it stands in the fake workspace now (after any chat.update)."""
        return self.slack.posted(channel)[index]

    async def audit(self, kind: str) -> list[models.AuditEntry]:
        return await self.bot.rows(models.AuditEntry, models.AuditEntry.kind == kind)


def text_input(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def picked(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": value},
                                                         "value": value}}


@pytest.fixture
async def staff(aiohttp_client, settings_for, configs, clock, slack):  # type: ignore[no-untyped-def]
    from bot.app import create_app
    from bot.handlers.slack_events import SLACK_OPS
    from bot.keys import RUNTIME

    settings = settings_for(finance_slack_users=f"{FINANCE},U0FIN2", finance_slack_usergroup="S0FINANCE",
                            escalation_slack_channel="C0ESCALATE", escalation_oncall_slack_users="U0ONCALL",
                            escalation_oncall_slack_usergroup="S0ONCALL", escalation_reescalate_seconds=600,
                            escalation_max_rounds=3)
    app = create_app(settings, configs=configs, clock=clock, run_worker=False)
    client = await aiohttp_client(app)
    slack.usergroup_members["S0FINANCE"] = ["U0GROUPIE"]
    return SlackStaff(Paybot(client=client, runtime=app[RUNTIME], clock=clock), slack, app[SLACK_OPS])


async def paid_invoice(staff: SlackStaff, **customer: Any) -> dict[str, Any]:
    """Jane pays INV-1042 in full through Stripe; finance gets its card. Returns the card."""
    await staff.bot.add_customer(**customer)
    await staff.bot.add_invoice("INV-1042", "1250.00")
    assert (await staff.bot.post_stripe(stripe_invoice_event())).status == 200
    await staff.bot.deliver()
    return staff.card()


async def unmatched_payment(staff: SlackStaff) -> dict[str, Any]:
    """A payment naming no invoice we track, from nobody we know; finance gets a needs-review card."""
    await staff.bot.add_customer()
    await staff.bot.add_invoice("INV-1042", "1250.00")
    await staff.bot.post_stripe(stripe_invoice_event("evt_stray", number="INV-9999", email="stray@example.net"))
    await staff.bot.deliver()
    return staff.card()
