"""INGEST_MODE=deferred records the common case in batches (`bot.services.recording`): the same rows, messages and
audit entries as the general path (`Ingest.process`, one event at a time), and everything else left to it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bot.app import create_app
from bot.integrations.sources.base import read
from bot.keys import RUNTIME
from bot.services.ingest import Ingest, stored_request
from bot.storage import models
from bot.storage.audit import verify
from tests.harness import Paybot, stripe_invoice_event


@pytest.fixture
async def paybot(aiohttp_client, settings_for, configs, clock):  # type: ignore[no-untyped-def]
    app = create_app(settings_for(ingest_mode="deferred"), configs=configs, clock=clock, run_worker=False)
    client = await aiohttp_client(app)
    app[RUNTIME].process_here = False  # events wait, stored, for the test to record them one way or the other
    return Paybot(client=client, runtime=app[RUNTIME], clock=clock)


async def waiting(paybot: Paybot) -> list[tuple[int, Any]]:
    source = paybot.runtime.sources["stripe"]
    return [(row.id, await read(source.parse, stored_request(row)))
            for row in sorted(await paybot.rows(models.WebhookEvent), key=lambda r: r.id) if row.status == "received"]


@pytest.fixture
def general_calls(monkeypatch):  # type: ignore[no-untyped-def]
    """The events `Ingest.process` (the general path) recorded."""
    calls: list[int] = []
    original = Ingest.process

    async def counted(self, row_id, received):  # type: ignore[no-untyped-def]
        calls.append(row_id)
        return await original(self, row_id, received)
    monkeypatch.setattr(Ingest, "process", counted)
    return calls


def normalised(value: Any, numbers: dict[str, str]) -> str:
    """A value with what differs between two equivalent payments (ids, invoice numbers) taken out."""
    text = json.dumps(value, sort_keys=True, default=str)
    for real, placeholder in numbers.items():
        text = text.replace(real, placeholder)
    text = re.sub(r'"(payment_id|notification_id|invoice_id|webhook_event_id|id|value)": "?\d+"?', r'"\1": N', text)
    return re.sub(r"(payment_|Payment #)\d+", r"\1N", text)


async def shapes(paybot: Paybot, payment: models.Payment) -> list[str]:
    numbers = {f"INV-{n}": "INV-X" for n in range(10)} | {f"p{payment.id}:": "pN:"}
    columns = {c: getattr(payment, c) for c in ("source", "kind", "currency", "amount_minor", "date_only",
                                                "customer_id", "match_rule", "match_reason", "settlement",
                                                "balance_minor", "duplicate_of", "payer_email", "payer_name",
                                                "details")}
    notes = [{c: getattr(n, c) for c in ("idempotency_key", "channel", "audience", "purpose", "recipient",
                                         "payload", "fallbacks", "status", "attempts", "last_error")}
             for n in await paybot.rows(models.Notification, models.Notification.payment_id == payment.id)]
    ids = {n["idempotency_key"] for n in notes}
    entries = [{c: getattr(e, c) for c in ("kind", "actor", "source", "channel", "invoice", "customer_id", "amount",
                                           "currency", "detail")}
               for e in sorted(await paybot.rows(models.AuditEntry), key=lambda e: e.seq)
               if e.detail.get("payment_id") == payment.id or e.kind == "notification.queued"
               and any(str(e.detail.get("notification_id")) == str(n.id) for n in
                       await paybot.rows(models.Notification, models.Notification.payment_id == payment.id))]
    assert ids
    return [normalised(columns, numbers), normalised(sorted(notes, key=lambda n: n["purpose"]), numbers),
            normalised(entries, numbers)]


async def test_a_batch_records_exactly_what_the_general_path_records(paybot, sendgrid, slack, general_calls,
                                                                     caplog):
    await paybot.add_customer()
    for n in range(6):
        await paybot.add_invoice(f"INV-{n}", "100.00")
    for n in range(6):  # partial payments of 40.00 on each: Stripe reports the invoice's amount paid
        response = await paybot.post_stripe(stripe_invoice_event(f"evt_{n}", number=f"INV-{n}", amount_paid=4000,
                                                                 amount_remaining=6000))
        assert response.status == 200
    events = await waiting(paybot)
    recorded = await paybot.runtime.ingest.process_many(events[:3])  # together
    assert general_calls == [] and "one by one" not in caplog.text
    assert len(recorded.payment_ids) == 3 and len(recorded.notification_ids) == 6  # receipt and finance card each
    for item in events[3:]:
        await paybot.runtime.ingest.process(*item)  # one at a time, the general way

    payments = sorted(await paybot.rows(models.Payment), key=lambda p: p.webhook_event_id or 0)
    assert len(payments) == 6
    together, alone = payments[:3], payments[3:]
    for a, b in zip(together, alone, strict=True):
        assert await shapes(paybot, a) == await shapes(paybot, b)
    assert {i.paid_minor for i in await paybot.rows(models.Invoice)} == {4000}
    assert {e.status for e in await paybot.rows(models.WebhookEvent)} == {"processed"}
    async with paybot.runtime.db.read() as session:
        assert (await verify(session)).broken is None

    await paybot.deliver()
    assert len(sendgrid.accepted) == 6  # the finance cards wait for Slack's per-channel rate, the clock stands
    assert len([n for n in await paybot.notifications() if n.channel == "slack"]) == 6


async def test_what_a_batch_cannot_decide_alone_goes_the_general_way(paybot, sendgrid, slack, general_calls):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1", "100.00")
    await paybot.add_invoice("INV-2", "100.00")
    sent = [
        stripe_invoice_event("evt_a", number="INV-1", amount_paid=4000, amount_remaining=6000),  # together
        stripe_invoice_event("evt_b", number="INV-1", amount_paid=7000, amount_remaining=3000),  # same invoice
        stripe_invoice_event("evt_c", number="INV-404", amount_paid=1000),                     # no such invoice
        stripe_invoice_event("evt_d", number="INV-2", amount_paid=2000, amount_remaining=8000),  # together
    ]
    for event in sent:
        assert (await paybot.post_stripe(event)).status == 200
    events = await waiting(paybot)
    await paybot.runtime.ingest.process_many(events)
    row_of = {received.event_id: row_id for row_id, received in events}
    assert sorted(general_calls) == sorted([row_of["evt_b"], row_of["evt_c"]])

    payments = {p.webhook_event_id: p for p in await paybot.rows(models.Payment)}
    first, second, unknown, other = (payments[row_of[e]] for e in ("evt_a", "evt_b", "evt_c", "evt_d"))
    assert (first.amount_minor, first.balance_minor, first.settlement) == (4000, 6000, "partially_paid")
    assert (second.amount_minor, second.balance_minor, second.settlement) == (3000, 3000, "partially_paid")  # 70 - 40
    assert unknown.invoice_id is None and unknown.match_rule == "unmatched"
    assert (other.amount_minor, other.settlement) == (2000, "partially_paid")

    # Stripe sends the first again (a retry under a new event id would be a new event; the same money is not)
    assert (await paybot.post_stripe(stripe_invoice_event("evt_e", number="INV-2", amount_paid=2000,
                                                          amount_remaining=8000))).status == 200
    [again] = await waiting(paybot)
    await paybot.runtime.ingest.process_many([again])
    restated = next(p for p in await paybot.rows(models.Payment) if p.webhook_event_id == again[0])
    assert restated.duplicate_of == other.id  # nothing new on the invoice: a duplicate, told to nobody

    # An invoice's reports keep their order: behind one the batch leaves alone, the next on that invoice waits too.
    general_calls.clear()
    for event_id, paid in (("evt_f", 2000), ("evt_g", 5000)):
        assert (await paybot.post_stripe(stripe_invoice_event(event_id, number="INV-2", amount_paid=paid,
                                                              amount_remaining=10000 - paid))).status == 200
    later = await waiting(paybot)
    await paybot.runtime.ingest.process_many(later)
    assert general_calls == [row_id for row_id, _ in later]
    newest = next(p for p in await paybot.rows(models.Payment) if p.webhook_event_id == later[1][0])
    assert (newest.amount_minor, newest.duplicate_of) == (3000, None)
    await paybot.deliver()
    assert len(sendgrid.accepted) == 4  # the payments on invoices, not the duplicates
    async with paybot.runtime.db.read() as session:
        assert (await verify(session)).broken is None


async def test_a_customer_who_opted_out_is_skipped_alike_together_and_alone(paybot, sendgrid, general_calls):
    from bot.storage import consent

    await paybot.add_customer()
    async with paybot.runtime.db.transaction() as uow:
        assert await consent.change(uow.session, "email", "jane@example.com", opted_out=True, reason="STOP",
                                    now=uow.clock())
    for n in range(4):
        await paybot.add_invoice(f"INV-{n}", "100.00")
        assert (await paybot.post_stripe(stripe_invoice_event(f"evt_{n}", number=f"INV-{n}", amount_paid=4000,
                                                              amount_remaining=6000))).status == 200
    events = await waiting(paybot)
    await paybot.runtime.ingest.process_many(events[:2])
    assert general_calls == []
    for item in events[2:]:
        await paybot.runtime.ingest.process(*item)
    payments = sorted(await paybot.rows(models.Payment), key=lambda p: p.webhook_event_id or 0)
    assert await shapes(paybot, payments[0]) == await shapes(paybot, payments[2])
    kinds = [e.kind for e in await paybot.rows(models.AuditEntry)]
    assert kinds.count("notification.skipped") == 4 and kinds.count("notification.undeliverable") == 4
    await paybot.deliver()
    assert sendgrid.accepted == []  # the finance cards only
