"""The resolve-after-the-answer seam, on its own: a signed thin notification is stored waiting and answered at
once, then resolved by the one consumer through the platform's API; an outage keeps it waiting (backing off as
the platform asks), a lost connection waits without counting, and giving up tells finance.

The platform here is a minimal thin one (HMAC-signed ids, `GET /payments/{id}` with a Bearer token) so the seam is
tested apart from any real platform's quirks; QuickBooks (tests/sources/test_quickbooks.py) runs the same path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from aiohttp import web

from bot.domain.money import Money
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import ConnectionLost, PayloadInvalid, SignatureInvalid
from bot.integrations.base import IntegrationSettings
from bot.integrations.http import raise_for_status
from bot.integrations.sources.base import InboundRequest, PlatformAccess, Received, WebhookSource
from bot.storage import models
from tests.fakes.base import FakeProvider

KEY = "thin-verifier"


class ThinApi(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.payments: dict[str, dict[str, Any]] = {}
        self.app.router.add_get("/payments/{id}", self.payment)

    async def payment(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer tok":
            return web.json_response({"error": "unauthorized"}, status=401)
        found = self.payments.get(request.match_info["id"])
        if found is None:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(found)


class ThinSource(WebhookSource[IntegrationSettings]):
    name: ClassVar[str] = "thin"
    Settings: ClassVar[type[IntegrationSettings]] = IntegrationSettings
    api = ""

    def verify(self, request: InboundRequest) -> None:
        mac = base64.b64encode(hmac.new(KEY.encode(), request.body, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(mac, request.headers.get("X-Thin-Signature", "")):
            raise SignatureInvalid()

    async def parse(self, request: InboundRequest) -> Received:
        ids = json.loads(request.body)["ids"]
        return Received(event_id="n:" + ",".join(ids), event_type="payment.created", resolve_later=True)

    async def resolve(self, stored: InboundRequest, access: PlatformAccess) -> Received:
        token = await access.token("t1")
        payments = []
        for payment_id in json.loads(stored.body)["ids"]:
            async with self.http.get(f"{self.api}/payments/{payment_id}",
                                     headers={"Authorization": f"Bearer {token}"}) as response:
                if response.status == 404:
                    continue
                raise_for_status("thin", response.status, await response.text(), response.headers)
                found = await response.json()
            if found.get("broken"):
                raise PayloadInvalid("amount missing")
            found["invoice"].upper()  # an answer of an unforeseen shape trips here
            payments.append(PaymentEvent(source="thin", kind=PaymentKind.PAYMENT, payment_ref=payment_id,
                                         amount=Money.of(found["amount"], "USD"), occurred_at=stored.received_at,
                                         invoice_numbers=(found["invoice"],), payer_email="jane@example.com"))
        return Received(event_id="", event_type="payment.created" if payments else "gone: no such payment",
                        payments=tuple(payments))


class Access:
    def __init__(self) -> None:
        self.lost: ConnectionLost | None = None

    async def token(self, tenant: str) -> str:
        if self.lost is not None:
            raise self.lost
        return "tok"

    async def refreshed(self, tenant: str, rejected: str) -> str:
        return await self.token(tenant)

    async def tenants(self) -> list[str]:
        return ["t1"]


@pytest.fixture
async def thin(paybot, aiohttp_server):  # type: ignore[no-untyped-def]
    api = ThinApi()
    api.server = await aiohttp_server(api.app)
    source = ThinSource(IntegrationSettings(_env_file=None), paybot.runtime.http)  # type: ignore[call-arg]
    source.api = str(api.server.make_url("")).rstrip("/")
    paybot.runtime.sources["thin"] = source
    access = Access()
    paybot.runtime.verifier.access_for = lambda name: access
    await paybot.add_customer()
    await paybot.add_invoice()
    return api, access


async def post(paybot, *ids: str, signature: str | None = None) -> Any:  # type: ignore[no-untyped-def]
    body = json.dumps({"ids": list(ids)}).encode()
    mac = base64.b64encode(hmac.new(KEY.encode(), body, hashlib.sha256).digest()).decode()
    return await paybot.client.post("/webhooks/thin", data=body, headers={
        "X-Thin-Signature": mac if signature is None else signature, "Content-Type": "application/json"})


async def event(paybot) -> models.WebhookEvent:  # type: ignore[no-untyped-def]
    [row] = await paybot.rows(models.WebhookEvent, models.WebhookEvent.source == "thin")
    return row


async def test_a_thin_notification_is_answered_waiting_then_resolved(paybot, thin) -> None:  # type: ignore[no-untyped-def]
    api, _ = thin
    api.payments["P1"] = {"amount": "1250.00", "invoice": "INV-1042"}
    gate = paybot.runtime.verifier._round  # hold the consumer: the answer must not wait for the platform
    async with gate:
        response = await post(paybot, "P1")
        assert response.status == 200
        assert (await event(paybot)).status == "waiting"
        assert api.calls == []
    await paybot.runtime.settle()
    assert (await event(paybot)).status == "processed"
    [payment] = await paybot.rows(models.Payment)
    assert payment.payment_ref == "P1" and payment.amount_minor == 125000 and payment.invoice_id is not None
    assert {n.purpose for n in await paybot.notifications()} == {"receipt", "finance_card"}
    assert "webhook.resolved" in await paybot.audit_kinds()
    again = await post(paybot, "P1")  # the platform's redelivery: a duplicate, nothing read again
    assert again.status == 200 and (await again.json())["duplicate"] is True


async def test_an_outage_keeps_it_waiting_backing_off_as_asked_never_lost(paybot, thin) -> None:  # type: ignore[no-untyped-def]
    api, _ = thin
    api.payments["P1"] = {"amount": "1250.00", "invoice": "INV-1042"}
    api.script("/payments/P1", web.json_response({"error": "busy"}, status=429, headers={"Retry-After": "600"}),
               web.json_response({"error": "down"}, status=503))
    assert (await post(paybot, "P1")).status == 200
    await paybot.runtime.settle()
    row = await event(paybot)
    assert row.status == "waiting" and row.attempts == 1
    assert row.next_attempt_at == paybot.clock() + timedelta(seconds=600)  # the platform's Retry-After, not 30 s
    await paybot.runtime.verifier.drain()
    assert len(api.calls) == 1  # not due yet
    paybot.clock.advance(600)
    await paybot.runtime.verifier.drain()
    row = await event(paybot)
    assert row.status == "waiting" and row.attempts == 2  # 503: backs off again
    paybot.clock.advance(3600)
    await paybot.runtime.verifier.drain()
    assert (await event(paybot)).status == "processed"
    assert len(await paybot.rows(models.Payment)) == 1


async def test_giving_up_tells_finance_once(paybot, thin) -> None:  # type: ignore[no-untyped-def]
    api, _ = thin
    object.__setattr__(paybot.runtime.verifier, "settings",
                       paybot.runtime.settings.model_copy(update={"resolve_max_attempts": 2}))
    api.script("/payments/P1", *[web.json_response({"error": "down"}, status=500) for _ in range(5)])
    assert (await post(paybot, "P1")).status == 200
    await paybot.runtime.settle()
    paybot.clock.advance(3600)
    await paybot.runtime.verifier.drain()
    paybot.clock.advance(3600)
    await paybot.runtime.verifier.drain()
    row = await event(paybot)
    assert row.status == "unresolved" and row.attempts == 2
    [card] = await paybot.notifications()
    assert card.purpose == "unresolved" and card.recipient == "C0FINANCE"
    assert "could not be read" in card.payload["text"]
    assert (await paybot.audit_kinds()).count("webhook.unresolved") == 1
    assert await paybot.rows(models.Payment) == []


async def test_a_lost_connection_waits_uncounted_and_finance_hears_once(paybot, thin) -> None:  # type: ignore[no-untyped-def]
    api, access = thin
    api.payments["P1"] = {"amount": "1250.00", "invoice": "INV-1042"}
    access.lost = ConnectionLost("thin", "refresh token revoked", tenant="t1", since="2026-11-28T12:00:00+00:00")
    assert (await post(paybot, "P1")).status == 200
    await paybot.runtime.settle()
    for _ in range(3):
        paybot.clock.advance(3600)
        await paybot.runtime.verifier.drain()
    row = await event(paybot)
    assert row.status == "waiting" and row.attempts == 0
    assert [n.purpose for n in await paybot.notifications()] == ["connection_lost"]
    access.lost = None  # `paybot connect` mended it
    paybot.clock.advance(3600)
    await paybot.runtime.verifier.drain()
    assert (await event(paybot)).status == "processed"


async def test_what_cannot_be_used_is_recorded_ignored_with_why(paybot, thin) -> None:  # type: ignore[no-untyped-def]
    api, _ = thin
    api.payments["P2"] = {"broken": True}
    assert (await post(paybot, "P9")).status == 200  # no longer exists
    assert (await post(paybot, "P2")).status == 200  # unreadable
    await paybot.runtime.settle()
    rows = await paybot.rows(models.WebhookEvent)
    assert [r.status for r in rows] == ["ignored", "ignored"]
    resolved = [e.detail for e in await paybot.rows(models.AuditEntry) if e.kind == "webhook.resolved"]
    assert [d["ignored"] for d in resolved] == ["gone: no such payment", "amount missing"]
    assert await paybot.rows(models.Payment) == []


async def test_a_forged_or_missing_signature_stores_nothing(paybot, thin) -> None:  # type: ignore[no-untyped-def]
    assert (await post(paybot, "P1", signature="AAAA")).status == 401
    assert (await post(paybot, "P1", signature="")).status == 401
    assert await paybot.rows(models.WebhookEvent) == []
    assert [(s, status) for s, status, _ in await paybot.refused()] == [("thin", 401)]


async def test_an_answer_of_an_unforeseen_shape_is_retried_not_ignored(paybot, thin) -> None:  # type: ignore[no-untyped-def]
    api, _ = thin
    api.payments["P1"] = {"amount": "1250.00", "invoice": None}  # the platform changed its API
    assert (await post(paybot, "P1")).status == 200
    await paybot.runtime.settle()
    row = await event(paybot)
    assert (row.status, row.attempts) == ("waiting", 1)  # retried, then given up with a finance card
    api.payments["P1"]["invoice"] = "INV-1042"
    paybot.clock.advance(3600)
    await paybot.runtime.verifier.drain()
    assert (await event(paybot)).status == "processed"
