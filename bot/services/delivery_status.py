"""What providers report after accepting a message: recorded on the notification and in the audit trail; a
message that will not arrive (a bounce) falls back to the customer's next channel and is reported to finance."""

from __future__ import annotations

import logging

from sqlalchemy import select

from bot.integrations.channels.base import StatusUpdate
from bot.services import receipts
from bot.services.notify import Notifier
from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.models import Notification

log = logging.getLogger(__name__)


async def record(db: Database, notifier: Notifier, channel: str, updates: list[StatusUpdate]) -> int:
    """Apply the updates; returns how many changed something (a provider's redelivery changes nothing)."""
    changed = 0
    async with db.transaction() as uow:
        for update in updates:
            row = await uow.session.scalar(select(Notification).where(
                Notification.idempotency_key == update.key, Notification.channel == channel).with_for_update())
            if row is None:
                log.info("%s status %r for a message we do not know: ignored", channel, update.status)
                continue
            if row.delivery_status == update.status or row.status == outbox.DEAD:
                continue
            row.delivery_status = update.status
            changed += 1
            detail = {"notification_id": row.id, "status": update.status, "reason": update.detail,
                      "reported_at": update.at.isoformat()}
            uow.audit("notification.undelivered" if update.failed else "notification.status", channel=channel,
                      detail=detail, **await receipts.subject_of(uow.session, row))
            if update.failed and row.status == outbox.SENT:
                row.status, row.last_error = outbox.DEAD, f"{update.status}: {update.detail}"
                log.warning("notification %s was accepted but not delivered (%s)", row.id, update.status)
                await notifier.after_failure(uow, row)
    return changed
