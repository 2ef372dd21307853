"""What customers and finance read: en and es wording, money and time the reader's way, the business's identity,
the operator's templates, and who cannot be reached (pure: no database, no network)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.domain.business import Business
from bot.domain.matching import Settlement
from bot.domain.money import Money
from bot.domain.parties import Customer
from bot.domain.payments import PaymentKind
from bot.domain.reach import why_unreachable
from bot.domain.receipt import Receipt
from bot.messages import Message, Purpose, Wording, render, template_data
from cards import slack as cards

SHOP = Business(name="Alvarez Welding", address="12 Forge Rd, Laredo TX", phone="+1 956 555 0100",
                reply_to="billing@alvarez-weld.example", logo_url="https://alvarez-weld.example/logo.png",
                locale="en-US", timezone="America/Chicago")
PAID_AT = datetime(2026, 11, 28, 18, 5, tzinfo=UTC)


def receipt(**fields: object) -> Receipt:
    values: dict[str, object] = dict(
        payment_id=7, kind=PaymentKind.PAYMENT, source="stripe", amount=Money.of("980.50", "USD"), paid_at=PAID_AT,
        customer_id="C1", customer_name="Ferretería Norte", locale="en-US", invoice_number="INV-1042",
        invoice_total=Money.of("980.50", "USD"), balance=Money.of("0", "USD"), settlement=Settlement.FULL,
        match_reason="invoice number INV-1042", payment_ref="pi_3QxYz",
        details={"method": "card", "card_brand": "visa", "card_last4": "4242"})
    return Receipt(**(values | fields))  # type: ignore[arg-type]


def words(purpose: Purpose = Purpose.RECEIPT, business: Business = SHOP, templates: str | None = None, **fields: object):
    message = Message(purpose, "ap@norte.example", receipt(**fields), wording=Wording(business, templates))
    return render(message)


def test_english_receipt_is_signed_and_names_method_reference_and_local_time():
    mail = words(timezone="America/Chicago")
    assert mail.subject == "Payment received for invoice INV-1042 — thank you (Alvarez Welding)"
    assert "We received your payment of $980.50 for invoice INV-1042. Thank you!" in mail.text
    assert "Invoice INV-1042 is now paid in full." in mail.text
    assert "Received: November 28, 2026, 12:05\u202fPM CST" in mail.text
    assert "Method: Visa card ending in 4242" in mail.text
    assert "Reference: pi_3QxYz" in mail.text
    assert "Questions about this payment? Write to billing@alvarez-weld.example or call +1 956 555 0100." in mail.text
    assert mail.text.rstrip().endswith("Alvarez Welding\n12 Forge Rd, Laredo TX")
    assert "UTC" not in mail.text
    assert '<img src="https://alvarez-weld.example/logo.png" alt="Alvarez Welding"' in mail.html
    assert "<td>Reference</td><td>pi_3QxYz</td>" in mail.html
    assert 'href="mailto:billing@alvarez-weld.example"' in mail.html


def test_spanish_receipt_for_es_mx_in_its_words_money_and_time_zone():
    mail = words(locale="es-MX", timezone="America/Mexico_City")
    assert mail.subject == "Pago recibido de la factura INV-1042: gracias (Alvarez Welding)"
    assert "Hola, Ferretería Norte:" in mail.text
    assert "Recibimos su pago de $980.50 USD para la factura INV-1042. ¡Muchas gracias!" in mail.text
    assert "La factura INV-1042 quedó pagada en su totalidad." in mail.text
    assert "Recibido: 28 de noviembre de 2026, 12:05\u202fp.m. hora estándar central" in mail.text
    assert "Método de pago: tarjeta Visa terminada en 4242" in mail.text
    assert "Referencia: pi_3QxYz" in mail.text
    assert "¿Preguntas sobre este pago? Escríbanos a billing@alvarez-weld.example o llámenos al +1 956 555 0100." \
        in mail.text
    assert "USD980.50" not in mail.text and "Thank you" not in mail.text
    assert "Recibimos su pago de <strong>$980.50 USD</strong>" in mail.html
    assert "<td>Método de pago</td><td>tarjeta Visa terminada en 4242</td>" in mail.html


@pytest.mark.parametrize(("locale", "owed", "still_owed"), [
    ("en-US", "$600.00", "$600.00 is still owed on invoice INV-1042."),
    ("es-US", "$600.00", "Queda un saldo pendiente de $600.00 en la factura INV-1042."),
    ("es", "600,00\xa0US$", "Queda un saldo pendiente de 600,00\xa0US$ en la factura INV-1042."),
])
def test_partial_payment_names_the_balance_in_each_language(locale, owed, still_owed):
    mail = words(locale=locale, balance=Money.of("600", "USD"), settlement=Settlement.PARTIAL)
    assert still_owed in mail.text
    assert f"<strong>{owed}</strong>" in mail.html


def test_a_date_only_payment_shows_the_day_and_no_invented_time():
    midnight = datetime(2026, 11, 28, tzinfo=UTC)
    english = words(paid_at=midnight, date_only=True, timezone="America/Los_Angeles")
    spanish = words(paid_at=midnight, date_only=True, timezone="America/Mexico_City", locale="es-MX")
    assert "Paid on: November 28, 2026\n" in english.text  # not the 27th, as Los Angeles' 16:00 would be
    assert "Fecha de pago: 28 de noviembre de 2026\n" in spanish.text
    assert "00:00" not in english.text + spanish.text and "UTC" not in english.text


def test_without_a_customer_time_zone_the_business_one_is_used():
    assert "Received: November 28, 2026, 12:05\u202fPM CST" in words().text
    assert "Received: November 28, 2026, 6:05\u202fPM UTC" in words(business=Business()).text


def test_no_business_identity_no_empty_signature_lines():
    mail = words(business=Business(), details={}, payment_ref=None)
    assert mail.text.splitlines()[-1] == "Received: November 28, 2026, 6:05\u202fPM UTC"
    assert "Questions" not in mail.text and "Method" not in mail.text and "<img" not in mail.html


@pytest.mark.parametrize(("details", "locale", "method"), [
    ({"method": "card", "card_brand": "MASTERCARD", "card_last4": "0005"}, "en-US", "Mastercard card ending in 0005"),
    ({"method": "card", "card_brand": "amex"}, "es-MX", "tarjeta American Express"),
    ({"method": "card"}, "es-MX", "tarjeta"),
    ({"method": "ach"}, "en-US", "ACH bank transfer"),
    ({"method": "check"}, "es-US", "cheque"),
    ({"method": "crypto_voucher"}, "en-US", "crypto voucher"),
    ({}, "en-US", None),
])
def test_payment_method_in_the_readers_words(details, locale, method):
    assert receipt(details=details).method(locale) == method


def test_paypal_is_named_as_the_method_even_without_details():
    assert "Method: PayPal" in words(source="paypal", details={}).text


def test_an_unknown_locale_fails_to_render_loudly():
    with pytest.raises(Exception, match="english"):
        words(locale="english")


def test_operator_templates_replace_built_ins_by_name_and_the_rest_fall_back(tmp_path: Path):
    (tmp_path / "receipt.es.txt").write_text("¡Gracias, {{ greeting_name }}! {{ amount }} · {{ business_name }}")
    english, spanish = words(templates=str(tmp_path)), words(templates=str(tmp_path), locale="es-MX")
    assert spanish.text == "¡Gracias, Ferretería Norte! $980.50 USD · Alvarez Welding"
    assert spanish.subject.startswith("Pago recibido de la factura INV-1042")  # built-in subject
    assert "Recibimos su pago" in spanish.html  # built-in HTML
    assert "We received your payment of $980.50" in english.text  # no operator file for English


def test_a_locale_specific_template_beats_the_language_one(tmp_path: Path):
    (tmp_path / "receipt.es-MX.subject.txt").write_text("Pago {{ invoice_number }} recibido")
    assert words(templates=str(tmp_path), locale="es-MX").subject == "Pago INV-1042 recibido"
    assert words(templates=str(tmp_path), locale="es-US").subject.startswith("Pago recibido de la factura")


# --- finance cards ---------------------------------------------------------------------------------------------

def card(purpose: Purpose = Purpose.FINANCE_CARD, *, buttons: bool = True, unreachable: str | None = None,
         **fields: object) -> list[dict]:
    message = Message(purpose, "C0FINANCE", receipt(**fields), unreachable=unreachable, wording=Wording(SHOP))
    return cards.FINANCE_CARDS[purpose.value](template_data(message), buttons=buttons)


def field_texts(blocks: list[dict]) -> list[str]:
    return [f["text"] for b in blocks for f in b.get("fields", [])]


def texts(blocks: list[dict]) -> str:
    return "\n".join(str(b) for b in blocks)


def test_finance_reads_money_and_time_the_business_way_whatever_the_customer_reads():
    blocks = card(locale="es-MX", timezone="Europe/Madrid", amount=Money.of("1250", "EUR"))
    assert "€1,250.00 from *Ferretería Norte*" in blocks[0]["text"]["text"]
    assert "*Received*\nNovember 28, 2026, 12:05\u202fPM CST" in field_texts(blocks)


def test_an_overpayment_says_overpaid_by_not_a_negative_balance():
    blocks = card(balance=Money.of("-200", "USD"), settlement=Settlement.OVER)
    fields = field_texts(blocks)
    assert "*Overpaid by*\n$200.00" in fields and "*Status*\nOverpaid" in fields
    assert "-$200.00" not in texts(blocks) and "Balance left" not in texts(blocks)


def test_needs_review_names_what_the_payer_quoted():
    blocks = card(Purpose.NEEDS_REVIEW, invoice_number=None, customer_id=None, payer_name="Rosa Díaz",
                  payer_email="rosa@norte.example", match_reason="no invoice INV-9999",
                  details={"quoted": "INV-9999, in_1Qabc"})
    fields = field_texts(blocks)
    assert "*Payer*\nRosa Díaz (rosa@norte.example)" in fields
    assert "*They quoted*\nINV-9999, in_1Qabc" in fields
    assert "*stripe payment id*\npi_3QxYz" in fields


def test_without_chat_ops_cards_carry_no_buttons():
    for purpose in (Purpose.FINANCE_CARD, Purpose.NEEDS_REVIEW, Purpose.REVERSAL):
        assert [b for b in card(purpose, buttons=False) if b["type"] == "actions"] == []
    assert [b["type"] for b in card()].count("actions") == 1


def test_a_customer_nobody_could_tell_is_not_paid_in_full_silence():
    blocks = card(unreachable="sms: paybot cannot send sms yet")
    assert "*Ferretería Norte was NOT told* about this payment: sms: paybot cannot send sms yet" in texts(blocks)
    text = render(Message(Purpose.FINANCE_CARD, "C0FINANCE", receipt(), unreachable="email: not configured")).text
    assert text.endswith("Paid in full. The customer was NOT told: email: not configured.")


# --- who can be reached ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("customer", "configured", "reason"), [
    (Customer("C1", "A", email="a@x.example"), {"email"}, None),
    (Customer("C1", "A", email="a@x.example", channels=("sms", "email")), {"email"}, None),
    (Customer("C1", "A", channels=("sms",)), {"email"}, "sms: paybot cannot send sms yet"),
    (Customer("C1", "A", email="a@x.example"), set(), "email: not configured"),
    (Customer("C1", "A", channels=("email", "slack")), {"email", "slack"},
     "email: no email address on file; slack: no slack_channel on file"),
])
def test_why_unreachable(customer, configured, reason):
    assert why_unreachable(customer, configured, {"email", "slack"}) == reason


def test_money_the_es_mx_way_names_the_foreign_dollar():
    assert Money.of("980.50", "USD").format("es-MX") == "$980.50 USD"
    assert Money.of("980.50", "MXN").format("es-MX") == "$980.50"
    assert Money.of("980.50", "USD").format("en-US") == "$980.50"
    assert replace(receipt(), locale="es-MX").money(Money.of("-200", "USD")) == "-$200.00 USD"


def test_the_channels_reach_exactly_the_addresses_the_reach_rule_expects():
    from bot.domain.reach import address_of
    from bot.integrations.channels import CHANNELS
    from bot.services.notify import why_unreachable as configured_reach

    people = [Customer("C1", "A"), Customer("C2", "B", email="b@x.example", slack_channel="C0B")]
    for name, factory in CHANNELS.items():
        config = factory.Settings(_env_file=None, **{f: "x" for f in factory.Settings.required})
        channel = factory(config, None)  # the address needs no HTTP
        for person in people:
            assert channel.address(person) == address_of(person, factory.serves), name
    assert configured_reach(Customer("C1", "A", email="a@x.example"), {"sendgrid"}) is None
    assert configured_reach(Customer("C1", "A", email="a@x.example"), {"slack"}) == "email: not configured"


@pytest.mark.parametrize(("name", "value", "says"), [
    ("BUSINESS_TIMEZONE", "Central", "BUSINESS_TIMEZONE: Value error, 'Central' is not an IANA time zone"),
    ("BUSINESS_LOCALE", "english", "BUSINESS_LOCALE: Value error, 'english' is not a locale"),
])
def test_a_bad_business_locale_or_time_zone_is_one_line_naming_the_setting(monkeypatch, name, value, says):
    from bot.cli import load_settings
    from bot.errors import ConfigError

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_business_settings_become_the_wording_of_every_message(monkeypatch, tmp_path: Path):
    from bot.services.notify import Notifier
    from bot.settings import Settings

    for name, value in {"BUSINESS_NAME": "Alvarez Welding", "BUSINESS_REPLY_TO": "billing@alvarez-weld.example",
                        "BUSINESS_LOCALE": "es-MX", "BUSINESS_TIMEZONE": "America/Chicago",
                        "TEMPLATES_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    wording = Notifier(Settings(_env_file=None), {}).wording
    assert wording.templates_dir == str(tmp_path)
    assert (wording.business.name, wording.business.reply_to, wording.business.locale, wording.business.timezone) == (
        "Alvarez Welding", "billing@alvarez-weld.example", "es-MX", "America/Chicago")
