"""FreshBooks end to end: the verifier handshake confirmed with FreshBooks after the answer, and a signed
`payment.create` resolved by reading the payment, its invoice and its client through the (fake) accounting API,
with the account's token from the token store. On both engines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.integrations.sources.freshbooks import FreshBooksSettings, FreshBooksSource, sign, signed_text
from bot.services.oauth import Scoped
from bot.storage import models
from tests.contract.samples import payload
from tests.fakes.freshbooks import (ACCOUNT, CALLBACK_ID, CLIENT_ID, CLIENT_SECRET, VERIFIER, FakeFreshBooks,
                                    rate_limited)
from tests.sources.helpers import mail_text

PAYMENT_ID = "1204567"
PAYMENT_PATH = f"/accounting/account/{ACCOUNT}/payments/payments/{PAYMENT_ID}"


@pytest.fixture
async def freshbooks_api(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeFreshBooks()
    fake.server = await aiohttp_server(fake.app)
    fake.invoices["987654"] = {
        "id": 987654, "invoiceid": 987654, "invoice_number": "INV-1042", "customerid": 55, "currency_code": "USD",
        "amount": {"amount": "1250.00", "code": "USD"}, "outstanding": {"amount": "800.00", "code": "USD"},
        "paid": {"amount": "450.00", "code": "USD"}, "payment_status": "partial", "v3_status": "partial",
        "fname": "Jane", "lname": "Doe", "organization": "", "vis_state": 0}
    fake.clients["55"] = {"id": 55, "userid": 55, "fname": "Jane", "lname": "Doe", "organization": "",
                          "email": "jane@example.com", "mob_phone": "+14155550199", "bus_phone": ""}
    fake.payments[PAYMENT_ID] = freshbooks_payment()
    return fake


def freshbooks_payment(**changes: Any) -> dict[str, Any]:
    return {"id": int(PAYMENT_ID), "paymentid": int(PAYMENT_ID), "invoiceid": 987654, "clientid": 55,
            "amount": {"amount": "450.00", "code": "USD"}, "date": "2026-11-28", "type": "Credit Card",
            "note": "", "updated": "2026-11-28 07:00:00", "vis_state": 0, "logid": 1, "from_credit": False,
            "overpaymentid": None, **changes}


@pytest.fixture
def configs(configs, freshbooks_api):  # type: ignore[no-untyped-def]
    _, refresh = freshbooks_api.tokens.issue("seed-")
    return configs | {"freshbooks": settings(freshbooks_api, refresh, verifier=VERIFIER)}


def settings(fake: FakeFreshBooks, refresh: str, **values: Any) -> FreshBooksSettings:
    return FreshBooksSettings(_env_file=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,  # type: ignore[call-arg]
                              refresh_token=refresh, account_id=ACCOUNT, base_url=str(fake.server.make_url("/")),
                              token_url=str(fake.server.make_url("/auth/oauth/token")), **values)


async def deliver_callback(paybot, body: bytes, verifier: str | None = VERIFIER):  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if verifier is not None:
        headers["X-FreshBooks-Hmac-SHA256"] = sign(body, verifier)
    return await paybot.client.post("/webhooks/freshbooks", data=body, headers=headers)


async def given_jane_owes_1250(paybot) -> None:  # type: ignore[no-untyped-def]
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")


async def ignored_reasons(paybot) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.detail.get("ignored") for e in await paybot.rows(models.AuditEntry) if e.kind == "webhook.resolved"]


def test_the_signature_is_over_the_json_of_the_form_fields_not_the_raw_body() -> None:
    body = b"name=payment.create&object_id=1204567&account_id=6BApk&business_id=6543&identity_id=1234&user_id=1"
    assert signed_text(body) == (b'{"name": "payment.create", "object_id": "1204567", "account_id": "6BApk", '
                                 b'"business_id": "6543", "identity_id": "1234", "user_id": "1"}')
    assert sign(body, "key") != sign(body.replace(b"&", b"&amp;"), "key")


async def test_the_verifier_handshake_is_answered_then_confirmed_with_freshbooks(paybot, freshbooks_api):
    body = payload("freshbooks", "callback_verify.form")
    response = await deliver_callback(paybot, body, verifier=None)  # the verification request is not signed
    assert response.status == 200
    await paybot.deliver()
    [put] = freshbooks_api.to(f"/events/account/{ACCOUNT}/events/callbacks/{CALLBACK_ID}")
    assert put.method == "PUT" and put.json() == {"callback": {"verifier": VERIFIER}}
    assert put.headers["Authorization"].startswith("Bearer ")
    assert freshbooks_api.callbacks[CALLBACK_ID]["verified"] is True
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "ignored" and VERIFIER not in event.event_id
    assert await ignored_reasons(paybot) == [f"callback.verify: callback {CALLBACK_ID} confirmed"]


async def test_a_verification_with_another_verifier_is_refused_once_one_is_set(paybot, freshbooks_api):
    body = payload("freshbooks", "callback_verify.form").replace(VERIFIER.encode(), b"someoneElsesVerifier")
    assert (await deliver_callback(paybot, body, verifier=None)).status == 401
    assert await paybot.rows(models.WebhookEvent) == []


async def test_a_payment_is_read_back_with_its_invoice_and_client_and_thanked(paybot, freshbooks_api, sendgrid):
    await given_jane_owes_1250(paybot)
    async with paybot.runtime.verifier._round:
        response = await deliver_callback(paybot, payload("freshbooks", "payment_create.form"))
        assert response.status == 200
        assert freshbooks_api.calls == []
    await paybot.deliver()
    [read] = freshbooks_api.to(PAYMENT_PATH)
    assert read.headers["Authorization"].startswith("Bearer ")
    assert len(freshbooks_api.to(f"/accounting/account/{ACCOUNT}/invoices/invoices/987654")) == 1
    [mail] = sendgrid.accepted
    assert "$450.00" in mail_text(mail) and "$800.00 is still owed on invoice INV-1042" in mail_text(mail)
    [payment] = await paybot.rows(models.Payment)
    assert (payment.payment_ref, payment.amount_minor, payment.details["method"]) == (PAYMENT_ID, 45000, "card")
    # FreshBooks' redelivery of the same callback: a duplicate, nothing read again.
    again = await deliver_callback(paybot, payload("freshbooks", "payment_create.form"))
    assert again.status == 200
    await paybot.deliver()
    assert len(freshbooks_api.to(PAYMENT_PATH)) == 1 and len(sendgrid.accepted) == 1


async def test_a_payment_freshbooks_says_does_not_exist_is_ignored_with_the_reason(paybot, freshbooks_api, sendgrid):
    del freshbooks_api.payments[PAYMENT_ID]
    await deliver_callback(paybot, payload("freshbooks", "payment_create.form"))
    await paybot.deliver()
    assert await ignored_reasons(paybot) == [f"payment.create: ignored (payment {PAYMENT_ID} not found)"]
    assert sendgrid.accepted == []


async def test_an_account_paybot_is_not_connected_to_is_recorded_and_ignored(paybot, freshbooks_api, sendgrid):
    body = payload("freshbooks", "payment_create.form").replace(b"account_id=6BApk", b"account_id=9ZZzz")
    await deliver_callback(paybot, body)
    await paybot.deliver()
    assert await ignored_reasons(paybot) == ["payment.create: ignored (account 9ZZzz is not connected)"]
    assert freshbooks_api.to(PAYMENT_PATH) == []


async def test_a_401_refreshes_once_and_a_429_backs_off(paybot, freshbooks_api, sendgrid):
    await given_jane_owes_1250(paybot)
    freshbooks_api.script(PAYMENT_PATH, rate_limited())
    await deliver_callback(paybot, payload("freshbooks", "payment_create.form"))
    await paybot.deliver()
    [row] = await paybot.rows(models.WebhookEvent)
    assert row.status == "waiting" and row.attempts == 1
    assert (row.next_attempt_at - paybot.clock()).total_seconds() >= 20
    freshbooks_api.tokens.expire()  # meanwhile the access token stopped working: the next read is a 401
    paybot.clock.advance(120)
    await paybot.runtime.verifier.drain()
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    assert freshbooks_api.tokens.grants.count("refresh_token") == 2  # the seed's first use, then after the 401


async def test_forged_or_missing_signature_is_401_and_nothing_is_stored(paybot, freshbooks_api):
    body = payload("freshbooks", "payment_create.form")
    assert (await deliver_callback(paybot, body, verifier="not-the-verifier")).status == 401
    assert (await deliver_callback(paybot, body, verifier=None)).status == 401
    assert await paybot.rows(models.WebhookEvent) == [] and freshbooks_api.calls == []


async def test_the_sweep_lists_payments_updated_since_the_mark_in_freshbooks_time(paybot, freshbooks_api):
    for n in range(3):
        freshbooks_api.payments[str(n)] = freshbooks_payment(id=n, updated=f"2026-11-28 0{6 + n}:00:00")
    freshbooks_api.page_size = 2
    source = paybot.runtime.sources["freshbooks"]
    access = Scoped(paybot.runtime.verifier.access_for("freshbooks"), ACCOUNT)
    swept = await source.sweep(datetime(2026, 11, 28, 11, 30, tzinfo=UTC), access)  # 06:30 in New York
    listed = freshbooks_api.to(f"/accounting/account/{ACCOUNT}/payments/payments")
    assert len(listed) == 2
    refs = sorted(p.payment_ref for r in swept.received for p in r.payments)
    assert refs == sorted(["1", "2", PAYMENT_ID])
    assert swept.mark == datetime(2026, 11, 28, 13, 0, tzinfo=UTC)  # 08:00 EST, FreshBooks' own clock


async def test_connect_names_the_businesses_and_their_account_ids(paybot, freshbooks_api):
    access, _ = freshbooks_api.tokens.issue()
    source: FreshBooksSource = paybot.runtime.sources["freshbooks"]
    assert [(t.id, t.name) for t in await source.connected(access, {})] == [(ACCOUNT, "Weld Shop")]
    app = source.oauth_app()
    assert app is not None and app.client_auth == "body"


async def test_a_verifier_freshbooks_did_not_issue_is_ignored_not_retried(paybot, freshbooks_api):
    freshbooks_api.verifiers[CALLBACK_ID] = "theOneFreshBooksReallySent"
    await deliver_callback(paybot, payload("freshbooks", "callback_verify.form"), verifier=None)
    await paybot.deliver()
    assert await ignored_reasons(paybot) == [
        f"callback.verify: ignored (FreshBooks refused to confirm callback {CALLBACK_ID} (422))"]
    assert freshbooks_api.callbacks[CALLBACK_ID]["verified"] is False
    assert await paybot.notifications() == []


async def test_the_catch_up_sweep_thanks_a_payment_whose_callback_never_came_once(paybot, freshbooks_api, sendgrid):
    await given_jane_owes_1250(paybot)
    await paybot.runtime.sweeper.run()
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "$450.00" in mail_text(mail)
    assert len(freshbooks_api.to(f"/accounting/account/{ACCOUNT}/payments/payments")) == 1
    assert await paybot.runtime.sweeper.mark("freshbooks", ACCOUNT) == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    await deliver_callback(paybot, payload("freshbooks", "payment_create.form"))  # the callback, late
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
