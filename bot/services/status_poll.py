"""Asking providers how messages they accepted ended (`PollsStatus`), for those that report no callback.

Each round looks at the channel's sent rows still in one of its pending statuses, from the last day, oldest
first, and records what the provider says as `delivery_status.record` does for callbacks: an email that will not
arrive falls back to the customer's next channel and is reported to finance.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.integrations.channels.base import PollsStatus
from bot.services import delivery_status
from bot.services.notify import Notifier
from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.models import Notification

EVERY = timedelta(seconds=60)
#: Older than this and still pending: the provider will not say any more.
HORIZON = timedelta(days=1)
BATCH = 50


async def poll(db: Database, notifier: Notifier, name: str, channel: PollsStatus) -> None:
    """One round for one channel."""
    now = db.clock()
    async with db.read() as session:
        rows = list(await session.scalars(
            select(Notification).where(
                Notification.channel == name, Notification.status == outbox.SENT,
                Notification.delivery_status.in_(sorted(channel.pending_statuses)),
                Notification.provider_id.is_not(None), Notification.sent_at >= now - HORIZON)
            .order_by(Notification.sent_at, Notification.id).limit(BATCH)))
    updates = []
    for row in rows:
        assert row.provider_id is not None
        update = await channel.poll_status(row.provider_id, key=row.idempotency_key, now=now)
        if update is not None:
            updates.append(update)
    if updates:
        await delivery_status.record(db, notifier, name, updates)
