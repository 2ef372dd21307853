"""The SendGrid request body paybot builds itself is, key for key and in order, what the SDK's `Mail` helper
builds (pure: no database, no network)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from bot.domain.business import Business
from bot.domain.matching import Settlement
from bot.domain.money import Money
from bot.domain.payments import PaymentKind
from bot.domain.receipt import Receipt
from bot.integrations.channels.sendgrid import SendGridChannel, SendGridSettings
from bot.messages import Message, Purpose, Wording, render

SHOP = Business(name="Alvarez Welding", reply_to="billing@alvarez-weld.example", locale="en-US")
RECEIPT = Receipt(payment_id=7, kind=PaymentKind.PAYMENT, source="stripe", amount=Money.of("980.50", "USD"),
                  paid_at=datetime(2026, 11, 28, 18, 5, tzinfo=UTC), customer_id="C1", customer_name="Norte",
                  locale="en-US", invoice_number="INV-1042", invoice_total=Money.of("980.50", "USD"),
                  balance=Money.of("0", "USD"), settlement=Settlement.FULL, match_reason="invoice number")


def channel(from_name: str | None = None) -> SendGridChannel:
    settings = SendGridSettings(_env_file=None, api_key="SG.key", from_email="billing@weld.example",  # type: ignore[call-arg]
                                from_name=from_name)
    return SendGridChannel(settings, http=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("recipient", ["ap@norte.example", "First.Last+tag@sub.norte-mx.example",
                                       "Norte AP <ap@norte.example>", "ap@norte.example, b@c.example"])
@pytest.mark.parametrize("business", [SHOP, Business(), replace(SHOP, reply_to=None), replace(SHOP, name=None)])
@pytest.mark.parametrize("from_name", [None, "Weld Billing"])
@pytest.mark.parametrize("purpose", [Purpose.RECEIPT, Purpose.FINANCE_CARD])
def test_the_body_is_what_the_sdk_builds(recipient, business, from_name, purpose):
    sendgrid = channel(from_name)
    message = Message(purpose, recipient, RECEIPT, wording=Wording(business))
    body = sendgrid.render(message)
    assert json.dumps(body) == json.dumps(sendgrid._mail(message, render(message)))
    body["from"]["email"] = "changed@example.com"  # each body is its own: nothing shared between messages
    assert sendgrid.render(message)["from"]["email"] == "billing@weld.example"


def test_a_message_quoting_an_api_key_is_refused_as_the_sdk_refuses_it():
    message = Message(Purpose.RECEIPT, "ap@norte.example", RECEIPT,
                      text_override="SG.abcdefghijklmnop.qrstuvwxyz0123456789 is our key")
    with pytest.raises(ApiKeyIncludedException):
        channel()._mail(message, render(message))
    with pytest.raises(ApiKeyIncludedException):
        channel().render(message)
