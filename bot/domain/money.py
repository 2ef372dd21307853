"""Money as integer minor units of an ISO 4217 currency; precision and formatting come from babel's CLDR data."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache

from babel import Locale
from babel.numbers import format_currency, get_currency_precision, get_currency_symbol, list_currencies


class CurrencyError(ValueError):
    """Not an ISO 4217 currency code."""


@lru_cache(maxsize=None)
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


@lru_cache(maxsize=None)
def exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit: USD 2, JPY 0, BHD 3."""
    return get_currency_precision(currency)


def normalise_currency(code: str) -> str:
    currency = code.strip().upper()
    if currency not in _known_currencies():
        raise CurrencyError(f"unknown currency {code!r}")
    return currency


@lru_cache(maxsize=256)
def babel_locale(tag: str) -> Locale:
    """`tag` parsed, once: babel parses a locale string (and looks up its data) on every call otherwise, which was
    most of what writing a message cost. An unknown locale raises, every time (failures are not cached)."""
    return Locale.parse(tag)


@lru_cache(maxsize=None)
def _symbol(currency: str) -> str:
    """The currency's symbol where it is at home, as CLDR's root data (through English) writes it: `$` for USD."""
    return get_currency_symbol(currency, "en")


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An exact amount: `minor` units of `currency` (cents for USD, yen for JPY)."""

    currency: str
    minor: int

    @classmethod
    def of(cls, amount: Decimal | str | int, currency: str) -> Money:
        """From major units, e.g. `Money.of("1250.00", "USD")`; more decimals than the currency has is an error."""
        currency = normalise_currency(currency)
        try:
            value = Decimal(amount)
        except (InvalidOperation, TypeError) as exc:
            raise ValueError(f"not an amount: {amount!r}") from exc
        if not value.is_finite():
            raise ValueError(f"not an amount: {amount!r}")
        scaled = value.scaleb(exponent(currency))
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{amount} has more decimals than {currency} allows")
        return cls(currency, int(scaled))

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        return cls(normalise_currency(currency), int(minor))

    @classmethod
    def rounded(cls, amount: Decimal, currency: str) -> Money:
        """From a platform's JSON number (parsed as Decimal), rounded half-even to the currency's precision."""
        currency = normalise_currency(currency)
        quantum = Decimal(1).scaleb(-exponent(currency))
        return cls(currency, int(amount.quantize(quantum, rounding=ROUND_HALF_EVEN).scaleb(exponent(currency))))

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(normalise_currency(currency), 0)

    @property
    def amount(self) -> Decimal:
        """The value in major units, with exactly the currency's decimals."""
        return Decimal(self.minor).scaleb(-exponent(self.currency))

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.currency, self.minor + other.minor)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.currency, self.minor - other.minor)

    def __neg__(self) -> Money:
        return Money(self.currency, -self.minor)

    def __bool__(self) -> bool:
        return self.minor != 0

    def format(self, locale: str = "en_US") -> str:
        """Locale-aware, e.g. `$1,250.00` (en-US), `1.250,00 €` (de-DE) or `$980.50 USD` (es-MX).

        Raises babel's `UnknownLocaleError` (a ValueError-like Exception) for a locale that does not exist."""
        return _formatted(self.currency, self.minor, locale)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


@lru_cache(maxsize=4096)
def _formatted(currency: str, minor: int, locale: str) -> str:
    """`Money.format`, remembered: a message writes its amount, the invoice's total and the balance, most often
    the same amount twice and a zero, and babel takes 15 µs for each."""
    money = Money(currency, minor)
    tag = babel_locale(locale.replace("-", "_"))
    text = format_currency(money.amount, currency, locale=tag)
    symbol = _symbol(currency)
    if get_currency_symbol(currency, tag) == currency and symbol != currency:
        # The locale has no symbol of its own for this currency and writes the bare code (es-MX: "USD980.50");
        # its readers write the symbol and add the code to tell it from their own dollar: "$980.50 USD".
        return f"{text.replace(currency, symbol, 1)} {currency}"
    return text


