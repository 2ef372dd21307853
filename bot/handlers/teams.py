"""`POST /api/messages`: Microsoft Teams (Bot Framework) activities, the second front end of finance chat-ops.

The same staff services, authorization model, staff-action keys and audit entries as Slack (`bot.handlers.slack`);
only the translation differs:

    conversationUpdate / installationUpdate   save (or retire) the conversation reference, for proactive posts
    message                                   `payments …` commands (the @mention stripped), answered in the thread
    invoke `composeExtension/submitAction`    the message extension's status / find, answered with a card
    invoke `adaptiveCard/action`              the cards' Action.Execute buttons, answered inside Teams' deadline
                                              with the card refreshed in place (and PUT for everyone's view)
    anything else                             200, ignored

Every activity's JWT is checked first (`bot.handlers.teams_auth`); without TEAMS_APP_ID (TEAMS_LOCAL_MODE) nothing
is checked and start-up says so loudly. Card buttons are answered in `teams_actions`, on the `Staff` and `Turn` of
`teams_staff`. The Agents SDK's activity models parse what Teams sends and shape the invoke responses; they are
imported in these Teams modules and nowhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from microsoft_agents.activity import Activity
from pydantic import ValidationError

from bot import text
from bot.errors import PayloadTooLarge, SignatureInvalid
from bot.handlers.slack import REFUSAL, InFlight
from bot.handlers.slack_commands import Command, UsageError, answer_text, parse
from bot.handlers.teams_actions import card_action
from bot.handlers.teams_auth import BotFrameworkAuth, Unauthenticated
from bot.handlers.teams_staff import Staff, Turn, later
from bot.handlers.webhooks import error, read_body
from bot.integrations.channels.teams import TeamsChannel
from bot.integrations.http import Sent
from bot.keys import RUNTIME
from bot.runtime import Runtime
from bot.services.staff import activity as card_state
from bot.services.staff.access import StaffAccess
from bot.services.staff.actions import StaffDesk
from bot.services.staff.escalations import Escalations
from bot.services.staff.queries import StaffQueries
from bot.services.staff.targets import Request, StaffError
from bot.text import Mrkdwn
from cards import teams as cards

log = logging.getLogger(__name__)

#: A command message may start with the command's own name, as staff type it in Slack.
COMMAND_WORDS = ("payments", "/payments")
#: Message-extension action commands (the manifest's composeExtensions) → the `payments` subcommand they run.
EXTENSION_COMMANDS = {"paymentsStatus": "status", "paymentsFind": "find"}


@dataclass
class TeamsOps:
    staff: Staff
    auth: BotFrameworkAuth | None  # None: local/emulator mode


TEAMS_OPS = web.AppKey("teams_ops", TeamsOps)


def build(runtime: Runtime) -> TeamsOps | None:
    channel = runtime.channels.get("teams")
    if not isinstance(channel, TeamsChannel):
        return None
    settings, config = runtime.settings, channel.settings
    auth = None
    if config.authenticated:
        auth = BotFrameworkAuth(str(config.app_id).strip(), config.openid_metadata_url, runtime.http,
                                runtime.db.clock)
    else:
        log.warning("TEAMS IN LOCAL/EMULATOR MODE: no TEAMS_APP_ID, so activities at /api/messages are NOT "
                    "authenticated and anyone who can reach paybot can act as any Teams user. Never run this way "
                    "where the endpoint is reachable from outside.")

    async def no_groups(group: str) -> list[str]:  # Teams staff are listed by AAD object id, no group lookup
        return []

    staff = Staff(db=runtime.db, channel=channel, desk=StaffDesk(runtime.db, runtime.notifier),
                  escalations=Escalations(runtime.db, runtime.notifier, settings), queries=StaffQueries(runtime.db),
                  access=StaffAccess(settings.finance_teams_users, None, no_groups, runtime.db.clock),
                  tenant_id=(config.app_tenant_id or "").strip() or None, inflight=InFlight())
    return TeamsOps(staff, auth)


async def messages(request: web.Request) -> web.StreamResponse:
    ops = request.app.get(TEAMS_OPS)
    if ops is None:
        return error(404, "Teams is not configured (TEAMS_APP_ID, or TEAMS_LOCAL_MODE for the Emulator)")
    runtime = request.app[RUNTIME]
    try:
        body = await read_body(request, runtime.settings.max_body_bytes)
    except PayloadTooLarge as exc:
        return error(exc.status, str(exc))
    raw, problem = _parse(body)
    claims: dict[str, Any] = {}
    if ops.auth is not None:  # authenticated before anything is read from the activity
        channel_id = str(raw.get("channelId")) if raw and raw.get("channelId") else None
        try:
            claims = await ops.auth.validate(request.headers.get("Authorization"), channel_id)
        except Unauthenticated as exc:
            return _refuse(runtime, request, str(exc))
    if problem is not None or raw is None:
        return error(400, problem or "not an activity")
    if not isinstance(raw.get("channelId"), str) or not raw["channelId"]:  # the key's endorsement names it
        return error(400, "not an activity (no channelId)")
    try:
        activity = Activity.model_validate(raw)
    except ValidationError:
        return error(400, "not a Bot Framework activity")
    if ops.auth is not None and str(claims.get("serviceurl") or "") != str(activity.service_url or ""):
        return _refuse(runtime, request, "the token's serviceurl is not the activity's serviceUrl")
    turn = Turn(activity, raw)
    match activity.type:
        case "conversationUpdate" | "installationUpdate":
            await _installation(ops.staff, turn)
        case "message":
            await _remember(ops.staff, turn)
            if activity.text and not activity.value:
                later(ops.staff, _command(ops.staff, turn))
        case "invoke" if activity.name == "adaptiveCard/action":
            await _remember(ops.staff, turn)
            return web.json_response(await card_action(ops.staff, turn))
        case "invoke" if activity.name == "composeExtension/submitAction":
            await _remember(ops.staff, turn)
            return web.json_response(await _extension(ops.staff, turn))
        case _:
            log.debug("ignored a Teams %s activity", activity.type)
    return web.Response(status=200)


def _parse(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, "body is not JSON"
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        return None, "not an activity (a JSON object with a type)"
    return raw, None


def _refuse(runtime: Runtime, request: web.Request, why: str) -> web.Response:
    log.info("refused a Teams activity from %s: %s", request.remote, why)
    runtime.refusals.count("teams", SignatureInvalid("invalid Bot Framework token"), request.remote)
    return error(401, "invalid or missing Bot Framework token")


# --- installation: conversation references -------------------------------------------------------------------

async def _installation(staff: Staff, turn: Turn) -> None:
    activity, bot_id = turn.activity, (turn.activity.recipient.id if turn.activity.recipient else None)
    event = str((turn.raw.get("channelData") or {}).get("eventType") or "")
    removed = activity.action in ("remove", "remove-upgrade") or event in ("teamDeleted", "channelDeleted") or \
        any(m.id == bot_id for m in activity.members_removed or [])
    if removed:
        await staff.channel.conversations.remove(turn.conversation_id)
        log.info("Teams: the bot left conversation %s", turn.conversation_id)
    else:
        await _remember(staff, turn)


async def _remember(staff: Staff, turn: Turn) -> None:
    if turn.conversation_id and turn.service_url:
        await staff.channel.conversations.save(turn.reference())
    sender = turn.activity.from_property
    if sender is not None and turn.user_id:
        await staff.channel.conversations.saw_user(turn.user_id, sender.name)


# --- commands ------------------------------------------------------------------------------------------------

def command_text(turn: Turn) -> str:
    """The message without the bot's @mention, and without a leading `payments` (the command's own name)."""
    words = (turn.activity.remove_recipient_mention() or turn.activity.text or "").split()
    if words and words[0].lower() in COMMAND_WORDS:
        words = words[1:]
    return " ".join(words)


async def _command(staff: Staff, turn: Turn) -> None:
    admitted = await staff.admit(turn, f"command:teams:{turn.conversation_id}:{turn.activity.id}", "command")
    if admitted is None:
        if not await staff.allows(turn):
            await _reply(staff, turn, text.teams_from_mrkdwn(REFUSAL))
        return
    try:
        command = parse(command_text(turn))
        answer: Mrkdwn | dict[str, Any] | None = await _run(staff, command, *admitted, turn)
    except (UsageError, StaffError) as exc:
        answer = exc.text
    if isinstance(answer, dict):
        await _reply(staff, turn, None, answer)
    elif answer:
        await _reply(staff, turn, text.teams_from_mrkdwn(answer))


async def _run(staff: Staff, command: Command, request: Request, claim_id: int,
               turn: Turn) -> Mrkdwn | dict[str, Any] | None:
    if command.name == "edit":
        draft = await staff.desk.draft(command.target)
        return cards.edit_form(draft.heading, draft.text, draft.payment_id,
                               await card_state.revision(staff.db, draft.payment_id))
    return await answer_text(staff, command, request, claim_id)


async def _extension(staff: Staff, turn: Turn) -> dict[str, Any]:
    """The message-extension actions (`deploy/teams/manifest.json`, composeExtensions): `status` and `find` from
    the compose box; the answer is a card staff can post into the conversation."""
    value: dict[str, Any] = turn.activity.value if isinstance(turn.activity.value, dict) else {}
    name = EXTENSION_COMMANDS.get(str(value.get("commandId") or ""))
    data: dict[str, Any] = value["data"] if isinstance(value.get("data"), dict) else {}
    if name is None:
        return _task_message("paybot does not know this action: use `payments help` for what it can do.")
    admitted = await staff.admit(turn, f"extension:teams:{turn.conversation_id}:{turn.activity.id}", name)
    if admitted is None:
        return _task_message(text.teams_from_mrkdwn(REFUSAL) if not await staff.allows(turn) else "Already done.")
    try:
        answer = await _run(staff, parse(f"{name} {' '.join(str(data.get('query') or '').split())}"), *admitted,
                            turn)
    except (UsageError, StaffError) as exc:
        return _task_message(text.teams_from_mrkdwn(exc.text))
    words = text.teams_from_mrkdwn(answer) if isinstance(answer, str) else ""
    return {"composeExtension": {"type": "result", "attachmentLayout": "list",
                                 "attachments": [cards.attachment(cards.plain_card(words))]}}


def _task_message(words: str) -> dict[str, Any]:
    return {"task": {"type": "message", "value": words}}


async def _reply(staff: Staff, turn: Turn, words: str | None, card: dict[str, Any] | None = None) -> None:
    activity: dict[str, Any] = {"type": "message"}
    if words:
        activity |= {"text": words, "textFormat": "markdown"}
    if card:
        activity["attachments"] = [cards.attachment(card)]
    outcome = await staff.channel.reply(turn.service_url, turn.conversation_id, turn.activity.id, activity)
    if not isinstance(outcome, Sent):
        log.warning("could not answer a Teams command: %s", outcome)


# --- wiring --------------------------------------------------------------------------------------------------

async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    """After the runtime is up: Teams chat-ops, and a warning for each staff conversation the bot is not in."""
    ops = build(app[RUNTIME])
    if ops is not None:
        app[TEAMS_OPS] = ops
        settings = app[RUNTIME].settings
        for setting, conversation in (("FINANCE_TEAMS_CONVERSATION", settings.finance_teams_conversation),
                                      ("ESCALATION_TEAMS_CONVERSATION", settings.escalation_teams_conversation)):
            if conversation:
                finding = await ops.staff.channel.installed_in(setting, conversation)
                if finding.problem:
                    log.warning("%s", finding.text)
    yield
    if ops is not None:
        await ops.staff.inflight.drain()


def routes() -> list[web.RouteDef]:
    return [web.post("/api/messages", messages)]
