"""Slack listeners: the `/payments` command, the finance card's buttons, the two modals, Acknowledge.

Thin on purpose: each listener acks at once, then claims the request (a retry or double click stops here),
checks the user is finance staff, calls a staff service and replies ephemerally or updates the card in place.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.handlers.slack_commands import Command, UsageError, answer_text, parse
from bot.services.staff import activity
from bot.services.staff.access import StaffAccess
from bot.services.staff.actions import StaffDesk
from bot.services.staff.escalations import Escalations
from bot.services.staff.queries import StaffQueries
from bot.services.staff.targets import Request, StaffError, claim
from bot.storage.database import Database
from bot.text import Mrkdwn, mrkdwn
from cards import ids
from cards import slack as cards
from cards import slack_modals as modals

log = logging.getLogger(__name__)

REFUSAL = mrkdwn("Sorry, that is only for the finance team, so nothing was done. "
                 "If you have a question about a payment, just ask here and someone will help.")


@dataclass
class InFlight:
    """The listener tasks still working after their `ack()`."""

    tasks: set[asyncio.Task[object]] = field(default_factory=set)

    def track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


@dataclass
class Staff:
    db: Database
    desk: StaffDesk
    escalations: Escalations
    queries: StaffQueries
    access: StaffAccess
    inflight: InFlight
    http: aiohttp.ClientSession

    async def admit(self, body: dict[str, Any], key: str, action: str) -> tuple[Request, int] | None:
        """The request to act on and its claim, or None: a repeat of one already handled, or refused (audited once).
        """
        user = _user(body)
        actor = f"slack:{user}"
        if not await self.access.allows(user):
            refused = Request(f"{key}:refused:{user}", actor, "refused")
            if await claim(self.db, refused) is not None:
                async with self.db.transaction() as uow:
                    uow.audit("staff.refused", actor=actor, channel="slack", detail={
                        "action": action, "team_id": _team(body), "user_team_id": (body.get("user") or {}).get(
                            "team_id") or body.get("user_team_id") or _team(body), "channel_id": _channel(body)})
            log.info("refused %s to non-staff user %s", action, user)
            await self.reply(body, REFUSAL)
            return None
        request = Request(key, actor, action)
        claim_id = await claim(self.db, request)
        return (request, claim_id) if claim_id is not None else None

    async def reply(self, body: dict[str, Any], text: Mrkdwn, response_url: str | None = None) -> None:
        """Ephemeral, through the request's response_url (valid 30 minutes, 5 uses)."""
        url = response_url or body.get("response_url")
        if not url:
            return
        hook = AsyncWebhookClient(url, session=self.http)
        response = await hook.send(text=text, response_type="ephemeral", replace_original=False)
        if response.status_code != 200:
            log.warning("Slack response_url answered %s", response.status_code)

    async def update_card(self, client: AsyncWebClient, card: list[str] | None, payment_id: int | None) -> None:
        if not card or payment_id is None:
            return
        update = await activity.card_after(self.db, card[0], card[1], payment_id, self.desk.notifier.wording)
        if update is not None:
            await _quietly(client.chat_update(**update))


def _user(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or body.get("user_id") or "")


def _view_key(view: dict[str, Any]) -> str:
    """A retried submission carries the same view id and hash."""
    return f"view:{view.get('id')}:{view.get('hash')}"


def _team(body: dict[str, Any]) -> str | None:
    return (body.get("team") or {}).get("id") or body.get("team_id")


def _channel(body: dict[str, Any]) -> str | None:
    return (body.get("channel") or {}).get("id") or body.get("channel_id")


async def _quietly(call: Awaitable[Any]) -> None:
    """A card update is a courtesy (the audit trail has the facts): a refusal from Slack is logged, not raised."""
    try:
        await call
    except SlackApiError as exc:
        log.warning("Slack refused a card update: %s", exc.response.get("error") if exc.response else exc)


