"""Who is speaking: the business's identity, signed on every message, and how it reads money and time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Business:
    name: str | None = None
    address: str | None = None
    phone: str | None = None
    reply_to: str | None = None   # where a customer's answer to a receipt goes
    logo_url: str | None = None
    locale: str = "en-US"         # finance cards: money and dates shown one way, whatever the customer's
    timezone: str = "UTC"         # IANA name: times for finance, and for customers without a time zone

    def as_template_data(self) -> dict[str, str | None]:
        return {"business_name": self.name, "business_address": self.address, "business_phone": self.phone,
                "business_reply_to": self.reply_to, "business_logo_url": self.logo_url}
