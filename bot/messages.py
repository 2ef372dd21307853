"""Messages to send, and their words: Jinja2 templates in `bot/templates/`, one set per purpose."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from bot.domain.parties import Customer
from bot.domain.receipt import Receipt


class Purpose(StrEnum):
    RECEIPT = "receipt"              # to the customer: we received your payment
    FINANCE_CARD = "finance_card"    # to staff: a matched payment, with Resend / Edit / Escalate
    NEEDS_REVIEW = "needs_review"    # to staff: a payment we could not match
    REVERSAL = "reversal"            # to staff: a refund or dispute against a payment
    DEAD_LETTER = "dead_letter"      # to staff: a message that could not be delivered
    ESCALATION = "escalation"        # to the on-call person: staff escalated a payment
    AUDIT_ANCHOR = "audit_anchor"    # to staff: the audit chain's head, published outside the database


class Audience(StrEnum):
    CUSTOMER = "customer"
    FINANCE = "finance"


@dataclass(frozen=True, slots=True)
class Message:
    purpose: Purpose
    recipient: str  # the channel's address: an email, a phone, a Slack channel id, …
    receipt: Receipt
    customer: Customer | None = None
    note: str | None = None  # free text: an edit by staff, a dead-letter reason
    text_override: str | None = None  # staff-edited wording replacing the template's text


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("bot", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def template_data(message: Message) -> dict[str, Any]:
    return message.receipt.as_template_data() | {"note": message.note}


def render(message: Message) -> Rendered:
    """The subject, plain text and HTML for a message; staff-edited text replaces the template's text."""
    env, data = _environment(), template_data(message)
    name = message.purpose.value
    subject = env.get_template(f"{name}.subject.txt").render(data).strip()
    text = message.text_override or env.get_template(f"{name}.txt").render(data).strip()
    has_html = f"{name}.html" in env.list_templates() and not message.text_override
    html = env.get_template(f"{name}.html").render(data) if has_html else env.get_template("text.html").render(text=text)
    return Rendered(subject=subject, text=text, html=html)


def render_text(purpose: Purpose, **data: Any) -> str:
    """A message that is about no payment (e.g. the audit anchor): its plain-text template alone."""
    return _environment().get_template(f"{purpose.value}.txt").render(data).strip()
