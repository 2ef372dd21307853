"""Teams card buttons: `Action.Execute` arrives as an `adaptiveCard/action` invoke, answered within the request
with an `AdaptiveCardInvokeResponse`: the card refreshed in place (and PUT for everyone), a form card (Edit,
Match), or a message for whoever pressed (a refusal, an error).

A card's buttons carry its revision (how many staff actions its payment has had); a press on an older revision is
answered with the card as it stands and does nothing, and one revision of one card is acted on once (a double
click, Teams' own retry) under the same staff-action key scheme as Slack's buttons.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from microsoft_agents.activity import AdaptiveCardInvokeResponse
from sqlalchemy import select

from bot import text
from bot.handlers.slack import REFUSAL
from bot.handlers.teams_staff import Staff, Turn, later
from bot.integrations.http import Sent
from bot.services.staff import activity as card_state
from bot.services.staff.actions import Done
from bot.services.staff.targets import Request, StaffError
from bot.storage import models
from bot.text import Mrkdwn, mrkdwn
from cards import ids
from cards import teams as cards

log = logging.getLogger(__name__)

CARD = "application/vnd.microsoft.card.adaptive"
MESSAGE = "application/vnd.microsoft.activity.message"
STALE = "This card was out of date, so nothing was done: it now shows what happened since. Press again if it " \
        "still needs doing."


def _card(card: dict[str, Any]) -> dict[str, Any]:
    return _invoke(CARD, card)


def _message(words: Mrkdwn | str) -> dict[str, Any]:
    """A message shown to whoever pressed: refusals, errors, answers with no card to refresh."""
    shown = text.teams_from_mrkdwn(words) if isinstance(words, Mrkdwn) else words
    return _invoke(MESSAGE, shown)


def _invoke(kind: str, value: Any) -> dict[str, Any]:
    response = AdaptiveCardInvokeResponse(status_code=200, type=kind, value=value)
    return response.model_dump(by_alias=True, exclude_none=True, mode="json")


async def card_action(staff: Staff, turn: Turn) -> dict[str, Any]:
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
    later(staff, _update_for_everyone(staff, conversation, message_id, updated))
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
    later(staff, _update_for_everyone(staff, turn.conversation_id, turn.activity.reply_to_id, card))
    return _card(card)
