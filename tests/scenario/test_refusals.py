"""A flood of refused webhooks costs no database write per request: counted, summarised, flushed by the worker's
scheduler as one row per source, reason class and remote per window, and pruned (both engines)."""

from __future__ import annotations

import json
import logging

from sqlalchemy import func, select

from bot.storage import models
from tests.harness import stripe_invoice_event
from tests.scenario.test_cli import run


async def count(paybot, model) -> int:  # type: ignore[no-untyped-def]
    async with paybot.runtime.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_refusal_flood_writes_nothing_until_one_row_per_key_per_window(paybot):
    for n in range(120):
        assert (await paybot.post_stripe(stripe_invoice_event(f"evt_{n}"), secret="whsec_forged")).status == 401
    for _ in range(30):
        assert (await paybot.post_stripe(b"\x00not json")).status == 400
    assert (await count(paybot, models.AuditEntry), await count(paybot, models.Refusal)) == (0, 0)

    await paybot.runtime.worker.run_periodic()  # the worker's scheduler flushes the window
    rows = await paybot.rows(models.Refusal)
    assert sorted((r.source, r.reason, r.remote, r.status, r.count) for r in rows) == [
        ("stripe", "PayloadInvalid", "127.0.0.1", 400, 30), ("stripe", "SignatureInvalid", "127.0.0.1", 401, 120)]
    assert await count(paybot, models.AuditEntry) == 0  # nothing chained, ever

    paybot.clock.advance(61)  # the next window
    for _ in range(5):
        await paybot.post_stripe(stripe_invoice_event(), secret="whsec_forged")
    await paybot.runtime.worker.run_periodic()
    later = [r for r in await paybot.rows(models.Refusal) if r.id not in {r.id for r in rows}]
    assert [(r.reason, r.count) for r in later] == [("SignatureInvalid", 5)]
    assert later[0].window_start == rows[0].window_end
    await paybot.runtime.worker.run_periodic()  # nothing new refused: nothing written
    assert await count(paybot, models.Refusal) == 3


async def test_a_genuine_webhook_is_unaffected_and_audited(paybot):
    await paybot.post_stripe(stripe_invoice_event(), secret="whsec_forged")
    assert (await paybot.post_stripe(stripe_invoice_event("evt_ok"))).status == 200
    assert "webhook.received" in await paybot.audit_kinds()


async def test_old_summaries_are_pruned(paybot):
    await paybot.post_stripe(stripe_invoice_event(), secret="whsec_forged")
    await paybot.runtime.refusals.flush()
    retention = paybot.runtime.settings.refusals_retention_days * 86_400
    paybot.clock.advance(retention - 60)
    await paybot.runtime.refusals.prune()
    assert await count(paybot, models.Refusal) == 1
    paybot.clock.advance(120)
    await paybot.runtime.refusals.prune()
    assert await count(paybot, models.Refusal) == 0


async def test_the_reason_never_echoes_the_input(paybot, caplog):
    evil = "\x1b[2J<!channel> " + "A" * 200_000
    event = stripe_invoice_event()
    event["data"]["object"]["amount_paid"] = evil  # the parser trips on it (int()), quoting it in its error
    with caplog.at_level(logging.DEBUG):
        response = await paybot.post_stripe(event)
        [summary] = await paybot.refusals()
    reason = (await response.json())["error"]
    assert response.status == 400 and reason == "payload has an unexpected shape (ValueError)"
    for text in (reason, summary.example, caplog.text):
        assert "AAAA" not in text and "\x1b" not in text and "<!channel>" not in text


async def test_operators_list_the_summaries(paybot, capsys, monkeypatch, database_url):
    for _ in range(3):
        await paybot.post_stripe(stripe_invoice_event(), secret="whsec_forged")
    await paybot.runtime.refusals.flush()
    code, out, _ = await run(capsys, monkeypatch, database_url, "audit", "refusals")
    [row] = json.loads(out)
    assert code == 0 and (row["source"], row["reason"], row["status"], row["count"]) == (
        "stripe", "SignatureInvalid", 401, 3)
    assert row["window_end"].endswith("Z") and row["example"] == "no v1 signature matches"
    code, out, _ = await run(capsys, monkeypatch, database_url, "audit", "refusals", "--format", "csv",
                             "--since", "2999-01-01T00:00:00Z")
    assert code == 0 and out.strip() == "window_start,window_end,source,reason,status,remote,count,example"
