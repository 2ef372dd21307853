"""QuickBooks Online in, through HTTP, the database, the resolver (after the answer), the token store and the
catch-up sweep, against a fake Intuit that speaks the real paths, Bearer auth, token rotation and Fault bodies."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from bot.integrations.sources.quickbooks import QuickBooksSettings, sign
from bot.storage import models
from tests.fakes.quickbooks import (CLIENT_ID, CLIENT_SECRET, OTHER_REALM, REALM, VERIFIER_TOKEN, FakeQuickBooks,
                                    customer, invoice, payment, throttled, unavailable)


@pytest.fixture
async def intuit(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeQuickBooks()
    fake.server = await aiohttp_server(fake.app)
    fake.put(REALM, "invoice", invoice())
    fake.put(REALM, "customer", customer())
    return fake


@pytest.fixture
def configs(configs, intuit):  # type: ignore[no-untyped-def]
    return configs | {"quickbooks": QuickBooksSettings(
        _env_file=None, verifier_token=VERIFIER_TOKEN, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        refresh_token=intuit.grant(), realm_id=REALM, base_url=str(intuit.server.make_url("/")),
        token_url=str(intuit.server.make_url("/oauth2/v1/tokens/bearer")))}  # type: ignore[call-arg]


@pytest.fixture
async def shop(paybot):  # type: ignore[no-untyped-def]
    await paybot.add_customer()
    await paybot.add_invoice()
    return paybot


def legacy(*entities: tuple[str, str, str, str], realm: str = REALM) -> bytes:
    """Intuit's original format: (name, id, operation, lastUpdated) per entity, grouped under the realm."""
    return json.dumps({"eventNotifications": [{"realmId": realm, "dataChangeEvent": {"entities": [
        {"name": n, "id": i, "operation": o, "lastUpdated": t} for n, i, o, t in entities]}}]}).encode()


def cloud(*events: tuple[str, str, str, str]) -> bytes:
    """The CloudEvents array: (realm, entity, id, past-tense operation) per event."""
    return json.dumps([{"specversion": "1.0", "id": str(uuid.uuid4()), "source": "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",
                        "type": f"qbo.{entity}.{op}.v1", "datacontenttype": "application/json",
                        "time": "2026-11-28T12:00:01.179851517Z", "intuitentityid": entity_id,
                        "intuitaccountid": realm, "data": {}} for realm, entity, entity_id, op in events]).encode()


async def post(paybot, body: bytes, *, signature: str | None = None) -> Any:  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature != "":
        headers["intuit-signature"] = signature if signature is not None else sign(body, VERIFIER_TOKEN)
    return await paybot.client.post("/webhooks/quickbooks", data=body, headers=headers)


async def events(paybot) -> list[models.WebhookEvent]:  # type: ignore[no-untyped-def]
    return await paybot.rows(models.WebhookEvent)


async def receipts(paybot) -> list[models.Notification]:  # type: ignore[no-untyped-def]
    return [n for n in await paybot.notifications() if n.purpose == "receipt"]


PAYMENT_CREATED = ("Payment", "163", "Create", "2026-11-28T12:00:00.000Z")


