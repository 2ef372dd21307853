"""A payment's card after staff acted on it: the card as it was posted (from the outbox), what staff did on it,
and buttons carrying the new revision. A needs-review card whose payment got matched becomes a payment card."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import Message, Purpose, Wording, template_data
from bot.services.staff.targets import payment_target
from bot.services.teams_conversations import display_names
from bot.storage import models
from bot.storage.database import Database
from bot.text import mrkdwn
from cards import slack as cards
from cards import teams as teams_cards

AT = "%Y-%m-%d %H:%M UTC"


async def card_after(db: Database, channel: str, ts: str, payment_id: int,
                     wording: Wording = Wording()) -> dict[str, Any] | None:
    """`chat.update` arguments for the card at (channel, ts), or None when paybot did not post it."""
    async with db.read() as session:
        card = await session.scalar(select(models.Notification).where(
            models.Notification.provider_id == f"{channel}:{ts}"))
        if card is None or card.payment_id != payment_id or "blocks" not in card.payload:
            return None
        target = await payment_target(session, payment_id)
        done = await history(session, payment_id)
    blocks: list[dict[str, Any]] = card.payload["blocks"]
    text: str = card.payload.get("text", "")
    if card.purpose == Purpose.NEEDS_REVIEW and target.receipt.matched:
        data = template_data(Message(Purpose.FINANCE_CARD, channel, target.receipt, target.customer, wording=wording))
        blocks = cards.payment_confirmation(data)
        text = mrkdwn("Payment {} matched to {}", data["amount"], target.receipt.invoice_number)
    lines = [cards.activity_line(a.actor.partition(":")[2], a.summary or "", a.at.strftime("%Y-%m-%d %H:%M UTC"))
             for a in done]
    return {"channel": channel, "ts": ts, "text": text, "blocks": cards.with_activity(blocks, lines, len(done))}


async def history(session: AsyncSession, payment_id: int) -> list[models.StaffAction]:
    """What staff did on a payment, oldest first; its length is the payment's card revision."""
    return list(await session.scalars(select(models.StaffAction).where(
        models.StaffAction.payment_id == payment_id, models.StaffAction.summary.is_not(None))
        .order_by(models.StaffAction.id)))


async def revision(db: Database, payment_id: int) -> int:
    async with db.read() as session:
        return len(await history(session, payment_id))


async def teams_card_after(db: Database, conversation_id: str, message_id: str | None, payment_id: int,
                           wording: Wording = Wording(), notice: str | None = None) -> dict[str, Any] | None:
    """The Teams card (message `message_id` in the conversation) as it stands after staff acted on it, or None
    when paybot did not post that card about that payment."""
    async with db.read() as session:
        card = await session.scalar(select(models.Notification).where(
            models.Notification.channel == "teams", models.Notification.recipient == conversation_id,
            models.Notification.provider_id == message_id)) if message_id else None
        if card is None or card.payment_id != payment_id or "activity" not in card.payload:
            return None
        target = await payment_target(session, payment_id)
        done = await history(session, payment_id)
        names = await display_names(session, [a.actor for a in done])
    content: dict[str, Any] = card.payload["activity"]["attachments"][0]["content"]
    if card.purpose == Purpose.NEEDS_REVIEW and target.receipt.matched:
        data = template_data(Message(Purpose.FINANCE_CARD, conversation_id, target.receipt, target.customer,
                                     wording=wording))
        content = teams_cards.payment_confirmation(data)
    lines = [teams_cards.activity_line(names.get(a.actor) or a.actor.partition(":")[2], a.summary or "",
                                       a.at.strftime(AT)) for a in done]
    return teams_cards.with_activity(content, lines, len(done), notice)
