"""What providers report after accepting a message: recorded on the notification and in the audit trail; a
message that will not arrive (a bounce, a carrier's `undelivered`) falls back to the customer's next channel at
once. A confirmed delivery ends the chain: fallbacks not yet sent are cancelled, and a failure reported after it
(a late or out-of-order callback) changes nothing, so nobody is thanked twice for one payment.

Consent changes (an SMS STOP or START) are recorded per address and audited with the reason."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from bot.domain import contact
from bot.integrations.channels.base import DELIVERED, ConsentChange, StatusUpdate
from bot.services import receipts
from bot.services.notify import Notifier, redact
from bot.storage import consent, outbox
from bot.storage.database import Database, UnitOfWork
from bot.storage.models import Customer, Notification

log = logging.getLogger(__name__)


async def record(db: Database, notifier: Notifier, channel: str,
                 updates: Sequence[StatusUpdate | ConsentChange]) -> int:
    """Apply the updates; returns how many changed something (a provider's redelivery changes nothing)."""
    changed = 0
    async with db.transaction() as uow:
        for update in updates:
            if isinstance(update, ConsentChange):
                changed += await record_consent(uow, channel, update)
            else:
                changed += await _status(uow, notifier, channel, update)
    return changed


async def _status(uow: UnitOfWork, notifier: Notifier, channel: str, update: StatusUpdate) -> bool:
    row = await _notification(uow, channel, update)
    if row is None:
        log.info("%s reported %r for a message paybot did not send (%s): ignored", channel, update.status,
                 update.provider_id or update.key or "no id")
        return False
    delivered = update.status in DELIVERED
    if row.delivery_status == update.status or row.delivery_status in DELIVERED and not delivered:
        return False  # a redelivery, or a report older than the confirmed delivery
    if row.status == outbox.DEAD and not delivered:
        return False  # already failed (and fallen back): nothing more to learn
    row.delivery_status = update.status
    detail = {"notification_id": row.id, "status": update.status, "reason": update.detail,
              "reported_at": update.at.isoformat(), "provider_id": update.provider_id or row.provider_id}
    subject = await receipts.subject_of(uow.session, row)
    uow.audit("notification.undelivered" if update.failed else "notification.status", channel=channel,
              detail=detail, **subject)
    if delivered:
        await _end_chain(uow, row, subject)
    elif update.failed and row.status in (outbox.SENT, outbox.SENDING, outbox.PENDING):
        # SENDING/PENDING: the report beat the worker's record of the send (or a send whose answer was lost):
        # the key was handed to the provider, so the message exists and failed. The worker finds the row gone.
        row.status, row.last_error = outbox.DEAD, f"{update.status}: {update.detail}"[:500]
        log.warning("notification %s was accepted but not delivered (%s)", row.id, update.status)
        await notifier.after_failure(uow, row)
    return True


async def _notification(uow: UnitOfWork, channel: str, update: StatusUpdate) -> Notification | None:
    """Ours by the key we gave the provider, else by the provider's message id."""
    if update.key:
        where = Notification.idempotency_key == update.key
    elif update.provider_id:
        where = Notification.provider_id == update.provider_id
    else:
        return None
    return await uow.session.scalar(select(Notification).where(where, Notification.channel == channel)
                                    .with_for_update())


async def _end_chain(uow: UnitOfWork, row: Notification, subject: dict[str, Any]) -> None:
    """The message arrived: the fallbacks queued after it (a failure reported earlier) are not sent."""
    later = await uow.session.scalars(select(Notification).where(
        Notification.idempotency_key.startswith(f"{row.idempotency_key}>", autoescape=True),
        Notification.status == outbox.PENDING).with_for_update())
    for fallback in later:
        fallback.status, fallback.last_error = outbox.CANCELLED, f"{row.channel} confirmed delivery"
        uow.audit("notification.cancelled", channel=fallback.channel, **subject,
                  detail={"notification_id": fallback.id, "reason": f"n{row.id} via {row.channel} was delivered"})


async def record_consent(uow: UnitOfWork, channel: str, change: ConsentChange) -> bool:
    """An opt-out or opt-in, recorded once per change and audited with who it concerns and why."""
    if not await consent.change(uow.session, change.preference, change.address, opted_out=change.opted_out,
                                reason=change.reason, now=uow.clock()):
        return False
    ids = await _customers_at(uow, change.address) if change.preference in ("sms", "whatsapp") else []
    kind = "consent.opted_out" if change.opted_out else "consent.opted_in"
    uow.audit(kind, channel=channel, customer_id=ids[0] if len(ids) == 1 else None,
              detail={"preference": change.preference, "address": redact(change.address), "reason": change.reason,
                      "customers": ids, "reported_at": change.at.isoformat()})
    log.info("%s %s: %s (%s)", redact(change.address), "opted out of" if change.opted_out else "opted back in to",
             change.preference, change.reason)
    return True


async def _customers_at(uow: UnitOfWork, phone: str) -> list[str]:
    """The customers whose phone, read for their country, is this E.164 number (phones are kept as written)."""
    rows = await uow.session.execute(select(Customer.id, Customer.phone, Customer.country)
                                     .where(Customer.phone.is_not(None)).order_by(Customer.id))
    return [cid for cid, written, country in rows if written and (written == phone or _e164(written, country) == phone)]


def _e164(written: str, country: str) -> str | None:
    try:
        return contact.phone_e164(written, country or "US")
    except ValueError:
        return None
