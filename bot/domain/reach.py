"""Whether a customer can be told about a payment at all, under today's configuration, and if not, why.

Used at payment time (an `notification.undeliverable` audit entry and a finance card that says the customer was
not told), at import (a warning per customer) and by `paybot check` (the list of customers nobody can reach).
"""

from __future__ import annotations

from collections.abc import Collection

from bot.domain.parties import Customer

#: Which customer field each channel preference sends to (push: the customer's id is the device user).
ADDRESS_FIELDS = {
    "email": "email", "sms": "phone", "whatsapp": "phone", "push": "id", "slack": "slack_channel",
    "teams": "teams_conversation", "hubspot": "email", "activecampaign": "email", "klaviyo": "email",
    "intercom": "email",
}
_FIELD_NAMES = {"email": "email address", "phone": "phone number", "slack_channel": "slack_channel",
                "teams_conversation": "teams_conversation", "id": "id"}


def address_of(customer: Customer, preference: str) -> str | None:
    """Where `preference` reaches this customer, or None when the customer has nothing on file for it."""
    field = ADDRESS_FIELDS.get(preference)
    value = getattr(customer, field) if field else None
    return value or None


def why_unreachable(customer: Customer, configured: Collection[str], supported: Collection[str]) -> str | None:
    """None when at least one of the customer's channels can reach them; otherwise why none can, one reason per
    channel, in their order of preference, e.g. "sms: paybot cannot send sms yet; email: no email address on file".

    `configured`: the preferences (`email`, `slack`, …) a configured channel serves now; `supported`: those some
    channel of paybot's can serve once configured.
    """
    reasons = []
    for preference in customer.channels:
        if preference not in supported:
            reasons.append(f"{preference}: paybot cannot send {preference} yet")
        elif preference not in configured:
            reasons.append(f"{preference}: not configured")
        elif address_of(customer, preference) is None:
            field = ADDRESS_FIELDS[preference]
            reasons.append(f"{preference}: no {_FIELD_NAMES.get(field, field)} on file")
        else:
            return None
    return "; ".join(reasons) or "no channels"
