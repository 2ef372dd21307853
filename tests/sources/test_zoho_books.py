"""Zoho Books end to end: a workflow webhook on a customer payment, signed Zoho's way, answered at once, then the
payment re-read by id through the (fake) Books API with the organization id and the organization's token
(`Zoho-oauthtoken`); `balance_amount` says what is still owed. On both engines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.integrations.sources.zoho import ZohoBooksSettings, ZohoBooksSource, sign, signed_text
from bot.services.oauth import Scoped
from bot.storage import models
from tests.contract.samples import SAMPLES, payload
from tests.fakes.zoho import CLIENT_ID, CLIENT_SECRET, ORGANIZATION, OTHER_ORGANIZATION, FakeZohoBooks, rate_limited
from tests.sources.helpers import mail_text

PAYMENT_ID = "9030000079467"
PAYMENT_PATH = f"/books/v3/customerpayments/{PAYMENT_ID}"
SECRET = SAMPLES["zoho-books"].SECRET  # type: ignore[attr-defined]


def zoho_payment(**changes: Any) -> dict[str, Any]:
    """The payment as `GET /books/v3/customerpayments/{id}` returns it."""
    sent = json.loads(payload("zoho-books", "payment_received.json"))["payment"]
    return sent | {"last_modified_time": "2026-11-28T09:00:00-0500", "created_time": "2026-11-28T09:00:00-0500",
                   "invoices": [sent["invoices"][0] | {"total": 1250.0}]} | changes


@pytest.fixture
async def zoho_api(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeZohoBooks()
    fake.server = await aiohttp_server(fake.app)
    fake.payments[PAYMENT_ID] = zoho_payment()
    return fake


@pytest.fixture
def configs(configs, zoho_api):  # type: ignore[no-untyped-def]
    _, refresh = zoho_api.tokens.issue("seed-")
    return configs | {"zoho-books": ZohoBooksSettings(
        _env_file=None, webhook_secret=SECRET, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,  # type: ignore[call-arg]
        refresh_token=refresh, organization_id=ORGANIZATION, base_url=str(zoho_api.server.make_url("/")),
        token_url=str(zoho_api.server.make_url("/oauth/v2/token")))}


async def webhook(paybot, body: bytes | None = None, *, query: dict[str, str] | None = None,  # type: ignore[no-untyped-def]
                  secret: str | None = SECRET):
    body = payload("zoho-books", "payment_received.json") if body is None else body
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Zoho-Webhook-Signature"] = sign(query or {}, body, "application/json", secret)
    return await paybot.client.post("/webhooks/zoho-books", data=body, params=query or {}, headers=headers)


async def ignored_reasons(paybot) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.detail.get("ignored") for e in await paybot.rows(models.AuditEntry) if e.kind == "webhook.resolved"]


def test_the_signed_message_is_sorted_pairs_then_the_raw_body() -> None:
    """Zoho's documented example: query `subscription_id=90343`, `name=basic`, and a JSON body."""
    body = b'{"created_date":"2019-03-06","event_id":"5675"}'
    assert signed_text({"subscription_id": "90343", "name": "basic"}, body, "application/json") == \
        b'namebasicsubscription_id90343{"created_date":"2019-03-06","event_id":"5675"}'
    form = signed_text({"b": "2"}, b"a=1&c=3", "application/x-www-form-urlencoded")
    assert form == b"a1b2c3"


def test_the_data_centre_picks_the_hosts() -> None:
    eu = ZohoBooksSettings(_env_file=None, data_centre="eu")  # type: ignore[call-arg]
    assert eu.api_root() == "https://www.zohoapis.eu" and eu.token_endpoint() == "https://accounts.zoho.eu/oauth/v2/token"
    au = ZohoBooksSettings(_env_file=None, data_centre="com.au")  # type: ignore[call-arg]
    assert au.api_root() == "https://www.zohoapis.com.au"
    assert au.authorize_endpoint() == "https://accounts.zoho.com.au/oauth/v2/auth"
    assert ZohoBooksSettings(_env_file=None).api_root() == "https://www.zohoapis.com"  # type: ignore[call-arg]


async def test_a_payment_is_re_read_by_id_and_thanked_with_the_balance(paybot, zoho_api, sendgrid):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")
    async with paybot.runtime.verifier._round:
        assert (await webhook(paybot)).status == 200
        assert zoho_api.calls == []
    await paybot.deliver()
    [read] = zoho_api.to(PAYMENT_PATH)
    assert read.headers["Authorization"].startswith("Zoho-oauthtoken ")
    [mail] = sendgrid.accepted
    assert "$450.00" in mail_text(mail) and "$800.00 is still owed on invoice INV-1042" in mail_text(mail)
    [payment] = await paybot.rows(models.Payment)
    assert (payment.payment_ref, payment.amount_minor, payment.details["method"]) == (PAYMENT_ID, 45000,
                                                                                      "bank_transfer")


async def test_the_api_not_the_payload_decides_the_amount(paybot, zoho_api, sendgrid):
    """A workflow payload is whatever the rule sends: paybot trusts only the id in it."""
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")
    doctored = json.loads(payload("zoho-books", "payment_received.json"))
    doctored["payment"]["invoices"][0]["amount_applied"] = 1250.0
    await webhook(paybot, json.dumps(doctored).encode())
    await paybot.deliver()
    [payment] = await paybot.rows(models.Payment)
    assert payment.amount_minor == 45000


