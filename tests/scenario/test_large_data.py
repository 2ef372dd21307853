"""Large files and long trails, made small: an import lands a chunk per transaction and still reports each bad row
by its line; the audit trail is verified and exported a page at a time, with the same verdicts and bytes (both
engines). The sizes that matter are measured by benchmarks/large_data.py, not here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot.domain.audit import Keyring
from bot.services import directory
from bot.storage import audit, models
from bot.storage.database import Database

KEY = "audit-key-0123456789abcdef"


@pytest.fixture
async def db(database_url: str, clock: Any) -> AsyncIterator[Database]:
    database = Database.open(database_url, clock, audit_keys=Keyring.of(KEY))
    yield database
    await database.dispose()


async def count(db: Database, model: type[models.Base]) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


CUSTOMERS = "id,name\nC1,Ana\nC2,Bob\n"


# --- import ---------------------------------------------------------------------------------------------------------

async def test_each_chunk_commits_so_a_failure_later_keeps_the_chunks_before_it(db, monkeypatch):
    await directory.import_customers(db, CUSTOMERS)
    rows = "".join(f"INV-{n},C1,{n}.00,USD\n" for n in range(1, 8))
    written = directory._write
    calls = 0

    async def fails_on_the_third_chunk(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the database went away")
        await written(*args)

    monkeypatch.setattr(directory, "_write", fails_on_the_third_chunk)
    reached: list[int] = []
    with pytest.raises(RuntimeError):
        await directory.import_invoices(db, "number,customer_id,amount,currency\n" + rows, chunk_rows=2,
                                        progress=reached.append)
    assert reached == [3, 5]  # the last line of each chunk that landed
    async with db.read() as session:
        landed = list(await session.scalars(select(models.Invoice.number).order_by(models.Invoice.id)))
        audited = list(await session.scalars(select(models.AuditEntry.invoice).where(
            models.AuditEntry.kind == "invoice.imported").order_by(models.AuditEntry.seq)))
        assert (await audit.verify(session, Keyring.of(KEY))).broken is None
    assert landed == audited == ["INV-1", "INV-2", "INV-3", "INV-4"]


BAD_ACROSS_CHUNKS = (
    "number,customer_id,amount,currency,external_ids\n"  # line 1
    "INV-1,C1,10.00,USD,stripe:in_1\n"                    # 2: lands (chunk 1)
    "INV-2,C9,10.00,USD,\n"                               # 3: unknown customer (chunk 1)
    "\n"                                                  # 4: blank, skipped
    "INV-3,C2,\"1,250.00\",USD,\n"                        # 5: lands (chunk 2)
    "INV-1,C2,20.00,USD,\n"                               # 6: a duplicate of line 2, a chunk before (chunk 2)
    "INV-4,C2,\"5\n.00\",USD,\n"                          # 7-8: a quoted cell over two lines (chunk 3)
    "INV-5,C2,30.00,USD,stripe:in_1\n"                    # 9: claims line 2's id, two chunks later (chunk 3)
    "INV-6,C2,40.00,USD,\n"                               # 10: lands (chunk 4)
)


@pytest.mark.parametrize("dry_run", [False, True], ids=["import", "dry-run"])
async def test_bad_rows_keep_their_line_numbers_across_chunks(db, dry_run):
    await directory.import_customers(db, CUSTOMERS)
    entries = await count(db, models.AuditEntry)
    report = await directory.import_invoices(db, BAD_ACROSS_CHUNKS, chunk_rows=2, dry_run=dry_run)
    assert report.errors == [
        (3, "customer_id 'C9' is not a known customer"),
        (6, "number INV-1 appears again (first on line 2); this row is skipped"),
        (8, "amount: not an amount: '5\\n.00'"),
        (9, "external_ids: stripe:in_1 is already invoice INV-1's"),
    ]
    assert [line for line, _ in report.landed] == [2, 5, 10] and report.created == 3
    if dry_run:
        assert await count(db, models.Invoice) == 0 and await count(db, models.AuditEntry) == entries
    else:
        async with db.read() as session:
            amounts = dict((await session.execute(select(models.Invoice.number, models.Invoice.amount_minor))).all())
        assert amounts == {"INV-1": 1000, "INV-3": 125000, "INV-6": 4000}
        # one entry per row that landed, and the import's summary
        assert await count(db, models.AuditEntry) == entries + 3 + 1


async def test_a_released_platform_id_can_be_claimed_by_a_later_chunk(db):
    await directory.import_customers(db, CUSTOMERS + "C3,Cy\n")
    await directory.import_customers(db, "id,name,external_ids\nC1,Ana,stripe:cus_1\n")
    report = await directory.import_customers(db, "id,name,external_ids\nC1,Ana,stripe:cus_9\nC2,Bob,\n"
                                                  "C3,Cy,stripe:cus_1\n", chunk_rows=1)
    assert report.errors == [] and report.updated == 2 and report.unchanged == 1
    async with db.read() as session:
        refs = dict((await session.execute(select(models.ExternalRef.external_id, models.ExternalRef.entity_id)
                                            .where(models.ExternalRef.entity == "customer"))).all())
    assert refs == {"cus_9": "C1", "cus_1": "C3"}


async def test_a_chunked_reimport_changes_only_what_differs(db):
    await directory.import_customers(db, CUSTOMERS)
    await directory.import_invoices(db, "number,customer_id,amount,currency,due_on\n"
                                        "INV-1,C1,10.00,USD,2026-12-31\nINV-2,C1,20.00,USD,\nINV-3,C2,30.00,USD,\n")
    report = await directory.import_invoices(db, "number,customer_id,amount,currency\n"
                                                 "INV-1,C2,10.00,USD\nINV-2,C1,20.00,USD\nINV-3,C2,35.00,USD\n",
                                             chunk_rows=2)
    assert (report.created, report.updated, report.unchanged) == (0, 2, 1)
    assert [c.described() for c in report.changes] == ["INV-1 changed: customer_id 'C1' → 'C2'",
                                                       "INV-3 changed: amount '30.00 USD' → '35.00 USD'"]
    async with db.read() as session:
        first = await session.scalar(select(models.Invoice).where(models.Invoice.number == "INV-1"))
    assert first is not None and (first.customer_id, str(first.due_on)) == ("C2", "2026-12-31")  # due_on kept


# --- the trail, a page at a time --------------------------------------------------------------------------------

async def some_trail(db: Database, clock: Any, entries: int) -> None:
    for n in range(entries):
        async with db.transaction() as uow:
            uow.audit("payment.matched", invoice=f"INV-{n % 3}", detail={"n": n, "note": "é, \"quoted\"\nline"})
        clock.advance(1)


async def test_verify_finds_a_break_in_a_late_page(db, clock):
    await some_trail(db, clock, 23)  # the key marker and 23 entries: 24
    async with db.read() as session:
        intact = await audit.verify(session, Keyring.of(KEY), page=5)
    assert (intact.broken, intact.count) == (None, 24)
    async with db.engine.begin() as conn:
        await conn.execute(update(models.AuditEntry).where(models.AuditEntry.seq == 22).values(actor="mallory"))
    async with db.read() as session:
        result = await audit.verify(session, Keyring.of(KEY), page=5)
    assert result.broken is not None and result.broken.seq == 22 and result.count == 21
    assert result.broken.reason.startswith("content does not match its hash")


async def test_verify_sees_entries_cut_from_the_last_page(db, clock):
    await some_trail(db, clock, 12)
    async with db.engine.begin() as conn:
        await conn.execute(models.AuditEntry.__table__.delete().where(models.AuditEntry.seq == 13))
    async with db.read() as session:
        result = await audit.verify(session, Keyring.of(KEY), page=4)
    assert result.broken is not None and result.broken.seq == 13 and "removed" in result.broken.reason


def as_exported(entry: models.AuditEntry) -> dict[str, object]:
    """An entry as the export wrote it before it was paged (one ORM stream)."""
    row = {name: getattr(entry, name) for name in audit.EXPORT_FIELDS}
    row["at"] = entry.at.isoformat().replace("+00:00", "Z")
    return row


@pytest.mark.parametrize("where", [{}, {"invoice": "INV-1"}, {"since": "late"}], ids=["all", "invoice", "since"])
async def test_the_paged_export_is_the_stream_it_replaces(db, clock, where):
    await some_trail(db, clock, 11)
    async with db.read() as session:
        everything = list(await session.scalars(select(models.AuditEntry).order_by(models.AuditEntry.seq)))
        since = everything[5].at if where.get("since") else None
        wanted = [as_exported(e) for e in everything
                  if (since is None or e.at >= since) and e.invoice == where.get("invoice", e.invoice)]
        paged = [row async for row in audit.entries(session, since=since, invoice=where.get("invoice"), page=2)]
    assert json.dumps(paged, default=str) == json.dumps(wanted, default=str) and len(paged) > 2


# --- the trail in stretches, side by side ---------------------------------------------------------------------------

def cut_entry(seq: int) -> Any:
    return models.AuditEntry.__table__.delete().where(models.AuditEntry.seq == seq)


def edit_entry(seq: int) -> Any:
    return update(models.AuditEntry).where(models.AuditEntry.seq == seq).values(actor="mallory")


@pytest.mark.parametrize("tamper", [None, edit_entry(4), edit_entry(11), cut_entry(9), cut_entry(10), cut_entry(26)],
                         ids=["intact", "edit-before-the-key", "edit-the-key-marker", "cut-a-stretch-end",
                              "cut-a-stretch-start", "cut-the-last"])
async def test_stretches_checked_side_by_side_give_the_one_walks_verdict(database_url, clock, monkeypatch, tamper):
    """A trail of 26 entries (10 unkeyed, the key marker, 15 keyed) in three stretches of 9: every verdict, count,
    key and anchor is what the one walk says, wherever the break is."""
    unkeyed = Database.open(database_url, clock)
    await some_trail(unkeyed, clock, 10)
    await unkeyed.dispose()
    keyed = Database.open(database_url, clock, audit_keys=Keyring.of(KEY))
    await some_trail(keyed, clock, 15)
    async with keyed.read() as session:
        anchors = [audit.Anchor(seq, "f" * 64 if seq == 7 else (await session.get(models.AuditEntry, seq)).hash)
                   for seq in (3, 20)]
    if tamper is not None:
        async with keyed.engine.begin() as conn:
            await conn.execute(tamper)
    async with keyed.read() as session:
        walked = await audit.verify(session, Keyring.of(KEY), anchors[1:], page=4)
        walked_anchored = await audit.verify(session, Keyring.of(KEY), anchors, page=4)
    await keyed.dispose()
    monkeypatch.setattr(audit, "PARALLEL_FROM", 0)
    side_by_side = await audit.verify_in_parallel(database_url, Keyring.of(KEY), anchors[1:], processes=3, page=4)
    assert side_by_side == walked
    assert tamper is not None or (walked.broken, walked.count, walked.key_ids) == (None, 26, (Keyring.of(KEY).current.id,))
    if tamper is None:  # and a published anchor that differs is found by the stretch that holds it
        assert await audit.verify_in_parallel(database_url, Keyring.of(KEY), anchors, processes=3,
                                              page=4) == walked_anchored
