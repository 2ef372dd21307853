"""`paybot send-test --to CUSTOMER`: a thank-you marked [TEST], through each of the customer's real channels.

It takes the payment path's own way out (rendered by the channel, queued in the outbox, sent by the delivery
worker) so that what it proves is what a payment would do; only no real payment or invoice is involved. Each
message is queued already claimed by this process's worker, so a worker elsewhere cannot take it first, and sent
at once; the outcome is read back from the outbox row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

from sqlalchemy import select

from bot.domain.money import Money
from bot.domain.parties import Customer
from bot.domain.receipt import Receipt
from bot.messages import Audience, Message, Purpose
from bot.services import receipts
from bot.services.delivery import DeliveryWorker
from bot.services.notify import Notifier, redact
from bot.storage import models, outbox, repo
from bot.storage.database import Database

TEST_INVOICE = "TEST-0001"
TEST_AMOUNT = Decimal("1.00")


@dataclass(frozen=True, slots=True)
class Outcome:
    channel: str
    recipient: str  # redacted
    status: str     # sent | pending (will retry) | dead
    detail: str     # the provider's message id, or its reason

    @property
    def delivered(self) -> bool:
        return self.status == outbox.SENT


async def find_customer(db: Database, customer_id: str) -> Customer | None:
    async with db.read() as session:
        found = await repo.customers_by_id(session, [customer_id])
    return found[0] if found else None


async def send_test(db: Database, notifier: Notifier, worker: DeliveryWorker, customer: Customer) -> list[Outcome]:
    """One [TEST] thank-you per channel that can reach the customer, each sent now; [] when none can."""
    routes = notifier.customer_routes(customer)
    if not routes:
        return []
    receipt = await _test_receipt(db, customer)
    claimed: list[int] = []
    async with db.transaction() as uow:
        now = uow.clock()
        for route in routes:
            message = Message(Purpose.RECEIPT, route.recipient, receipt, customer, test=True)
            notification_id = await outbox.enqueue(
                uow.session, now=now, idempotency_key=f"test:{uuid4().hex}", payment_id=None,
                channel=route.channel.name, audience=Audience.CUSTOMER.value, purpose=Purpose.RECEIPT.value,
                recipient=route.recipient, payload=route.channel.render(message),
                status=outbox.SENDING, attempts=0, claimed_by=worker.worker_id,
                lease_until=now + timedelta(seconds=worker.settings.worker_lease_seconds))
            assert notification_id is not None  # a fresh key is never a duplicate
            claimed.append(notification_id)
            uow.audit("notification.test", channel=route.channel.name, customer_id=customer.id, detail={
                "notification_id": notification_id, "recipient": redact(route.recipient),
                "test_invoice": TEST_INVOICE, "test_amount": str(receipt.amount)})
    outcomes = []
    for notification_id in claimed:
        async with db.read() as session:
            row = await session.get(models.Notification, notification_id)
        assert row is not None
        await worker.deliver(row)
        async with db.read() as session:
            done = await session.get(models.Notification, notification_id, populate_existing=True)
        assert done is not None
        outcomes.append(Outcome(done.channel, redact(done.recipient), done.status,
                                done.provider_id or "" if done.status == outbox.SENT else done.last_error or
                                "waiting for the provider's rate limit; the worker sends it shortly"))
    return outcomes


async def _test_receipt(db: Database, customer: Customer) -> Receipt:
    """A made-up, clearly labelled payment in the currency the customer is invoiced in (USD if none yet)."""
    async with db.read() as session:
        currency = await session.scalar(select(models.Invoice.currency)
                                        .where(models.Invoice.customer_id == customer.id).limit(1))
    return receipts.made_up(customer, Money.rounded(TEST_AMOUNT, currency or "USD"), invoice=TEST_INVOICE,
                            source="test", reason="paybot send-test", now=db.clock())
