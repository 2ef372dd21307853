from datetime import UTC, datetime, timedelta

from bot.domain.fingerprint import Report, fingerprint, is_same_payment, ref_key, refs_in
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


def test_a_reference_already_attached_to_a_payment_names_that_payment_for_its_source():
    # pi_1 was already reported by the Wave relay as wave-1: wave-2 is another instalment, not pi_1 again.
    pi_1 = Report("stripe", "pi_1", T, other_refs={"wave": "wave-1"})
    assert not is_same_payment(Report("wave", "wave-2", T), pi_1)
    assert is_same_payment(Report("wave", "wave-1", T), pi_1)
    assert is_same_payment(Report("square", "sq-1", T), pi_1)


def test_refs_in_reads_back_what_ref_key_wrote():
    details = {ref_key("wave"): "w-1", ref_key("square"): "", "stripe_invoice": "in_1"}
    assert refs_in(details) == {"wave": "w-1"}
