"""Staff actions on a payment: resend its customer message, reword and resend it, match it to an invoice.

Every new message goes through the outbox with a key of its own (the request's claim), so the worker sends it
under the channel's rate limits and a retried request queues nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bot.domain import matching
from bot.domain.money import Money
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.messages import Message, Purpose, render
from bot.services import receipts
from bot.services.notify import Notifier, Route, key_for
from bot.services.staff.targets import Request, StaffError, Target, payment_target, remember, resolve
from bot.storage import models, repo
from bot.storage.database import Database, UnitOfWork
from bot.text import Mrkdwn, mrkdwn
from cards.slack_modals import MAX_OPTIONS, MAX_TEXT


@dataclass(frozen=True, slots=True)
class Done:
    text: Mrkdwn          # the reply to the member of staff
    payment_id: int | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    payment_id: int
    heading: Mrkdwn
    text: str


class StaffDesk:
    def __init__(self, db: Database, notifier: Notifier) -> None:
        self.db = db
        self.notifier = notifier
        self._locale = notifier.wording.business.locale  # staff read money the business's way

    # --- resend -------------------------------------------------------------------------------------------------

    async def resend(self, request: Request, claim_id: int, name: str, channel: str | None = None) -> Done:
        """`name` is an invoice (its latest payment's customer message) or `n<id>` (exactly that message again)."""
        async with self.db.transaction() as uow:
            target = await resolve(uow.session, name)
            original = target.notification
            if original is not None and channel is None:
                route = self._route_of(original)
                message = Message(Purpose(original.purpose), original.recipient, target.receipt, target.customer)
                payload = original.payload
            else:
                route = self._customer_route(target, channel)
                message = await self._receipt_message(uow, target, route)
                payload = None
            queued = await self.notifier.queue(
                uow, route, message, key=key_for(target.payment.id, message.purpose, route.channel.name,
                                                 f"staff{claim_id}"), actor=request.actor, payload=payload)
            what = "the receipt" if message.purpose is Purpose.RECEIPT else f"the {message.purpose.value} message"
            uow.audit("notification.resent", actor=request.actor, channel=route.channel.name,
                      **_subject(target), detail={"notification_id": queued, "purpose": message.purpose.value,
                                                  "of": original.id if original else None})
            await remember(uow, claim_id, target.payment.id, f"resent {what} via {route.channel.name}")
        return Done(mrkdwn("Queued {} for {} again via {} (notification #{}).", what, _invoice(target),
                           route.channel.name, queued), target.payment.id)

    def _route_of(self, notification: models.Notification) -> Route:
        channel = self.notifier.channels.get(notification.channel)
        if channel is None:
            raise StaffError(mrkdwn("Channel {} is not configured any more.", notification.channel))
        return Route(channel, notification.recipient)

    def _customer_route(self, target: Target, preference: str | None) -> Route:
        if not target.receipt.matched or target.customer is None or target.payment.kind != PaymentKind.PAYMENT:
            raise StaffError(mrkdwn("Payment #{} is not matched to a customer's invoice: there is no customer "
                                    "message to send. Match it first.", target.payment.id))
        routes = self.notifier.customer_routes(target.customer)
        if preference:
            routes = [r for r in routes if preference in (r.channel.name, r.channel.serves)]
        if not routes:
            usable = ", ".join(r.channel.serves for r in self.notifier.customer_routes(target.customer)) or "none"
            wanted = f" on {preference}" if preference else ""
            raise StaffError(mrkdwn("{} cannot be reached{} (usable channels: {}).", target.customer.name, wanted,
                                    usable))
        return routes[0]

    async def _receipt_message(self, uow: UnitOfWork, target: Target, route: Route) -> Message:
        """The customer message, in the latest wording staff gave it."""
        edited = await uow.session.scalar(
            select(models.MessageEdit.after).where(models.MessageEdit.payment_id == target.payment.id)
            .order_by(models.MessageEdit.id.desc()).limit(1))
        return Message(Purpose.RECEIPT, route.recipient, target.receipt, target.customer, text_override=edited)

    # --- edit -----------------------------------------------------------------------------------------------------

    async def draft(self, name: str) -> Draft:
        """The customer message as it reads now, for the edit modal."""
        async with self.db.transaction() as uow:
            target = await resolve(uow.session, name)
            route = self._customer_route(target, None)
            text = render(self.notifier.stamp(await self._receipt_message(uow, target, route))).text
        heading = mrkdwn("*{}* · {} · payment #{}", _invoice(target),
                         target.receipt.money(target.receipt.amount, self._locale), target.payment.id)
        return Draft(target.payment.id, heading, text)

    async def check_edit(self, payment_id: int, text: str) -> str | None:
        """Why this wording cannot be saved, if it cannot (shown on the modal's field)."""
        if not text.strip():
            return "The message cannot be empty."
        if len(text) > MAX_TEXT:
            return f"Keep it under {MAX_TEXT} characters."
        async with self.db.transaction() as uow:
            target = await payment_target(uow.session, payment_id)
            route = self._customer_route(target, None)
            if render(self.notifier.stamp(await self._receipt_message(uow, target, route))).text == text.strip():
                return "That is the message as it stands: change something, or cancel."
        return None

    async def save_edit(self, request: Request, claim_id: int, payment_id: int, text: str) -> Done:
        async with self.db.transaction() as uow:
            target = await payment_target(uow.session, payment_id)
            route = self._customer_route(target, None)
            before = render(self.notifier.stamp(await self._receipt_message(uow, target, route))).text
            after = text.strip()
            message = Message(Purpose.RECEIPT, route.recipient, target.receipt, target.customer, text_override=after)
            queued = await self.notifier.queue(uow, route, message, actor=request.actor, key=key_for(
                payment_id, Purpose.RECEIPT, route.channel.name, f"edit{claim_id}"))
            uow.session.add(models.MessageEdit(payment_id=payment_id, notification_id=queued, before=before,
                                               after=after, edited_by=request.actor, edited_at=uow.clock()))
            uow.audit("notification.edited", actor=request.actor, channel=route.channel.name, **_subject(target),
                      detail={"notification_id": queued, "before": before, "after": after})
            await remember(uow, claim_id, payment_id, f"edited the receipt and resent it via {route.channel.name}")
        return Done(mrkdwn("Saved the new wording for {} and queued it via {} (notification #{}).",
                           _invoice(target), route.channel.name, queued), payment_id)

    # --- match ----------------------------------------------------------------------------------------------------

    async def match_options(self, payment_id: int) -> tuple[Mrkdwn, list[tuple[str, str]]]:
        """A heading and the open invoices in the payment's currency, likeliest first (its customer's, exact fits)."""
        async with self.db.read() as session:
            target = await payment_target(session, payment_id)
            self._matchable(target)
            payment = target.payment
            rows = list(await session.scalars(select(models.Invoice).where(
                models.Invoice.currency == payment.currency,
                models.Invoice.amount_minor > models.Invoice.paid_minor).order_by(models.Invoice.number)))
        fits = sorted(rows, key=lambda i: (i.customer_id != payment.customer_id,
                                           i.amount_minor - i.paid_minor != payment.amount_minor, i.number))
        options = [(i.number, f"{i.number} · {i.customer_id} · owes "
                    f"{Money(i.currency, i.amount_minor - i.paid_minor).format()}") for i in fits[:MAX_OPTIONS]]
        receipt = target.receipt
        heading = mrkdwn("*{}* via {} from {} · payment #{}\n_{}_", receipt.money(receipt.amount, self._locale),
                         receipt.source, receipt.payer_email or receipt.customer_name or "an unknown payer",
                         payment_id, receipt.match_reason)
        return heading, options

    @staticmethod
    def _matchable(target: Target) -> None:
        payment = target.payment
        if payment.kind != PaymentKind.PAYMENT or payment.duplicate_of is not None:
            raise StaffError(mrkdwn("Payment #{} is not a payment that can be matched.", payment.id))
        if payment.invoice_id is not None:
            raise StaffError(mrkdwn("Payment #{} is already matched to {}.", payment.id, target.receipt.invoice_number))

    async def check_match(self, payment_id: int, number: str) -> str | None:
        if not number:
            return "Choose an invoice or type its number."
        async with self.db.read() as session:
            invoice = await repo.invoice_named(session, number)
            payment = await session.get(models.Payment, payment_id)
        if invoice is None:
            return f"There is no invoice {number}."
        if payment is not None and invoice.currency != payment.currency:
            return f"{invoice.number} is in {invoice.currency}; the payment is in {payment.currency}."
        return None

    async def match(self, request: Request, claim_id: int, payment_id: int, number: str) -> Done:
        async with self.db.transaction() as uow:
            target = await payment_target(uow.session, payment_id)
            self._matchable(target)
            payment = target.payment
            row = await repo.invoice_named(uow.session, number, for_update=True)
            if row is None or row.currency != payment.currency:
                raise StaffError(mrkdwn("Invoice {} cannot take this payment.", number))
            number = row.number
            invoice = (await repo.invoices(uow.session, [row]))[0]
            amount = Money(payment.currency, payment.amount_minor)
            outcome = matching.outcome(invoice, PaymentEvent(source=payment.source, kind=PaymentKind.PAYMENT,
                                                             amount=amount, occurred_at=payment.occurred_at))
            payment.invoice_id, payment.customer_id = row.id, row.customer_id
            payment.match_rule, payment.match_reason = "staff", f"matched by staff ({request.actor})"
            payment.settlement, payment.balance_minor = outcome.settlement.value, outcome.balance.minor
            row.paid_minor += amount.minor
            await uow.session.flush()
            receipt, customer = await receipts.load(uow.session, payment.id) or (target.receipt, None)
            uow.audit("payment.matched_by_staff", actor=request.actor, source=payment.source, invoice=number,
                      customer_id=row.customer_id, amount=amount, detail={
                          "payment_id": payment.id, "settlement": outcome.settlement.value,
                          "balance": str(outcome.balance.amount)})
            queued = await self.notifier.thank(uow, receipt, customer, actor=request.actor) if customer else None
            await remember(uow, claim_id, payment.id, f"matched it to {number}")
        told = mrkdwn(" and queued {}'s receipt", customer.name) if customer and queued else ""
        return Done(mrkdwn("Matched payment #{} to {}{}.", payment_id, number, told), payment_id)


def _invoice(target: Target) -> str:
    return f"invoice {target.receipt.invoice_number}" if target.receipt.invoice_number else f"payment #{target.payment.id}"


def _subject(target: Target) -> dict[str, Any]:
    receipt = target.receipt
    return {"invoice": receipt.invoice_number, "customer_id": receipt.customer_id, "amount": receipt.amount}
