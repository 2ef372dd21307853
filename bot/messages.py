"""Messages to send, and their words: Jinja2 templates in `bot/templates/`, one set per purpose."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from bot import text as surfaces
from bot.domain.parties import Customer
from bot.domain.receipt import Receipt


#: What heads a `paybot send-test` message, so nobody takes it for a payment.
TEST_NOTE = "This is a test message from our payment notifications: no payment was made and nothing is owed."


class Purpose(StrEnum):
    RECEIPT = "receipt"              # to the customer: we received your payment
    FINANCE_CARD = "finance_card"    # to staff: a matched payment, with Resend / Edit / Escalate
    NEEDS_REVIEW = "needs_review"    # to staff: a payment we could not match
    REVERSAL = "reversal"            # to staff: a refund or dispute against a payment
    DEAD_LETTER = "dead_letter"      # to staff: a message that could not be delivered
    ESCALATION = "escalation"        # to the on-call person: staff escalated a payment
    AUDIT_ANCHOR = "audit_anchor"    # to staff: the audit chain's head, published outside the database


class Surface(StrEnum):
    """Where the words land, which decides how each value filled into a template is escaped (`bot/text.py`)."""

    EMAIL = "email"  # subject (one line) and text: plain; HTML: autoescaped
    SLACK = "slack"  # text is Slack mrkdwn


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
    test: bool = False  # `paybot send-test`: marked [TEST] in the subject and the text


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


#: How each surface escapes a value filled into a template (Jinja's `finalize` runs on every `{{ … }}`, and
#: autoescape then escapes it for `.html` templates).
_ESCAPE = {Surface.EMAIL: surfaces.plain, Surface.SLACK: surfaces.slack}


@lru_cache(maxsize=None)
def _environment(surface: Surface = Surface.EMAIL) -> Environment:
    return Environment(
        loader=PackageLoader("bot", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_ESCAPE[surface],
    )


def template_data(message: Message) -> dict[str, Any]:
    return message.receipt.as_template_data() | {"note": message.note}


def render(message: Message, surface: Surface = Surface.EMAIL) -> Rendered:
    """The subject, text and HTML for a message; `text` has every value escaped for `surface` (for Slack it is
    `Mrkdwn`), subject and HTML are the email's. Staff-edited text replaces the template's text."""
    email, data = _environment(), template_data(message)
    name = message.purpose.value
    subject = surfaces.line(email.get_template(f"{name}.subject.txt").render(data))
    text = _marked(message, _words(message, Surface.EMAIL, data))
    if message.test:
        subject = f"[TEST] {subject}"
    has_html = f"{name}.html" in email.list_templates() and not message.text_override and not message.test
    html = email.get_template(f"{name}.html").render(data) if has_html else email.get_template("text.html").render(text=text)
    if surface is Surface.SLACK:
        text = surfaces.Mrkdwn(_marked(message, _words(message, surface, data)))  # every value went through `finalize`
    return Rendered(subject=subject, text=text, html=html)


def _marked(message: Message, words: str) -> str:
    """`paybot send-test`'s words say first that they are a test (TEST_NOTE is ours: nothing in it to escape)."""
    return f"[TEST] {TEST_NOTE}\n\n{words}" if message.test else words


def _words(message: Message, surface: Surface, data: dict[str, Any]) -> str:
    if message.text_override:
        return _ESCAPE[surface](message.text_override).strip()
    return _environment(surface).get_template(f"{message.purpose.value}.txt").render(data).strip()


def render_slack_text(purpose: Purpose, **data: Any) -> surfaces.Mrkdwn:
    """A Slack message about no payment (e.g. the audit anchor): its text template alone, every value escaped."""
    return surfaces.Mrkdwn(_environment(Surface.SLACK).get_template(f"{purpose.value}.txt").render(data).strip())
