"""Rebuilding what a payment's messages say from what is stored (for fallbacks, dead letters and resends)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.matching import Settlement
from bot.domain.money import Money
from bot.domain.parties import Customer, Invoice
from bot.domain.payments import PaymentKind
from bot.domain.receipt import Receipt
from bot.storage import models, repo, sql


def receipt_of(payment: models.Payment, invoice: Invoice | None, customer: Customer | None) -> Receipt:
    currency = payment.currency
    return Receipt(
        payment_id=payment.id, kind=PaymentKind(payment.kind), source=payment.source,
        amount=Money(currency, payment.amount_minor), paid_at=payment.occurred_at,
        customer_id=payment.customer_id, customer_name=customer.name if customer else payment.payer_name,
        locale=customer.locale if customer else "en-US",
        invoice_number=invoice.number if invoice else None, invoice_total=invoice.amount if invoice else None,
        balance=Money(currency, payment.balance_minor) if payment.balance_minor is not None else None,
        settlement=Settlement(payment.settlement) if payment.settlement else None,
        match_reason=payment.match_reason, payer_email=payment.payer_email,
        timezone=customer.timezone if customer else None, date_only=payment.date_only,
        payment_ref=payment.payment_ref, details=dict(payment.details), payer_name=payment.payer_name,
    )


def made_up(customer: Customer, amount: Money, *, invoice: str, source: str, reason: str, now: datetime) -> Receipt:
    """A payment of `amount` settling invoice `invoice` in full, as `customer` would read of it; no such payment
    exists (`paybot send-test`, the warm-up at start)."""
    return Receipt(payment_id=0, kind=PaymentKind.PAYMENT, source=source, amount=amount, paid_at=now,
                   customer_id=customer.id, customer_name=customer.name, locale=customer.locale,
                   timezone=customer.timezone, invoice_number=invoice, invoice_total=amount,
                   balance=Money.zero(amount.currency), settlement=Settlement.FULL, match_reason=reason)


async def load(session: AsyncSession, payment_id: int) -> tuple[Receipt, Customer | None] | None:
    payment = await session.get(models.Payment, payment_id)
    if payment is None:
        return None
    invoice = None
    if payment.invoice_id is not None:
        row = await session.get(models.Invoice, payment.invoice_id)
        invoice = (await repo.invoices(session, [row]))[0] if row else None
    customers = await repo.customers_by_id(session, [payment.customer_id]) if payment.customer_id else []
    customer = customers[0] if customers else None
    return receipt_of(payment, invoice, customer), customer


async def subject_of(session: AsyncSession, notification: models.Notification) -> dict[str, Any]:
    """Invoice, customer and amount of a notification's payment, for its audit entries."""
    if notification.payment_id is None:
        return {}
    payment_id = notification.payment_id
    return (await session.run_sync(lambda sync: subjects_of(sync.connection(), [payment_id]))).get(payment_id, {})


def subjects_of(connection: Connection, payment_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """`subject_of` for many payments in one query (a worker records a whole batch of sends at once)."""
    wanted = set(payment_ids)
    if not wanted:
        return {}
    rows = connection.execute(SUBJECTS, {"ids": list(wanted)})
    return {payment_id: {"invoice": number, "customer_id": customer_id, "amount": Money(currency, minor)}
            for payment_id, customer_id, currency, minor, number in rows}


SUBJECTS = select(  # built once: every batch of sends is audited with it
    models.Payment.id, models.Payment.customer_id, models.Payment.currency, models.Payment.amount_minor,
    models.Invoice.number,
).outerjoin(models.Invoice, models.Invoice.id == models.Payment.invoice_id).where(
    sql.one_of(models.Payment.id, "ids"))
