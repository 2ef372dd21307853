"""PayPal IPN from anyone: what an unauthenticated sender can make paybot do, store and send to PayPal.

Each message is checked without PayPal first (fields, receiver, status, size, charset), then claimed by the one
verifier and posted back once; PayPal's odd answers back off that message alone, and after its last attempt it is
given up on. Bodies never proven genuine are purged after the retention period.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from bot.app import create_app
from bot.keys import RUNTIME
from bot.storage import models
from tests.harness import Paybot
from tests.sources.test_paypal import configs, customer_and_invoice, ipn, paypal  # noqa: F401  (fixtures)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
POSTBACK = "/cgi-bin/webscr"


@pytest.fixture
def paybot_with(aiohttp_client, settings_for, configs, clock):  # type: ignore[no-untyped-def]
    async def make(**settings: Any) -> Paybot:
        app = create_app(settings_for(**settings), configs=configs, clock=clock, run_worker=False)
        client = await aiohttp_client(app)
        return Paybot(client=client, runtime=app[RUNTIME], clock=clock)

    return make


async def send(paybot: Paybot, body: bytes) -> Any:
    return await paybot.client.post("/webhooks/paypal", data=body, headers=FORM)


def forged(n: int) -> bytes:
    """An IPN as an attacker writes it: well-formed, addressed to us, never sent by PayPal."""
    return ipn(txn_id=f"FORGED{n:011d}", payer_email=f"mallory{n}%40example.com")


async def test_a_flood_of_forged_ipns_is_posted_back_once_each_and_the_genuine_one_is_confirmed(
        paybot_with, paypal, sendgrid):
    paybot = await paybot_with(unverified_max_rate=1000)  # all kept (as by many processes): the verifier's flood
    await customer_and_invoice(paybot)
    flood = [forged(n) for n in range(100)]
    genuine = paypal.sent_ipn(ipn())
    responses = await asyncio.gather(*(send(paybot, body) for body in [*flood, genuine]))
    assert {r.status for r in responses} == {200}
    await paybot.runtime.settle()  # the verifier's rounds, woken by the answers; the clock never moves

    postbacks = paypal.to(POSTBACK)
    assert len(postbacks) == len(flood) + 1  # each message verified once
    assert sorted(p.body for p in postbacks) == sorted(b"cmd=_notify-validate&" + b for b in [*flood, genuine])
    statuses = [e.status for e in await paybot.rows(models.WebhookEvent)]
    assert statuses.count("rejected") == len(flood) and statuses.count("processed") == 1
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1  # the genuine payment, thanked without waiting for any sweep


async def test_an_odd_postback_answer_backs_off_that_message_alone(paybot, paypal, sendgrid):
    await customer_and_invoice(paybot, amount="2500.00")
    paypal.script(POSTBACK, web.Response(status=413, text="Request Entity Too Large"))
    odd = paypal.sent_ipn(ipn(txn_id="ODD00000000000001"))
    later = paypal.sent_ipn(ipn(txn_id="LATER000000000001"))
    assert (await send(paybot, odd)).status == 200
    await paybot.runtime.settle()
    assert (await send(paybot, later)).status == 200
    await paybot.runtime.settle()

    events = {e.event_id.split("#")[0]: e for e in await paybot.rows(models.WebhookEvent)}
    assert events["LATER000000000001:Completed"].status == "processed"  # not held up behind the odd one
    [waiting] = [e for e in events.values() if e.status == "pending_verification"]
    assert waiting.attempts == 1 and waiting.next_attempt_at == paybot.clock() + timedelta(seconds=30)

    await paybot.runtime.confirm_pending()  # the sweep: not due yet, no postback
    assert len(paypal.to(POSTBACK)) == 2
    paybot.clock.advance(30)
    await paybot.runtime.confirm_pending()
    assert len(paypal.to(POSTBACK)) == 3
    assert {e.status for e in await paybot.rows(models.WebhookEvent)} == {"processed"}
    await paybot.deliver()
    assert len(sendgrid.accepted) == 2


async def test_a_message_paypal_never_answers_is_given_up_after_the_last_attempt(paybot_with, paypal, sendgrid):
    paybot = await paybot_with(verify_max_attempts=3, verify_retry_base_seconds=10)
    await customer_and_invoice(paybot)
    paypal.script(POSTBACK, *(web.Response(status=500, text="Internal Server Error") for _ in range(5)))
    await send(paybot, paypal.sent_ipn(ipn()))
    await paybot.runtime.settle()
    for wait in (10, 20, 40, 80, 3600):  # its backoff doubles; after the third attempt nothing is tried
        paybot.clock.advance(wait)
        await paybot.runtime.confirm_pending()

    assert len(paypal.to(POSTBACK)) == 3
    [event] = await paybot.rows(models.WebhookEvent)
    assert (event.status, event.attempts) == ("unverifiable", 3)
    [given_up] = await paybot.rows(models.AuditEntry, models.AuditEntry.kind == "webhook.unverifiable")
    assert given_up.detail["attempts"] == 3 and given_up.detail["event_id"] == "61E67681CH3238416:Completed"
    await paybot.deliver()
    assert sendgrid.accepted == [] and await paybot.rows(models.Payment) == []


async def test_over_the_cap_nothing_is_stored_and_paypal_is_told_to_retry(paybot_with, paypal):
    paybot = await paybot_with(unverified_max_pending=2)
    await customer_and_invoice(paybot)
    paypal.script(POSTBACK, *(web.Response(status=503) for _ in range(2)))  # the backlog cannot drain yet
    for n in range(2):
        assert (await send(paybot, paypal.sent_ipn(ipn(txn_id=f"TXN{n:014d}")))).status == 200
        await paybot.runtime.settle()
    audit_before = len(await paybot.rows(models.AuditEntry))

    third = paypal.sent_ipn(ipn(txn_id="TXN00000000000002"))
    response = await send(paybot, third)
    assert response.status == 503
    assert len(await paybot.rows(models.WebhookEvent)) == 2
    assert len(await paybot.rows(models.AuditEntry)) == audit_before

    paybot.clock.advance(30)
    await paybot.runtime.confirm_pending()  # the two are verified: room again
    assert (await send(paybot, third)).status == 200  # PayPal's retry
    await paybot.runtime.settle()
    assert [e.status for e in await paybot.rows(models.WebhookEvent)] == ["processed"] * 3


@pytest.mark.parametrize("status", ["Denied", "Failed", "Voided", "Canceled_Reversal", "Created"])
async def test_statuses_paybot_does_not_act_on_are_answered_and_kept_nowhere(paybot, paypal, status):
    response = await send(paybot, ipn(payment_status=status))
    assert response.status == 200 and await response.read() == b""
    await paybot.runtime.settle()
    assert await paybot.rows(models.WebhookEvent) == [] and await paybot.rows(models.AuditEntry) == []
    assert paypal.to(POSTBACK) == []


async def test_a_notice_without_a_payment_status_is_kept_nowhere(paybot, paypal):
    response = await send(paybot, b"txn_type=subscr_signup&subscr_id=I-1234&receiver_email=billing%40weld.example")
    assert response.status == 200
    assert await paybot.rows(models.WebhookEvent) == [] and paypal.to(POSTBACK) == []


@pytest.mark.parametrize("body", [
    pytest.param(ipn(receiver_email=""), id="no-receiver"),
    pytest.param(ipn(txn_id=""), id="no-txn-id"),
    pytest.param(ipn(mc_currency=""), id="no-currency"),
])
async def test_an_ipn_missing_what_it_needs_is_400_before_storage_or_postback(paybot, paypal, body):
    response = await send(paybot, body)
    assert response.status == 400
    assert await paybot.rows(models.WebhookEvent) == [] and paypal.to(POSTBACK) == []


async def test_an_ipn_larger_than_ipn_sized_is_413(paybot, paypal):
    body = ipn(custom="x" * 20_000)
    assert len(body) > 20_480
    response = await send(paybot, body)
    assert response.status == 413
    assert await paybot.rows(models.WebhookEvent) == [] and paypal.to(POSTBACK) == []


@pytest.mark.parametrize("charset", ["unicode_escape", "rot13", "zlib", "raw_unicode_escape", "base64", "utf-7x",
                                     "utf-8%0AWARNING+forged+log+line", "windows-1252%0D%0A"])
async def test_a_charset_that_is_not_a_text_encoding_is_400_without_echo(paybot, paypal, caplog, charset):
    caplog.set_level(logging.DEBUG)
    response = await send(paybot, ipn(charset=charset))
    assert response.status == 400
    assert (await response.json())["error"] == "not an IPN message: unsupported charset"
    assert await paybot.rows(models.WebhookEvent) == [] and paypal.to(POSTBACK) == []
    assert not any("\n" in r.getMessage() or "forged" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("charset", ["UTF-8", "iso-8859-15", "windows-1250", "shift_jis"])
async def test_real_text_charsets_are_read(paybot, paypal, charset):
    ascii_only = {"first_name": "Jose", "last_name": "Muller", "address_street": "Hauptstr.", "address_city": "Bonn",
                  "item_name": "Invoice+INV-1042"}
    response = await send(paybot, paypal.sent_ipn(ipn(charset=charset, **ascii_only)))
    assert response.status == 200
    await paybot.runtime.settle()
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "processed"


async def test_a_body_that_is_not_a_form_is_400_and_never_echoed(paybot, paypal):
    body = b"A" * 20_000  # no `=` anywhere
    response = await send(paybot, body)
    assert response.status == 400
    reason = (await response.json())["error"]
    assert reason == "not an IPN form body: not name=value pairs"
    assert await paybot.rows(models.AuditEntry) == []
    [refusal] = await paybot.refusals()
    assert refusal.count == 1 and "AAAA" not in refusal.example


async def test_bodies_never_proven_genuine_are_purged_after_the_retention_period(paybot_with, paypal):
    paybot = await paybot_with(unverified_retention_hours=24, verify_max_attempts=1)
    await customer_and_invoice(paybot)
    await send(paybot, forged(1))  # INVALID: rejected
    await send(paybot, paypal.sent_ipn(ipn()))  # genuine: processed, kept
    await paybot.runtime.settle()
    paypal.script(POSTBACK, web.Response(status=502))
    await send(paybot, paypal.sent_ipn(ipn(txn_id="NEVERANSWERED0001")))  # never verified: given up at once
    await paybot.runtime.settle()
    assert sorted(e.status for e in await paybot.rows(models.WebhookEvent)) == [
        "processed", "rejected", "unverifiable"]

    await paybot.runtime.worker.run_periodic()  # the purge job runs from the worker's scheduler
    paybot.clock.advance(23 * 3600)
    await paybot.runtime.worker.run_periodic()
    assert all(e.body and e.purged_at is None for e in await paybot.rows(models.WebhookEvent))

    paybot.clock.advance(3600 + 1)
    await paybot.runtime.worker.run_periodic()
    events = {e.status: e for e in await paybot.rows(models.WebhookEvent)}
    for status in ("rejected", "unverifiable"):
        purged = events[status]
        assert purged.body == b"" and purged.purged_at == paybot.clock() and 0 < purged.body_bytes <= 20_480
        assert purged.event_id.startswith(("FORGED", "NEVERANSWERED")) and purged.received_at is not None
    assert events["processed"].body == ipn() and events["processed"].purged_at is None
    assert events["rejected"].body_bytes == len(forged(1))


async def test_a_flood_of_forged_ipns_cannot_grow_storage_past_a_constant_each(paybot_with, paypal):
    """Per forged request: one row whose body is at most the IPN limit (dropped later), and no audit entry: the
    forgeries are counted with the other refusals."""
    paybot = await paybot_with(unverified_max_rate=1000)
    responses = await asyncio.gather(*(send(paybot, forged(n)) for n in range(50)))
    assert {r.status for r in responses} == {200}
    await paybot.runtime.settle()
    events = await paybot.rows(models.WebhookEvent)
    assert len(events) == 50 and max(len(e.body) for e in events) <= 20_480
    assert await paybot.rows(models.AuditEntry) == [] and await paybot.refused() == [("paypal", 401, 50)]


async def test_past_the_rate_a_forgery_costs_no_database_work(paybot_with, paypal):
    paybot = await paybot_with(unverified_max_pending=1000, unverified_max_rate=0.3)  # a burst of 3
    for n in range(3):  # each is found out at once, so the pending cap is never what refuses
        assert (await send(paybot, forged(n))).status == 200
        await paybot.runtime.settle()
    assert (await send(paybot, forged(3))).status == 503
    assert len(await paybot.rows(models.WebhookEvent)) == 3
    paybot.clock.advance(4)  # one more every 3⅓ s
    assert (await send(paybot, forged(4))).status == 200
