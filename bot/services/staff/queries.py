"""Read-only answers for staff: an invoice's status, a search, the review queue, an invoice's audit trail.

Answers are Slack-flavoured markdown (`*bold*`, `_italic_`), readable as plain text elsewhere, built with
`bot.text.mrkdwn` so every value from a payer, a platform or a customer record is escaped.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.money import Money
from bot.services.notify import redact
from bot.services.staff.targets import StaffError
from bot.storage import models, repo
from bot.storage.database import Database
from bot.storage.sql import LIKE_ESCAPE, like_pattern
from bot.text import Mrkdwn, lines, mention, mrkdwn

LIMIT = 10
#: A notification's state as staff read it: queued → sent → delivered / failed (the provider's word once it reports).
STATES = {"pending": "queued", "sending": "sending", "sent": "sent", "dead": "failed", "cancelled": "cancelled"}
#: An amount, after at most a currency sign ("$", "US$", "€") or code and a space ("USD "): never a letter alone,
#: so a customer id such as C000042 is looked up as a customer, not as 42.
AMOUNT = re.compile(r"^(?:[A-Za-z]{0,2}[^\w\s\-]|[A-Za-z]{3} )?\s?(\d[\d,]*(?:\.\d+)?)$")


def _when(at: object) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if hasattr(at, "strftime") else "—"


def _money(currency: str, minor: int | None) -> str:
    return Money(currency, minor).format() if minor is not None else "—"


class StaffQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def status(self, number: str) -> Mrkdwn:
        async with self.db.read() as session:
            invoice = await repo.invoice_named(session, number)
            if invoice is None:
                raise StaffError(mrkdwn("There is no invoice `{}`.", number))
            payments = list(await session.scalars(select(models.Payment).where(
                models.Payment.invoice_id == invoice.id).order_by(models.Payment.occurred_at, models.Payment.id)))
            ids = [p.id for p in payments]
            notifications = list(await session.scalars(select(models.Notification).where(
                models.Notification.payment_id.in_(ids)).order_by(models.Notification.id))) if ids else []
            escalations = list(await session.scalars(select(models.Escalation).where(
                models.Escalation.payment_id.in_(ids)).order_by(models.Escalation.id))) if ids else []
        balance = invoice.amount_minor - invoice.paid_minor
        state = "paid in full" if balance == 0 else "overpaid" if balance < 0 else \
            "partially paid" if invoice.paid_minor else "open"
        answer = [mrkdwn("*Invoice {}* · customer {} · {}", invoice.number, invoice.customer_id, state),
                  mrkdwn("Total {} · paid {} · balance {}", _money(invoice.currency, invoice.amount_minor),
                         _money(invoice.currency, invoice.paid_minor), _money(invoice.currency, balance))]
        answer.append(mrkdwn("*Payments*") if payments else mrkdwn("_No payments recorded._"))
        for p in payments:
            extra = f" · duplicate of #{p.duplicate_of}" if p.duplicate_of else f" · {p.settlement or p.kind}"
            answer.append(mrkdwn("• #{} {} via {} on {}{}", p.id, _money(p.currency, p.amount_minor), p.source,
                                 _when(p.occurred_at), extra))
        if notifications:
            answer.append(mrkdwn("*Notifications*"))
        for n in notifications:
            state = n.delivery_status or STATES.get(n.status, n.status)
            error = f" · {n.last_error}" if n.last_error and n.status != "sent" else ""
            sent = f" at {_when(n.sent_at)}" if n.sent_at else ""
            provider_id = f" · id {n.provider_id}" if n.provider_id else ""
            answer.append(mrkdwn("• n{} {} to {} via {} ({}): {}{}, {} attempt{}{}{}", n.id, n.purpose, n.audience,
                                 n.channel, redact(n.recipient), state, sent, n.attempts,
                                 "s" if n.attempts != 1 else "", provider_id, error))
        for e in escalations:
            acked = mrkdwn("acknowledged by {}", mention((e.acknowledged_by or "").partition(":")[2])) \
                if e.acknowledged_at else f"not acknowledged ({e.rounds} post{'s' if e.rounds != 1 else ''})"
            answer.append(mrkdwn("• escalation #{} by {}: {}", e.id, mention(e.escalated_by.partition(":")[2]),
                                 acked))
        return lines(answer)

    async def find(self, term: str) -> Mrkdwn:
        amount = _amount(term)
        async with self.db.read() as session:
            if amount is not None:
                return await self._find_amount(session, amount)
            like = like_pattern(term.lower())  # `%` and `_` in the term are literal
            customers = list(await session.scalars(select(models.Customer).where(or_(
                models.Customer.id == term, func.lower(models.Customer.name).like(like, escape=LIKE_ESCAPE),
                func.lower(models.Customer.email).like(like, escape=LIKE_ESCAPE))).order_by(models.Customer.id)
                .limit(LIMIT)))
            if not customers:
                return mrkdwn("No customer matches `{}`.", term)
            answer = [mrkdwn("*Customers matching `{}`*", term)]
            for c in customers:
                invoices = list(await session.scalars(select(models.Invoice).where(
                    models.Invoice.customer_id == c.id, models.Invoice.amount_minor > models.Invoice.paid_minor)
                    .order_by(models.Invoice.number).limit(LIMIT)))
                owing = ", ".join(f"{i.number} ({_money(i.currency, i.amount_minor - i.paid_minor)})"
                                  for i in invoices) or "nothing open"
                answer.append(mrkdwn("• {} ({}, {}): {}", c.name, c.id, redact(c.email or "") or "no email", owing))
        return lines(answer)

    async def _find_amount(self, session: AsyncSession, amount: Decimal) -> Mrkdwn:
        minors = {int(amount.scaleb(places)) for places in (0, 2, 3) if amount.scaleb(places) % 1 == 0}
        invoices = [i for i in await session.scalars(select(models.Invoice).where(or_(
            models.Invoice.amount_minor.in_(minors), (models.Invoice.amount_minor - models.Invoice.paid_minor)
            .in_(minors))).order_by(models.Invoice.number).limit(LIMIT * 3))
            if amount in (Money(i.currency, i.amount_minor).amount,
                          Money(i.currency, i.amount_minor - i.paid_minor).amount)]
        payments = [p for p in await session.scalars(select(models.Payment).where(
            models.Payment.amount_minor.in_(minors)).order_by(models.Payment.id.desc()).limit(LIMIT * 3))
            if Money(p.currency, p.amount_minor).amount == amount]
        if not invoices and not payments:
            return mrkdwn("Nothing for the amount {}.", amount)
        answer = [mrkdwn("*Amount {}*", amount)]
        answer += [mrkdwn("• invoice {} ({}): total {}, owes {}", i.number, i.customer_id,
                          _money(i.currency, i.amount_minor), _money(i.currency, i.amount_minor - i.paid_minor))
                   for i in invoices[:LIMIT]]
        answer += [mrkdwn("• payment #{} {} via {} on {} · {}", p.id, _money(p.currency, p.amount_minor), p.source,
                          _when(p.occurred_at), "unmatched" if p.invoice_id is None else "matched")
                   for p in payments[:LIMIT]]
        return lines(answer)

    async def unmatched(self) -> Mrkdwn:
        async with self.db.read() as session:
            rows = list(await session.scalars(select(models.Payment).where(
                models.Payment.invoice_id.is_(None), models.Payment.kind == "payment",
                models.Payment.duplicate_of.is_(None)).order_by(models.Payment.recorded_at).limit(LIMIT * 2)))
        if not rows:
            return mrkdwn("Nothing to review: every payment is matched.")
        answer = [mrkdwn("*{} payment{} to review* (oldest first; use the card's *Match to invoice…* button)",
                         len(rows), "s" if len(rows) != 1 else "")]
        answer += [mrkdwn("• #{} {} via {} from {} on {}: _{}_", p.id, _money(p.currency, p.amount_minor), p.source,
                          redact(p.payer_email) if p.payer_email else p.payer_name or "unknown payer",
                          _when(p.occurred_at), p.match_reason) for p in rows]
        return lines(answer)

    async def audit(self, number: str) -> Mrkdwn:
        async with self.db.read() as session:
            invoice = await repo.invoice_named(session, number)
            number = invoice.number if invoice is not None else number
            entries = list(await session.scalars(select(models.AuditEntry).where(
                models.AuditEntry.invoice == number).order_by(models.AuditEntry.seq.desc()).limit(LIMIT * 2)))
        if not entries:
            return mrkdwn("No audit entries for invoice `{}`.", number)
        answer = [mrkdwn("*Audit trail of {}* (latest {}, oldest first)", number, len(entries))]
        for e in reversed(entries):
            where = e.channel or e.source or ""
            answer.append(mrkdwn("• {} `{}` by {}{}", _when(e.at), e.kind, e.actor, f" · {where}" if where else ""))
        return lines(answer)


def _amount(term: str) -> Decimal | None:
    found = AMOUNT.match(term.strip())
    if not found:
        return None
    try:
        return Decimal(found.group(1).replace(",", ""))
    except InvalidOperation:
        return None
