"""A payment's card after staff acted on it: the card as it was posted (from the outbox), what staff did on it,
and buttons carrying the new revision. A needs-review card whose payment got matched becomes a payment card."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.messages import Message, Purpose, Wording, template_data
from bot.services.staff.targets import payment_target
from bot.storage import models
from bot.storage.database import Database
from bot.text import mrkdwn
from cards import slack as cards


async def card_after(db: Database, channel: str, ts: str, payment_id: int,
                     wording: Wording = Wording()) -> dict[str, Any] | None:
    """`chat.update` arguments for the card at (channel, ts), or None when paybot did not post it."""
    async with db.read() as session:
        card = await session.scalar(select(models.Notification).where(
            models.Notification.provider_id == f"{channel}:{ts}"))
        if card is None or card.payment_id != payment_id or "blocks" not in card.payload:
            return None
        target = await payment_target(session, payment_id)
        done = list(await session.scalars(select(models.StaffAction).where(
            models.StaffAction.payment_id == payment_id, models.StaffAction.summary.is_not(None))
            .order_by(models.StaffAction.id)))
    blocks: list[dict[str, Any]] = card.payload["blocks"]
    text: str = card.payload.get("text", "")
    if card.purpose == Purpose.NEEDS_REVIEW and target.receipt.matched:
        data = template_data(Message(Purpose.FINANCE_CARD, channel, target.receipt, target.customer, wording=wording))
        blocks = cards.payment_confirmation(data)
        text = mrkdwn("Payment {} matched to {}", data["amount"], target.receipt.invoice_number)
    lines = [cards.activity_line(a.actor.partition(":")[2], a.summary or "", a.at.strftime("%Y-%m-%d %H:%M UTC"))
             for a in done]
    return {"channel": channel, "ts": ts, "text": text, "blocks": cards.with_activity(blocks, lines, len(done))}
