"""What an acknowledgement says: the facts every channel's template and card render, written for one reader
(the customer, in their locale and time zone; finance, in the business's)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time, get_timezone_name

from bot.domain.matching import Settlement
from bot.domain.money import Money, babel_locale
from bot.domain.payments import PaymentKind

#: How a payment method reads, per language; the rest of the wording is in the templates.
METHODS = {
    "en": {"card": "card", "bank_transfer": "bank transfer", "ach": "ACH bank transfer", "cash": "cash",
           "check": "check", "paypal": "PayPal", "wallet": "digital wallet", "other": "other"},
    "es": {"card": "tarjeta", "bank_transfer": "transferencia bancaria", "ach": "transferencia ACH",
           "cash": "efectivo", "check": "cheque", "paypal": "PayPal", "wallet": "billetera digital", "other": "otro"},
}
CARD_ENDING = {"en": "{brand} card ending in {last4}", "es": "tarjeta {brand} terminada en {last4}"}
CARD_OF = {"en": "{brand} card", "es": "tarjeta {brand}"}
BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "american_express": "American Express",
          "discover": "Discover", "diners": "Diners Club", "jcb": "JCB", "unionpay": "UnionPay",
          "china_unionpay": "UnionPay", "interac": "Interac", "eftpos": "eftpos"}


@dataclass(frozen=True, slots=True)
class Receipt:
    payment_id: int
    kind: PaymentKind
    source: str
    amount: Money
    paid_at: datetime
    customer_id: str | None
    customer_name: str | None
    locale: str
    invoice_number: str | None
    invoice_total: Money | None
    balance: Money | None
    settlement: Settlement | None
    match_reason: str
    payer_email: str | None = None
    timezone: str | None = None       # the customer's IANA time zone, if known
    date_only: bool = False           # the platform said which day, not when: show no time
    payment_ref: str | None = None    # the platform's id of the payment: AP departments reconcile on it
    details: Mapping[str, str] | None = None  # platform facts: method, card_brand, card_last4, quoted, …
    payer_name: str | None = None

    @property
    def matched(self) -> bool:
        return self.invoice_number is not None

    @property
    def partial(self) -> bool:
        return self.settlement is Settlement.PARTIAL

    def money(self, value: Money | None, locale: str | None = None) -> str:
        return value.format(locale or self.locale) if value is not None else ""

    def when(self, locale: str, timezone: str) -> str:
        """The payment's day (and time, when the platform gave one) where the reader is."""
        tag = babel_locale(locale.replace("-", "_"))
        if self.date_only:
            return format_date(self.paid_at.date(), "long", locale=tag)
        local = self.paid_at.astimezone(ZoneInfo(timezone))
        zone = get_timezone_name(local, "short", locale=tag)
        if zone[:1] in "+-":  # no abbreviation in this language: "hora estándar central" rather than "-0600"
            zone = get_timezone_name(local, "long", locale=tag)
        return f"{format_date(local.date(), 'long', locale=tag)}, {format_time(local, 'short', locale=tag)} {zone}"

    def method(self, locale: str) -> str | None:
        """How the customer paid, as the platform said: "Visa card ending in 4242", "PayPal", …"""
        details, lang = self.details or {}, locale.replace("_", "-").split("-")[0].lower()
        words = METHODS.get(lang, METHODS["en"])
        method = details.get("method") or ("paypal" if self.source == "paypal" else None)
        brand = details.get("card_brand", "")
        brand = BRANDS.get(brand.lower(), brand.replace("_", " ").title())
        if brand and details.get("card_last4"):
            return CARD_ENDING.get(lang, CARD_ENDING["en"]).format(brand=brand, last4=details["card_last4"])
        if brand and method in (None, "card"):
            return CARD_OF.get(lang, CARD_OF["en"]).format(brand=brand)
        return words.get(method, method.replace("_", " ")) if method else None

    def as_template_data(self, locale: str | None = None, timezone: str | None = None) -> dict[str, object]:
        """Plain values for templates and cards, money and time written for the reader: by default the customer
        (their locale and time zone); finance passes the business's."""
        locale = locale or self.locale
        details = self.details or {}
        over = self.settlement is Settlement.OVER
        return {
            "payment_id": self.payment_id,
            "kind": self.kind.value,
            "source": self.source,
            "amount": self.money(self.amount, locale),
            "paid_at": self.when(locale, timezone or self.timezone or "UTC"),
            "date_only": self.date_only,
            "customer_id": self.customer_id,
            "customer_name": self.customer_name or "unknown customer",
            "greeting_name": self.customer_name or "",
            "invoice_number": self.invoice_number,
            "invoice_total": self.money(self.invoice_total, locale),
            "balance": self.money(self.balance, locale) if not over else "",
            "settlement": self.settlement.value if self.settlement else None,
            "partial": self.partial,
            "overpaid": over,
            "credit": self.money(-self.balance, locale) if self.balance is not None and self.balance.minor < 0 else "",
            "match_reason": self.match_reason,
            "payer_email": self.payer_email,
            "payer_name": self.payer_name,
            "payment_ref": self.payment_ref,
            "payment_method": self.method(locale),
            "quoted": details.get("quoted"),
        }
