"""CSV imports as a shop's real exports make them: Excel encodings and separators, written amounts, re-imports with
fewer columns, duplicates, paid invoices, conflicting platform ids; audited field by field; dry runs write nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.cli import main
from bot.services import directory
from bot.services.directory import ImportReport
from bot.storage import models, repo
from bot.storage.database import Database

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "imports"


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


@pytest.fixture
async def db(database_url: str, clock: Any) -> AsyncIterator[Database]:
    database = Database.open(database_url, clock)
    yield database
    await database.dispose()


async def import_customers(db: Database, data: bytes | str, *, dry_run: bool = False) -> ImportReport:
    return await directory.import_customers(db, data, dry_run=dry_run)


async def import_invoices(db: Database, data: bytes | str, *, dry_run: bool = False) -> ImportReport:
    return await directory.import_invoices(db, data, dry_run=dry_run)


async def customer(db: Database, customer_id: str) -> dict[str, Any]:
    async with db.read() as session:
        row = await session.get(models.Customer, customer_id)
        assert row is not None, customer_id
        refs = (await repo.external_ids(session, "customer", [customer_id]))[customer_id]
    return {c: getattr(row, c) for c in ("name", "email", "phone", "country", "locale", "timezone", "channels")} | {
        "external_ids": refs}


async def invoice(db: Database, number: str) -> models.Invoice:
    async with db.read() as session:
        row = await repo.invoice_row(session, number)
    assert row is not None, number
    return row


async def audit(db: Database, kind_prefix: str = "") -> list[models.AuditEntry]:
    async with db.read() as session:
        entries = await session.scalars(select(models.AuditEntry).order_by(models.AuditEntry.seq))
        return [e for e in entries if e.kind.startswith(kind_prefix)]


def errors(report: ImportReport) -> dict[int, str]:
    return dict(report.errors)


# --- item 1: what a customer row may say --------------------------------------------------------------------------

async def test_unreal_locales_emails_countries_and_time_zones_are_row_errors(db):
    report = await import_customers(db, payload("customers_bad.csv"))
    assert errors(report) == {
        2: "locale: 'english' is not a locale (write it like en-US or es-MX)",
        3: "locale: 'xx-YY' is not a locale (write it like en-US or es-MX)",
        4: "email: 'a@@b' is not an email address",
        5: "email: 'a b@x' is not an email address",
        6: "country: 'XX' is not an ISO 3166 alpha-2 country code",
        7: "timezone: 'Mars/Olympus_Mons' is not an IANA time zone (write it like America/Mexico_City)",
    }
    assert report.created == 1
    good = await customer(db, "C-2007")
    assert (good["locale"], good["timezone"], good["country"]) == ("es-MX", "America/Mexico_City", "MX")


async def test_a_phone_is_read_for_the_rows_country_and_stored_in_e164(db):
    await import_customers(db, "id,name,phone,country\nC1,Ana,55 1234 5678,MX\nC2,Bob,(201) 555-0123,\n")
    assert (await customer(db, "C1"))["phone"] == "+525512345678"
    assert (await customer(db, "C2"))["phone"] == "+12015550123"
    report = await import_customers(db, "id,name,phone\nC1,Ana,55 1234 5678\n")  # country stays MX
    assert report.errors == [] and (await customer(db, "C1"))["phone"] == "+525512345678"


# --- item 4: Excel's files ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["customers_cp1252.csv", "customers_utf16.txt", "customers_semicolon.csv"])
async def test_excel_encodings_and_separators_import_the_same_customers(db, name):
    report = await import_customers(db, payload(name))
    assert (report.errors, report.created) == ([], 3)
    ana = await customer(db, "C-1002")
    assert ana["name"] == "Ana López Soldaduras" and ana["phone"] == "+525512345678"
    assert (await customer(db, "C-1003"))["name"] == "Müller Schweißtechnik"
    alvarez = await customer(db, "C-1001")
    assert alvarez["channels"] == ["email", "sms"]
    assert alvarez["external_ids"] == {"stripe": "cus_Q1", "quickbooks": "58"}


async def test_utf16_without_a_bom_is_recognised(db):
    report = await import_customers(db, "id\tname\nC1\tJosé Núñez\n".encode("utf-16-le"))
    assert report.errors == [] and (await customer(db, "C1"))["name"] == "José Núñez"


async def test_semicolon_invoices_with_comma_decimals_and_symbols(db):
    await import_customers(db, payload("customers_cp1252.csv"))
    report = await import_invoices(db, payload("invoices_semicolon.csv"))
    assert (report.errors, report.created) == ([], 3)
    assert [(i.amount_minor, i.currency) for i in [await invoice(db, n) for n in ("INV-1042", "INV-1043", "INV-1044")]
            ] == [(125000, "USD"), (240000, "MXN"), (1250, "EUR")]


async def test_written_amounts_land_where_unambiguous_for_the_currency(db):
    await import_customers(db, payload("customers_cp1252.csv"))
    report = await import_invoices(db, payload("invoices_amounts.csv"))
    assert [(i.number, i.amount_minor, i.currency) for i in [await invoice(db, f"INV-200{n}") for n in range(1, 5)]
            ] == [("INV-2001", 125000, "USD"), ("INV-2002", 240000, "USD"), ("INV-2003", 5000, "JPY"),
                  ("INV-2004", 1250, "BHD")]
    assert errors(report) == {
        6: "amount: '1,250' could be 1250 or 1.250 KWD: write it without a thousands separator",
        7: "amount: '1.250' could be 1250 or 1.250 USD: write it without a thousands separator",
        8: "amount: not an amount of USD: '€10.00'",
    }


async def test_a_semicolon_header_is_not_unknown_columns_but_a_misspelt_one_is(db):
    with pytest.raises(directory.FileError, match="unknown columns e-mail"):
        await import_customers(db, "id;name;e-mail\nC1;Jane;jane@example.com\n")


# --- item 3: a re-import never erases ---------------------------------------------------------------------------

async def test_a_file_with_fewer_columns_changes_only_what_it_says(db):
    await import_customers(db, payload("customers_cp1252.csv"))
    before = await customer(db, "C-1001")
    report = await import_customers(db, payload("customers_fewer_columns.csv"))
    assert (report.errors, report.created, report.updated, report.unchanged) == ([], 0, 1, 1)
    after = await customer(db, "C-1001")
    assert after == before | {"name": "Alvarez Fabrication LLC"}  # email, phone, channels, external ids kept


async def test_an_explicit_empty_cell_clears_and_an_empty_id_list_removes_the_ids(db):
    await import_customers(db, payload("customers_cp1252.csv"))
    await import_customers(db, "id,name,email,phone,channels,external_ids\nC-1001,Alvarez,,,,\n")
    cleared = await customer(db, "C-1001")
    assert (cleared["email"], cleared["phone"], cleared["channels"], cleared["external_ids"]) == (
        None, None, ["email"], {})


async def test_a_duplicate_in_one_file_is_refused_and_counted_once(db):
    report = await import_customers(db, payload("customers_duplicates.csv"))
    assert errors(report)[4] == "id C-1004 appears again (first on line 2); this row is skipped"
    assert report.imported == 3 and report.created == 3
    assert (await customer(db, "C-1004"))["email"] == "ap@brightline.example"  # the first row, untouched


async def test_a_duplicate_invoice_number_does_not_silently_change_the_amount(db):
    await import_customers(db, "id,name\nC1,Jane\n")
    report = await import_invoices(db, "number,customer_id,amount,currency\nINV-1,C1,1250,USD\nINV-1,C1,1300,USD\n")
    assert errors(report) == {3: "number INV-1 appears again (first on line 2); this row is skipped"}
    assert report.imported == 1 and (await invoice(db, "INV-1")).amount_minor == 125000


async def test_an_external_id_already_anothers_is_a_row_error_not_a_traceback(db):
    await import_customers(db, payload("customers_cp1252.csv"))
    report = await import_customers(db, payload("customers_duplicates.csv"))
    assert errors(report)[5] == "external_ids: stripe:cus_Q1 is already customer C-1001's"
    assert report.created == 2 and (await customer(db, "C-1001"))["external_ids"]["stripe"] == "cus_Q1"

    report = await import_invoices(db, "number,customer_id,amount,currency,external_ids\n"
                                        "INV-1,C-1001,10,USD,stripe:in_1\nINV-2,C-1001,20,USD,stripe:in_1\n")
    assert errors(report) == {3: "external_ids: stripe:in_1 is already invoice INV-1's"}
    assert report.created == 1


async def paid(db: Database, number: str, minor: int) -> None:
    async with db.transaction() as uow:
        row = await repo.invoice_row(uow.session, number)
        assert row is not None
        row.paid_minor = minor


@pytest.mark.parametrize(("row", "reason"), [
    ("INV-1,C2,1250.00,USD", "invoice INV-1 has payments (500.00 USD from customer C1); its customer cannot change"),
    ("INV-1,C1,1250.00,EUR", "invoice INV-1 has payments in USD; its currency cannot change"),
    ("INV-1,C1,400.00,USD", "amount 400.00 is below the 500.00 USD already paid on invoice INV-1"),
], ids=["customer", "currency", "amount-below-paid"])
async def test_a_partly_paid_invoice_keeps_its_customer_currency_and_what_was_paid(db, row, reason):
    await import_customers(db, "id,name\nC1,Jane\nC2,Bob\n")
    await import_invoices(db, "number,customer_id,amount,currency\nINV-1,C1,1250.00,USD\n")
    await paid(db, "INV-1", 50000)
    report = await import_invoices(db, f"number,customer_id,amount,currency\n{row}\n")
    assert errors(report) == {2: reason}
    kept = await invoice(db, "INV-1")
    assert (kept.customer_id, kept.currency, kept.amount_minor) == ("C1", "USD", 125000)


async def test_a_paid_invoices_amount_may_grow(db):
    await import_customers(db, "id,name\nC1,Jane\n")
    await import_invoices(db, "number,customer_id,amount,currency\nINV-1,C1,1250.00,USD\n")
    await paid(db, "INV-1", 125000)
    report = await import_invoices(db, "number,customer_id,amount,currency\nINV-1,C1,1300.00,USD\n")
    assert report.updated == 1 and (await invoice(db, "INV-1")).amount_minor == 130000


async def test_each_change_is_audited_field_by_field(db):
    await import_customers(db, payload("customers_cp1252.csv"))
    await import_customers(db, "id,name,email,channels\nC-1001,Alvarez Fabrication,ap@alvarez.example,email\n"
                               "C-1002,Ana López Soldaduras,ana@soldaduras.example,email\n")
    created = await audit(db, "customer.imported")
    assert [e.customer_id for e in created] == ["C-1001", "C-1002", "C-1003"]
    assert created[0].detail["email"] == [None, "ap@alvarez-fab.example"]
    [updated] = await audit(db, "customer.updated")
    assert updated.customer_id == "C-1001"
    assert updated.detail == {"email": ["ap@alvarez-fab.example", "ap@alvarez.example"],
                              "channels": [["email", "sms"], ["email"]]}
    summary = (await audit(db, "directory.imported"))[-1]
    assert summary.detail | {} == {"what": "customers", "imported": 2, "created": 0, "updated": 1, "unchanged": 1,
                                   "rejected": 0}

    await import_invoices(db, "number,customer_id,amount,currency\nINV-1,C-1001,1250,USD\n")
    await import_invoices(db, "number,customer_id,amount,currency,due_on\nINV-1,C-1001,\"1,300.00\",USD,2026-12-31\n")
    [invoice_change] = await audit(db, "invoice.updated")
    assert invoice_change.invoice == "INV-1"
    assert invoice_change.detail == {"amount": ["1250.00 USD", "1300.00 USD"], "due_on": [None, "2026-12-31"]}


async def test_a_dry_run_reports_what_would_change_and_writes_nothing(db):
    await import_customers(db, payload("customers_cp1252.csv"))
    entries = len(await audit(db))
    report = await import_customers(db, "id,name,email\nC-1001,Alvarez,new@alvarez.example\nC-9,New One,\n"
                                        "C-9,Again,\n", dry_run=True)
    assert (report.created, report.updated, report.unchanged) == (1, 1, 0) and len(report.errors) == 1
    assert [c.described() for c in report.changes] == [
        "C-1001 changed: name 'Alvarez Fabrication' → 'Alvarez'; email 'ap@alvarez-fab.example' → "
        "'new@alvarez.example'",
        "C-9 new: name 'New One'; channels ['email']; country 'US'; locale 'en-US'",
    ]
    assert (await customer(db, "C-1001"))["email"] == "ap@alvarez-fab.example"
    async with db.read() as session:
        assert await session.get(models.Customer, "C-9") is None
    assert len(await audit(db)) == entries


# --- the command ------------------------------------------------------------------------------------------------

async def paybot_import(capsys, monkeypatch, database_url: str, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    code = await asyncio.to_thread(main, ["import", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_the_command_reads_excel_files_and_counts_honestly(capsys, monkeypatch, database_url):
    for name in ("customers_cp1252.csv", "customers_duplicates.csv"):
        (Path.cwd() / name).write_bytes(payload(name))
    code, out, _ = await paybot_import(capsys, monkeypatch, database_url, "customers", "customers_cp1252.csv")
    assert (code, out) == (0, "imported 3 customers; 0 rows rejected (3 new, 0 changed, 0 unchanged)\n")
    code, out, err = await paybot_import(capsys, monkeypatch, database_url, "customers", "customers_duplicates.csv")
    assert code == 1 and out == "imported 2 customers; 2 rows rejected (2 new, 0 changed, 0 unchanged)\n"
    assert [line for line in err.splitlines() if ": warning: " not in line] == [  # no channel is configured here
        "customers_duplicates.csv:4: id C-1004 appears again (first on line 2); this row is skipped",
        "customers_duplicates.csv:5: external_ids: stripe:cus_Q1 is already customer C-1001's",
    ]


async def test_the_command_dry_run_shows_each_change_and_writes_nothing(capsys, monkeypatch, database_url, db):
    (Path.cwd() / "customers.csv").write_bytes(payload("customers_cp1252.csv"))
    (Path.cwd() / "fewer.csv").write_bytes(payload("customers_fewer_columns.csv"))
    await paybot_import(capsys, monkeypatch, database_url, "customers", "customers.csv")
    code, out, _ = await paybot_import(capsys, monkeypatch, database_url, "customers", "fewer.csv", "--dry-run")
    assert code == 0 and out.splitlines() == [
        "fewer.csv:2: C-1001 changed: name 'Alvarez Fabrication' → 'Alvarez Fabrication LLC'",
        "would import 2 customers; 0 rows rejected (0 new, 1 changed, 1 unchanged); nothing written",
    ]
    assert (await customer(db, "C-1001"))["name"] == "Alvarez Fabrication"
    assert await audit(db, "customer.updated") == []
