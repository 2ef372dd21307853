"""Hostile requests at the HTTP surface: Slack headers that tripped slack_sdk, blank secrets, a database outage
behind the callbacks, and slow-loris connections. Each answer is a 4xx/503 or a closed socket, never a 500."""

from __future__ import annotations

import asyncio
import logging

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.app import create_app, server_options
from bot.integrations.channels.slack import SlackSettings
from bot.integrations.sources.stripe import StripeSettings
from bot.keys import RUNTIME
from bot.settings import Settings
from bot.storage import models
from bot.storage.database import Database
from tests.fakes.sendgrid_events import EventSigner, body
from tests.harness import Paybot

SIGNING_SECRET = "slack-signing-secret"  # as in the `configs` fixture


@pytest.mark.parametrize(("timestamp", "signature"), [
    ("abc", "v0=" + "0" * 64),  # slack_sdk's int(timestamp) raised
    ("²", "v0=" + "0" * 64),
    (None, "v0=é"),  # slack_sdk's compare_digest raised on non-ASCII
])
async def test_malformed_slack_signature_headers_are_401(paybot, timestamp, signature):
    ts = timestamp or str(int(paybot.clock().timestamp()))
    response = await paybot.client.post("/slack/events", data=b"command=%2Fpayments&text=help", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature})
    assert response.status == 401


async def test_a_correctly_signed_slack_request_still_passes(paybot):
    ts, raw = str(int(paybot.clock().timestamp())), "type=unknown"
    response = await paybot.client.post("/slack/events", data=raw.encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=ts, body=raw) or ""})
    assert response.status != 401


async def test_a_blank_slack_signing_secret_leaves_chat_ops_off_instead_of_crashing(
        aiohttp_client, settings_for, configs, clock, caplog):
    slack = configs["slack"].model_copy(update={"signing_secret": SlackSettings(
        _env_file=None, signing_secret="   ").signing_secret})
    app = create_app(settings_for(), configs=configs | {"slack": slack}, clock=clock, run_worker=False)
    with caplog.at_level(logging.INFO):
        client = await aiohttp_client(app)
    assert (await client.post("/slack/events", data=b"x")).status == 404
    assert "SLACK_SIGNING_SECRET not set" in caplog.text


@pytest.mark.parametrize("blank", [" , ,", "   ", ","])
async def test_a_secret_of_only_commas_or_spaces_disables_the_source_and_says_so(
        monkeypatch, tmp_path, caplog, blank):
    from bot.runtime import start

    assert StripeSettings(_env_file=None, webhook_secret=blank).missing() == ["STRIPE_WEBHOOK_SECRET"]
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", blank)
    with caplog.at_level(logging.INFO):
        runtime = await start(Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"))
        await runtime.close()
    assert "stripe" not in runtime.sources and runtime.disabled["stripe"] == ["STRIPE_WEBHOOK_SECRET"]
    assert "integration stripe disabled: STRIPE_WEBHOOK_SECRET not set" in caplog.text


@pytest.fixture
def configs(configs, sendgrid):  # type: ignore[no-untyped-def]
    from bot.integrations.channels.sendgrid import SendGridSettings
    from tests.fakes.sendgrid import API_KEY

    return configs | {"sendgrid": SendGridSettings(
        _env_file=None, api_key=API_KEY, from_email="billing@weld.example", event_public_key=SIGNER.public_key,
        base_url=str(sendgrid.server.make_url("/")))}


SIGNER = EventSigner()


def unreachable_like(url: str, tmp_path, clock) -> Database:  # type: ignore[no-untyped-def]
    """A database on the same engine that does not answer: a stopped server, a missing file."""
    if url.startswith("sqlite"):
        return Database.open(f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/paybot.db", clock)
    return Database.open("postgresql+asyncpg://postgres@127.0.0.1:9/paybot", clock)


async def test_a_database_outage_behind_status_callbacks_is_never_a_500(paybot, database_url, tmp_path):
    ts = int(paybot.clock().timestamp())
    raw = body({"email": "jane@example.com", "event": "delivered", "timestamp": ts,
                "notification_key": "p1:receipt:sendgrid"})
    working, paybot.runtime.db = paybot.runtime.db, unreachable_like(database_url, tmp_path, paybot.clock)
    try:
        forged = await paybot.client.post("/callbacks/sendgrid", data=raw, headers=EventSigner().headers(raw, ts))
        genuine = await paybot.client.post("/callbacks/sendgrid", data=raw, headers=SIGNER.headers(raw, ts))
    finally:
        await paybot.runtime.db.dispose()
        paybot.runtime.db = working
    assert forged.status == 401  # the refusal stands; only its audit entry is lost (and logged)
    assert genuine.status == 503  # SendGrid keeps the events and posts them again


@pytest.fixture
async def short_timeouts(aiohttp_server, settings_for, configs, clock):  # type: ignore[no-untyped-def]
    settings = settings_for(read_timeout_seconds=0.2)
    app = create_app(settings, configs=configs, clock=clock, run_worker=False)
    server = await aiohttp_server(app, **server_options(settings))
    return Paybot(client=None, runtime=app[RUNTIME], clock=clock), server  # type: ignore[arg-type]


async def closed_by_the_server(server, first_bytes: bytes) -> bytes:  # type: ignore[no-untyped-def]
    """Send a request that never ends; what the server said before it hung up (a generous bound, not a timing)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(first_bytes)
    await writer.drain()
    try:
        async with asyncio.timeout(10):
            return await reader.read()  # b"" or a short answer, then EOF: the server closed the connection
    finally:
        writer.close()


async def test_a_slow_loris_head_is_closed_by_the_server(short_timeouts):
    _, server = short_timeouts
    said = await closed_by_the_server(server, b"POST /webhooks/stripe HTTP/1.1\r\nHost: paybot\r\nX-Slow: ")
    assert said == b""


async def test_a_body_that_never_arrives_is_closed_by_the_server(short_timeouts):
    paybot, server = short_timeouts
    said = await closed_by_the_server(server, b"POST /webhooks/stripe HTTP/1.1\r\nHost: paybot\r\n"
                                              b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"id\":")
    assert not said.startswith(b"HTTP/1.1 5")
    assert await paybot.rows(models.WebhookEvent) == []


@pytest.mark.parametrize("header", [b"Stripe-Signature: t=\xff\xfe,v1=\xc3\x28",
                                    b"Stripe-Signature: t=1,v1=\xed\xa0\x80",
                                    b"Content-Type: application/json; charset=\xff"])
async def test_header_bytes_that_are_not_utf8_are_refused_not_a_500(short_timeouts, header):
    _, server = short_timeouts
    said = await closed_by_the_server(server, b"POST /webhooks/stripe HTTP/1.1\r\nHost: paybot\r\n" + header
                                      + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert said.split(b" ", 2)[1] in (b"400", b"401"), said


@pytest.mark.parametrize(("content_type", "raw"), [
    ("application/json", b"\x00"), ("application/json", b"[]"), ("application/x-www-form-urlencoded", b"payload=%7B")])
async def test_a_slack_body_bolt_cannot_parse_is_400_before_any_signature_check(paybot, content_type, raw):
    response = await paybot.client.post("/slack/events", data=raw, headers={"Content-Type": content_type})
    assert response.status == 400
