"""`paybot preview INVOICE [--customer ID]`: every channel of the customer, rendered from the one wording, in their
language; nothing sent, nothing queued; a fresh directory gets a clear answer."""

from __future__ import annotations

import asyncio

from bot.cli import main
from tests.harness import stripe_invoice_event


async def run(capsys, monkeypatch, *argv: str, database_url: str | None = None) -> tuple[int, str, str]:
    if database_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_a_fresh_directory_gets_a_clear_answer(capsys, monkeypatch, tmp_path):
    code, out, err = await run(capsys, monkeypatch, "preview", "INV-1042")
    assert code == 2 and out == ""
    assert "no invoice 'INV-1042'" in err and "import them first" in err and "Traceback" not in err


async def test_every_channel_of_a_spanish_customer_and_nothing_sent(paybot, sendgrid, slack, capsys, monkeypatch,
                                                                   database_url):
    await paybot.add_customer("C4", "Ana López", "ana@example.mx", phone="+525512345678", country="MX",
                              locale="es-MX", slack_channel="C0ANA",
                              channels=("email", "sms", "whatsapp", "push", "slack", "teams"))
    await paybot.add_customer("C1", "Jane Doe", "jane@example.com", channels=("email",))
    await paybot.add_invoice("INV-1042", "1250.00", customer_id="C4")
    await paybot.add_invoice("INV-1050", "80.00", customer_id="C4")
    await paybot.post_stripe(stripe_invoice_event())
    before = [(n.id, n.status) for n in await paybot.notifications()]
    sent_before = (len(sendgrid.accepted), len(slack.calls))

    code, out, err = await run(capsys, monkeypatch, "preview", "inv-1042", database_url=database_url)
    assert code == 0, err
    assert "Acknowledgement of payment #1 on invoice INV-1042 ($1,250.00 USD) to C4 (Ana López), es-MX" in out
    assert "nothing is sent" in out
    assert "== email (via sendgrid, not configured; to a***@example.mx)" in out
    assert "Subject: Pago recibido de la factura INV-1042" in out and "Recibimos su pago de $1,250.00 USD" in out
    assert "28 de noviembre de 2026" in out  # the date in the customer's locale (and time zone)
    # 113 characters with ó: UCS-2 in two segments, so the accent is kept
    assert "== sms (via twilio, not configured; to +52********78) — UCS-2, 2 segment(s), 113 characters\n" \
           "¡Gracias, Ana López! Recibimos su pago de $1,250.00 USD para la factura INV-1042. Factura pagada en su " \
           "totalidad.\n" in out
    assert "== whatsapp (paybot cannot send whatsapp yet" in out or "== whatsapp (via " in out
    assert "{{1}} Ana López\n{{2}} INV-1042\n{{3}} $1,250.00 USD\n{{4}} $0.00 USD" in out
    assert "Title: Pago recibido de la factura INV-1042: gracias" in out
    assert "== slack (via slack, not configured; to C0ANA)" in out
    assert "== teams (paybot cannot send teams yet" in out or "== teams (via " in out

    assert [(n.id, n.status) for n in await paybot.notifications()] == before
    assert (len(sendgrid.accepted), len(slack.calls)) == sent_before

    code, out, _ = await run(capsys, monkeypatch, "preview", "INV-1042", "--customer", "C1",
                             database_url=database_url)
    assert code == 0 and "to C1 (Jane Doe), en-US" in out and "We received your payment of $1,250.00" in out
    assert "== sms" not in out

    code, out, _ = await run(capsys, monkeypatch, "preview", "INV-1050", database_url=database_url)
    assert code == 0 and "no payment recorded yet: as if $80.00 were paid now" in out

    code, _, err = await run(capsys, monkeypatch, "preview", "INV-1042", "--customer", "C9",
                             database_url=database_url)
    assert code == 2 and "--customer 'C9': no such customer" in err
