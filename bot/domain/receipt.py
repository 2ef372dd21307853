"""What an acknowledgement says: the facts every channel's template and card render."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.matching import Settlement
from bot.domain.money import Money
from bot.domain.payments import PaymentKind


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

    @property
    def matched(self) -> bool:
        return self.invoice_number is not None

    @property
    def partial(self) -> bool:
        return self.settlement is Settlement.PARTIAL

    def money(self, value: Money | None) -> str:
        return value.format(self.locale) if value is not None else ""

    def as_template_data(self) -> dict[str, object]:
        """Plain values for templates and cards; money already formatted for the customer's locale."""
        return {
            "payment_id": self.payment_id,
            "kind": self.kind.value,
            "source": self.source,
            "amount": self.money(self.amount),
            "paid_at": self.paid_at.strftime("%Y-%m-%d %H:%M UTC"),
            "customer_id": self.customer_id,
            "customer_name": self.customer_name or "unknown customer",
            "greeting_name": self.customer_name or "there",
            "invoice_number": self.invoice_number,
            "invoice_total": self.money(self.invoice_total),
            "balance": self.money(self.balance),
            "settlement": self.settlement.value if self.settlement else None,
            "partial": self.partial,
            "overpaid": self.settlement is Settlement.OVER,
            "credit": self.money(-self.balance) if self.balance is not None and self.balance.minor < 0 else "",
            "match_reason": self.match_reason,
            "payer_email": self.payer_email,
        }
