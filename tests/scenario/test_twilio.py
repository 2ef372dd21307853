"""Twilio SMS end to end against the fake Twilio: the send, its signed status callbacks, STOP / START consent, the
errors Twilio answers and what paybot does about each."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from bot.integrations.channels.twilio import TwilioSettings
from bot.storage import models
from tests.fakes.twilio import (ACCOUNT_SID, API_KEY_SECRET, API_KEY_SID, AUTH_TOKEN, FROM_NUMBER,
                                MESSAGING_SERVICE_SID, FakeTwilio, encoded, error, inbound_form, signature,
                                status_form)
from tests.harness import stripe_invoice_event

PUBLIC = "https://paybot.example.com"  # settings_for's PUBLIC_BASE_URL
PHONE = "+15125550123"


@pytest.fixture
async def twilio(aiohttp_server, clock):
    fake = FakeTwilio(clock)
    fake.server = await aiohttp_server(fake.app)
    return fake


def twilio_settings(twilio: FakeTwilio, **overrides: object) -> TwilioSettings:
    values: dict[str, object] = dict(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=FROM_NUMBER,
                                     base_url=str(twilio.server.make_url("/")), public_base_url=PUBLIC)
    return TwilioSettings(_env_file=None, **(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
def configs(configs, twilio):
    return configs | {"twilio": twilio_settings(twilio)}


async def texted(paybot, twilio, *, phone: str = "512-555-0123", channels=("sms",), **fields):
    await paybot.add_customer(phone=phone, channels=channels, **fields)
    await paybot.add_invoice()
    assert (await paybot.post_stripe(stripe_invoice_event())).status == 200
    await paybot.deliver()
    return twilio.messages


async def post_callback(paybot, url: str, params: list[tuple[str, str]], *, token: str = AUTH_TOKEN,
                        sign_url: str | None = None):
    assert url.startswith(PUBLIC)
    headers = {"X-Twilio-Signature": signature(sign_url or url, params, token),
               "Content-Type": "application/x-www-form-urlencoded"}
    return await paybot.client.post(url.removeprefix(PUBLIC), data=encoded(params), headers=headers)


async def status(paybot, message, state: str, error_code: int | None = None, **kwargs):
    return await post_callback(paybot, message["status_callback"], status_form(message, state, error_code), **kwargs)


async def inbound(paybot, body: str, from_number: str = PHONE, **extra: str):
    return await post_callback(paybot, f"{PUBLIC}/callbacks/twilio", inbound_form(from_number, body, **extra))


async def receipts(paybot) -> list[models.Notification]:
    return sorted((n for n in await paybot.notifications() if n.purpose == "receipt"), key=lambda n: n.id)


async def test_sends_in_e164_with_basic_auth_and_a_signed_status_callback(paybot, twilio):
    [message] = await texted(paybot, twilio)
    assert message["to"] == PHONE and message["from"] == FROM_NUMBER  # "512-555-0123" read for the US
    assert "INV-1042" in message["body"] and "$1,250.00" in message["body"]
    assert message["status_callback"].startswith(f"{PUBLIC}/callbacks/twilio?n=")
    [call] = twilio.to(twilio.messages_path)
    assert call.headers["Authorization"].startswith("Basic ")
    [row] = await receipts(paybot)
    assert (row.channel, row.status, row.provider_id) == ("twilio", "sent", message["sid"])
    [sent] = [e for e in await paybot.rows(models.AuditEntry) if e.kind == "notification.sent"
              and e.channel == "twilio"]
    assert sent.detail["provider_id"] == message["sid"]

    for state in ("sent", "delivered"):
        response = await status(paybot, message, state)
        assert response.status == 200 and "<Response>" in await response.text()
    [row] = await receipts(paybot)
    assert row.delivery_status == "delivered"
    # Out of order and late: "sent" after "delivered", or a failure, changes nothing, and nothing falls back.
    await status(paybot, message, "sent")
    await status(paybot, message, "undelivered", 30003)
    [row] = await receipts(paybot)
    assert (row.status, row.delivery_status) == ("sent", "delivered")


async def test_an_api_key_and_a_messaging_service(paybot, twilio, settings_for, configs, aiohttp_client, clock):
    from bot.app import create_app
    from bot.keys import RUNTIME
    from tests.harness import Paybot

    keyed = configs | {"twilio": twilio_settings(twilio, api_key_sid=API_KEY_SID, api_key_secret=API_KEY_SECRET,
                                                 from_number=None, messaging_service_sid=MESSAGING_SERVICE_SID)}
    app = create_app(settings_for(), configs=keyed, clock=clock, run_worker=False)
    other = Paybot(client=await aiohttp_client(app), runtime=app[RUNTIME], clock=clock)
    [message] = await texted(other, twilio)
    assert message["messaging_service_sid"] == MESSAGING_SERVICE_SID and message["from"] is None


async def test_forged_callbacks_are_refused_and_change_nothing(paybot, twilio):
    [message] = await texted(paybot, twilio)
    url = message["status_callback"]
    params = status_form(message, "undelivered", 30003)
    assert (await post_callback(paybot, url, params, token="not-the-token")).status == 401
    assert (await post_callback(paybot, url, params, sign_url=f"{PUBLIC}/callbacks/twilio")).status == 401
    headers = {"X-Twilio-Signature": signature(url, params), "Content-Type": "application/x-www-form-urlencoded"}
    tampered = [(k, "delivered" if k == "MessageStatus" else v) for k, v in params]
    assert (await paybot.client.post(url.removeprefix(PUBLIC), data=encoded(tampered), headers=headers)).status == 401
    assert (await paybot.client.post(url.removeprefix(PUBLIC), data=encoded(params))).status == 401  # unsigned
    stop = inbound_form(PHONE, "STOP")
    assert (await post_callback(paybot, f"{PUBLIC}/callbacks/twilio", stop, token="forged")).status == 401
    [row] = await receipts(paybot)
    assert (row.status, row.delivery_status) == ("sent", None)
    assert await paybot.rows(models.Consent) == []
    assert (await paybot.audit_kinds()).count("callback.rejected") == 5


async def test_a_status_for_an_unknown_message_is_200_ignored_and_logged(paybot, twilio, caplog):
    caplog.set_level(logging.INFO, logger="bot.services.delivery_status")
    [message] = await texted(paybot, twilio)
    stranger = dict(message, sid="SM" + "f" * 32)
    params = [p for p in status_form(stranger, "delivered")]
    response = await post_callback(paybot, f"{PUBLIC}/callbacks/twilio", params)
    assert response.status == 200
    [row] = await receipts(paybot)
    assert row.delivery_status is None
    assert "did not send" in caplog.text and "SMfff" in caplog.text


async def test_unparseable_callback_is_400(paybot, twilio):
    await texted(paybot, twilio)
    params = [("AccountSid", ACCOUNT_SID), ("Foo", "bar")]
    assert (await post_callback(paybot, f"{PUBLIC}/callbacks/twilio", params)).status == 400


async def test_undelivered_falls_back_to_the_next_channel_at_once(paybot, twilio, sendgrid, clock):
    [message] = await texted(paybot, twilio, channels=("sms", "email"))
    assert sendgrid.accepted == []
    clock.advance(30)
    assert (await status(paybot, message, "undelivered", 30003)).status == 200
    await paybot.deliver()  # the same minute: the worker is woken by the callback
    [mail] = sendgrid.accepted
    assert "INV-1042" in mail["content"][0]["value"]
    sms, email = await receipts(paybot)
    assert (sms.status, sms.delivery_status, email.channel, email.status) == ("dead", "undelivered", "sendgrid", "sent")
    assert (email.sent_at - clock()).total_seconds() <= 60
    [step] = [e for e in await paybot.rows(models.AuditEntry) if e.kind == "notification.fallback"]
    assert (step.detail["from"], step.detail["to"]) == ("twilio", "sendgrid")
    # Twilio repeats its callback: nothing new, nobody thanked twice.
    await status(paybot, message, "undelivered", 30003)
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_stop_opts_out_for_good_and_start_opts_back_in(paybot, twilio, sendgrid, clock):
    await texted(paybot, twilio, channels=("sms", "email"))
    assert (await inbound(paybot, " stop ")).status == 200
    assert (await inbound(paybot, "STOP")).status == 200  # Twilio may deliver it twice: one change
    [consent] = await paybot.rows(models.Consent)
    assert (consent.address, consent.opted_out, consent.reason) == (PHONE, True, "replied STOP")
    [entry] = [e for e in await paybot.rows(models.AuditEntry) if e.kind == "consent.opted_out"]
    assert entry.customer_id == "C1" and entry.detail["reason"] == "replied STOP" and PHONE not in str(entry.detail)

    # The next payment goes by email, and says why SMS was skipped.
    await paybot.add_invoice("INV-1043", "80.00")
    await paybot.post_stripe(stripe_invoice_event("evt_2", number="INV-1043", amount_paid=8000))
    await paybot.deliver()
    assert len(twilio.messages) == 1 and len(sendgrid.accepted) == 1
    skipped = [e for e in await paybot.rows(models.AuditEntry) if e.kind == "notification.skipped"]
    assert skipped and "opted out" in skipped[-1].detail["reason"]

    assert (await inbound(paybot, "Start")).status == 200
    await paybot.add_invoice("INV-1044", "90.00")
    await paybot.post_stripe(stripe_invoice_event("evt_3", number="INV-1044", amount_paid=9000))
    await paybot.deliver()
    assert len(twilio.messages) == 2
    assert "consent.opted_in" in await paybot.audit_kinds()


async def test_spanish_keywords_count_as_twilio_counts_them(paybot, twilio, sendgrid):
    """Twilio enforces only its English keywords by default: a bare PARAR changes nothing (Twilio would still
    deliver our texts), while PARAR configured in Advanced Opt-Out arrives as OptOutType=STOP and opts out."""
    await texted(paybot, twilio, channels=("sms", "email"))
    assert (await inbound(paybot, "PARAR")).status == 200
    assert await paybot.rows(models.Consent) == []
    assert (await inbound(paybot, "PARAR", OptOutType="STOP")).status == 200
    [consent] = await paybot.rows(models.Consent)
    assert (consent.opted_out, consent.reason) == (True, "replied STOP")
    assert (await inbound(paybot, "SÍ", OptOutType="START")).status == 200
    [consent] = await paybot.rows(models.Consent)
    assert consent.opted_out is False


async def test_opt_out_survives_a_restart(paybot, twilio, settings_for, configs, aiohttp_client, clock):
    from bot.app import create_app
    from bot.keys import RUNTIME
    from tests.harness import Paybot

    await texted(paybot, twilio)
    await inbound(paybot, "UNSUBSCRIBE")
    app = create_app(settings_for(), configs=configs, clock=clock, run_worker=False)  # a new process, same database
    restarted = Paybot(client=await aiohttp_client(app), runtime=app[RUNTIME], clock=clock)
    await restarted.add_invoice("INV-1043", "80.00")
    await restarted.post_stripe(stripe_invoice_event("evt_2", number="INV-1043", amount_paid=8000))
    await restarted.deliver()
    assert len(twilio.messages) == 1
    assert "notification.undeliverable" in await restarted.audit_kinds()
    await restarted.deliver()
    card = [m for m in (await restarted.notifications()) if m.purpose == "finance_card"][-1]
    assert "NOT told" in card.payload["text"] and "opted out" in card.payload["text"]


async def test_error_21610_records_the_opt_out_and_falls_back(paybot, twilio, sendgrid):
    twilio.unsubscribed.add(PHONE)  # they replied STOP to our number before paybot knew them
    await texted(paybot, twilio, channels=("sms", "email"))
    await paybot.deliver()
    sms, email = await receipts(paybot)
    assert sms.status == "dead" and "21610" in sms.last_error and email.status == "sent"
    [consent] = await paybot.rows(models.Consent)
    assert consent.opted_out and "21610" in consent.reason
    assert "consent.opted_out" in await paybot.audit_kinds()


async def test_stop_while_queued_is_honoured_at_send_time(paybot, twilio, sendgrid):
    await paybot.add_customer(phone=PHONE, channels=("sms", "email"))
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    await inbound(paybot, "STOP")  # after the receipt was queued, before the worker sends it
    await paybot.deliver()
    await paybot.deliver()
    assert twilio.messages == [] and len(sendgrid.accepted) == 1
    sms, email = await receipts(paybot)
    assert sms.status == "dead" and "opted out" in sms.last_error


@pytest.mark.parametrize("code", [21211, 21614])
async def test_permanent_errors_fall_back(paybot, twilio, sendgrid, code):
    twilio.script(twilio.messages_path, error(code))
    await texted(paybot, twilio, channels=("sms", "email"))
    await paybot.deliver()
    sms, email = await receipts(paybot)
    assert sms.status == "dead" and str(code) in sms.last_error and sms.attempts == 1
    assert email.status == "sent"


@pytest.mark.parametrize("answer", [lambda: error(20429, 429), lambda: web.Response(status=429)])
async def test_429_is_retried_and_sent_once(paybot, twilio, clock, answer):
    twilio.script(twilio.messages_path, answer())
    await texted(paybot, twilio)
    [row] = await receipts(paybot)
    assert row.status == "pending" and twilio.messages == []
    clock.advance(paybot.runtime.settings.retry_max_seconds)
    await paybot.deliver()
    [row] = await receipts(paybot)
    assert row.status == "sent" and len(twilio.messages) == 1


async def test_a_500_after_twilio_took_the_message_is_not_sent_twice(paybot, twilio, clock):
    twilio.accept_then_fail = 1
    await texted(paybot, twilio)
    [row] = await receipts(paybot)
    assert row.status == "pending" and row.attempt_started_at is not None
    clock.advance(paybot.runtime.settings.retry_max_seconds)
    await paybot.deliver()
    [row] = await receipts(paybot)
    assert row.status == "sent" and len(twilio.messages) == 1  # found at Twilio, not sent again
    assert row.provider_id == twilio.messages[0]["sid"]


async def test_a_500_before_twilio_took_it_is_sent_after_asking(paybot, twilio, clock):
    from tests.fakes.twilio import server_error

    twilio.script(twilio.messages_path, server_error())  # refused before it was stored
    await texted(paybot, twilio)
    assert twilio.messages == []
    clock.advance(paybot.runtime.settings.retry_max_seconds)
    await paybot.deliver()
    assert len(twilio.messages) == 1
    [row] = await receipts(paybot)
    assert row.status == "sent"


async def test_an_unparseable_phone_skips_sms_with_an_audit_entry(paybot, twilio, sendgrid):
    await texted(paybot, twilio, phone="555-01", channels=("sms", "email"))
    assert twilio.messages == [] and len(sendgrid.accepted) == 1
    [skipped] = [e for e in await paybot.rows(models.AuditEntry) if e.kind == "notification.skipped"]
    assert skipped.channel == "twilio" and "phone" in skipped.detail["reason"]


async def test_mexican_number_in_national_form(paybot, twilio):
    [message] = await texted(paybot, twilio, phone="55 1234 5678", country="MX", locale="es-MX")
    assert message["to"] == "+525512345678"
    assert message["body"].startswith("¡Gracias, Jane Doe! Recibimos su pago de")


async def test_status_shows_each_notification_with_the_provider_id(paybot, twilio, capsys, monkeypatch,
                                                                   database_url):
    import asyncio

    from bot.cli import main
    from bot.services.staff.queries import StaffQueries

    [message] = await texted(paybot, twilio)
    await status(paybot, message, "delivered")
    answer = await StaffQueries(paybot.runtime.db).status("INV-1042")  # what /payments status answers
    assert f"receipt to customer via twilio (+15*******23): delivered at 2026-11-28 12:00 UTC, 1 attempt · id " \
           f"{message['sid']}" in answer
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await asyncio.to_thread(main, ["status", "INV-1042"]) == 0
    assert "via twilio (+15*******23): delivered" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["audit", "export", "--invoice", "INV-1042"]) == 0
    exported = capsys.readouterr().out
    assert f'"provider_id": "{message["sid"]}"' in exported and '"status": "delivered"' in exported


async def test_a_failure_reported_before_the_send_was_recorded_still_falls_back(paybot, twilio, sendgrid):
    await paybot.add_customer(phone=PHONE, channels=("sms", "email"))
    await paybot.add_invoice()
    await paybot.post_stripe(stripe_invoice_event())
    [row] = await receipts(paybot)
    from bot.integrations.channels.twilio import callback_token

    message = {"sid": "SM" + "a" * 32, "from": FROM_NUMBER, "to": PHONE,
               "status_callback": f"{PUBLIC}/callbacks/twilio?n={callback_token(row.idempotency_key)}"}
    await status(paybot, message, "failed", 30005)  # Twilio's report outran the worker
    await paybot.deliver()
    sms, email = await receipts(paybot)
    assert (sms.status, email.status) == ("dead", "sent") and twilio.messages == []


async def test_check_proves_the_credentials(paybot, twilio, settings_for, aiohttp_client):
    import aiohttp

    from bot.integrations.channels.twilio import TwilioChannel

    settings = settings_for()
    good = await paybot.runtime.channels["twilio"].check(settings)
    assert [f.problem for f in good] == [False] and "account active" in good[0].text
    async with aiohttp.ClientSession() as http:
        bad = TwilioChannel(twilio_settings(twilio, auth_token="wrong"), http)
        [finding] = await bad.check(settings)
        assert finding.problem and "HTTP 401, error 20003" in finding.text and "wrong" not in finding.text
        keyed = TwilioChannel(twilio_settings(twilio, api_key_sid=API_KEY_SID, api_key_secret=API_KEY_SECRET,
                                              public_base_url=None), http)
        found = await keyed.check(settings)
        assert [f.problem for f in found] == [False, True] and "PUBLIC_BASE_URL" in found[1].text
