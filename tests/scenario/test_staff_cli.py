"""Staff commands from a shell: an invoice's status, and resending a dead-lettered receipt without Slack."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update

from bot.storage import models
from tests.fakes.sendgrid import API_KEY
from tests.harness import stripe_invoice_event
from tests.scenario.test_cli import run


async def test_a_dead_letter_is_resent_from_the_shell(paybot, sendgrid, capsys, monkeypatch, database_url):
    await paybot.add_customer()
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    [receipt] = [n for n in await paybot.notifications() if n.purpose == "receipt"]
    async with paybot.runtime.db.transaction() as uow:  # as if SendGrid had refused it for good
        await uow.session.execute(update(models.Notification).where(models.Notification.id == receipt.id)
                                  .values(status="dead", last_error="sendgrid: 550 mailbox full"))
    for name, value in {"SENDGRID_API_KEY": API_KEY, "SENDGRID_FROM_EMAIL": "billing@weld.example",
                        "SENDGRID_BASE_URL": str(sendgrid.server.make_url("/"))}.items():
        monkeypatch.setenv(name, value)

    code, out, _ = await run(capsys, monkeypatch, database_url, "status", "INV-1042")
    assert code == 0 and out.startswith("Invoice INV-1042")  # mrkdwn drawn as plain text
    assert f"n{receipt.id} receipt to customer via sendgrid" in out and "failed" in out and "mailbox full" in out

    code, out, _ = await run(capsys, monkeypatch, database_url, "resend", "INV-1042")
    assert code == 0 and "Queued the receipt for invoice INV-1042 again via sendgrid" in out
    paybot.clock.now = datetime.now(UTC)  # the command queued it on the real clock; the worker catches up
    await paybot.deliver()
    assert [m["personalizations"][0]["to"][0]["email"] for m in sendgrid.accepted] == ["jane@example.com"]
    assert "notification.resent" in await paybot.audit_kinds()
    [resent] = [e for e in await paybot.rows(models.AuditEntry) if e.kind == "notification.resent"]
    assert resent.actor.startswith("cli:")


async def test_status_of_an_unknown_invoice_is_one_line_and_exit_2(capsys, monkeypatch, database_url):
    code, _, err = await run(capsys, monkeypatch, database_url, "status", "INV-404")
    assert code == 2 and err.strip().count("\n") == 0 and "INV-404" in err
