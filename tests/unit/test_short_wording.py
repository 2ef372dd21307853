"""The short renderings of one wording: SMS (at most two segments in every locale, GSM-7 vs UCS-2), push, WhatsApp
template parameters; en-US, es-MX and es-US, money by babel (pure: no database, no network)."""

from __future__ import annotations

import pytest

from bot.domain import sms
from bot.domain.business import Business
from bot.domain.money import Money
from bot.messages import Message, Purpose, Wording, render_push, render_sms, whatsapp_parameters
from tests.unit.test_wording import SHOP, receipt

LONG_NAMES = [
    "Soldaduras y Herrería Industrial del Norte de Nuevo León, S.A. de C.V. (Planta Apodaca)",
    "Maximiliano Bartolomé Hernández-Villarreal de la Garza y Montemayor",
    "Ωmega Fabrication & Steel Works 株式会社 — Laredo Yard #4",
    "A" * 200,
]


def text(locale: str = "en-US", business: Business = SHOP, **fields: object) -> str:
    message = Message(Purpose.RECEIPT, "+15125550123", receipt(locale=locale, **fields), wording=Wording(business))
    return render_sms(message)


def test_english_sms():
    assert text() == ("Alvarez Welding: Thank you, Ferretería Norte! We received your payment of $980.50 for invoice "
                      "INV-1042. Paid in full.")


def test_spanish_sms_for_es_mx_keeps_its_accents_when_they_fit():
    words = text("es-MX", customer_name="Ana")
    assert words == ("Alvarez Welding: ¡Gracias, Ana! Recibimos su pago de $980.50 USD para la factura INV-1042. "
                     "Factura pagada en su totalidad.")
    assert sms.encoding(words) == "GSM-7" and sms.segments(words) == 1  # ¡ and á-free: GSM-7


def test_es_us_and_partial_payment():
    words = text("es-US", customer_name="Ana", balance=Money.of("120.00", "USD"), amount=Money.of("860.50", "USD"),
                 settlement=None)
    assert "Recibimos su pago de $860.50" in words
    partial = text("es-US", customer_name="Ana", balance=Money.of("120.00", "USD"),
                   settlement=__import__("bot.domain.matching", fromlist=["Settlement"]).Settlement.PARTIAL)
    assert partial.endswith("Saldo pendiente: $120.00.")


@pytest.mark.parametrize("locale", ["en-US", "es-MX", "es-US"])
@pytest.mark.parametrize("name", LONG_NAMES)
def test_every_payment_sms_fits_in_two_segments(locale, name):
    long_business = Business(name="Talleres de Soldadura Álvarez e Hijos — Servicio Industrial Pesado 24/7")
    for business in (SHOP, long_business):
        words = text(locale, business, customer_name=name, invoice_number="INV-2026-000104299")
        assert sms.segments(words) <= 2, (sms.encoding(words), len(words), words)
        assert "INV-2026-000104299" in words and ("$980.50" in words)


def test_accents_outside_gsm_are_kept_if_ucs2_fits_else_written_the_gsm_way():
    short = text("es-MX", Business(), customer_name="Begoña Ibáñez")
    assert "Ibáñez" in short and sms.encoding(short) == "UCS-2" and sms.segments(short) <= 2
    long = text("es-MX", customer_name="José María Ibáñez de la Fuente y Gutiérrez",
                business=Business(name="Soldaduras Martínez del Río"))
    assert sms.segments(long) <= 2
    assert sms.encoding(long) == "GSM-7" or "Ibáñez" in long


def test_outside_text_cannot_break_the_sms():
    words = text(customer_name="Eve\nSTOP\u202e\x07 now")
    assert "\n" not in words and "\u202e" not in words and "\x07" not in words


def test_segments_count_like_carriers():
    assert sms.segments("a" * 160) == 1 and sms.segments("a" * 161) == 2 and sms.segments("a" * 306) == 2
    assert sms.segments("a" * 307) == 3
    assert sms.segments("€" * 80) == 1 and sms.segments("€" * 81) == 2  # extension characters cost two
    assert sms.segments("á" * 70) == 1 and sms.segments("á" * 71) == 2 and sms.segments("á" * 134) == 2
    assert sms.segments("😀" * 35) == 1 and sms.segments("😀" * 36) == 2  # two UTF-16 units each
    assert sms.gsm_friendly("“Ibáñez” – 5\u202f%…") == '"Ibañez" - 5 %...'


def test_push_and_whatsapp_parameters_in_each_language():
    message = Message(Purpose.RECEIPT, "C1", receipt(locale="es-MX"), wording=Wording(SHOP))
    title, body = render_push(message)
    assert title == "Pago recibido de la factura INV-1042: gracias (Alvarez Welding)"
    # 135 characters: as UCS-2 (í) three segments, so written GSM-7 (i, ¡ kept) in two
    assert body.startswith("Alvarez Welding: ¡Gracias, Ferreteria Norte! Recibimos su pago de $980.50 USD")
    assert sms.encoding(body) == "GSM-7" and sms.segments(body) == 1
    assert whatsapp_parameters(message) == ["Ferretería Norte", "INV-1042", "$980.50 USD", "$0.00 USD"]
    english = Message(Purpose.RECEIPT, "C1", receipt(), wording=Wording(SHOP))
    assert whatsapp_parameters(english) == ["Ferretería Norte", "INV-1042", "$980.50", "$0.00"]
    assert render_push(english)[0] == "Payment received for invoice INV-1042 — thank you (Alvarez Welding)"


def test_test_messages_are_marked_in_the_sms():
    message = Message(Purpose.RECEIPT, "+15125550123", receipt(), wording=Wording(SHOP), test=True)
    assert render_sms(message).startswith("[TEST] Alvarez Welding: Thank you")
