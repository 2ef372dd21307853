from decimal import Decimal

import pytest

from bot.domain.money import CurrencyError, Money


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
