"""A shop's first day, replayed as an operator lives it, from a fresh directory and a fresh database: Excel exports
imported (Windows-1252, `;`, a duplicate row, a re-import with fewer columns), `paybot check`, `paybot send-test`,
then a real payment, and the es-MX customer's email in Spanish, in their own time zone."""

from __future__ import annotations

import json

from bot.app import create_app
from bot.keys import RUNTIME
from bot.settings import Settings
from tests.harness import Paybot, stripe_invoice_event
from tests.scenario.operator import configure, paybot, providers  # noqa: F401  (fixture)

CUSTOMERS = ("id;name;email;phone;country;locale;timezone;channels\r\n"
             "C-2001;Ferretería Norte;ap@norte.example;55 1234 5678;MX;es-MX;America/Mexico_City;email\r\n"
             "C-2002;Soldaduras Peña;pagos@pena.example;;MX;es-MX;America/Mexico_City;email\r\n"
             "C-2001;Ferretería Norte (otra vez);otro@norte.example;;MX;es-MX;;email\r\n")
RENAMED = "id;name\r\nC-2001;Ferretería Norte SA\r\n"  # Excel, one column fewer: nothing else may be erased
INVOICES = 'number,customer_id,amount,currency\r\nF-1042,C-2001,"2,400.00",MXN\r\n'


async def test_a_shops_first_day(capsys, monkeypatch, tmp_path, database_url, providers, clock, aiohttp_client):
    here = tmp_path / "shop"
    here.mkdir()
    monkeypatch.chdir(here)
    if database_url.startswith("sqlite"):
        database_url = "sqlite+aiosqlite:///./paybot.db"  # nothing there yet: the commands make it
    configure(monkeypatch, providers.environment(database_url))
    (here / "customers.csv").write_bytes(CUSTOMERS.encode("cp1252"))
    (here / "renamed.csv").write_bytes(RENAMED.encode("cp1252"))
    (here / "invoices.csv").write_text(INVOICES)

    code, out, err = await paybot(capsys, "import", "customers", "customers.csv")
    assert code == 1 and "imported 2 customers; 1 rows rejected" in out
    assert "customers.csv:4:" in err and "first on line 2" in err
    code, out, _ = await paybot(capsys, "import", "customers", "renamed.csv")
    assert code == 0 and "1 changed" in out
    code, out, _ = await paybot(capsys, "import", "invoices", "invoices.csv")
    assert code == 0 and "imported 1 invoices" in out

    code, out, _ = await paybot(capsys, "check")
    assert code == 0 and "customers: 2 on file, every one reachable" in out, out
    code, out, _ = await paybot(capsys, "send-test", "--to", "C-2001")
    assert code == 0 and out.startswith("sent     [TEST] thank-you via sendgrid to a***@norte.example")
    [test_mail] = providers.sendgrid.accepted
    assert test_mail["subject"].startswith("[TEST] ")

    app = create_app(Settings(business_name="Soldadura Ridgeline"), clock=clock, run_worker=False)
    shop = Paybot(client=await aiohttp_client(app), runtime=app[RUNTIME], clock=clock)
    shop.runtime.process_here = True  # as `paybot serve` (deferred ingest, the default): the worker is driven by hand
    paid = stripe_invoice_event(number="F-1042", amount_paid=240000, currency="mxn", email="ap@norte.example")
    assert (await shop.post_stripe(json.dumps(paid).encode(), secret="whsec_test")).status == 200
    await shop.deliver()

    mail = providers.sendgrid.accepted[-1]
    text = next(c["value"] for c in mail["content"] if c["type"] == "text/plain")
    assert mail["personalizations"][0]["to"] == [{"email": "ap@norte.example"}]  # the address survived the re-import
    assert mail["subject"] == "Pago recibido de la factura F-1042: gracias (Soldadura Ridgeline)"
    assert text.startswith("Hola, Ferretería Norte SA:")  # the name from the re-import
    assert "Recibimos su pago de $2,400.00 para la factura F-1042." in text
    assert "28 de noviembre de 2026, 6:00\u202fa.m." in text  # 12:00 UTC, in Mexico City


async def test_import_warns_of_each_customer_nobody_can_reach_today(capsys, monkeypatch, database_url, tmp_path):
    monkeypatch.setenv("DATABASE_URL", database_url)  # and no channel configured at all
    (tmp_path / "c.csv").write_text("id,name,email,channels\nC1,Jane,jane@example.com,email\n")
    code, out, err = await paybot(capsys, "import", "customers", "c.csv")
    assert code == 0 and "imported 1 customers" in out
    assert err.strip() == "c.csv:2: warning: customer C1 cannot be reached: email: not configured"


async def test_import_names_the_first_unreachable_customers_and_counts_the_rest(capsys, monkeypatch, database_url,
                                                                                tmp_path):
    from bot.cli import UNREACHABLE_SHOWN

    monkeypatch.setenv("DATABASE_URL", database_url)  # no channel configured: nobody can be reached
    rows = "".join(f"C{n},Shop {n},shop{n}@example.com,email\n" for n in range(UNREACHABLE_SHOWN + 5))
    (tmp_path / "c.csv").write_text("id,name,email,channels\n" + rows)
    code, out, err = await paybot(capsys, "import", "customers", "c.csv")
    assert code == 0 and f"imported {UNREACHABLE_SHOWN + 5} customers" in out
    warnings = err.strip().splitlines()
    assert len(warnings) == UNREACHABLE_SHOWN + 1
    assert warnings[-1] == "c.csv: warning: 5 more customers cannot be reached (`paybot check` lists them all)"
