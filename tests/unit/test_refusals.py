"""Refusal summaries in memory: bounded whatever the sender does, and nothing lost between flushes."""

from datetime import UTC, datetime, timedelta

from bot.domain.refusals import OTHERS, RefusalKey, RefusalTally
from bot.errors import MAX_REASON, PayloadInvalid, SignatureInvalid, short_reason

T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)


def test_the_tally_holds_at_most_max_keys_plus_one_overflow_per_source_and_reason():
    tally = RefusalTally(since=T0, max_keys=3)
    for n in range(10_000):
        tally.add("stripe", "SignatureInvalid", f"10.0.{n // 256}.{n % 256}", 401, "no v1 signature matches")
    assert len(tally.counts) == 4
    assert tally.counts[RefusalKey("stripe", "SignatureInvalid", OTHERS)].count == 10_000 - 3
    assert sum(c.count for c in tally.counts.values()) == 10_000


def test_a_window_is_one_summary_per_key_and_the_next_starts_empty():
    tally = RefusalTally(since=T0)
    for _ in range(300):
        tally.add("stripe", "SignatureInvalid", "203.0.113.9", 401, "no v1 signature matches")
    tally.add("stripe", "PayloadInvalid", "203.0.113.9", 400, "body is not valid JSON")
    [signature, payload] = tally.take(T0 + timedelta(seconds=60))
    assert (signature.count, signature.status, payload.count) == (300, 401, 1)
    assert signature.window_start == T0 and signature.window_end == T0 + timedelta(seconds=60)
    assert tally.counts == {} and tally.since == T0 + timedelta(seconds=60)


def test_a_failed_flush_gives_its_counts_back():
    tally = RefusalTally(since=T0)
    tally.add("wave", "SignatureInvalid", None, 401, "X-Webhook-Secret header missing or wrong")
    window = tally.take(T0 + timedelta(seconds=60))
    tally.add("wave", "SignatureInvalid", None, 401, "X-Webhook-Secret header missing or wrong")
    tally.give_back(window)
    [again] = tally.take(T0 + timedelta(seconds=120))
    assert (again.key.remote, again.count, again.window_start) == ("unknown", 2, T0)


def test_a_long_remote_is_cut():
    tally = RefusalTally(since=T0)
    tally.add("wave", "SignatureInvalid", "x" * 500, 401, "")
    assert [len(k.remote) for k in tally.counts] == [64]


def test_reasons_are_short_and_never_quote_the_input():
    evil = "\x1b[31m<!channel>\r\nforged log line " + "A" * 1_000_000
    for reason in (str(PayloadInvalid(f"bad currency: {evil!r}")), str(SignatureInvalid(evil)), short_reason(evil)):
        assert len(reason) <= MAX_REASON
        assert "\x1b" not in reason and "\n" not in reason and "\r" not in reason
    assert str(PayloadInvalid(f"bad currency: {evil!r}")) == "bad currency: '…'"
    assert str(PayloadInvalid()) == "unparseable body"
    assert str(SignatureInvalid("no v1 signature matches")) == "no v1 signature matches"
