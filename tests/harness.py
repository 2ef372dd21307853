"""paybot wired to fake providers, driven the way the platforms drive it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.domain.money import Money
from bot.domain.parties import Customer
from bot.integrations.sources.stripe import sign as stripe_sign
from bot.runtime import Runtime
from bot.services import directory
from bot.storage import models

STRIPE_SECRET = "whsec_test_secret"


@dataclass
class Paybot:
    client: TestClient
    runtime: Runtime
    clock: Any

    async def add_customer(self, customer_id: str = "C1", name: str = "Jane Doe", email: str = "jane@example.com",
                           **fields: Any) -> Customer:
        customer = Customer(id=customer_id, name=name, email=email, **fields)
        async with self.runtime.db.transaction() as uow:
            await directory.save_customer(uow, customer)
        return customer

    async def add_invoice(self, number: str = "INV-1042", amount: str = "1250.00", currency: str = "USD",
                          customer_id: str = "C1", external_ids: Mapping[str, str] | None = None) -> None:
        async with self.runtime.db.transaction() as uow:
            await directory.save_invoice(uow, number, customer_id, Money.of(Decimal(amount), currency),
                                         external_ids=dict(external_ids or {}))

    async def post_stripe(self, event: dict[str, Any] | bytes, *, secret: str = STRIPE_SECRET,
                          timestamp: int | None = None, signature: str | None = None) -> Any:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        ts = int(self.clock().timestamp()) if timestamp is None else timestamp
        header = signature if signature is not None else stripe_sign(body, secret, ts)
        return await self.client.post("/webhooks/stripe", data=body, headers={
            "Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"})

    async def deliver(self, rounds: int = 5) -> int:
        """Run the worker until nothing is due now (the clock does not move)."""
        await self.runtime.settle()  # work left running after an answer (deferred ingest, IPN confirmation)
        total = 0
        for _ in range(rounds):
            handled = await self.runtime.worker.run_once()
            total += handled
            if not handled:
                break
        return total

    async def rows(self, model: type[Any], *where: Any) -> list[Any]:
        async with self.runtime.db.read() as session:
            # In insertion order on both engines (PostgreSQL returns updated rows wherever their new version lies).
            order = model.__table__.primary_key.columns
            return list(await session.scalars(select(model).where(*where).order_by(*order)))

    async def notifications(self) -> list[models.Notification]:
        return await self.rows(models.Notification)

    async def audit_kinds(self) -> list[str]:
        return [e.kind for e in await self.rows(models.AuditEntry)]

    async def refusals(self) -> list[models.Refusal]:
        """Refused requests as operators see them: the in-memory counts flushed (the worker's job), then read."""
        await self.runtime.refusals.flush()
        return await self.rows(models.Refusal)

    async def refused(self) -> list[tuple[str, int, int]]:
        """(source, status, count) of every refusal summary, after a flush."""
        return [(r.source, r.status, r.count) for r in await self.refusals()]


def stripe_invoice_event(event_id: str = "evt_1", *, event_type: str = "invoice.paid", number: str = "INV-1042",
                         amount_paid: int = 125000, amount_remaining: int = 0, currency: str = "usd",
                         email: str = "jane@example.com", created: int = 1795867200, **invoice: Any) -> dict[str, Any]:
    """An Event as Stripe sends it (API 2025-05-28.basil), trimmed to the fields paybot reads and a few more."""
    return {
        "id": event_id, "object": "event", "api_version": "2025-05-28.basil", "created": created,
        "livemode": False, "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": {
            "id": "in_1QabcINV1042", "object": "invoice", "number": number,
            "status": "paid" if amount_remaining == 0 else "open", "currency": currency,
            "amount_due": amount_paid + amount_remaining, "amount_paid": amount_paid,
            "amount_remaining": amount_remaining, "total": amount_paid + amount_remaining,
            "customer": "cus_Q1", "customer_name": "Jane Doe", "customer_email": email,
            "customer_phone": None, "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test",
            "metadata": {}, "livemode": False, **invoice,
        }},
    }
