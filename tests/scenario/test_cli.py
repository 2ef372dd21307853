"""The `paybot` command as operators run it: import, audit export and verify (tampering detected), demo."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

from sqlalchemy import text

from bot.cli import main
from bot.storage.engine import create_engine
from tests.harness import stripe_invoice_event

CUSTOMERS = """id,name,email,phone,country,locale,channels,slack_channel,external_ids
C1,Jane Doe,jane@example.com,(201) 555-0123,US,en-US,email;sms,,stripe:cus_Q1;quickbooks:58
C2,Bad Phone,bob@example.com,12,US,en-US,email,,
C3,Bad Channel,c3@example.com,,US,en-US,email;pigeon,,
C4,Ana López,ana@example.mx,55 1234 5678,MX,es-MX,email;slack,C0SHARED,
"""
INVOICES = """number,customer_id,amount,currency,issued_on,due_on,external_ids
INV-1042,C1,1250.00,USD,2026-11-01,2026-12-01,stripe:in_1QabcINV1042
INV-1043,C9,10.00,USD,,,
INV-1044,C4,99.999,MXN,,,
INV-1045,C4,5000,MXN,2026-11-02,,
"""


async def run(capsys, monkeypatch, database_url: str, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_import_reports_bad_rows_by_line_and_keeps_good_ones(capsys, monkeypatch, database_url, tmp_path):
    (tmp_path / "customers.csv").write_text(CUSTOMERS)
    (tmp_path / "invoices.csv").write_text(INVOICES)
    code, out, err = await run(capsys, monkeypatch, database_url, "import", "customers", "customers.csv")
    assert code == 1 and "imported 2 customers; 2 rows rejected" in out
    assert "customers.csv:3: phone" in err and "customers.csv:4: channels: unknown pigeon" in err
    code, out, err = await run(capsys, monkeypatch, database_url, "import", "invoices", "invoices.csv")
    assert code == 1 and "imported 2 invoices" in out
    assert "invoices.csv:3: customer_id 'C9'" in err and "invoices.csv:4: amount" in err

    engine = create_engine(database_url)
    async with engine.connect() as conn:
        phone = (await conn.execute(text("SELECT phone FROM customers WHERE id='C1'"))).scalar_one()
        refs = (await conn.execute(text("SELECT count(*) FROM external_refs"))).scalar_one()
        amount = (await conn.execute(text("SELECT amount_minor FROM invoices WHERE number='INV-1045'"))).scalar_one()
    await engine.dispose()
    assert (phone, refs, amount) == ("+12015550123", 3, 500000)


async def test_import_refuses_unknown_columns_with_exit_2(capsys, monkeypatch, database_url, tmp_path):
    (tmp_path / "c.csv").write_text("id,name,favourite_colour\nC1,Jane,blue\n")
    code, _, err = await run(capsys, monkeypatch, database_url, "import", "customers", "c.csv")
    assert code == 2 and "unknown columns favourite_colour" in err
    code, _, err = await run(capsys, monkeypatch, database_url, "import", "customers", "missing.csv")
    assert code == 2 and "missing.csv" in err


async def test_audit_export_and_verify_detect_tampering(paybot, capsys, monkeypatch, database_url):
    await paybot.add_customer()
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    await paybot.post_stripe(stripe_invoice_event("evt_2", number="NOPE"))

    code, out, _ = await run(capsys, monkeypatch, database_url, "audit", "verify")
    assert code == 0 and "intact" in out
    code, out, _ = await run(capsys, monkeypatch, database_url, "audit", "export", "--invoice", "INV-1042")
    rows = json.loads(out)
    assert code == 0 and {r["kind"] for r in rows} >= {"payment.matched", "notification.queued"}
    assert all(r["invoice"] == "INV-1042" and r["at"].endswith("Z") for r in rows)
    code, out, _ = await run(capsys, monkeypatch, database_url, "audit", "export", "--format", "csv",
                             "--since", "2000-01-01T00:00:00Z")
    table = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["seq"]) for r in table] == list(range(1, len(table) + 1))
    assert set(table[0]) == {"seq", "at", "kind", "actor", "source", "channel", "invoice", "customer_id", "amount",
                             "currency", "detail", "prev_hash", "hash"}

    async with paybot.runtime.db.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_entries SET amount = '1.00' WHERE seq = 2"))
    code, out, _ = await run(capsys, monkeypatch, database_url, "audit", "verify")
    assert code == 1 and "BROKEN at entry 2" in out


async def test_audit_verify_detects_a_removed_tail(paybot, capsys, monkeypatch, database_url):
    await paybot.post_stripe(stripe_invoice_event())
    async with paybot.runtime.db.engine.begin() as conn:
        last = (await conn.execute(text("SELECT max(seq) FROM audit_entries"))).scalar_one()
        await conn.execute(text(f"DELETE FROM audit_entries WHERE seq = {last}"))
    code, out, _ = await run(capsys, monkeypatch, database_url, "audit", "verify")
    assert code == 1 and "entries were removed" in out


async def test_bad_setting_exits_2_naming_it(capsys, monkeypatch):
    monkeypatch.setenv("PORT", "eighty")
    code = await asyncio.to_thread(main, ["migrate"])
    assert code == 2 and "PORT" in capsys.readouterr().err


async def test_demo_runs_with_no_credentials(capsys):
    code = await asyncio.to_thread(main, ["demo"])
    out = capsys.readouterr().out
    assert code == 0
    first, retry, partial, unmatched = out.split("─" * 78)[1:5]
    # The email as the customer reads it, and the finance card as Slack shows it.
    assert "To:      ap@alvarez-fab.example" in first and "Subject: Payment received for invoice INV-1042" in first
    assert "We received your payment of $1,250.00 for invoice INV-1042" in first
    assert "✅ Payment received — $1,250.00 from Alvarez Fabrication" in first and "[ Resend ]" in first
    assert "if it fails for good: slack" in first  # the Slack channel is a fallback, not a second message
    assert "200 (duplicate" in retry and "Nothing new was queued" in retry
    assert "$1,400.00 is still owed on invoice INV-1043" in partial
    assert "needs review — $310.00" in unmatched and "To the customer" not in unmatched
    assert "audit verify: intact" in out
    assert not list(Path.cwd().glob("*.db"))  # the demo leaves nothing behind


async def test_audit_csv_defuses_formulas_in_every_cell(paybot, capsys, monkeypatch, database_url):
    """Finance opens the export in a spreadsheet: a payer's or platform's `=…` must stay text there."""
    customer, invoice = "=CMD|' /C CALC'!A0", "-2+3+HYPERLINK(\"HTTPS://EVIL.EXAMPLE\")"
    await paybot.add_customer(customer, name="@SUM(1+1)", email="jane@example.com")
    await paybot.add_invoice(invoice, customer_id=customer)
    await paybot.post_stripe(stripe_invoice_event(number=invoice, customer_name="+1+1"))

    code, out, _ = await run(capsys, monkeypatch, database_url, "audit", "export", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and {"'" + invoice} <= {r["invoice"] for r in table} and {"'" + customer} <= {
        r["customer_id"] for r in table}
    cells = [cell for row in table for cell in row.values() if cell]
    dangerous = [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert all(c.lstrip("-").replace(".", "").isdigit() for c in dangerous), dangerous  # numbers only
    assert any(c.startswith("'") and customer in c for c in cells)
