"""The keyed, anchored audit chain as an attacker with write access to the database meets it, and as operators
check it with `paybot audit verify` (both engines)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.domain.audit import KEYED, AuditKey, chain_hash
from bot.storage import models
from bot.storage.audit import record_of
from tests.harness import Paybot, stripe_invoice_event
from tests.scenario.test_cli import run

KEY, NEW_KEY = "audit-key-0123456789abcdef", "audit-key-fedcba9876543210"


async def make_paybot(aiohttp_client, settings_for, configs, clock, **settings: Any) -> Paybot:  # type: ignore[no-untyped-def]
    from bot.app import create_app
    from bot.keys import RUNTIME

    app = create_app(settings_for(**settings), configs=configs, clock=clock, run_worker=False)
    return Paybot(await aiohttp_client(app), app[RUNTIME], clock)


async def some_history(bot: Paybot, *event_ids: str) -> None:
    await bot.add_customer()
    await bot.add_invoice()
    for event_id in event_ids:
        assert (await bot.post_stripe(stripe_invoice_event(event_id))).status == 200


async def rewrite_from(bot: Paybot, seq: int, **edit: Any) -> None:
    """What an attacker with write access but no key does: edit entry `seq`, then recompute every later hash
    (plain SHA-256, the only hash they can compute) and move the head to match."""
    async with bot.runtime.db.engine.begin() as conn:
        rows = (await conn.execute(select(models.AuditEntry).where(models.AuditEntry.seq >= seq - 1)
                                   .order_by(models.AuditEntry.seq))).all()
        prev = rows[0].hash if rows[0].seq < seq else "0" * 64
        for row in rows:
            if row.seq < seq:
                continue
            record = record_of(row)  # type: ignore[arg-type]
            if row.seq == seq:
                record = replace(record, **edit)
            digest = chain_hash(prev, row.seq, record)
            await conn.execute(update(models.AuditEntry).where(models.AuditEntry.seq == row.seq).values(
                prev_hash=prev, hash=digest, **edit if row.seq == seq else {}))
            prev = digest
        await conn.execute(update(models.AuditHead).values(seq=rows[-1].seq, hash=prev))


async def verify(capsys, monkeypatch, database_url, *args: str, key: str | None = KEY,  # type: ignore[no-untyped-def]
                 previous: str | None = None) -> tuple[int, str]:
    for name, value in (("AUDIT_KEY", key), ("AUDIT_PREVIOUS_KEYS", previous)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    code, out, _ = await run(capsys, monkeypatch, database_url, "audit", "verify", *args)
    return code, out


async def test_an_edit_with_recomputed_plain_hashes_is_detected_when_keyed(
        aiohttp_client, settings_for, configs, clock, capsys, monkeypatch, database_url):
    bot = await make_paybot(aiohttp_client, settings_for, configs, clock, audit_key=KEY)
    await some_history(bot, "evt_1")
    [first] = await bot.rows(models.AuditEntry, models.AuditEntry.seq == 1)
    assert first.kind == KEYED and first.detail["key_id"] == AuditKey(KEY.encode()).id
    matched = (await bot.rows(models.AuditEntry, models.AuditEntry.kind == "payment.matched"))[0].seq
    code, out = await verify(capsys, monkeypatch, database_url)
    assert code == 0 and "KEYED" in out

    await rewrite_from(bot, matched, amount="1.00")
    code, out = await verify(capsys, monkeypatch, database_url)
    assert code == 1 and f"BROKEN at entry {matched}: content does not match its hash" in out


async def test_deferred_ingest_chains_its_group_commits_with_the_key(
        aiohttp_client, settings_for, configs, clock, capsys, monkeypatch, database_url):
    bot = await make_paybot(aiohttp_client, settings_for, configs, clock, audit_key=KEY, ingest_mode="deferred")
    await some_history(bot, "evt_1", "evt_2")
    await bot.deliver()
    assert (await bot.audit_kinds()).count("webhook.received") == 2
    code, out = await verify(capsys, monkeypatch, database_url)
    assert code == 0 and "KEYED: entries 1-" in out


async def test_an_entry_holding_an_integer_beyond_64_bits_verifies_intact(
        aiohttp_client, settings_for, configs, clock, capsys, monkeypatch, database_url):
    """A platform's numeric id past 64 bits, in an entry's detail: read back as the integer it is, not a float
    (which would fail its hash and report an untouched trail as broken)."""
    bot = await make_paybot(aiohttp_client, settings_for, configs, clock, audit_key=KEY)
    await some_history(bot, "evt_1")
    async with bot.runtime.db.transaction() as uow:
        uow.audit("staff.note", detail={"platform_id": 2 ** 70, "ids": [10 ** 30, 1]})
    code, out = await verify(capsys, monkeypatch, database_url)
    assert code == 0 and "BROKEN" not in out


async def test_the_same_edit_on_an_unkeyed_trail_passes_and_verify_says_what_that_means(
        paybot, capsys, monkeypatch, database_url):
    await some_history(paybot, "evt_1")
    await rewrite_from(paybot, 3, amount="1.00")
    code, out = await verify(capsys, monkeypatch, database_url, key=None)
    assert code == 0 and "UNKEYED" in out and "recompute every hash" in out


async def test_a_trail_cut_below_a_published_anchor_is_detected(
        aiohttp_client, settings_for, configs, clock, capsys, monkeypatch, database_url):
    bot = await make_paybot(aiohttp_client, settings_for, configs, clock, audit_key=KEY)
    await some_history(bot, "evt_1", "evt_2")
    monkeypatch.setenv("AUDIT_KEY", KEY)
    code, out, err = await run(capsys, monkeypatch, database_url, "audit", "export")
    anchor = re.search(r"audit head (\d+:[0-9a-f]{64}) \(keyed, key [0-9a-f]{8}\)", err).group(1)  # type: ignore[union-attr]
    assert code == 0 and json.loads(out) and anchor not in out  # stdout stays the CONTRACT's JSON
    head = int(anchor.partition(":")[0])

    # The attacker drops the newest entries and moves the head back onto what is left: the chain itself is intact.
    async with bot.runtime.db.engine.begin() as conn:
        await conn.execute(models.AuditEntry.__table__.delete().where(models.AuditEntry.seq > head - 3))
        kept = (await conn.execute(select(models.AuditEntry.hash).where(models.AuditEntry.seq == head - 3))).scalar_one()
        await conn.execute(update(models.AuditHead).values(seq=head - 3, hash=kept))
    code, out = await verify(capsys, monkeypatch, database_url)
    assert code == 0  # without an anchor a cut tail cannot be seen: what anchors are for
    code, out = await verify(capsys, monkeypatch, database_url, "--anchor", anchor)
    assert code == 1 and f"entry {head} of the published anchor" in out and "cut below it" in out


async def test_an_anchor_matches_an_untouched_trail_and_not_an_edited_one(paybot, capsys, monkeypatch, database_url):
    await some_history(paybot, "evt_1")
    [head] = await paybot.rows(models.AuditHead)
    anchor = f"{head.seq}:{head.hash}"
    code, out = await verify(capsys, monkeypatch, database_url, "--anchor", anchor, key=None)
    assert code == 0 and f"ANCHORED at {anchor}" in out
    await rewrite_from(paybot, 2, actor="someone-else")  # recomputed: only the anchor can tell
    code, out = await verify(capsys, monkeypatch, database_url, "--anchor", anchor, key=None)
    assert code == 1 and f"BROKEN at entry {head.seq}: its hash differs from the published anchor" in out
    with pytest.raises(SystemExit) as usage:  # argparse: bad usage is exit 2, naming the option
        await run(capsys, monkeypatch, database_url, "audit", "verify", "--anchor", "12:nothex")
    assert usage.value.code == 2 and "--anchor" in capsys.readouterr().err


async def test_an_old_unkeyed_trail_then_keyed_then_rotated_verifies_intact(
        aiohttp_client, settings_for, configs, clock, capsys, monkeypatch, database_url):
    unkeyed = await make_paybot(aiohttp_client, settings_for, configs, clock)
    await some_history(unkeyed, "evt_1")
    plain = len(await unkeyed.rows(models.AuditEntry))

    keyed = await make_paybot(aiohttp_client, settings_for, configs, clock, audit_key=KEY)
    assert (await keyed.post_stripe(stripe_invoice_event("evt_2", number="NOPE"))).status == 200
    rotated = await make_paybot(aiohttp_client, settings_for, configs, clock, audit_key=NEW_KEY,
                                audit_previous_keys=KEY)
    assert (await rotated.post_stripe(stripe_invoice_event("evt_3", number="NOPE"))).status == 200

    markers = await keyed.rows(models.AuditEntry, models.AuditEntry.kind == KEYED)
    old_id, new_id = AuditKey(KEY.encode()).id, AuditKey(NEW_KEY.encode()).id
    assert [(m.seq, m.detail) for m in markers][0] == (plain + 1, {"key_id": old_id, "previous_key_id": None})
    assert markers[1].detail == {"key_id": new_id, "previous_key_id": old_id}

    code, out = await verify(capsys, monkeypatch, database_url, key=NEW_KEY, previous=KEY)
    assert code == 0 and f"entries 1-{plain} are plain SHA-256" in out and f"key {old_id}, {new_id}" in out
    code, out = await verify(capsys, monkeypatch, database_url, key=NEW_KEY)
    assert code == 1 and f"switches to key {old_id}" in out and "AUDIT_PREVIOUS_KEYS" in out
    code, out = await verify(capsys, monkeypatch, database_url, key=None)
    assert code == 1 and "set AUDIT_KEY to verify it" in out


async def test_a_keyed_trail_refuses_writers_without_the_key(
        aiohttp_client, settings_for, configs, clock, capsys, monkeypatch, database_url, tmp_path):
    await some_history(await make_paybot(aiohttp_client, settings_for, configs, clock, audit_key=KEY), "evt_1")
    (tmp_path / "c.csv").write_text("id,name\nC7,Someone\n")
    monkeypatch.delenv("AUDIT_KEY", raising=False)
    code, _, err = await run(capsys, monkeypatch, database_url, "import", "customers", "c.csv")
    assert code == 2 and "AUDIT_KEY is not set" in err and len(err.strip().splitlines()) == 1


async def test_no_key_warns_once_at_start_and_a_short_key_is_a_setting_error(
        aiohttp_client, settings_for, configs, clock, caplog, capsys, monkeypatch):
    with caplog.at_level(logging.WARNING):
        await make_paybot(aiohttp_client, settings_for, configs, clock)
    assert sum("AUDIT_KEY is not set" in r.message for r in caplog.records) == 1
    monkeypatch.setenv("AUDIT_KEY", "short")
    code, _, err = await run(capsys, monkeypatch, "sqlite+aiosqlite:///./x.db", "audit", "verify")
    assert code == 2 and "AUDIT_KEY" in err and "short" not in err


async def deliver_all(bot: Paybot) -> None:
    await bot.deliver()
    bot.clock.advance(1)  # one Slack post per channel per second: the next one waits for its slot
    await bot.deliver()


async def test_the_anchor_is_posted_to_the_finance_channel_through_the_outbox(paybot, slack, caplog):
    await some_history(paybot, "evt_1")
    await deliver_all(paybot)
    with caplog.at_level(logging.INFO):
        await paybot.runtime.worker.run_periodic()
    [head] = await paybot.rows(models.AuditHead)
    anchor = f"{head.seq}:{head.hash}"
    assert f"audit anchor {anchor} (unkeyed)" in caplog.text
    [queued] = await paybot.rows(models.Notification, models.Notification.purpose == "audit_anchor")
    assert queued.status == "pending" and queued.payment_id is None
    await deliver_all(paybot)
    [posted] = [m for m in slack.posted("C0FINANCE") if f"hash {head.hash}" in m["text"]]
    assert f"entry {head.seq}" in posted["text"] and anchor in json.dumps(posted["blocks"])

    # Its own delivery moved the head by one entry: that alone is not worth another post (the log still says it).
    paybot.clock.advance(paybot.runtime.settings.audit_anchor_seconds + 1)
    await paybot.runtime.worker.run_periodic()
    assert len(await paybot.rows(models.Notification, models.Notification.purpose == "audit_anchor")) == 1
    assert (await paybot.post_stripe(stripe_invoice_event("evt_2", number="NOPE"))).status == 200
    paybot.clock.advance(paybot.runtime.settings.audit_anchor_seconds + 1)
    await paybot.runtime.worker.run_periodic()
    assert len(await paybot.rows(models.Notification, models.Notification.purpose == "audit_anchor")) == 2


async def test_the_key_never_appears_in_the_trail_the_exports_or_the_logs(
        aiohttp_client, settings_for, configs, clock, caplog, capsys, monkeypatch, database_url):
    with caplog.at_level(logging.DEBUG):
        bot = await make_paybot(aiohttp_client, settings_for, configs, clock, audit_key=KEY,
                                audit_previous_keys=NEW_KEY)
        await some_history(bot, "evt_1")
        await bot.post_stripe(stripe_invoice_event("evt_x"), secret="whsec_wrong")
        await bot.runtime.worker.run_periodic()
        await bot.deliver()
    monkeypatch.setenv("AUDIT_KEY", KEY)
    monkeypatch.setenv("AUDIT_PREVIOUS_KEYS", NEW_KEY)
    outputs = [caplog.text, repr(bot.runtime.settings), str(bot.runtime.db.audit_keys)]
    for args in (("audit", "export"), ("audit", "export", "--format", "csv"), ("audit", "verify"),
                 ("audit", "refusals")):
        code, out, err = await run(capsys, monkeypatch, database_url, *args)
        assert code == 0
        outputs += [out, err]
    outputs += [json.dumps(e.detail) for e in await bot.rows(models.AuditEntry)]
    outputs += [json.dumps(n.payload) for n in await bot.notifications()]
    for key in (KEY, NEW_KEY):
        assert not any(key in text or key[-16:] in text for text in outputs)
