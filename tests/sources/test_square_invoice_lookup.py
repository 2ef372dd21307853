"""Square: a payment of a Square invoice names only the invoice's order; paybot finds the invoice through the (fake)
Square API and the customer is thanked for that invoice. HTTP in → DB → worker → fake SendGrid."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import SecretStr

from bot.storage import models
from tests.contract.samples import SAMPLES
from tests.fakes.square import ACCESS_TOKEN, FakeSquare, not_found, rate_limited
from tests.sources.helpers import load, mail_text, post

SEARCH = "/v2/invoices/search"
ORDER = "CAISENgvhpdP05f1DWG9H8yMn4kZY"


@pytest.fixture
async def square_api(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeSquare()
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
def configs(configs, square_api):  # type: ignore[no-untyped-def]
    from bot.integrations.sources.square import SquareSettings

    return configs | {"square": SquareSettings(
        _env_file=None, signature_key=SAMPLES["square"].KEY,  # type: ignore[attr-defined]
        access_token=ACCESS_TOKEN, base_url=str(square_api.server.make_url("/")))}


def square_invoice(**changes: Any) -> dict[str, Any]:
    """The Square invoice the payment pays (order CAISEN…), as the Invoices API returns it."""
    invoice = load("square", "invoice_payment_made_partial.json")["data"]["object"]["invoice"]
    return copy.deepcopy(invoice) | changes


def invoice_payment(**changes: Any) -> dict[str, Any]:
    """`payment.updated`, COMPLETED, for an invoice: no reference_id, no note, only the invoice's order."""
    body = load("square", "payment_updated_completed.json")
    payment = body["data"]["object"]["payment"]
    del payment["reference_id"], payment["note"]
    payment.update(changes)
    return body


async def given_jane_owes_two_invoices(paybot, square_api) -> None:  # type: ignore[no-untyped-def]
    # Two open invoices, $200 fits neither: without the Square invoice the payment goes to review.
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")
    await paybot.add_invoice("INV-1043", "800.00")
    square_api.invoices += [
        square_invoice(id="inv:0-ChOTHERlocation", location_id="LOTHERLOCATION", order_id="ORDER-ELSEWHERE"),
        square_invoice(id="inv:0-ChINV1043", invoice_number="INV-1043", order_id="ORDER-1043",
                       created_at="2026-11-25T09:00:00Z"),
        square_invoice(),
    ]


async def test_the_square_invoice_is_found_and_the_customer_thanked_for_it(paybot, square_api, sendgrid):
    await given_jane_owes_two_invoices(paybot, square_api)
    assert (await post(paybot, "square", invoice_payment())).status == 200
    await paybot.runtime.settle()  # the search happens after the answer
    [call] = square_api.to(SEARCH)
    assert call.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}" and call.headers["Square-Version"]
    assert call.json()["query"]["filter"] == {"location_ids": ["L88917AVBK2S5"],
                                              "customer_ids": ["JDKYHBWT1D4F8MFH63DBMEN8Y4"]}
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "INV-1042" in mail["subject"]
    assert "$200.00" in mail_text(mail) and "$1,050.00 is still owed on invoice INV-1042" in mail_text(mail)
    [payment] = await paybot.rows(models.Payment)
    assert (payment.match_rule, payment.details["square_invoice"]) == ("invoice_number", "inv:0-ChCHu2mZEabLeeHahQnXDjZQECY")
    # Square's own report of the invoice, moments later, restates the same money.
    assert (await post(paybot, "square", load("square", "invoice_payment_made_partial.json"))).status == 200
    await paybot.deliver()
    assert len(sendgrid.accepted) == 1
    [invoice] = await paybot.rows(models.Invoice, models.Invoice.number == "INV-1042")
    assert invoice.paid_minor == 20000


async def test_a_payment_without_a_customer_searches_its_location_page_by_page(paybot, square_api, sendgrid):
    await given_jane_owes_two_invoices(paybot, square_api)
    square_api.page_size = 2  # newest first: INV-2001, INV-1043, then (second page) the invoice sought
    square_api.invoices.append(square_invoice(id="inv:0-ChNEWEST", invoice_number="INV-2001", order_id="ORDER-NEW",
                                              created_at="2026-11-27T09:00:00Z"))
    assert (await post(paybot, "square", invoice_payment(customer_id=None))).status == 200
    await paybot.runtime.settle()
    first, second = square_api.to(SEARCH)
    assert "customer_ids" not in first.json()["query"]["filter"] and second.json()["cursor"]
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "INV-1042" in mail["subject"]


