"""The HTTP surface: refusals are clear and leave only a counted summary; health, readiness and metrics."""

from __future__ import annotations

import json

from bot.storage import models
from tests.harness import stripe_invoice_event


async def nothing_stored_but_a_refusal(paybot) -> models.Refusal:
    assert await paybot.rows(models.WebhookEvent) == []
    assert await paybot.rows(models.Payment) == []
    assert await paybot.notifications() == []
    assert await paybot.rows(models.AuditEntry) == []
    [summary] = await paybot.refusals()
    assert summary.source == "stripe" and summary.count == 1
    return summary


async def test_wrong_signature_is_401_and_counted(paybot):
    response = await paybot.post_stripe(stripe_invoice_event(), secret="whsec_wrong")
    assert response.status == 401
    assert "signature" in (await response.json())["error"]
    summary = await nothing_stored_but_a_refusal(paybot)
    assert summary.status == 401 and summary.reason == "SignatureInvalid" and "whsec" not in summary.example


async def test_replayed_old_signature_is_401(paybot, clock):
    response = await paybot.post_stripe(stripe_invoice_event(), timestamp=int(clock().timestamp()) - 301)
    assert response.status == 401
    await nothing_stored_but_a_refusal(paybot)


async def test_rotated_secrets_both_verify(aiohttp_client, settings_for, configs, clock):
    from bot.app import create_app
    from bot.integrations.sources.stripe import StripeSettings
    from bot.keys import RUNTIME
    from tests.harness import Paybot

    configs = configs | {"stripe": StripeSettings(_env_file=None, webhook_secret="whsec_new, whsec_old")}
    app = create_app(settings_for(), configs=configs, clock=clock, run_worker=False)
    bot = Paybot(await aiohttp_client(app), app[RUNTIME], clock)
    assert (await bot.post_stripe(stripe_invoice_event("evt_a"), secret="whsec_old")).status == 200
    assert (await bot.post_stripe(stripe_invoice_event("evt_b"), secret="whsec_new")).status == 200


async def test_unparseable_body_is_400_with_a_reason(paybot):
    response = await paybot.post_stripe(b'{"id": "evt_1", "type": ')
    assert response.status == 400
    assert "not valid JSON" in (await response.json())["error"]
    await nothing_stored_but_a_refusal(paybot)


async def test_missing_fields_are_400_naming_the_field(paybot):
    response = await paybot.post_stripe({"id": "evt_1", "type": "invoice.paid"})
    assert response.status == 400
    assert (await response.json())["error"] == "missing field data.object"


async def test_oversized_body_is_413(paybot):
    huge = json.dumps(stripe_invoice_event(description="x" * 1_100_000)).encode()
    response = await paybot.post_stripe(huge)
    assert response.status == 413
    await nothing_stored_but_a_refusal(paybot)


async def test_unknown_and_unconfigured_sources_are_404(paybot):
    assert (await paybot.client.post("/webhooks/nosuch", data=b"{}")).status == 404


async def test_ignored_event_types_are_200_and_recorded(paybot):
    event = stripe_invoice_event(event_type="customer.created")
    response = await paybot.post_stripe(event)
    assert response.status == 200
    [stored] = await paybot.rows(models.WebhookEvent)
    assert stored.status == "ignored" and await paybot.rows(models.Payment) == []


async def test_health_readiness_and_metrics(paybot):
    assert (await paybot.client.get("/healthz")).status == 200
    assert (await paybot.client.get("/readyz")).status == 200
    await paybot.post_stripe(stripe_invoice_event())
    await paybot.post_stripe(b"nope")
    text = await (await paybot.client.get("/metrics")).text()
    assert 'paybot_webhooks_received_total{outcome="stored",source="stripe"} 1.0' in text
    assert 'paybot_webhooks_rejected_total{reason="PayloadInvalid",source="stripe"} 1.0' in text
    assert 'paybot_outbox_depth{status="pending"}' in text


async def test_a_long_read_never_blocks_a_webhook(paybot):
    """An audit export streaming on SQLite must not hold the write lock (WAL readers don't block writers)."""
    async with paybot.runtime.db.read() as session:
        await session.execute(models.AuditEntry.__table__.select())
        response = await paybot.post_stripe(stripe_invoice_event())
        assert response.status == 200
