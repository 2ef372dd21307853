"""`POST /api/messages`: Microsoft Teams (Bot Framework) activities, the second front end of finance chat-ops.

The same staff services, authorization model, staff-action keys and audit entries as Slack (`bot.handlers.slack`);
only the translation differs:

    conversationUpdate / installationUpdate   save (or retire) the conversation reference, for proactive posts
    message                                   `payments …` commands (the @mention stripped), answered in the thread
    invoke `adaptiveCard/action`              the cards' Action.Execute buttons, answered inside Teams' deadline
                                              with the card refreshed in place (and PUT for everyone's view)
    anything else                             200, ignored

Every activity's JWT is checked first (`bot.handlers.teams_auth`); without TEAMS_APP_ID (TEAMS_LOCAL_MODE) nothing
is checked and start-up says so loudly. The Agents SDK's activity models parse what Teams sends and shape the
invoke responses; they are imported here and in no module outside Teams.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from microsoft_agents.activity import Activity, AdaptiveCardInvokeResponse, ChannelAccount
from pydantic import ValidationError
from sqlalchemy import select

from bot import text
from bot.errors import PayloadTooLarge, SignatureInvalid
from bot.handlers.slack import REFUSAL, InFlight
from bot.handlers.slack_commands import HELP, Command, UsageError, parse
from bot.handlers.teams_auth import BotFrameworkAuth, Unauthenticated
from bot.handlers.webhooks import error, read_body
from bot.integrations.channels.teams import TeamsChannel
from bot.integrations.http import Sent
from bot.keys import RUNTIME
from bot.runtime import Runtime
from bot.services.staff import activity as card_state
from bot.services.staff.access import StaffAccess
from bot.services.staff.actions import Done, StaffDesk
from bot.services.staff.escalations import Escalations
from bot.services.staff.queries import StaffQueries
from bot.services.staff.targets import Request, StaffError, claim
from bot.storage import models
from bot.storage.database import Database
from bot.text import Mrkdwn, mrkdwn
from cards import ids
from cards import teams as cards

log = logging.getLogger(__name__)

CARD = "application/vnd.microsoft.card.adaptive"
MESSAGE = "application/vnd.microsoft.activity.message"
STALE = "This card was out of date, so nothing was done: it now shows what happened since. Press again if it " \
        "still needs doing."
#: A command message may start with the command's own name, as staff type it in Slack.
COMMAND_WORDS = ("payments", "/payments")


@dataclass
class Staff:
    db: Database
    channel: TeamsChannel
    desk: StaffDesk
    escalations: Escalations
    queries: StaffQueries
    access: StaffAccess
    tenant_id: str | None
    inflight: InFlight

    async def admit(self, turn: Turn, key: str, action: str) -> tuple[Request, int] | None:
        """The request to act on and its claim, or None: a repeat of one already handled, or refused (audited once).
        A guest, or anyone from another tenant (a shared channel's outside member), is refused even if listed."""
        user = turn.user_id
        actor = f"teams:{user}"
        if not await self.allows(turn):
            refused = Request(f"{key}:refused:{user}", actor, "refused")
            if await claim(self.db, refused) is not None:
                async with self.db.transaction() as uow:
                    uow.audit("staff.refused", actor=actor, channel="teams", detail={
                        "action": action, "tenant_id": turn.tenant_id, "conversation_id": turn.conversation_id,
                        "user_role": turn.user_role})
            log.info("refused %s to non-staff Teams user %s", action, user)
            return None
        request = Request(key, actor, action)
        claim_id = await claim(self.db, request)
        return (request, claim_id) if claim_id is not None else None

    async def allows(self, turn: Turn) -> bool:
        if not turn.user_id or turn.user_role == "guest":
            return False
        if self.tenant_id and turn.tenant_id != self.tenant_id:
            return False
        return await self.access.allows(turn.user_id)


@dataclass
class Turn:
    """One activity, with what paybot reads from it."""

    activity: Activity
    raw: dict[str, Any]

    @property
    def user_id(self) -> str:
        sender = self.activity.from_property or ChannelAccount()
        return str(sender.aad_object_id or "")

    @property
    def user_role(self) -> str | None:
        role = (self.raw.get("from") or {}).get("userRole")
        return str(role) if role else None

    @property
    def tenant_id(self) -> str | None:
        tenant = ((self.raw.get("channelData") or {}).get("tenant") or {}).get("id")
        conversation = self.activity.conversation
        return str(tenant or (conversation.tenant_id if conversation else None) or "") or None

    @property
    def conversation_id(self) -> str:
        return str(self.activity.conversation.id if self.activity.conversation else "")

    @property
    def service_url(self) -> str:
        return str(self.activity.service_url or "")

    def reference(self) -> dict[str, Any]:
        reference = self.activity.get_conversation_reference()
        return reference.model_dump(by_alias=True, exclude_none=True, mode="json")


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
                _later(ops.staff, _command(ops.staff, turn))
        case "invoke" if activity.name == "adaptiveCard/action":
            await _remember(ops.staff, turn)
            return web.json_response(await _card_action(ops.staff, turn))
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


def _later(staff: Staff, work: Awaitable[None]) -> None:
    """After the 200: Teams wants activities answered quickly; the reply goes through the connector."""

    async def run() -> None:
        staff.inflight.track()
        try:
            await work
        except Exception:  # nobody to raise to: the answer was given
            log.exception("a Teams command failed after its answer")

    asyncio.get_running_loop().create_task(run())


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
    match command.name:
        case "help":
            return HELP
        case "resend":
            return (await staff.desk.resend(request, claim_id, command.target, command.extra or None)).text
        case "edit":
            draft = await staff.desk.draft(command.target)
            return cards.edit_form(draft.heading, draft.text, draft.payment_id,
                                   await card_state.revision(staff.db, draft.payment_id))
        case "escalate":
            return await staff.escalations.escalate(request, claim_id, command.target, command.extra)
        case "status":
            return await staff.queries.status(command.target)
        case "find":
            return await staff.queries.find(command.target)
        case "unmatched":
            return await staff.queries.unmatched()
        case "audit":
            return await staff.queries.audit(command.target)
    raise UsageError(mrkdwn("Unknown subcommand `{}`.\n{}", command.name, HELP))


async def _reply(staff: Staff, turn: Turn, words: str | None, card: dict[str, Any] | None = None) -> None:
    activity: dict[str, Any] = {"type": "message"}
    if words:
        activity |= {"text": words, "textFormat": "markdown"}
    if card:
        activity["attachments"] = [cards.attachment(card)]
    outcome = await staff.channel.reply(turn.service_url, turn.conversation_id, turn.activity.id, activity)
    if not isinstance(outcome, Sent):
        log.warning("could not answer a Teams command: %s", outcome)


# --- card actions (Action.Execute) ---------------------------------------------------------------------------

def _card(card: dict[str, Any]) -> dict[str, Any]:
    return _invoke(CARD, card)


def _message(words: Mrkdwn | str) -> dict[str, Any]:
    """A message shown to whoever pressed: refusals, errors, answers with no card to refresh."""
    shown = text.teams_from_mrkdwn(words) if isinstance(words, Mrkdwn) else words
    return _invoke(MESSAGE, shown)


def _invoke(kind: str, value: Any) -> dict[str, Any]:
    response = AdaptiveCardInvokeResponse(status_code=200, type=kind, value=value)
    return response.model_dump(by_alias=True, exclude_none=True, mode="json")


async def _card_action(staff: Staff, turn: Turn) -> dict[str, Any]:
    value: dict[str, Any] = turn.activity.value if isinstance(turn.activity.value, dict) else {}
    action: dict[str, Any] = value["action"] if isinstance(value.get("action"), dict) else {}
    data: dict[str, Any] = action["data"] if isinstance(action.get("data"), dict) else {}
    verb = str(action.get("verb") or "")
    try:
        if verb == ids.ACKNOWLEDGE:
            return await _acknowledge(staff, turn, int(data["escalation_id"]))
        if verb in (*ids.STAFF_ACTIONS, ids.EDIT_MODAL, ids.MATCH_MODAL, ids.CANCEL):
            payment_id, revision = cards.revision_of(data)
            return await _payment_action(staff, turn, verb, payment_id, revision, data)
    except StaffError as exc:
        return _message(exc.text)
    except (KeyError, TypeError, ValueError):  # data that is not what paybot's cards carry
        pass
    return _message("paybot does not know this button: the card may come from an older version. Use "
                    "`payments help` for what it can do.")


Act = Callable[[Request, int], Awaitable[Done | Mrkdwn]]


async def _payment_action(staff: Staff, turn: Turn, verb: str, payment_id: int, revision: int,
                          data: dict[str, Any]) -> dict[str, Any]:
    async with staff.db.read() as session:
        if await session.get(models.Payment, payment_id) is None:
            return _message(mrkdwn("There is no payment #{} any more: this card is out of date.", payment_id))
    conversation, message_id = turn.conversation_id, turn.activity.reply_to_id
    card = [conversation, message_id]

    async def refreshed(notice: str | None = None) -> dict[str, Any] | None:
        return await card_state.teams_card_after(staff.db, conversation, message_id, payment_id,
                                                 staff.desk.notifier.wording, notice)

    if not await staff.allows(turn):
        await staff.admit(turn, f"button:{verb}:{payment_id}:{card}:{revision}", verb)
        return _message(REFUSAL)
    current = await card_state.revision(staff.db, payment_id)
    if revision != current:  # someone acted since this card (or this form) was drawn: show the card as it stands
        return _card(await refreshed(STALE) or cards.plain_card(STALE))
    if verb == ids.CANCEL:
        return _card(await refreshed() or cards.plain_card("Cancelled: nothing was changed."))
    if verb == ids.EDIT:
        draft = await staff.desk.draft(f"p{payment_id}")
        return _card(cards.edit_form(draft.heading, draft.text, payment_id, revision))
    if verb == ids.MATCH:
        heading, options = await staff.desk.match_options(payment_id)
        return _card(cards.match_form(heading, options, payment_id, revision))
    act: Act
    if verb == ids.EDIT_MODAL:
        words = str(data.get(ids.EDIT_TEXT[1]) or "").strip()
        if problem := await staff.desk.check_edit(payment_id, words):
            draft = await staff.desk.draft(f"p{payment_id}")
            return _card(cards.with_problem(cards.edit_form(draft.heading, words or draft.text, payment_id,
                                                            revision), problem))
        act = lambda request, claim_id: staff.desk.save_edit(request, claim_id, payment_id, words)  # noqa: E731
    elif verb == ids.MATCH_MODAL:
        picked, typed = str(data.get(ids.MATCH_PICK[1]) or ""), str(data.get(ids.MATCH_NUMBER[1]) or "").strip()
        problem = "Choose an invoice or type one, not both." if picked and typed and picked != typed else \
            await staff.desk.check_match(payment_id, picked or typed)
        if problem:
            heading, options = await staff.desk.match_options(payment_id)
            return _card(cards.with_problem(cards.match_form(heading, options, payment_id, revision), problem))
        act = lambda request, claim_id: staff.desk.match(request, claim_id, payment_id, picked or typed)  # noqa: E731
    elif verb == ids.RESEND:
        act = lambda request, claim_id: staff.desk.resend(request, claim_id, f"p{payment_id}")  # noqa: E731
    else:
        act = lambda request, claim_id: staff.escalations.escalate(request, claim_id, f"p{payment_id}")  # noqa: E731
    # The same key for a double click and for Teams' own retry: one revision of one card is acted on once.
    admitted = await staff.admit(turn, f"button:{verb}:{payment_id}:{card}:{revision}", verb)
    if admitted is None:
        return _card(await refreshed() or cards.plain_card("Already done."))
    done = await act(*admitted)
    answer = done.text if isinstance(done, Done) else done
    updated = await refreshed()
    if updated is None:  # a form posted as a command's answer: no card of ours to refresh
        return _message(answer)
    _later(staff, _update_for_everyone(staff, conversation, message_id, updated))
    return _card(updated)


async def _update_for_everyone(staff: Staff, conversation: str, message_id: str | None,
                               card: dict[str, Any]) -> None:
    """The invoke response refreshes the card for whoever pressed; the connector's PUT, for everyone else."""
    if not message_id:
        return
    outcome = await staff.channel.update(conversation, message_id, {
        "type": "message", "attachments": [cards.attachment(card)]})
    if not isinstance(outcome, Sent):
        log.warning("Teams refused a card update: %s", outcome)


async def _acknowledge(staff: Staff, turn: Turn, escalation_id: int) -> dict[str, Any]:
    admitted = await staff.admit(turn, f"acknowledge:{escalation_id}:{turn.user_id}", ids.ACKNOWLEDGE)
    if admitted is None:
        return _message(REFUSAL if not await staff.allows(turn) else
                        mrkdwn("You already acknowledged escalation #{}.", escalation_id))
    words, took_it = await staff.escalations.acknowledge(*admitted, escalation_id)
    if not took_it:
        return _message(words)
    async with staff.db.read() as session:
        posted = await session.scalar(
            select(models.Notification).where(
                models.Notification.channel == "teams", models.Notification.recipient == turn.conversation_id,
                models.Notification.provider_id == turn.activity.reply_to_id)) if turn.activity.reply_to_id else None
    if posted is None or "activity" not in (posted.payload or {}):
        return _message(words)
    at = staff.db.clock().strftime(card_state.AT)
    who = (turn.activity.from_property.name if turn.activity.from_property else None) or admitted[0].user_id
    card = cards.acknowledged(posted.payload["activity"]["attachments"][0]["content"], who, at)
    _later(staff, _update_for_everyone(staff, turn.conversation_id, turn.activity.reply_to_id, card))
    return _card(card)


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
