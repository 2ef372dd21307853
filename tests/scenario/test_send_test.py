"""`paybot send-test --to CUSTOMER`: a [TEST] thank-you through the customer's real channels, the outcome printed."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.storage import models
from bot.storage.database import Database
from tests.fakes.sendgrid import errors
from tests.scenario.operator import add_customers, configure, paybot, providers  # noqa: F401  (fixture)

ANA = {"id": "C4", "name": "Ana López", "email": "ana@example.mx", "locale": "es-MX", "channels": ["email", "slack"],
       "slack_channel": "C0SHARED"}


async def audit_kinds_and_payments(database_url: str) -> tuple[list[str], int]:
    db = Database.open(database_url)
    try:
        async with db.read() as session:
            kinds = list(await session.scalars(select(models.AuditEntry.kind).order_by(models.AuditEntry.seq)))
            payments = await session.scalar(select(func.count()).select_from(models.Payment))
    finally:
        await db.dispose()
    return kinds, payments or 0


async def test_a_marked_test_goes_out_on_every_channel_of_the_customer(capsys, monkeypatch, database_url,
                                                                       providers):
    configure(monkeypatch, providers.environment(database_url))
    await add_customers(database_url, ANA)
    code, out, err = await paybot(capsys, "send-test", "--to", "C4")
    assert (code, err) == (0, ""), out
    sendgrid_line, slack_line = out.splitlines()
    assert sendgrid_line == "sent     [TEST] thank-you via sendgrid to a***@example.mx: sgmsg000001"
    assert slack_line.startswith("sent     [TEST] thank-you via slack to C0SHARED: C0SHARED:")  # then Slack's ts
    [mail] = providers.sendgrid.accepted
    assert mail["subject"].startswith("[TEST] ")
    assert [part["type"] for part in mail["content"]] == ["text/plain", "text/html"]
    assert mail["content"][0]["value"].startswith("[TEST] ") and "[TEST]" in mail["content"][1]["value"]
    assert "TEST-0001" in mail["content"][0]["value"] and "no payment was made" in mail["content"][0]["value"]
    [posted] = providers.slack.posted("C0SHARED")
    assert posted["text"].startswith("[TEST] ")
    kinds, payments = await audit_kinds_and_payments(database_url)
    assert kinds.count("notification.test") == 2 and kinds.count("notification.sent") == 2
    assert payments == 0  # nothing real was recorded or touched


async def test_a_refusal_is_printed_with_the_providers_reason_and_exits_1(capsys, monkeypatch, database_url,
                                                                         providers):
    configure(monkeypatch, providers.environment(database_url))
    await add_customers(database_url, ANA | {"channels": ["email"]})
    providers.sendgrid.script("/v3/mail/send", errors(403, "The from address does not match a verified Sender "
                                                           "Identity.", "from"))
    code, out, _ = await paybot(capsys, "send-test", "--to", "C4")
    assert code == 1
    assert out.splitlines() == ["dead     [TEST] thank-you via sendgrid to a***@example.mx: sendgrid answered 403: The "
                                "from address does not match a verified Sender Identity."]
    kinds, _ = await audit_kinds_and_payments(database_url)
    assert kinds == ["notification.test", "notification.failed"]


async def test_a_customer_nobody_can_reach_gets_the_reason(capsys, monkeypatch, database_url, providers):
    configure(monkeypatch, providers.environment(database_url))
    await add_customers(database_url, {"id": "C2", "name": "Bolt & Nut", "phone": "+12015550123", "channels": ["sms"]})
    code, out, _ = await paybot(capsys, "send-test", "--to", "C2")
    assert code == 1
    assert out.startswith("C2 (Bolt & Nut): nobody can reach it: sms: not configured")
    assert not providers.sendgrid.calls and not providers.slack.calls


async def test_an_unknown_customer_is_one_line_and_exit_2(capsys, monkeypatch, database_url, providers):
    configure(monkeypatch, providers.environment(database_url))
    code, out, err = await paybot(capsys, "send-test", "--to", "C404")
    assert (code, out) == (2, "")
    assert err.splitlines() == ["paybot: --to C404: no such customer (import it first: paybot import customers "
                                "FILE.csv)"]
