"""A customer's contact details as an operator writes them, checked and put in one form (or ValueError why not)."""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from babel import Locale, UnknownLocaleError

# CLDR's territories that are not countries: the EU, the eurozone, the UN, "outlying Oceania", pseudo and unknown.
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"})
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


@lru_cache(maxsize=1)
def countries() -> frozenset[str]:
    """ISO 3166 alpha-2 codes, from babel's CLDR territories."""
    codes = {str(code) for code in Locale("en").territories}
    return frozenset(code for code in codes if len(code) == 2 and code.isalpha()) - _NOT_COUNTRIES


def country_code(value: str) -> str:
    code = value.strip().upper()
    if code not in countries():
        raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country code")
    return code


def locale_tag(value: str) -> str:
    """`es_mx` → `es-MX`: any locale babel knows (paybot words a message in its language when not in the locale)."""
    try:
        locale = Locale.parse(value.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValueError(f"{value!r} is not a locale (write it like en-US or es-MX)") from exc
    return str(locale).replace("_", "-")


def time_zone(value: str) -> str:
    """An IANA time zone name, e.g. `America/Mexico_City`."""
    name = value.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone (write it like America/Mexico_City)") from exc
    return name


def email_address(value: str) -> str:
    """One plain address, `local@domain.tld`, in lower case; no display names, no spaces, no DNS look-up."""
    address = value.strip()
    local, at, domain = address.rpartition("@")
    if not at or len(address) > 254 or len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise ValueError(f"{value!r} is not an email address")
    try:
        ascii_domain = domain.lower().encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"{value!r} is not an email address") from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise ValueError(f"{value!r} is not an email address")
    return f"{local}@{domain}".lower()


def phone_e164(value: str, country: str) -> str:
    """A number in E.164 (`+12015550123`), from E.164 or a national form for `country`."""
    try:
        number = phonenumbers.parse(value, country)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} does not parse ({exc})") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{value!r} is not a valid number for {country}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