async def test_the_tracked_invoice_may_be_known_by_its_square_id_alone(paybot, square_api, sendgrid):
    await paybot.add_customer()
    await paybot.add_invoice("WS-88", "1250.00", external_ids={"square": "inv:0-ChCHu2mZEabLeeHahQnXDjZQECY"})
    await paybot.add_invoice("WS-89", "800.00")
    square_api.invoices.append(square_invoice())
    assert (await post(paybot, "square", invoice_payment())).status == 200
    await paybot.runtime.settle()  # the search happens after the answer
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "WS-88" in mail["subject"]
    [payment] = await paybot.rows(models.Payment)
    assert payment.match_rule == "external_id"


async def test_without_a_token_nothing_is_asked_and_the_payment_goes_to_review(paybot, square_api, sendgrid, slack):
    await given_jane_owes_two_invoices(paybot, square_api)
    source = paybot.runtime.sources["square"]
    source.settings = source.settings.model_copy(update={"access_token": None})
    assert (await post(paybot, "square", invoice_payment())).status == 200
    await paybot.runtime.settle()  # the search happens after the answer
    assert square_api.calls == []
    await paybot.deliver()
    assert sendgrid.accepted == []
    [payment] = await paybot.rows(models.Payment)
    assert payment.invoice_id is None and len(slack.posted("C0FINANCE")) == 1


async def test_a_payment_naming_its_invoice_asks_nothing(paybot, square_api, sendgrid):
    await given_jane_owes_two_invoices(paybot, square_api)
    assert (await post(paybot, "square", load("square", "payment_updated_completed.json"))).status == 200
    assert square_api.calls == []
    await paybot.deliver()
    assert "INV-1042" in sendgrid.accepted[0]["subject"]


async def test_an_order_no_invoice_paid_is_matched_as_before(paybot, square_api, sendgrid):
    await given_jane_owes_two_invoices(paybot, square_api)
    assert (await post(paybot, "square", invoice_payment(order_id="ORDER-AT-THE-COUNTER"))).status == 200
    await paybot.runtime.settle()
    assert len(square_api.to(SEARCH)) == 1
    [payment] = await paybot.rows(models.Payment)
    assert payment.invoice_id is None and "square_invoice" not in payment.details


async def test_a_rate_limited_search_waits_and_is_tried_again_never_lost(paybot, square_api, sendgrid):
    await given_jane_owes_two_invoices(paybot, square_api)
    square_api.script(SEARCH, rate_limited())
    answered = await post(paybot, "square", invoice_payment())
    assert answered.status == 200  # Square is answered at once, whatever its API says
    await paybot.runtime.settle()
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.status == "waiting" and await paybot.rows(models.Payment) == []
    paybot.clock.advance(60)  # past RESOLVE_RETRY_BASE_SECONDS
    await paybot.runtime.verifier.drain()
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "INV-1042" in mail["subject"]


@pytest.mark.parametrize("refusal", ["wrong token", "not found"])
async def test_a_refused_search_is_not_fatal(paybot, square_api, sendgrid, refusal, caplog):
    await given_jane_owes_two_invoices(paybot, square_api)
    if refusal == "wrong token":
        source = paybot.runtime.sources["square"]
        source.settings = source.settings.model_copy(update={"access_token": SecretStr("EAAAl-revoked-token")})
    else:
        square_api.script(SEARCH, not_found("Location `L88917AVBK2S5` not found."))
    assert (await post(paybot, "square", invoice_payment())).status == 200
    await paybot.runtime.settle()  # the search happens after the answer
    [payment] = await paybot.rows(models.Payment)
    assert payment.invoice_id is None
    assert "could not look up the invoice" in caplog.text
    assert "UNAUTHORIZED" in caplog.text if refusal == "wrong token" else "NOT_FOUND" in caplog.text
    assert "EAAAl-" not in caplog.text and "jane@example.com" not in caplog.text
