"""Business Central: the validationToken handshake, clientState-checked notifications stored and answered, each
salesInvoice (or every page of a `collection`) read back with client credentials; subscriptions created by
`paybot subscribe business-central`'s service and kept alive by the worker on an injected clock."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from bot.messages import Purpose
from bot.services.bc_subscriptions import BcSubscriptions
from bot.storage import models
from tests.fakes.business_central import (CLIENT_ID, CLIENT_SECRET, CLIENT_STATE, COMPANY, COMPANY_ROOT, ENVIRONMENT,
                                          TENANT, FakeBusinessCentral, bc_error, invoice_id)
from tests.sources.helpers import mail_text

NOTIFY = "https://paybot.example.com/webhooks/business-central"


@pytest.fixture
async def bc(aiohttp_server, clock):  # type: ignore[no-untyped-def]
    fake = FakeBusinessCentral(clock)
    fake.server = await aiohttp_server(fake.app)
    fake.add_invoice(1, "103042", total="1250.00", remaining="0")
    return fake


def bc_settings(fake: FakeBusinessCentral) -> Any:
    from bot.integrations.sources.business_central import BusinessCentralSettings

    return BusinessCentralSettings(  # type: ignore[call-arg]
        _env_file=None, client_state=CLIENT_STATE, tenant_id=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        environment=ENVIRONMENT, company_id=COMPANY, base_url=str(fake.server.make_url("/")),
        token_url=str(fake.server.make_url(f"/{TENANT}/oauth2/v2.0/token")))


@pytest.fixture
def configs(configs, bc):  # type: ignore[no-untyped-def]
    return configs | {"business-central": bc_settings(bc)}


@pytest.fixture
def source(paybot):  # type: ignore[no-untyped-def]
    found = paybot.runtime.sources["business-central"]
    found.clock = paybot.clock
    return found


def notification(*items: dict[str, Any]) -> dict[str, Any]:
    return {"value": list(items)}


def item(n: int = 1, change: str = "updated", *, state: str = CLIENT_STATE, resource: str | None = None,
         modified: str = "2026-11-28T11:59:20.467Z") -> dict[str, Any]:
    return {"subscriptionId": "salesInvoices-sub", "clientState": state, "expirationDateTime": "2026-12-01T07:52:31Z",
            "resource": resource or f"api/v2.0/companies({COMPANY})/salesInvoices({invoice_id(n)})",
            "changeType": change, "lastModifiedDateTime": modified}


async def send(paybot, body: dict[str, Any] | bytes):  # type: ignore[no-untyped-def]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await paybot.client.post("/webhooks/business-central", data=raw,
                                    headers={"Content-Type": "application/json"})


async def given_jane_owes(paybot, *invoices: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    await paybot.add_customer()
    for number, amount in invoices:
        await paybot.add_invoice(number, amount)


async def test_the_validation_handshake_echoes_the_token_as_plain_text(paybot, source):
    response = await paybot.client.post("/webhooks/business-central?validationToken=Zm9vYmFyLTEyMw%3D%3D")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "Zm9vYmFyLTEyMw=="
    assert await paybot.rows(models.WebhookEvent) == []


async def test_a_paid_invoice_is_read_back_and_jane_thanked_once(paybot, bc, source, sendgrid):
    await given_jane_owes(paybot, ("103042", "1250.00"))
    response = await send(paybot, notification(item(1)))
    assert response.status == 200
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "103042" in mail_text(mail) and "$1,250.00" in mail_text(mail)
    [payment] = await paybot.rows(models.Payment)
    assert payment.payment_ref == f"{invoice_id(1)}@1250.00"
    [token_call] = bc.to(f"/{TENANT}/oauth2/v2.0/token")
    assert b"scope=https%3A%2F%2Fapi.businesscentral.dynamics.com%2F.default" in token_call.body
    paybot.clock.advance(30)  # BC notifies again for a later change that paid nothing more
    assert (await send(paybot, notification(item(1, modified="2026-11-28T12:00:00Z")))).status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_a_partial_payment_then_the_rest_are_two_thanks(paybot, bc, source, sendgrid):
    await given_jane_owes(paybot, ("103043", "1000.00"))
    key = bc.add_invoice(2, "103043", total="1000.00", remaining="600.00")
    await send(paybot, notification(item(2, modified="2026-11-28T11:00:00Z")))
    await paybot.deliver()
    bc.invoices[key] |= {"remainingAmount": 0.0, "status": "Paid"}
    await send(paybot, notification(item(2, modified="2026-11-28T11:30:00Z")))
    await paybot.deliver()
    texts = [mail_text(m) for m in sendgrid.accepted]
    assert len(texts) == 2
    assert "$400.00" in texts[0] and "$600.00 is still owed" in texts[0]
    assert "$600.00" in texts[1]
    [invoice] = await paybot.rows(models.Invoice)
    assert invoice.paid_minor == 100000


async def test_an_open_unpaid_or_draft_invoice_is_ignored(paybot, bc, source, sendgrid):
    bc.add_invoice(3, "103044", total="500.00", remaining="500.00")
    bc.add_invoice(4, "103045", total="500.00", remaining="0", status="Draft")
    assert (await send(paybot, notification(item(3), item(4)))).status == 200
    await paybot.deliver()
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "ignored" and sendgrid.accepted == []


async def test_a_collection_notification_reads_every_page(paybot, bc, source, sendgrid):
    await given_jane_owes(paybot, ("103042", "1250.00"), ("103050", "10.00"), ("103051", "10.00"))
    bc.page_size = 1
    bc.add_invoice(50, "103050", total="10.00", remaining="0", modified="2026-11-28T11:59:10Z")
    bc.add_invoice(51, "103051", total="10.00", remaining="0", modified="2026-11-28T11:59:20Z")
    resource = f"api/v2.0/companies({COMPANY})/salesInvoices?$filter=lastModifiedDateTime%20gt%202026-11-28T11:00:00Z"
    assert (await send(paybot, notification(item(change="collection", resource=resource)))).status == 200
    await paybot.deliver()
    assert len(bc.to(f"{COMPANY_ROOT}/salesInvoices")) == 3  # three pages of one
    assert sorted(p.payment_ref.split("@")[0] for p in await paybot.rows(models.Payment)) == [
        invoice_id(1), invoice_id(50), invoice_id(51)]
    assert len(sendgrid.accepted) == 3


async def test_a_customer_payment_notification_reads_the_invoice_it_applies_to(paybot, bc, source, sendgrid):
    await given_jane_owes(paybot, ("103042", "1250.00"))
    line = "5a1b2c3d-0000-4000-8000-00000000c001"
    bc.customer_payments[line] = {"id": line, "amount": 1250.0, "appliesToInvoiceId": invoice_id(1),
                                  "appliesToInvoiceNumber": "103042", "customerNumber": "10000"}
    resource = f"api/v2.0/companies({COMPANY})/customerPayments({line})"
    assert (await send(paybot, notification(item(resource=resource)))).status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


@pytest.mark.parametrize("state", ["not-our-state", "", None])
async def test_a_wrong_client_state_is_401_and_nothing_is_stored(paybot, bc, source, state):
    bad = item()
    if state is None:
        del bad["clientState"]
    else:
        bad["clientState"] = state
    response = await send(paybot, notification(item(), bad))  # one wrong item spoils the lot
    assert response.status == 401
    assert await paybot.rows(models.WebhookEvent) == [] and bc.calls == []


async def test_a_malformed_body_is_400(paybot, source):
    assert (await send(paybot, b'{"value": [')).status == 400
    assert (await send(paybot, {"value": []})).status == 400


async def test_a_bc_outage_answers_2xx_and_waits_never_4xx(paybot, bc, source, sendgrid):
    await given_jane_owes(paybot, ("103042", "1250.00"))
    bc.script(f"{COMPANY_ROOT}/salesInvoices({invoice_id(1)})",
              bc_error(503, "ServiceUnavailable", "The service is temporarily unavailable"))
    assert (await send(paybot, notification(item()))).status == 200
    await paybot.deliver()
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "waiting"
    paybot.clock.advance(3600)
    await paybot.runtime.verifier.drain()
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1


async def test_the_token_endpoint_down_while_answering_is_never_a_4xx(paybot, bc, source):
    bc.script(f"/{TENANT}/oauth2/v2.0/token", web.json_response({"error": "temporarily_unavailable"}, status=503))
    assert (await send(paybot, notification(item()))).status == 200  # answered before any read


async def test_the_sweep_reads_changed_invoices_with_the_webhook_s_refs(paybot, bc, source):
    bc.page_size = 1
    bc.add_invoice(2, "103043", total="1000.00", remaining="600.00", modified="2026-11-28T11:59:30Z")
    swept = await source.sweep(None, None)
    assert [p.payment_ref for r in swept.received for p in r.payments] == [
        f"{invoice_id(1)}@1250.00", f"{invoice_id(2)}@400.00"]
    assert swept.mark.isoformat() == "2026-11-28T11:59:30+00:00"
    assert (await source.sweep(swept.mark, None)).received == ()


# --- subscriptions --------------------------------------------------------------------------------------------


@pytest.fixture
def subscriptions(paybot, bc, source):  # type: ignore[no-untyped-def]
    async def handshake(url: str, token: str) -> bool:
        assert url == NOTIFY
        response = await paybot.client.post(f"/webhooks/business-central?validationToken={token}")
        return response.status == 200 and await response.text() == token

    bc.handshake = handshake
    return BcSubscriptions(paybot.runtime.db, paybot.runtime.notifier, source)


async def test_subscribe_creates_the_subscription_after_the_handshake(paybot, bc, subscriptions):
    created = await subscriptions.subscribe(NOTIFY)
    [sent] = [c.json() for c in bc.to(f"/v2.0/{TENANT}/{ENVIRONMENT}/api/v2.0/subscriptions")]
    assert sent == {"notificationUrl": NOTIFY, "resource": f"/api/v2.0/companies({COMPANY})/salesInvoices",
                    "clientState": CLIENT_STATE}
    [row] = await paybot.rows(models.BcSubscription)
    assert row.subscription_id == created.id and row.expires_at == paybot.clock() + timedelta(days=3)
    assert "subscription.created" in await paybot.audit_kinds()


async def test_a_subscription_is_renewed_well_before_expiry_then_recreated_after_bc_dropped_it(paybot, bc,
                                                                                            subscriptions):
    created = await subscriptions.subscribe(NOTIFY)
    paybot.clock.advance(timedelta(days=1).total_seconds())
    await subscriptions.renew_due()
    assert bc.calls[-1].method == "POST"  # two days left: nothing to do yet
    paybot.clock.advance(timedelta(days=1, hours=1).total_seconds())  # 23 h left
    await subscriptions.renew_due()
    [renewal] = [c for c in bc.calls if c.method == "PATCH"]
    assert renewal.headers["If-Match"] == created.etag
    [row] = await paybot.rows(models.BcSubscription)
    assert row.subscription_id == created.id and row.expires_at == paybot.clock() + timedelta(days=3)
    assert bc.subscriptions[created.id]["expirationDateTime"].startswith(row.expires_at.strftime("%Y-%m-%dT%H:%M"))

    bc.drop(created.id)  # BC deleted it
    paybot.clock.advance(timedelta(days=2, hours=1).total_seconds())
    await subscriptions.renew_due()
    [row] = await paybot.rows(models.BcSubscription)
    assert row.subscription_id != created.id and row.subscription_id in bc.subscriptions
    assert row.expires_at == paybot.clock() + timedelta(days=3)
    assert "subscription.recreated" in await paybot.audit_kinds()


async def test_a_subscription_past_its_expiry_is_created_again(paybot, bc, subscriptions):
    created = await subscriptions.subscribe(NOTIFY)
    paybot.clock.advance(timedelta(days=4).total_seconds())  # the worker was down for days
    await subscriptions.renew_due()
    [row] = await paybot.rows(models.BcSubscription)
    assert row.subscription_id != created.id and not any(c.method == "PATCH" for c in bc.calls)


async def test_a_renewal_failure_tells_finance_once_and_is_retried(paybot, bc, subscriptions, slack):
    created = await subscriptions.subscribe(NOTIFY)
    paybot.clock.advance(timedelta(days=2, hours=1).total_seconds())
    failing = f"/v2.0/{TENANT}/{ENVIRONMENT}/api/v2.0/subscriptions('{created.id}')"
    bc.script(failing, bc_error(503, "ServiceUnavailable", "down"), bc_error(503, "ServiceUnavailable", "down"))
    await subscriptions.renew_due()
    await subscriptions.renew_due()  # the next hour: still failing, finance not told twice
    cards = [n for n in await paybot.notifications() if n.purpose == Purpose.SUBSCRIPTION_FAILED.value]
    assert len(cards) == 1 and created.id in cards[0].payload["text"]
    assert (await paybot.audit_kinds()).count("subscription.renewal_failed") == 1
    await subscriptions.renew_due()
    [row] = await paybot.rows(models.BcSubscription)
    assert row.failures == 0 and row.expires_at == paybot.clock() + timedelta(days=3)


async def test_the_worker_renews_on_its_own(paybot, bc, subscriptions):
    created = await subscriptions.subscribe(NOTIFY)
    paybot.clock.advance(timedelta(days=2, hours=1).total_seconds())
    await paybot.runtime.worker.run_periodic()  # the worker loop's periodic jobs, once
    [row] = await paybot.rows(models.BcSubscription)
    assert row.subscription_id == created.id and row.renewed_at == paybot.clock()


async def test_paybot_subscribe_business_central_from_the_command_line(capsys, monkeypatch, database_url, bc):
    import asyncio

    from bot.cli import main

    async def run(*argv: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    monkeypatch.setenv("DATABASE_URL", database_url)
    code, _, err = await run("subscribe", "business-central")
    assert code == 2 and "BUSINESS_CENTRAL_CLIENT_STATE" in err  # not configured: named, exit 2
    settings = bc_settings(bc)
    for name in ("client_state", "tenant_id", "client_id", "client_secret", "company_id", "base_url", "token_url"):
        value = getattr(settings, name)
        monkeypatch.setenv(f"BUSINESS_CENTRAL_{name.upper()}",
                           value.get_secret_value() if hasattr(value, "get_secret_value") else value)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://paybot.example.com")
    code, out, _ = await run("subscribe", "business-central")
    assert code == 0 and "subscribed" in out and NOTIFY in out
    [sub] = bc.subscriptions.values()
    assert sub["notificationUrl"] == NOTIFY and sub["clientState"] == CLIENT_STATE
    bc.script(f"/v2.0/{TENANT}/{ENVIRONMENT}/api/v2.0/subscriptions",
              bc_error(400, "BadRequest", "The subscription notification URL validation failed."))
    code, _, err = await run("subscribe", "business-central")
    assert code == 1 and "refused" in err


async def test_paybot_check_proves_the_client_credentials(paybot, bc, source):
    [finding] = await source.check(paybot.runtime.settings)
    assert not finding.problem
    source.tokens._token = None
    bc.script(f"/{TENANT}/oauth2/v2.0/token", web.json_response({"error": "invalid_client"}, status=401))
    [finding] = await source.check(paybot.runtime.settings)
    assert finding.problem and CLIENT_SECRET not in finding.text


async def test_two_workers_renewing_at_once_do_not_raise_a_false_alarm(paybot, bc, subscriptions, slack):
    await subscriptions.subscribe(NOTIFY)
    paybot.clock.advance(timedelta(days=2, hours=1).total_seconds())
    other = BcSubscriptions(paybot.runtime.db, paybot.runtime.notifier, paybot.runtime.sources["business-central"])
    [stale] = await paybot.rows(models.BcSubscription)
    await other.renew_due()  # the other worker renews first; this one still holds the old etag
    await subscriptions._renew(stale)  # BC answers 412 Request_EntityChanged
    assert [n for n in await paybot.notifications() if n.purpose == Purpose.SUBSCRIPTION_FAILED.value] == []
    [row] = await paybot.rows(models.BcSubscription)
    assert row.failures == 0 and row.expires_at == paybot.clock() + timedelta(days=3)
