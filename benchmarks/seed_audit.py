"""A database with a long history: customers, invoices, payments and their messages, and an audit trail of (by
default) 1,000,000 entries over them, chained with paybot's own code (a valid chain, keyed when --audit-key is set).

    .venv/bin/python benchmarks/seed_audit.py DATABASE_URL [--entries 1000000] [--audit-key KEY]

The database is migrated first and must hold no audit entries yet. The mix, per 100 entries: 2 customers imported,
10 invoices imported, and for each of 17.6 payments its story: `webhook.verified`, `payment.matched`,
`notification.queued` and `notification.sent` (the customer's thank-you). Core bulk inserts, a page at a time, each
page its own transaction: about a minute on SQLite for a million entries.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from bot.domain.audit import AuditRecord, Keyring  # noqa: E402
from bot.storage import audit, migrate, models  # noqa: E402
from bot.storage.database import audit_record  # noqa: E402
from bot.storage.engine import create_engine  # noqa: E402

PAGE = 20_000  # audit entries per transaction
START = datetime(2025, 1, 1, tzinfo=UTC)
WORDS = ("Alvarez", "Brightline", "Cobalt", "Delta", "Evergreen", "Fabrication", "Granite", "Harbor", "Iron",
         "Juniper", "Kestrel", "Lumen", "Meridian", "Northwind", "Orchard", "Pioneer", "Quarry", "Riverside")
CUSTOMER_SHARE, INVOICE_SHARE, STORY = 0.02, 0.10, 4  # customers and invoices per entry; entries per payment


def customer_id(n: int) -> str:
    return f"C-{n:06d}"


def invoice_number(n: int) -> str:
    return f"INV-{n:07d}"


def customer_name(n: int) -> str:
    return f"{WORDS[n % len(WORDS)]} {WORDS[(n // len(WORDS)) % len(WORDS)]} {n}"


class Plan:
    """How many of each a trail of `entries` entries tells the story of."""

    def __init__(self, entries: int) -> None:
        self.customers = max(1, int(entries * CUSTOMER_SHARE))
        self.invoices = max(1, int(entries * INVOICE_SHARE))
        self.payments = (entries - self.customers - self.invoices) // STORY
        self.rest = entries - self.customers - self.invoices - self.payments * STORY  # filled with staff lookups
        self.step = timedelta(days=365) / max(entries, 1)  # the trail spans a year


def seed_directory(conn: Connection, plan: Plan) -> None:
    rng = random.Random(14)
    conn.execute(insert(models.Customer), [
        {"id": customer_id(n), "name": customer_name(n), "email": f"ap{n}@{WORDS[n % len(WORDS)].lower()}.example",
         "phone": None, "country": "US", "locale": "en-US", "timezone": None, "channels": ["email"],
         "slack_channel": None, "teams_conversation": None} for n in range(1, plan.customers + 1)])
    for first in range(1, plan.invoices + 1, PAGE):
        conn.execute(insert(models.Invoice), [
            {"number": invoice_number(n), "customer_id": customer_id(1 + n % plan.customers), "currency": "USD",
             "amount_minor": rng.randint(100, 500_000) * 100, "paid_minor": 0, "issued_on": None, "due_on": None}
            for n in range(first, min(first + PAGE, plan.invoices + 1))])


def seed_payments(conn: Connection, plan: Plan, first: int, last: int) -> None:
    """Payments `first`..`last`, each on invoice n % invoices (so some invoices have several), with its
    customer's email sent."""
    invoice_ids = dict(conn.execute(select(models.Invoice.number, models.Invoice.id).where(
        models.Invoice.number.in_([invoice_number(1 + n % plan.invoices) for n in range(first, last + 1)]))).all())
    payments, sent = [], []
    for n in range(first, last + 1):
        i = 1 + n % plan.invoices
        at = START + plan.step * (plan.customers + plan.invoices + n * STORY)
        payments.append({"webhook_event_id": None, "source": "stripe", "kind": "payment",
                         "payment_ref": f"pi_{n:08d}", "currency": "USD", "amount_minor": 1000 + n % 90_000,
                         "occurred_at": at, "date_only": False, "recorded_at": at,
                         "invoice_id": invoice_ids[invoice_number(i)],
                         "customer_id": customer_id(1 + i % plan.customers),
                         "match_rule": "invoice_number", "match_reason": "invoice number in the metadata",
                         "settlement": None, "balance_minor": None, "fingerprint": f"fp{n:08d}",
                         "duplicate_of": None, "payer_email": None, "payer_name": None, "details": {}})
        sent.append((n, at))
    conn.execute(insert(models.Payment), payments)
    ids = dict(conn.execute(select(models.Payment.payment_ref, models.Payment.id).where(
        models.Payment.payment_ref.in_([p["payment_ref"] for p in payments]))).all())
    conn.execute(insert(models.Notification), [
        {"idempotency_key": f"seed:{n}", "payment_id": ids[f"pi_{n:08d}"], "channel": "sendgrid",
         "audience": "customer", "purpose": "receipt", "recipient": f"ap{n}@example.com", "payload": {},
         "fallbacks": [], "status": "sent", "attempts": 1, "available_at": at, "created_at": at, "sent_at": at,
         "provider_id": f"sg_{n}"} for n, at in sent])


