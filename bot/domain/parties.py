"""Customers and the invoices we track for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from bot.domain.money import Money

#: Customer-facing channel preferences, as customers.csv spells them.
CUSTOMER_CHANNELS = (
    "email", "sms", "whatsapp", "push", "slack", "teams", "hubspot", "activecampaign", "klaviyo", "intercom",
)


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    email: str | None = None
    phone: str | None = None  # E.164
    country: str = "US"
    locale: str = "en-US"
    timezone: str | None = None  # IANA name (America/Mexico_City); None: the business's time zone
    channels: tuple[str, ...] = ("email",)
    slack_channel: str | None = None
    teams_conversation: str | None = None
    external_ids: dict[str, str] = field(default_factory=dict)  # source -> id on that platform


class InvoiceStatus(StrEnum):
    OPEN = "open"
    PARTIAL = "partial"
    PAID = "paid"


@dataclass(frozen=True, slots=True)
class Invoice:
    number: str
    customer_id: str
    amount: Money
    paid: Money  # everything acknowledged against it so far
    issued_on: date | None = None
    due_on: date | None = None
    external_ids: dict[str, str] = field(default_factory=dict)

    @property
    def balance(self) -> Money:
        return self.amount - self.paid

    @property
    def status(self) -> InvoiceStatus:
        if self.paid.minor <= 0:
            return InvoiceStatus.OPEN
        return InvoiceStatus.PAID if self.balance.minor <= 0 else InvoiceStatus.PARTIAL
