from datetime import UTC, datetime, timedelta

from bot.domain.fingerprint import Report, fingerprint, is_same_payment
from bot.domain.money import Money

T = datetime(2026, 11, 28, tzinfo=UTC)
USD = Money.of("500", "USD")


def test_one_invoice_and_amount_give_one_fingerprint_whatever_the_source():
    assert fingerprint(USD, "inv-1", None, "pi_1") == fingerprint(USD, "INV-1", "C1", "txn_9")
    assert fingerprint(USD, "INV-1", None, None) != fingerprint(Money.of("501", "USD"), "INV-1", None, None)


def test_two_platforms_reporting_the_same_money_are_one_payment():
    assert is_same_payment(Report("quickbooks", "58", T + timedelta(days=1)), Report("stripe", "pi_1", T))


def test_one_platform_naming_two_payments_is_two_payments():
    assert not is_same_payment(Report("stripe", "pi_2", T), Report("stripe", "pi_1", T))
    assert is_same_payment(Report("stripe", "pi_1", T), Report("stripe", "pi_1", T))
    assert is_same_payment(Report("stripe", None, T), Report("stripe", "pi_1", T))


def test_far_apart_in_time_is_another_payment():
    assert not is_same_payment(Report("square", "a", T + timedelta(days=4)), Report("stripe", "b", T))
