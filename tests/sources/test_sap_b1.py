"""SAP Business One: the integration scenario's POST (HTTP Basic), stored and answered, then the incoming payment,
its invoices and the business partner read through the (fake) Service Layer with one shared session."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from aiohttp import web

from bot.integrations.sources.base import InboundRequest
from bot.storage import models
from tests.fakes.sap_b1 import COMPANY_DB, PASSWORD, ROOT, USERNAME, FakeServiceLayer, odata_error
from tests.sources.helpers import mail_text

WEBHOOK_USER, WEBHOOK_PASSWORD = "b1if", "scenario-secret-fake"


@pytest.fixture
async def b1(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeServiceLayer()
    fake.server = await aiohttp_server(fake.app)
    fake.add_invoice(301, "INV-1042", total="1250.00", paid="1250.00")
    fake.add_payment(77, (301, "1250.00"))
    fake.partners["C20000"] = {"CardCode": "C20000", "CardName": "Jane Doe", "EmailAddress": "jane@example.com",
                               "Cellular": "+15125550100", "Phone1": "512-555-0199"}
    return fake


def b1_settings(fake: FakeServiceLayer) -> Any:
    from bot.integrations.sources.sap_b1 import SapB1Settings

    return SapB1Settings(  # type: ignore[call-arg]
        _env_file=None, webhook_user=WEBHOOK_USER, webhook_password=WEBHOOK_PASSWORD,
        base_url=str(fake.server.make_url("/")), company_db=COMPANY_DB, username=USERNAME, password=PASSWORD)


@pytest.fixture
def configs(configs, b1):  # type: ignore[no-untyped-def]
    return configs | {"sap-b1": b1_settings(b1)}


@pytest.fixture
def source(paybot):  # type: ignore[no-untyped-def]
    found = paybot.runtime.sources["sap-b1"]
    found.clock = paybot.clock
    return found


def scenario(doc_entry: int = 77, event_id: str = "1f0c2a7e", **changes: Any) -> bytes:
    return json.dumps({"EventID": event_id, "SourceDB": COMPANY_DB, "ObjectType": "24", "BizObject": "IncomingPayments",
                       "TransType": "A", "FieldsInKey": 1, "FieldNames": "DocEntry", "FieldValues": str(doc_entry),
                       "UserID": "1", "CreateDate": "20261128", "CreateTime": "1159", **changes}).encode()


def basic(user: str = WEBHOOK_USER, password: str = WEBHOOK_PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def send(paybot, body: bytes | None = None, *, auth: str | None = None):  # type: ignore[no-untyped-def]
    return await paybot.client.post("/webhooks/sap-b1", data=body or scenario(), headers={
        "Authorization": auth or basic(), "Content-Type": "application/json"})


def stored(paybot: Any, doc_entry: int = 77) -> InboundRequest:
    return InboundRequest("POST", "", {}, {}, scenario(doc_entry), paybot.clock())


async def test_a_payment_is_read_through_the_service_layer_and_jane_thanked(paybot, b1, source, sendgrid):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")
    assert (await send(paybot)).status == 200
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "INV-1042" in mail_text(mail) and "$1,250.00" in mail_text(mail)
    [payment] = await paybot.rows(models.Payment)
    assert payment.payment_ref == "77/301"
    [login] = b1.to(f"{ROOT}/Login")
    assert login.json() == {"CompanyDB": COMPANY_DB, "UserName": USERNAME, "Password": PASSWORD}
    again = await send(paybot)  # the scenario's retry
    assert (await again.json())["duplicate"] is True


async def test_an_invoice_is_matched_on_docnum_too(paybot, b1, source, sendgrid):
    await paybot.add_customer()
    await paybot.add_invoice("1301", "1250.00")  # the shop's books know B1's document number, not NumAtCard
    assert (await send(paybot)).status == 200
    await paybot.deliver()
    [payment] = await paybot.rows(models.Payment)
    assert payment.invoice_id is not None and len(sendgrid.accepted) == 1


@pytest.mark.parametrize("auth", [basic(password="guess"), basic(user="someone"), "Basic !!!", "Bearer x", ""])
async def test_wrong_credentials_are_401_and_nothing_is_stored(paybot, b1, source, auth):
    response = await paybot.client.post("/webhooks/sap-b1", data=scenario(), headers={"Authorization": auth})
    assert response.status == 401
    assert await paybot.rows(models.WebhookEvent) == [] and b1.calls == []


async def test_concurrent_reads_share_one_login(paybot, b1, source):
    results = await asyncio.gather(*(source.resolve(stored(paybot), None) for _ in range(5)))
    assert all(r.payments for r in results)
    assert len(b1.to(f"{ROOT}/Login")) == 1


async def test_a_session_timeout_mid_read_logs_in_again_once_then_succeeds(paybot, b1, source):
    await source.resolve(stored(paybot), None)
    b1.expire_sessions()
    received = await asyncio.gather(*(source.resolve(stored(paybot), None) for _ in range(3)))
    assert all(r.payments for r in received)
    assert len(b1.to(f"{ROOT}/Login")) == 2  # one re-login shared by the three reads


async def test_a_session_refused_twice_is_not_a_login_loop(paybot, b1, source):
    refused = odata_error(401, 301, "Invalid session or session already timeout.")
    b1.script(f"{ROOT}/IncomingPayments(77)", refused, odata_error(401, 301, "Invalid session."))
    from bot.errors import ProviderRejected

    with pytest.raises(ProviderRejected):
        await source.resolve(stored(paybot), None)
    assert len(b1.to(f"{ROOT}/Login")) == 2


async def test_a_payment_on_account_goes_to_finance_for_review_and_no_customer_message(paybot, b1, source,
                                                                                        sendgrid, slack):
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")
    b1.add_payment(78, cash="1250.00")  # no PaymentInvoices: received on account
    assert (await send(paybot, scenario(78))).status == 200
    await paybot.deliver()
    assert sendgrid.accepted == []
    [payment] = await paybot.rows(models.Payment)
    assert payment.invoice_id is None and payment.details["on_account"] == "true"
    assert [n.purpose for n in await paybot.notifications()] == ["needs_review"]
    assert b1.to(f"{ROOT}/BusinessPartners('C20000')") == []  # nobody to thank: no contact read


async def test_a_service_layer_outage_keeps_it_waiting_and_a_missing_payment_is_ignored(paybot, b1, source):
    b1.script(f"{ROOT}/IncomingPayments(77)", odata_error(503, -1, "Service Unavailable"))
    assert (await send(paybot)).status == 200
    await paybot.deliver()
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "waiting"
    assert (await send(paybot, scenario(99, event_id="other"))).status == 200  # no such DocEntry (-2028)
    await paybot.deliver()
    gone = await paybot.rows(models.WebhookEvent, models.WebhookEvent.event_id == "other")
    assert [e.status for e in gone] == ["ignored"]


async def test_other_objects_and_companies_are_stored_ignored_without_a_read(paybot, b1, source):
    assert (await send(paybot, scenario(ObjectType="13", event_id="inv"))).status == 200
    assert (await send(paybot, scenario(SourceDB="SBOOTHER", event_id="other-db"))).status == 200
    assert {e.status for e in await paybot.rows(models.WebhookEvent)} == {"ignored"}
    assert b1.calls == []


async def test_a_body_without_a_docentry_is_400(paybot, b1, source):
    response = await send(paybot, scenario(FieldValues="77; DROP"))
    assert response.status == 400


async def test_the_sweep_pages_and_reports_the_webhook_s_payment_refs(paybot, b1, source):
    b1.page_size = 1
    b1.add_invoice(302, "INV-1043", total="300.00", paid="100.00")
    b1.add_payment(79, (302, "100.00"), updated="2026-11-28")
    b1.add_payment(5, (301, "1.00"), updated="2026-11-01")  # before the mark
    swept = await source.sweep(None, None)
    assert [p.payment_ref for r in swept.received for p in r.payments] == ["77/301", "79/302"]
    assert len(b1.to(f"{ROOT}/IncomingPayments")) == 2  # two pages
    b1.script(f"{ROOT}/IncomingPayments", web.json_response({"value": []}))
    assert (await source.sweep(swept.mark, None)).received == ()


async def test_paybot_check_logs_in_and_names_a_refused_login(paybot, b1, source):
    [finding] = await source.check(paybot.runtime.settings)
    assert not finding.problem and COMPANY_DB in finding.text
    source.service_layer._session = None
    b1.script(f"{ROOT}/Login", odata_error(401, -304, "Invalid login credential."))
    [finding] = await source.check(paybot.runtime.settings)
    assert finding.problem and "SAP_B1_PASSWORD" in finding.text and PASSWORD not in finding.text