# Written amounts, as spreadsheets and relays export them: `1,250.00`, `$2,400.00`, `1.250,00 €`, `¥5,000`.
_SPACES = str.maketrans("", "", " \u00a0\u202f")
_WRITTEN = re.compile(r"(?P<sign>-?)(?P<lead>[^\d.,'-]*)(?P<number>[\d.,']*?)(?P<tail>[^\d.,']*)")
_GROUPED = re.compile(r"[1-9]\d{0,2}([.,'])\d{3}(\1\d{3})*")


@lru_cache(maxsize=None)
def currency_markers(currency: str) -> frozenset[str]:
    """What may stand beside an amount of `currency`: its code and symbols (`USD`, `$`, `US$`; `MXN`, `MX$`, `$`)."""
    symbol = get_currency_symbol(currency, "en")
    narrow = symbol.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ") or symbol
    return frozenset({currency, symbol.upper(), narrow.upper(), currency[:2] + narrow.upper()})


def parse_amount(text: str, currency: str) -> Money:
    """A written amount of `currency` in major units, or ValueError saying why not.

    A currency code or symbol may stand before or after it, if it is the currency's own. Thousands may be grouped
    with `,` `.` `'` or a space. With both `,` and `.`, the last one is the decimal mark (`1,250.50`, `1.250,50`).
    A single `,` or `.` followed by exactly three digits is read the one way the currency allows: for a currency
    with three decimals (BHD, KWD) `1.250` is one and a quarter and `1,250` is refused; for the others `1,250` is
    one thousand two hundred and fifty and `1.250` is refused (it could be either). Otherwise one `,` or `.` is the
    decimal mark (`1250,5`, `1250.00`). More decimals than the currency has is an error, never rounded.
    """
    currency = normalise_currency(currency)
    written = _WRITTEN.fullmatch(text.translate(_SPACES))
    if written is None or not written["number"]:
        raise ValueError(f"not an amount: {text!r}")
    markers = [m for m in (written["lead"], written["tail"]) if m]
    if len(markers) > 1 or any(m.upper() not in currency_markers(currency) for m in markers):
        raise ValueError(f"not an amount of {currency}: {text!r}")
    return Money.of(written["sign"] + _plain(written["number"], currency), currency)


def _plain(number: str, currency: str) -> str:
    """`1,250.50` → `1250.50`: the number without its grouping, with `.` as the decimal mark."""
    if not (number[0].isdigit() and number[-1].isdigit()):
        raise ValueError(f"not an amount: {number!r}")
    marks = {c for c in number if c in ".,"}
    if len(marks) == 2:
        decimal_mark: str | None = number[max(number.rfind("."), number.rfind(","))]
    elif marks:
        decimal_mark = _reading_of_one_mark(number, marks.pop(), currency)
    else:
        decimal_mark = None
    whole, _, fraction = number.rpartition(decimal_mark) if decimal_mark else (number, "", "")
    if not whole.isdigit() and not _GROUPED.fullmatch(whole):
        raise ValueError(f"not an amount: {number!r} (thousands are grouped by three)")
    return re.sub(r"[.,']", "", whole) + (f".{fraction}" if fraction else "")


def _reading_of_one_mark(number: str, mark: str, currency: str) -> str | None:
    """The decimal mark, or None when `mark` groups thousands; ValueError where neither reading is safe."""
    if number.count(mark) > 1:
        return None
    whole, fraction = number.split(mark)
    if len(fraction) != 3 or not re.fullmatch(r"[1-9]\d{0,2}", whole):
        return mark
    three_places = exponent(currency) == 3
    if mark == "." and three_places:
        return mark
    if mark == "," and not three_places:
        return None
    raise ValueError(f"{number!r} could be {whole}{fraction} or {whole}.{fraction} {currency}: "
                     "write it without a thousands separator")
