"""Matching rules, in order, table-driven."""

from datetime import UTC, datetime

import pytest

from bot.domain.matching import (Candidates, MatchRule, Settlement, invoice_key, lookup_keys, match, outcome,
                                 tokens)
from bot.domain.money import Money
from bot.domain.parties import Customer, Invoice
from bot.domain.payments import PaymentEvent, PaymentKind

NOW = datetime(2026, 11, 28, tzinfo=UTC)
JANE = Customer(id="C1", name="Jane", email="jane@example.com", phone="+15555550100", external_ids={"stripe": "cus_1"})
BOB = Customer(id="C2", name="Bob", email="bob@example.com")


def invoice(number, amount="100.00", paid="0", customer="C1", **ext):
    return Invoice(number=number, customer_id=customer, amount=Money.of(amount, "USD"), paid=Money.of(paid, "USD"),
                   external_ids=ext)


def payment(amount="100.00", **fields):
    return PaymentEvent(source="stripe", kind=PaymentKind.PAYMENT, amount=Money.of(amount, "USD"), occurred_at=NOW,
                        **fields)


ALL = Candidates(
    invoices=[invoice("INV-1"), invoice("INV-2", "250.00", stripe="in_2"), invoice("B-9", customer="C2")],
    customers=[JANE, BOB],
)


@pytest.mark.parametrize(("event", "rule", "number"), [
    (payment(invoice_numbers=("inv-1",)), MatchRule.INVOICE_NUMBER, "INV-1"),
    (payment(texts=("Payment for Inv #INV-2, thanks",)), MatchRule.INVOICE_NUMBER, "INV-2"),
    (payment(invoice_numbers=("INV-2",), texts=("also INV-1",)), MatchRule.INVOICE_NUMBER, "INV-2"),
    (payment(invoice_external_id="in_2"), MatchRule.EXTERNAL_ID, "INV-2"),
    (payment("250.00", payer_email="JANE@example.com"), MatchRule.CUSTOMER_AMOUNT, "INV-2"),
    (payment("250.00", customer_external_id="cus_1"), MatchRule.CUSTOMER_AMOUNT, "INV-2"),
    (payment("40.00", payer_email="bob@example.com"), MatchRule.CUSTOMER_AMOUNT, "B-9"),
    (payment("40.00", payer_email="jane@example.com"), MatchRule.UNMATCHED, None),
    (payment(payer_email="stranger@example.com"), MatchRule.UNMATCHED, None),
    (payment(texts=("INV-1 and INV-2",)), MatchRule.UNMATCHED, None),
])
def test_rules_in_order(event, rule, number):
    result = match(event, ALL)
    assert result.rule is rule
    assert (result.invoice.number if result.invoice else None) == number


def test_unmatched_keeps_the_customer_it_found():
    result = match(payment("40.00", payer_email="jane@example.com"), ALL)
    assert result.customer == JANE and "2 open invoices" in result.reason


def test_lookup_keys_collect_tokens_and_contacts():
    keys = lookup_keys(payment(texts=("Inv #1042 / PO 77",), payer_email=" Jane@Example.com ", invoice_numbers=(" a-1 ",)))
    assert {"1042", "INV", "77", "A-1"} <= keys.invoice_numbers
    assert keys.email == "jane@example.com"


def test_tokens_strip_hashes():
    assert tokens(["#INV-7."]) >= {"INV-7"}


@pytest.mark.parametrize(("paid", "amount", "balance", "settlement"), [
    ("0", "100.00", "0.00", Settlement.FULL),
    ("0", "40.00", "60.00", Settlement.PARTIAL),
    ("60.00", "40.00", "0.00", Settlement.FULL),
    ("0", "120.00", "-20.00", Settlement.OVER),
])
def test_outcome(paid, amount, balance, settlement):
    result = outcome(invoice("INV-1", paid=paid), payment(amount))
    assert (result.balance, result.settlement) == (Money.of(balance, "USD"), settlement)


def test_outcome_trusts_the_platforms_balance():
    result = outcome(invoice("INV-1"), payment("40.00", reported_balance=Money.of("10.00", "USD")))
    assert result.balance == Money.of("10.00", "USD") and result.settlement is Settlement.PARTIAL


@pytest.mark.parametrize("event", [
    PaymentEvent(source="square", kind=PaymentKind.PAYMENT, amount=Money.of("100.00", "EUR"), occurred_at=NOW,
                 invoice_numbers=("INV-1",)),
    PaymentEvent(source="stripe", kind=PaymentKind.PAYMENT, amount=Money.of("250.00", "CAD"), occurred_at=NOW,
                 invoice_external_id="in_2"),
])
def test_a_payment_in_another_currency_does_not_settle_the_invoice_it_names(event):
    found = match(event, ALL)
    assert found.rule is MatchRule.UNMATCHED and found.invoice is None
    assert found.customer == JANE  # staff see whose it is
    assert "not the invoice's USD" in found.reason


@pytest.mark.parametrize(("printed", "quoted"), [
    ("inv-2026-a", "INV-2026-A"), ("INV-1042", "inv-1042"), ("Rech-7b", " rech-7B "), ("A-ä1", "a-ä1"),
])
def test_invoice_numbers_are_one_whatever_the_case_of_their_ascii_letters(printed, quoted):
    found = Candidates(invoices=[invoice(printed)], customers=[JANE])
    result = match(payment(invoice_numbers=(quoted,)), found)
    assert (result.rule, result.invoice.number) == (MatchRule.INVOICE_NUMBER, printed)  # shown as printed
    assert invoice_key(printed) == invoice_key(quoted) and invoice_key("ä") == "ä"  # as SQL folds it: ASCII only