async def test_one_payment_over_two_invoices_is_two_payments_each_its_own_reference(paybot, zoho_api, sendgrid):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")
    await paybot.add_invoice("INV-1043", "300.00")
    zoho_api.payments[PAYMENT_ID] = zoho_payment(amount=750.0, invoices=[
        {"invoice_id": "90300000079426", "invoice_number": "INV-1042", "amount_applied": 450.0,
         "balance_amount": 800.0, "total": 1250.0},
        {"invoice_id": "90300000079427", "invoice_number": "INV-1043", "amount_applied": 300.0,
         "balance_amount": 0.0, "total": 300.0}])
    await webhook(paybot)
    await paybot.deliver()
    refs = sorted(p.payment_ref for p in await paybot.rows(models.Payment))
    assert refs == [f"{PAYMENT_ID}:90300000079426", f"{PAYMENT_ID}:90300000079427"]
    assert len(sendgrid.accepted) == 2


async def test_a_payment_zoho_says_does_not_exist_is_ignored_with_the_reason(paybot, zoho_api, sendgrid):
    del zoho_api.payments[PAYMENT_ID]
    await webhook(paybot)
    await paybot.deliver()
    assert await ignored_reasons(paybot) == [f"customer_payment.received: ignored (payment {PAYMENT_ID} not found)"]
    assert sendgrid.accepted == []


async def test_an_organization_named_in_the_signed_query_but_not_connected_is_ignored(paybot, zoho_api, sendgrid):
    await webhook(paybot, query={"organization_id": OTHER_ORGANIZATION})
    await paybot.deliver()
    assert await ignored_reasons(paybot) == [
        f"customer_payment.received: ignored (organization {OTHER_ORGANIZATION} is not connected)"]
    assert zoho_api.to(PAYMENT_PATH) == []


async def test_a_401_refreshes_once_and_a_429_backs_off(paybot, zoho_api, sendgrid):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")
    zoho_api.script(PAYMENT_PATH, rate_limited())
    await webhook(paybot)
    await paybot.deliver()
    [row] = await paybot.rows(models.WebhookEvent)
    assert row.status == "waiting" and (row.next_attempt_at - paybot.clock()).total_seconds() >= 60
    zoho_api.tokens.expire()
    paybot.clock.advance(300)
    await paybot.runtime.verifier.drain()
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    assert zoho_api.tokens.grants == ["refresh_token", "refresh_token"]
    [token] = await paybot.rows(models.OAuthToken)
    assert token.refresh_token.startswith("seed-")  # Zoho keeps the refresh token: the seeded one still stands


async def test_forged_or_missing_signature_is_401_and_nothing_is_stored(paybot, zoho_api):
    assert (await webhook(paybot, secret="notTheSecretAtAll")).status == 401
    assert (await webhook(paybot, secret=None)).status == 401
    # The query is signed too: an organization added on the way is a forgery.
    body = payload("zoho-books", "payment_received.json")
    response = await paybot.client.post("/webhooks/zoho-books", data=body, params={"organization_id": "1"}, headers={
        "Content-Type": "application/json", "X-Zoho-Webhook-Signature": sign({}, body, "application/json", SECRET)})
    assert response.status == 401
    assert await paybot.rows(models.WebhookEvent) == [] and zoho_api.calls == []


async def test_the_sweep_reads_payments_modified_since_the_mark(paybot, zoho_api):
    zoho_api.payments["1"] = zoho_payment(payment_id="1", last_modified_time="2026-11-27T08:00:00-0500")
    zoho_api.payments["2"] = zoho_payment(payment_id="2", last_modified_time="2026-11-28T10:30:00-0500")
    zoho_api.page_size = 1
    source = paybot.runtime.sources["zoho-books"]
    access = Scoped(paybot.runtime.verifier.access_for("zoho-books"), ORGANIZATION)
    swept = await source.sweep(datetime(2026, 11, 28, 12, 0, tzinfo=UTC), access)
    assert sorted(p.payment_ref for r in swept.received for p in r.payments) == ["2", PAYMENT_ID]
    assert swept.mark == datetime(2026, 11, 28, 15, 30, tzinfo=UTC)
    assert len(zoho_api.to("/books/v3/customerpayments")) == 3  # stopped at the first older payment


async def test_connect_names_the_organizations(paybot, zoho_api):
    access, _ = zoho_api.tokens.issue()
    source: ZohoBooksSource = paybot.runtime.sources["zoho-books"]
    assert [(t.id, t.name) for t in await source.connected(access, {})] == [(ORGANIZATION, "Weld Shop")]
    app = source.oauth_app()
    assert app is not None and app.authorize_params["access_type"] == "offline" and app.client_auth == "body"


async def test_the_catch_up_sweep_thanks_a_payment_no_webhook_reported_once(paybot, zoho_api, sendgrid):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")
    await paybot.runtime.sweeper.run()
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "$800.00 is still owed on invoice INV-1042" in mail_text(mail)
    assert await paybot.runtime.sweeper.mark("zoho-books", ORGANIZATION) == datetime(2026, 11, 28, 14, 0, tzinfo=UTC)
    await webhook(paybot)  # the workflow webhook, late
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
