"""The matching lookups can be answered from indexes on both engines, however a payment names its invoice and
customer (by number, by the platform's ids, by email). A whole-table scan costs nothing in a test and 100 ms a
payment at 64,000 invoices (benchmarks/throughput.py --engine postgresql), so each engine's planner is asked for
its plan of the very statements paybot sent: PostgreSQL with sequential scans priced out (`enable_seqscan = off`),
so that a scan in its plan means no index could serve, whatever the size of the tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, insert, text

from bot.domain import matching
from bot.domain.audit import Keyring
from bot.domain.money import Money
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.services import directory, ingest, recording
from bot.storage import models, repo
from bot.storage.database import Database

INVOICES = 2_000


@pytest.fixture
async def db(database_url: str, clock: Any) -> AsyncIterator[Database]:
    """Customers and invoices as a large import leaves them: written in bulk (an import's speed is not the point
    here), then one more of each through the import itself."""
    database = Database.open(database_url, clock, audit_keys=Keyring())
    async with database.engine.begin() as conn:
        await conn.execute(insert(models.Customer), [
            {"id": f"C{n}", "name": f"Customer {n}", "email": f"c{n}@example.com", "country": "US",
             "locale": "en-US", "channels": ["email"]} for n in range(1, INVOICES)])
        await conn.execute(insert(models.Invoice), [
            {"number": f"INV-{n}", "customer_id": f"C{n}", "currency": "USD", "amount_minor": 10_000,
             "paid_minor": 0} for n in range(1, INVOICES)])
        await conn.execute(insert(models.ExternalRef), [
            {"entity": entity, "source": "stripe", "external_id": f"{prefix}{n}", "entity_id": f"{key}{n}"}
            for n in range(1, INVOICES) for entity, prefix, key in (("customer", "cus_", "C"),
                                                                       ("invoice", "in_", "INV-"))])
    await directory.import_customers(database, f"id,name,email,external_ids\n"
                                               f"C{INVOICES},Last,c{INVOICES}@example.com,stripe:cus_{INVOICES}\n")
    await directory.import_invoices(database, f"number,customer_id,amount,currency,external_ids\n"
                                              f"INV-{INVOICES},C{INVOICES},100.00,USD,stripe:in_{INVOICES}\n")
    yield database
    await database.dispose()


def paid(n: int) -> PaymentEvent:
    return PaymentEvent(source="stripe", kind=PaymentKind.PAYMENT, amount=Money.of("100.00", "USD"),
                        occurred_at=datetime(2026, 12, 1, tzinfo=UTC), invoice_numbers=(f"inv-{n}",),
                        invoice_external_id=f"in_{n + 1}", customer_external_id=f"cus_{n + 2}",
                        payer_email=f"c{n + 3}@example.com")


async def plans_of(db: Database, lookup: Callable[[], Awaitable[object]],
                   tables: tuple[str, ...] = ("invoices", "customers")) -> list[str]:
    """The plan of each SELECT on `tables` that `lookup` sends, as its engine words it."""
    sent: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.startswith("SELECT") and any(f"FROM {table}" in statement for table in tables):
            sent.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", keep)
    try:
        await lookup()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", keep)
    assert sent
    explain = "EXPLAIN" if db.dialect == "postgresql" else "EXPLAIN QUERY PLAN"
    plans = []
    async with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            await conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in sent:
            rows = await conn.exec_driver_sql(f"{explain} {statement}", parameters)
            plans.append("\n".join(str(row[-1]) for row in rows))
    return plans


def scans_a_whole_table(plan: str) -> bool:
    return any(f"Seq Scan on {table}" in plan or f"SCAN {table}" in plan.replace("SCAN CONSTANT", "")
               for table in ("invoices", "customers"))


async def test_the_batch_lookup_of_many_payments_reads_indexes_only(db):
    async def look_up() -> None:
        async with db.engine.begin() as conn:
            found = await conn.run_sync(lambda sync: recording.look_up(sync, [paid(n) for n in range(1, 40, 4)]))
        assert {invoice.number for _, invoice in found.invoices} >= {"INV-1", "INV-2", "INV-37", "INV-38"}

    plans = await plans_of(db, look_up)
    assert not [plan for plan in plans if scans_a_whole_table(plan)], plans


async def test_the_lookup_of_one_payment_reads_indexes_only(db):
    async def candidates() -> None:
        async with db.transaction() as uow:  # the writer's engine, as ingest reads it
            found = await repo.candidates(uow.session, matching.lookup_keys(paid(7)))
        assert {invoice.number for invoice in found.invoices} >= {"INV-7", "INV-8"}
        assert {customer.id for customer in found.customers} >= {"C9", "C10"}

    plans = await plans_of(db, candidates)
    assert not [plan for plan in plans if scans_a_whole_table(plan)], plans


async def test_an_import_leaves_fresh_statistics_for_the_planner(db):
    if db.dialect != "postgresql":
        pytest.skip("SQLite plans from its indexes alone")
    async with db.read() as session:
        analyzed = set(await session.scalars(text(
            "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")))
    assert {"customers", "invoices", "external_refs"} <= analyzed


async def test_the_workers_page_of_waiting_events_reads_the_waiting_ones_only(db):
    # PostgreSQL read the page through the status index with a bitmap scan, which visits every entry the status
    # ever had: each event recorded since the last vacuum left a dead one (1.8 ms a look under load, and growing).
    # In id order from the partial index, a plain index scan marks the dead entries it meets, and skips them next.
    at = datetime(2026, 12, 1, tzinfo=UTC)
    async with db.engine.begin() as conn:
        await conn.execute(insert(models.WebhookEvent), [
            {"source": "stripe", "event_id": f"evt_{n}", "event_type": "invoice.paid", "received_at": at,
             "status": "processed" if n < 200 else "received", "body": b"{}", "headers": {}, "attempts": 0}
            for n in range(203)])

    async def page() -> None:
        async with db.engine.begin() as conn:
            rows = (await conn.execute(ingest.WAITING_PAGE_UNCLAIMED,
                                       {"abandoned_before": at, "after_id": 0, "page": 100})).all()
        assert [row.event_id for row in rows] == ["evt_200", "evt_201", "evt_202"]

    [plan] = await plans_of(db, page, tables=("webhook_events",))
    if db.dialect == "postgresql":
        assert "Index Scan using ix_webhook_events_waiting" in plan, plan
    else:  # SQLite removes an entry when its row changes: the status index holds the waiting events alone
        assert "USING INDEX ix_webhook_events_status_received" in plan and "SCAN webhook_events" not in plan, plan
