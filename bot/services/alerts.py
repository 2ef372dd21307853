"""Telling finance about a platform paybot cannot read: a notification given up on, a connection lost.

About no payment, so not through `Notifier.queue` (as the audit anchor): a Slack text in the finance channel,
queued once per idempotency key, and an audit entry saying what happened.
"""

from __future__ import annotations

from typing import Any

from bot.messages import Audience, Purpose, render_slack_text
from bot.services.notify import Notifier
from bot.storage import outbox
from bot.storage.database import UnitOfWork


async def tell_finance(uow: UnitOfWork, notifier: Notifier, purpose: Purpose, *, key: str,
                       **words: Any) -> int | None:
    """Queue `purpose`'s message for the finance channel, once per `key`; None without a finance channel or when
    it was queued before."""
    route = notifier.finance_route()
    if route is None:
        return None
    text = render_slack_text(purpose, **words)
    return await outbox.enqueue(
        uow.session, now=uow.clock(), idempotency_key=key, payment_id=None, channel=route.channel.name,
        audience=Audience.FINANCE.value, purpose=purpose.value, recipient=route.recipient,
        payload={"channel": route.recipient, "text": text})


async def connection_lost(uow: UnitOfWork, notifier: Notifier, source: str, tenant: str, reason: str,
                          since: str = "") -> int | None:
    """Finance hears once per loss (`since` tells two losses apart; a reconnect starts afresh), with the audit entry."""
    key = f"connection-lost:{source}:{tenant}:{since}"[:120]
    queued = await tell_finance(uow, notifier, Purpose.CONNECTION_LOST, key=key, source=source, tenant=tenant,
                                reason=reason)
    if queued is not None:
        uow.audit("connection.lost", source=source, detail={"tenant": tenant, "reason": reason[:200],
                                                            "since": since, "notification_id": queued})
    return queued
