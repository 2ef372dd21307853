import pytest

from bot.domain.contact import country_code, email_address, locale_tag, phone_e164, time_zone


@pytest.mark.parametrize(("value", "stored"), [
    ("jane@example.com", "jane@example.com"), (" Jane.Doe+ap@Example.COM ", "jane.doe+ap@example.com"),
    ("ana@méxico.mx", "ana@méxico.mx"), ("o'brien@weld.example.co.uk", "o'brien@weld.example.co.uk"),
])
def test_email_addresses(value, stored):
    assert email_address(value) == stored


@pytest.mark.parametrize("value", ["a@@b", "a b@x", "a@b", "jane", "@example.com", "jane@", "a..b@example.com",
                                   "jane@-example.com", "jane@example.123", "Jane <jane@example.com>"])
def test_not_email_addresses(value):
    with pytest.raises(ValueError, match="not an email address"):
        email_address(value)


@pytest.mark.parametrize(("value", "stored"), [("es-MX", "es-MX"), ("es_mx", "es-MX"), ("en", "en"),
                                               ("zh-Hant-TW", "zh-Hant-TW"), ("es-419", "es-419")])
def test_locales_babel_knows(value, stored):
    assert locale_tag(value) == stored


@pytest.mark.parametrize("value", ["english", "xx-YY", "xx", "", "en-US-!"])
def test_not_locales(value):
    with pytest.raises(ValueError, match="not a locale"):
        locale_tag(value)


def test_countries_are_iso_3166_alpha_2():
    assert country_code(" mx ") == "MX"
    for value in ("XX", "ZZ", "EU", "USA", "1"):
        with pytest.raises(ValueError, match="not an ISO 3166"):
            country_code(value)


def test_time_zones_are_iana_names():
    assert time_zone("America/Mexico_City") == "America/Mexico_City"
    for value in ("Mars/Olympus_Mons", "CST6", "../etc/passwd", "GMT+25"):
        with pytest.raises(ValueError, match="not an IANA time zone"):
            time_zone(value)


def test_phones_for_the_country_in_e164():
    assert phone_e164("55 1234 5678", "MX") == "+525512345678"
    assert phone_e164("+44 20 7946 0958", "US") == "+442079460958"
    with pytest.raises(ValueError, match="not a valid number for US"):
        phone_e164("555-0000", "US")