def register(app: AsyncApp, staff: Staff) -> None:
    @app.command("/payments")
    async def payments(ack: Callable[..., Awaitable[None]], body: dict[str, Any], client: AsyncWebClient) -> None:
        staff.inflight.track()
        await ack()
        admitted = await staff.admit(body, f"command:{body.get('trigger_id')}", "command")
        if admitted is None:
            return
        try:
            command = parse(body.get("text") or "")
            text = await run(command, *admitted, body, client)
        except (UsageError, StaffError) as exc:
            text = exc.text
        if text:
            await staff.reply(body, text)

    async def run(command: Command, request: Request, claim_id: int, body: dict[str, Any],
                  client: AsyncWebClient) -> Mrkdwn | None:
        if command.name == "edit":
            await open_edit(client, body, command.target, card=None)
            return None
        return await answer_text(staff, command, request, claim_id)

    async def open_edit(client: AsyncWebClient, body: dict[str, Any], name: str, card: list[str] | None) -> None:
        draft = await staff.desk.draft(name)
        metadata = json.dumps({"payment_id": draft.payment_id, "card": card, "response_url": body.get("response_url")})
        await client.views_open(trigger_id=body["trigger_id"],
                                view=modals.edit_message(draft.heading, draft.text, metadata))

    async def on_button(ack: Callable[..., Awaitable[None]], body: dict[str, Any], action: dict[str, Any],
                        client: AsyncWebClient) -> None:
        staff.inflight.track()
        await ack()
        payment_id, revision = cards.button_target(action["value"])
        container = body.get("container") or {}
        card = [container["channel_id"], container["message_ts"]] if container.get("message_ts") else None
        action_id = action["action_id"]
        # Opening a modal changes nothing, so each press opens one; a press that changes something is done once
        # per revision of the card (the second press of a double click carries the same revision).
        key = (f"button:{action_id}:{body.get('trigger_id')}" if action_id in (ids.EDIT, ids.MATCH)
               else f"button:{action_id}:{payment_id}:{card}:{revision}")
        admitted = await staff.admit(body, key, action_id)
        if admitted is None:
            return
        request, claim_id = admitted
        try:
            if action_id == ids.EDIT:
                await open_edit(client, body, f"p{payment_id}", card)
                return
            if action_id == ids.MATCH:
                heading, options = await staff.desk.match_options(payment_id)
                metadata = json.dumps({"payment_id": payment_id, "card": card,
                                       "response_url": body.get("response_url")})
                await client.views_open(trigger_id=body["trigger_id"],
                                        view=modals.match_payment(heading, options, metadata))
                return
            if action_id == ids.RESEND:
                text = (await staff.desk.resend(request, claim_id, f"p{payment_id}")).text
            else:
                text = await staff.escalations.escalate(request, claim_id, f"p{payment_id}")
        except StaffError as exc:
            await staff.reply(body, exc.text)
            return
        await staff.update_card(client, card, payment_id)
        await staff.reply(body, text)

    for action_id in ids.STAFF_ACTIONS:
        app.action(action_id)(on_button)

    @app.action(ids.ACKNOWLEDGE)
    async def acknowledge(ack: Callable[..., Awaitable[None]], body: dict[str, Any], action: dict[str, Any],
                          client: AsyncWebClient) -> None:
        staff.inflight.track()
        await ack()
        escalation_id = int(action["value"])
        admitted = await staff.admit(body, f"acknowledge:{escalation_id}:{body['user']['id']}", ids.ACKNOWLEDGE)
        if admitted is None:
            return
        request, claim_id = admitted
        try:
            text, took_it = await staff.escalations.acknowledge(request, claim_id, escalation_id)
        except StaffError as exc:
            text, took_it = exc.text, False
        message, container = body.get("message") or {}, body.get("container") or {}
        if took_it and message.get("blocks") and container.get("message_ts"):
            at = staff.db.clock().strftime("%Y-%m-%d %H:%M UTC")
            await _quietly(client.chat_update(
                channel=container["channel_id"], ts=container["message_ts"], text=message.get("text") or "",
                blocks=cards.acknowledged(message["blocks"], request.user_id, at)))
        await staff.reply(body, text)

    async def admitted(ack: Callable[..., Awaitable[None]], body: dict[str, Any],
                       view: dict[str, Any]) -> dict[str, Any] | None:
        """The modal's metadata when finance staff submitted it; anyone else is refused (and audited)."""
        staff.inflight.track()
        if not await staff.access.allows(_user(body)):
            await ack()
            await staff.admit(body, _view_key(view), str(view.get("callback_id")))
            return None
        metadata: dict[str, Any] = json.loads(view.get("private_metadata") or "{}")
        return metadata

    @app.view(ids.EDIT_MODAL)
    async def edit_submitted(ack: Callable[..., Awaitable[None]], body: dict[str, Any], view: dict[str, Any],
                             client: AsyncWebClient) -> None:
        metadata = await admitted(ack, body, view)
        if metadata is None:
            return
        text = modals.submitted(view, ids.EDIT_TEXT)
        try:
            problem = await staff.desk.check_edit(int(metadata["payment_id"]), text)
        except StaffError as exc:
            problem = str(exc)
        if problem:
            await ack(response_action="errors", errors={ids.EDIT_TEXT[0]: problem})
            return
        await ack()
        await submitted(body, view, metadata, client, lambda request, claim_id: staff.desk.save_edit(
            request, claim_id, int(metadata["payment_id"]), text))

    @app.view(ids.MATCH_MODAL)
    async def match_submitted(ack: Callable[..., Awaitable[None]], body: dict[str, Any], view: dict[str, Any],
                              client: AsyncWebClient) -> None:
        metadata = await admitted(ack, body, view)
        if metadata is None:
            return
        picked, typed = modals.submitted(view, ids.MATCH_PICK), modals.submitted(view, ids.MATCH_NUMBER)
        if picked and typed and picked != typed:
            await ack(response_action="errors", errors={ids.MATCH_NUMBER[0]: "Choose an invoice or type one, not both."})
            return
        number = picked or typed
        problem = await staff.desk.check_match(int(metadata["payment_id"]), number)
        if problem:
            await ack(response_action="errors", errors={ids.MATCH_NUMBER[0]: problem})
            return
        await ack()
        await submitted(body, view, metadata, client, lambda request, claim_id: staff.desk.match(
            request, claim_id, int(metadata["payment_id"]), number))

    async def submitted(body: dict[str, Any], view: dict[str, Any], metadata: dict[str, Any], client: AsyncWebClient,
                        act: Callable[[Request, int], Awaitable[Any]]) -> None:
        admitted = await staff.admit(body, _view_key(view), str(view.get("callback_id")))
        if admitted is None:
            return
        try:
            text = (await act(*admitted)).text
        except StaffError as exc:
            text = exc.text
        else:
            await staff.update_card(client, metadata.get("card"), int(metadata["payment_id"]))
        await staff.reply(body, text, metadata.get("response_url"))
