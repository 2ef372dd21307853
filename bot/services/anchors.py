"""Publishing the audit chain's head where whoever writes the database cannot rewrite it.

Every interval the head (seq:hash) goes to the log, and, when it moved since the last one posted, to the finance
Slack channel through the outbox. `paybot audit verify --anchor SEQ:HASH` then proves the trail still holds that
entry with that hash: an edit at or before it, or a trail cut below it, is found even by someone without AUDIT_KEY.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.audit import Anchor
from bot.messages import Audience, Purpose, render_slack_text
from bot.services.notify import Notifier
from bot.storage import audit, outbox
from bot.storage.database import Database
from bot.storage.models import Notification
from cards import slack as cards

log = logging.getLogger(__name__)

KEY_PREFIX = "audit-anchor:"


class Anchors:
    def __init__(self, db: Database, notifier: Notifier) -> None:
        self.db = db
        self.notifier = notifier

    async def publish(self) -> None:
        """Log the head, and queue it for the finance channel when it moved since the last one posted there."""
        async with self.db.transaction() as uow:
            anchor, key_id = await audit.head(uow.session)
            if anchor is None:
                return
            log.info("audit anchor %s (%s)", anchor, f"keyed, key {key_id}" if key_id else "unkeyed")
            route = self.notifier.finance_route()
            if route is None or not await self._moved(uow.session, anchor):
                return
            words = render_slack_text(Purpose.AUDIT_ANCHOR, seq=anchor.seq, hash=anchor.hash, key_id=key_id)
            # Not through Notifier.queue: an anchor is about no payment, and queueing it adds no audit entry
            # (the chain would move under its own anchor).
            await outbox.enqueue(
                uow.session, now=uow.clock(), idempotency_key=f"{KEY_PREFIX}{anchor.seq}", payment_id=None,
                channel=route.channel.name, audience=Audience.FINANCE.value, purpose=Purpose.AUDIT_ANCHOR.value,
                recipient=route.recipient,
                payload={"channel": route.recipient, "text": words,
                         "blocks": cards.audit_anchor(words, str(anchor))})

    @staticmethod
    async def _moved(session: AsyncSession, anchor: Anchor) -> bool:
        """Whether the trail grew since the last anchor posted, beyond that post's own `notification.sent`."""
        last = await session.scalar(select(Notification.idempotency_key)
                                    .where(Notification.purpose == Purpose.AUDIT_ANCHOR.value)
                                    .order_by(Notification.id.desc()).limit(1))
        return last is None or anchor.seq > int(last.removeprefix(KEY_PREFIX)) + 1
