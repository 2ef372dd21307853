"""Stripe's signature recipe against an independently computed vector (HMAC-SHA256 of `{t}.{raw body}`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from multidict import CIMultiDict

from bot.errors import SignatureInvalid
from bot.integrations.sources.base import InboundRequest
from bot.integrations.sources.stripe import StripeSettings, StripeSource, sign

BODY = b'{"id":"evt_test","type":"invoice.paid"}'
VECTOR = "t=1700000000,v1=93479c45979609e8919a6bd4267568cd8dc11114383a80abb317e0cf9afd7aa9"


def request(header: str, at: int = 1_700_000_100) -> InboundRequest:
    return InboundRequest("POST", "https://paybot.example.com/webhooks/stripe",
                          CIMultiDict({"Stripe-Signature": header}), {}, BODY, datetime.fromtimestamp(at, UTC))


def source(secret: str = "whsec_test_secret") -> StripeSource:
    return StripeSource(StripeSettings(_env_file=None, webhook_secret=secret), None)  # type: ignore[arg-type]


def test_sign_reproduces_the_vector() -> None:
    assert sign(BODY, "whsec_test_secret", 1_700_000_000) == VECTOR


def test_any_v1_may_match_and_other_schemes_are_ignored() -> None:
    source().verify(request(f"t=1700000000,v0=deadbeef,v1={'0' * 64},{VECTOR.split(',')[1]}"))


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=" + "0" * 64, VECTOR.replace("v1=9", "v1=8")])
def test_missing_malformed_or_wrong_signatures_are_refused(header: str) -> None:
    with pytest.raises(SignatureInvalid):
        source().verify(request(header))


def test_timestamps_outside_300_seconds_are_refused() -> None:
    source().verify(request(VECTOR, at=1_700_000_300))
    with pytest.raises(SignatureInvalid, match="tolerance"):
        source().verify(request(VECTOR, at=1_700_000_301))
