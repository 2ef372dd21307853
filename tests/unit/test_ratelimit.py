"""The token bucket: a burst, then the rate, on the injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.ratelimit import TokenBucket

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_burst_then_the_rate():
    bucket = TokenBucket.full(rate=10, burst=3, now=T0)
    assert [bucket.take(T0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(T0 + timedelta(seconds=0.05)) is False  # half a token
    assert bucket.take(T0 + timedelta(seconds=0.1)) is True
    later = T0 + timedelta(seconds=60)  # never more than the burst, however long it rested
    assert [bucket.take(later) for _ in range(4)] == [True, True, True, False]