def records(plan: Plan) -> Iterator[AuditRecord]:
    """The trail, oldest first."""
    seq = 0

    def at() -> datetime:
        nonlocal seq
        seq += 1
        return START + plan.step * seq

    for n in range(1, plan.customers + 1):
        yield audit_record(at(), "customer.imported", customer_id=customer_id(n), detail={
            "name": [None, customer_name(n)], "channels": [None, ["email"]]})
    for n in range(1, plan.invoices + 1):
        yield audit_record(at(), "invoice.imported", invoice=invoice_number(n), detail={
            "customer_id": [None, customer_id(1 + n % plan.customers)]})
    for n in range(1, plan.payments + 1):
        i = 1 + n % plan.invoices  # as seed_payments pays them
        number, customer = invoice_number(i), customer_id(1 + i % plan.customers)
        yield audit_record(at(), "webhook.verified", source="stripe", detail={"event_id": f"evt_{n:08d}"})
        yield audit_record(at(), "payment.matched", source="stripe", invoice=number, customer_id=customer, detail={
            "payment_id": n, "kind": "payment", "rule": "invoice_number", "payment_ref": f"pi_{n:08d}"})
        yield audit_record(at(), "notification.queued", channel="sendgrid", invoice=number, customer_id=customer,
                           detail={"purpose": "receipt", "audience": "customer", "recipient": "a***@example.com"})
        yield audit_record(at(), "notification.sent", channel="sendgrid", invoice=number, customer_id=customer,
                           detail={"notification_id": n, "provider_id": f"sg_{n}"})
    for n in range(plan.rest):  # the few left over: webhooks that named no payment
        yield audit_record(at(), "webhook.verified", source="stripe", detail={"event_id": f"evt_x{n}"})


def pages(items: Iterator[AuditRecord], size: int) -> Iterator[Sequence[AuditRecord]]:
    page: list[AuditRecord] = []
    for item in items:
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


async def seed(database_url: str, entries: int, keys: Keyring = Keyring(), *, quiet: bool = False) -> Plan:
    """Migrate `database_url` and fill it as above; the chain is appended with paybot's `audit.append_rows`."""
    plan = Plan(entries)
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            if await conn.scalar(select(func.count()).select_from(models.AuditEntry)):
                raise SystemExit("the database already has audit entries: seed an empty one")
            await conn.run_sync(seed_directory, plan)
        for first in range(1, plan.payments + 1, PAGE):
            async with engine.begin() as conn:
                await conn.run_sync(seed_payments, plan, first, min(first + PAGE - 1, plan.payments))
        written = 0
        for page in pages(records(plan), PAGE):
            async with engine.begin() as conn:
                await conn.run_sync(lambda sync, page=page: audit.append_rows(sync, page, keys))
            written += len(page)
            if not quiet:
                print(f"\r{written:,} audit entries", end="", file=sys.stderr, flush=True)
        if not quiet:
            print(file=sys.stderr)
    finally:
        await engine.dispose()
    return plan


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database_url", help="e.g. sqlite+aiosqlite:///./big.db (created and migrated)")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--audit-key", default=None, help="chain keyed with this AUDIT_KEY (default: unkeyed)")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    started = time.monotonic()
    plan = asyncio.run(seed(args.database_url, args.entries, Keyring.of(args.audit_key)))
    print(f"seeded {args.entries:,} audit entries ({plan.customers:,} customers, {plan.invoices:,} invoices, "
          f"{plan.payments:,} payments) in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
