"""Resolving what staff name ("INV-1042", "n17" for a notification, "p5" for a payment) and claiming a request.

A claim is a row keyed by the request (Slack's trigger, or a card's revision for a button), so the same request
arriving twice, a platform retry or a double click, is done once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.parties import Customer
from bot.domain.receipt import Receipt
from bot.errors import BotError
from bot.services import receipts
from bot.storage import models, repo
from bot.storage.database import Database, UnitOfWork
from bot.storage.sql import insert_or_ignore
from bot.text import Mrkdwn, mrkdwn

NOTIFICATION = re.compile(r"^(?:n|#|notification:)(\d+)$", re.IGNORECASE)
PAYMENT = re.compile(r"^(?:p|payment:)(\d+)$", re.IGNORECASE)


class StaffError(BotError):
    """that cannot be done"""

    def __init__(self, message: Mrkdwn) -> None:
        super().__init__(message)
        self.text = message  # the reply to the member of staff


@dataclass(frozen=True, slots=True)
class Request:
    key: str     # the same for a retried request
    actor: str   # "slack:U0123"
    action: str  # "resend", "escalate", …

    @property
    def user_id(self) -> str:
        return self.actor.partition(":")[2]


@dataclass(frozen=True, slots=True)
class Target:
    payment: models.Payment
    receipt: Receipt
    customer: Customer | None
    notification: models.Notification | None = None


async def claim(db: Database, request: Request, payment_id: int | None = None) -> int | None:
    """Record the request; its id, or None when this request was already handled."""
    async with db.transaction() as uow:
        return (await uow.session.execute(insert_or_ignore(uow.session, models.StaffAction, {
            "request_key": request.key[:200], "actor": request.actor, "action": request.action,
            "payment_id": payment_id, "at": uow.clock()}))).scalar_one_or_none()


async def remember(uow: UnitOfWork, claim_id: int, payment_id: int, summary: str) -> None:
    """What the request did, for the payment's card."""
    row = await uow.session.get(models.StaffAction, claim_id)
    if row is not None:
        row.payment_id, row.summary = payment_id, summary


async def latest_payment(session: AsyncSession, invoice_number: str) -> models.Payment:
    invoice = await repo.invoice_named(session, invoice_number)
    if invoice is None:
        raise StaffError(mrkdwn("There is no invoice `{}`.", invoice_number))
    payment = await session.scalar(
        select(models.Payment).where(models.Payment.invoice_id == invoice.id, models.Payment.duplicate_of.is_(None))
        .order_by(models.Payment.occurred_at.desc(), models.Payment.id.desc()).limit(1))
    if payment is None:
        raise StaffError(mrkdwn("No payment has been recorded on invoice `{}` yet.", invoice_number))
    return payment


async def resolve(session: AsyncSession, name: str) -> Target:
    """A payment from an invoice number, `n<id>` (a notification) or `p<id>` (a payment)."""
    notification = None
    if found := NOTIFICATION.match(name):
        notification = await session.get(models.Notification, int(found.group(1)))
        if notification is None or notification.payment_id is None:
            raise StaffError(mrkdwn("There is no notification #{} about a payment.", found.group(1)))
        payment = await session.get(models.Payment, notification.payment_id)
    elif found := PAYMENT.match(name):
        payment = await session.get(models.Payment, int(found.group(1)))
        if payment is None:
            raise StaffError(mrkdwn("There is no payment #{}.", found.group(1)))
    else:
        payment = await latest_payment(session, name)
    return await target_of(session, payment, notification)


async def target_of(session: AsyncSession, payment: models.Payment | None,
                    notification: models.Notification | None = None) -> Target:
    if payment is None:
        raise StaffError(mrkdwn("That payment no longer exists."))
    loaded = await receipts.load(session, payment.id)
    assert loaded is not None
    receipt, customer = loaded
    return Target(payment, receipt, customer, notification)


async def payment_target(session: AsyncSession, payment_id: int) -> Target:
    return await target_of(session, await session.get(models.Payment, payment_id))