async def test_a_payment_is_answered_at_once_then_read_and_thanked(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    intuit.put(REALM, "payment", payment())
    async with shop.runtime.verifier._round:  # hold the resolver: the answer waits for nothing at Intuit
        response = await post(shop, legacy(PAYMENT_CREATED))
        assert response.status == 200
        assert [e.status for e in await events(shop)] == ["waiting"]
        assert intuit.reads() == []
    await shop.runtime.settle()
    assert [e.status for e in await events(shop)] == ["processed"]
    [row] = await shop.rows(models.Payment)
    assert (row.payment_ref, row.amount_minor, row.currency) == (f"{REALM}:163:130", 125000, "USD")
    assert row.invoice_id is not None and row.settlement == "paid" and row.customer_id == "C1"
    assert {n.purpose for n in await shop.notifications()} == {"receipt", "finance_card"}
    assert sorted(intuit.reads()) == [f"/v3/company/{REALM}/customer/58", f"/v3/company/{REALM}/invoice/130",
                                      f"/v3/company/{REALM}/payment/163"]
    read = next(c for c in intuit.calls if c.path.endswith("/payment/163"))
    assert read.headers["Authorization"].startswith("Bearer eyJ-access-")
    assert (await post(shop, legacy(PAYMENT_CREATED))).status == 200  # Intuit's retry: a duplicate
    await shop.runtime.settle()
    assert len(await shop.rows(models.Payment)) == 1 and len(intuit.reads()) == 3


async def test_cloudevents_many_entities_across_realms_in_one_post(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    await shop.add_invoice("INV-1043", "200.00")
    intuit.put(REALM, "invoice", invoice("131", number="INV-1043", total="200.00", balance="50.00"))
    intuit.put(REALM, "payment", payment())
    intuit.put(REALM, "payment", payment("164", amount="150.00", invoices=(("131", "150.00"),)))
    body = cloud((REALM, "payment", "163", "created"), (REALM, "payment", "164", "created"),
                 (OTHER_REALM, "payment", "900", "created"), (REALM, "customer", "58", "updated"))
    assert (await post(shop, body)).status == 200
    await shop.runtime.settle()
    [event] = await events(shop)
    assert event.status == "processed"
    paid = sorted((p.payment_ref, p.amount_minor, p.settlement) for p in await shop.rows(models.Payment))
    assert paid == [(f"{REALM}:163:130", 125000, "paid"), (f"{REALM}:164:131", 15000, "partially_paid")]
    assert not any(OTHER_REALM in path for path in intuit.reads())  # not connected: never asked about


async def test_a_realm_paybot_is_not_connected_to_is_recorded_and_ignored(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    assert (await post(shop, legacy(PAYMENT_CREATED, realm=OTHER_REALM))).status == 200
    await shop.runtime.settle()
    [event] = await events(shop)
    assert event.status == "ignored"
    [resolved] = [e.detail for e in await shop.rows(models.AuditEntry) if e.kind == "webhook.resolved"]
    assert resolved["ignored"] == f"realm {OTHER_REALM} is not connected"


async def test_a_payment_that_no_longer_exists_is_ignored_with_the_reason(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    assert (await post(shop, legacy(PAYMENT_CREATED))).status == 200
    await shop.runtime.settle()
    assert [e.status for e in await events(shop)] == ["ignored"]
    [resolved] = [e.detail for e in await shop.rows(models.AuditEntry) if e.kind == "webhook.resolved"]
    assert resolved["ignored"] == "payment 163 no longer exists"
    assert await shop.notifications() == []


@pytest.mark.parametrize("signature", ["", "bm90IHRoZSBzaWduYXR1cmU=", sign(b"another body", VERIFIER_TOKEN)])
async def test_a_forged_or_missing_signature_is_refused_and_nothing_stored(shop, intuit, signature) -> None:  # type: ignore[no-untyped-def]
    intuit.put(REALM, "payment", payment())
    response = await post(shop, legacy(PAYMENT_CREATED), signature=signature)
    assert response.status == 401
    await shop.runtime.settle()
    assert await events(shop) == [] and intuit.calls == []
    assert await shop.refused() == [("quickbooks", 401, 1)]


async def test_unparseable_is_400_without_echo(shop) -> None:  # type: ignore[no-untyped-def]
    body = b'{"eventNotifications": "<script>'
    response = await post(shop, body)
    assert response.status == 400 and "<script>" not in await response.text()


async def test_an_expired_access_token_is_refreshed_once_then_the_read_retried(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    intuit.put(REALM, "payment", payment())
    await shop.runtime.verifier.access_for("quickbooks").token(REALM)  # seeded from the env, then refreshed
    intuit.expire_access()  # Intuit's access tokens live an hour; ours is still in date by our clock
    assert (await post(shop, legacy(PAYMENT_CREATED))).status == 200
    await shop.runtime.settle()
    assert [e.status for e in await events(shop)] == ["processed"]
    assert intuit.refreshes == 2  # the first token, and exactly one refresh after the 401
    [row] = await shop.rows(models.OAuthToken)
    assert row.refresh_token in intuit.refresh_tokens  # the rotated one was kept


async def test_429_and_5xx_wait_as_intuit_asks_and_the_payment_is_never_lost(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    intuit.put(REALM, "payment", payment())
    path = f"/v3/company/{REALM}/payment/163"
    intuit.script(path, throttled(retry_after=300), unavailable())
    assert (await post(shop, legacy(PAYMENT_CREATED))).status == 200
    await shop.runtime.settle()
    [event] = await events(shop)
    assert event.status == "waiting" and (event.next_attempt_at - shop.clock()).total_seconds() == 300
    shop.clock.advance(300)
    await shop.runtime.verifier.drain()
    assert [e.status for e in await events(shop)] == ["waiting"]
    shop.clock.advance(3600)
    await shop.runtime.verifier.drain()
    assert [e.status for e in await events(shop)] == ["processed"]
    assert len(await receipts(shop)) == 1


async def test_a_revoked_connection_keeps_notifications_waiting_and_tells_finance_once(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    intuit.put(REALM, "payment", payment())
    intuit.revoke_all()
    assert (await post(shop, legacy(PAYMENT_CREATED))).status == 200
    assert (await post(shop, legacy(("Payment", "163", "Update", "2026-11-28T12:05:00.000Z")))).status == 200
    await shop.runtime.settle()
    shop.clock.advance(7200)
    await shop.runtime.verifier.drain()
    assert [e.status for e in await events(shop)] == ["waiting", "waiting"]
    assert [n.purpose for n in await shop.notifications()] == ["connection_lost"]
    assert len(intuit.to("/oauth2/v1/tokens/bearer")) == 1


async def test_an_invoice_update_and_its_payment_are_one_payment_whichever_comes_first(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    intuit.put(REALM, "payment", payment())
    assert (await post(shop, legacy(("Invoice", "130", "Update", "2026-11-28T12:00:00.000Z")))).status == 200
    await shop.runtime.settle()
    assert (await post(shop, legacy(PAYMENT_CREATED))).status == 200
    await shop.runtime.settle()
    payments = sorted(await shop.rows(models.Payment), key=lambda p: p.id)
    assert [p.duplicate_of is None for p in payments] == [True, False]
    assert len(await receipts(shop)) == 1


async def test_a_payment_then_its_invoice_update_thanks_once_and_an_unchanged_invoice_sends_nothing(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    intuit.put(REALM, "payment", payment())
    assert (await post(shop, legacy(PAYMENT_CREATED))).status == 200
    await shop.runtime.settle()
    for stamp in ("12:00:02", "12:30:00"):  # the balance fell with the payment; later an edit of the memo
        assert (await post(shop, legacy(("Invoice", "130", "Update", f"2026-11-28T{stamp}.000Z")))).status == 200
        await shop.runtime.settle()
    assert len(await receipts(shop)) == 1
    assert len([n for n in await shop.notifications() if n.purpose == "finance_card"]) == 1


async def test_an_unpaid_invoice_update_is_ignored(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    intuit.put(REALM, "invoice", invoice(balance="1250.00"))
    assert (await post(shop, legacy(("Invoice", "130", "Update", "2026-11-28T12:00:00.000Z")))).status == 200
    await shop.runtime.settle()
    assert [e.status for e in await events(shop)] == ["ignored"]
    assert await shop.notifications() == []


async def test_the_sweep_finds_what_no_webhook_told_and_the_late_webhook_thanks_nobody_again(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    intuit.put(REALM, "payment", payment(updated="2026-11-28T03:59:00-08:00"))
    await shop.runtime.sweeper.run()
    assert len(await receipts(shop)) == 1  # the Payment; the Invoice it paid (changed too) restates it
    [row] = await shop.rows(models.Payment, models.Payment.duplicate_of.is_(None))
    assert row.payment_ref == f"{REALM}:163:130"
    assert (await post(shop, legacy(PAYMENT_CREATED))).status == 200  # Intuit's webhook, late
    await shop.runtime.settle()
    assert len(await receipts(shop)) == 1
    assert [p.id for p in await shop.rows(models.Payment, models.Payment.duplicate_of.is_(None))] == [row.id]


async def test_a_webhook_then_the_sweep_thanks_once(shop, intuit) -> None:  # type: ignore[no-untyped-def]
    intuit.put(REALM, "payment", payment(updated="2026-11-28T03:59:00-08:00"))
    assert (await post(shop, legacy(PAYMENT_CREATED))).status == 200
    await shop.runtime.settle()
    await shop.runtime.sweeper.run()
    assert len(await receipts(shop)) == 1


async def test_the_sweep_mark_survives_a_restart(shop, intuit, database_url, settings_for, configs, clock) -> None:  # type: ignore[no-untyped-def]
    from bot.runtime import start

    first = shop.clock() - timedelta(hours=72)  # SWEEP_LOOKBACK_HOURS
    await shop.runtime.sweeper.run()
    intuit.cdc_time = "2026-11-28T13:00:00Z"
    later = await start(settings_for(), configs=configs, clock=clock)  # another process, or after a restart
    try:
        assert (await later.sweeper.mark("quickbooks", REALM)).isoformat() == "2026-11-28T12:00:00+00:00"
        await later.sweeper.run()
    finally:
        await later.close()
    assert intuit.cdc_queries == [first.isoformat(), "2026-11-28T12:00:00+00:00"]


@pytest.mark.parametrize("stripe_first", [True, False])
async def test_a_stripe_payment_the_books_also_record_is_thanked_once(shop, intuit, stripe_first) -> None:  # type: ignore[no-untyped-def]
    """The card payment arrives from Stripe; the bank feed puts the same money in QuickBooks (its own Payment id)."""
    from tests.harness import stripe_invoice_event

    intuit.put(REALM, "payment", payment())

    async def books() -> None:
        assert (await post(shop, legacy(PAYMENT_CREATED))).status == 200
        await shop.runtime.settle()

    async def card() -> None:
        assert (await shop.post_stripe(stripe_invoice_event())).status == 200

    for step in ((card, books) if stripe_first else (books, card)):
        await step()
    assert len(await receipts(shop)) == 1
    first, second = sorted(await shop.rows(models.Payment), key=lambda p: p.id)
    assert second.duplicate_of == first.id
    assert {first.source, second.source} == {"stripe", "quickbooks"}


async def test_paybot_check_says_when_notifications_could_not_be_read(paybot) -> None:  # type: ignore[no-untyped-def]
    from bot.integrations.sources.quickbooks import QuickBooksSource

    bare = QuickBooksSource(QuickBooksSettings(_env_file=None, verifier_token=VERIFIER_TOKEN),  # type: ignore[call-arg]
                            paybot.runtime.http)
    [finding] = await bare.check(paybot.runtime.settings)
    assert finding.problem and "QUICKBOOKS_CLIENT_ID" in finding.text
    [finding] = await paybot.runtime.sources["quickbooks"].check(paybot.runtime.settings)
    assert not finding.problem
