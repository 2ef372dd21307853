"""`checked`: what a verified payload may hold. Identity that storage cannot hold is refused; lookup ids that
cannot be stored are dropped (and named); display text is cleaned and cut short, never a reason to refuse money."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.domain.money import Money
from bot.domain.payments import PaymentEvent, PaymentKind
from bot.errors import PayloadInvalid
from bot.integrations.sources.base import Received, checked


def received(event_id: str = "evt_1", event_type: str = "invoice.paid", **payment: object) -> Received:
    fields: dict[str, object] = dict(source="stripe", kind=PaymentKind.PAYMENT, amount=Money.from_minor(100, "USD"),
                                     occurred_at=datetime(2026, 11, 28, tzinfo=UTC), payment_ref="pi_1")
    return Received(event_id=event_id, event_type=event_type,
                    payments=(PaymentEvent(**(fields | payment)),))  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "field", "kept"), [
    ({"payer_name": "N" * 300}, "payer_name", "N" * 254 + "…"),
    ({"payer_name": "Ana\x00 B\ud800"}, "payer_name", "Ana\ufffd B\ufffd"),
    ({"payer_phone": "+1\x00"}, "payer_phone", "+1\ufffd"),
    ({"texts": ("memo\x00",)}, "texts", ("memo\ufffd",)),
    ({"invoice_numbers": ("INV-1\ud800",)}, "invoice_numbers", ("INV-1\ufffd",)),
    ({"details": {"k\x00": "v\ud800"}}, "details", {"k\ufffd": "v\ufffd"}),
    ({"payer_email": "a" * 310 + "@example.com"}, "payer_email", None),
    ({"payer_email": "jane\x00@example.com"}, "payer_email", None),
    ({"invoice_external_id": "in_" + "9" * 300}, "invoice_external_id", None),
    ({"customer_external_id": "cus_\ud800"}, "customer_external_id", None),
    ({"customer_external_id": "cus_Q1"}, "customer_external_id", "cus_Q1"),
])
def test_display_text_is_cleaned_and_unusable_lookups_dropped(change, field, kept):
    [payment] = checked(received(**change)).payments
    assert getattr(payment, field) == kept


def test_a_dropped_lookup_is_named_on_the_record():
    [payment] = checked(received(invoice_external_id="x" * 256, payer_email="\x00")).payments
    assert payment.details["unusable_fields"] == "invoice_external_id,payer_email"


def test_a_long_event_type_is_a_label_cut_short():
    assert checked(received(event_type="t" * 500)).event_type == "t" * 119 + "…"


@pytest.mark.parametrize(("made", "named"), [
    (lambda: received(event_id="e" * 256), "event_id"),
    (lambda: received(event_id="evt_\x00"), "event_id"),
    (lambda: received(payment_ref="pi_\ud800"), "payment_ref"),
    (lambda: received(payment_ref="p" * 256), "payment_ref"),
    (lambda: received(amount=Money.from_minor(-1, "USD")), "negative"),
    (lambda: received(amount=Money.from_minor(10**15, "USD")), "out of range"),
])
def test_identity_and_amounts_that_cannot_be_stored_are_refused(made, named):
    with pytest.raises(PayloadInvalid, match=named):
        checked(made())
