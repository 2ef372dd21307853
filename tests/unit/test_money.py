from decimal import Decimal

import pytest

from bot.domain.money import CurrencyError, Money, parse_amount


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("1250.00", "USD", 125000), ("1250", "usd", 125000), ("5000", "JPY", 5000), ("1.234", "BHD", 1234),
    (Decimal("0.10"), "EUR", 10),
])
def test_of_major_units(amount, currency, minor):
    assert Money.of(amount, currency).minor == minor


@pytest.mark.parametrize(("amount", "currency"), [("1.5", "JPY"), ("1.001", "USD"), ("abc", "USD"), ("NaN", "USD")])
def test_of_refuses_what_the_currency_cannot_hold(amount, currency):
    with pytest.raises(ValueError):
        Money.of(amount, currency)


def test_unknown_currency():
    with pytest.raises(CurrencyError):
        Money.of("1", "XYZ")


def test_rounded_from_json_numbers_is_half_even():
    assert Money.rounded(Decimal("10.125"), "USD").minor == 1012
    assert Money.rounded(Decimal("10.135"), "USD").minor == 1014


def test_arithmetic_keeps_currency():
    assert Money.of("10", "USD") - Money.of("2.5", "USD") == Money.of("7.50", "USD")
    with pytest.raises(CurrencyError):
        Money.of("1", "USD") + Money.of("1", "EUR")


@pytest.mark.parametrize(("money", "locale", "text"), [
    (Money.of("1250", "USD"), "en-US", "$1,250.00"),
    (Money.of("1250", "EUR"), "de-DE", "1.250,00\xa0€"),
    (Money.of("5000", "JPY"), "en-US", "¥5,000"),
    (Money.of("1250.5", "MXN"), "es-MX", "$1,250.50"),
])
def test_format_is_locale_aware(money, locale, text):
    assert money.format(locale) == text


@pytest.mark.parametrize(("text", "currency", "minor"), [
    ("1250.00", "USD", 125000), ("1,250.00", "USD", 125000), ("$2,400.00", "USD", 240000),
    ("US$ 10", "USD", 1000), ("1250 usd", "USD", 125000), ("1.250,00 €", "EUR", 125000), ("1 250,50", "EUR", 125050),
    ("1'250.50", "CHF", 125050), ("12,50", "EUR", 1250), ("1,250", "USD", 125000), ("1.250.000", "USD", 125000000),
    ("¥5,000", "JPY", 5000), ("5000", "JPY", 5000), ("$2,400.00", "MXN", 240000), ("MX$2,400.00", "MXN", 240000),
    ("1.250", "BHD", 1250), ("1,250.500", "KWD", 1250500), ("ISK 5,000", "ISK", 5000), ("1250.000", "USD", 125000),
    ("-5.00", "USD", -500),
])
def test_parse_amount_reads_what_spreadsheets_write(text, currency, minor):
    assert parse_amount(text, currency) == Money(currency, minor)


@pytest.mark.parametrize(("text", "currency", "reason"), [
    ("1.250", "USD", "could be 1250 or 1.250 USD"),  # a German thousand, or one and a quarter
    ("5.000", "JPY", "could be 5000 or 5.000 JPY"),  # ¥5,000 must never become ¥5
    ("1,250", "BHD", "could be 1250 or 1.250 BHD"),
    ("€10.00", "USD", "not an amount of USD"), ("$5 USD", "USD", "not an amount of USD"),
    ("1,25,000.00", "INR", "grouped by three"), ("1.250,000.00", "USD", "grouped by three"),
    ("12.5", "JPY", "more decimals than JPY allows"), ("0.125", "USD", "more decimals"),
    ("", "USD", "not an amount"), ("$", "USD", "not an amount"), ("abc", "USD", "not an amount"),
    ("1e3", "USD", "not an amount"), ("NaN", "USD", "not an amount"), ("1,", "USD", "not an amount"),
])
def test_parse_amount_refuses_what_it_cannot_read_one_way(text, currency, reason):
    with pytest.raises(ValueError, match=reason):
        parse_amount(text, currency)
