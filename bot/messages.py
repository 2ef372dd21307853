"""Messages to send, and their words: Jinja2 templates, one set per purpose and language.

A template is looked up as `{purpose}.{locale}.{part}`, then `{purpose}.{language}.{part}`, then
`{purpose}.{part}` (English), where part is `subject.txt`, `txt` or `html`: `receipt.es-MX.txt`, `receipt.es.txt`,
`receipt.txt`. The operator's folder (`TEMPLATES_DIR`) is searched before the built-in `bot/templates/`, so a file
there of the same name replaces a built-in one and everything else keeps the built-in wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from jinja2 import (ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined, Template,
                    TemplatesNotFound, select_autoescape)

from bot import shapes, text as surfaces
from bot.domain import sms
from bot.domain.business import Business
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
    UNRESOLVED = "unresolved"        # to staff: a platform's notification paybot gave up reading (issue #9)
    CONNECTION_LOST = "connection_lost"  # to staff: a platform's authorisation is gone; run `paybot connect`
    SUBSCRIPTION_FAILED = "subscription_failed"  # to staff: a Business Central subscription could not be renewed


class Surface(StrEnum):
    """Where the words land, which decides how each value filled into a template is escaped (`bot/text.py`)."""

    EMAIL = "email"  # subject (one line) and text: plain; HTML: autoescaped
    SLACK = "slack"  # text is Slack mrkdwn
    SHORT = "short"  # SMS, push, WhatsApp parameters: one line of plain text per value


class Audience(StrEnum):
    CUSTOMER = "customer"
    FINANCE = "finance"


@dataclass(frozen=True, slots=True)
class Wording:
    """How this shop's messages read: who signs them, and the operator's templates folder, if any."""

    business: Business = Business()
    templates_dir: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    purpose: Purpose
    recipient: str  # the channel's address: an email, a phone, a Slack channel id, …
    receipt: Receipt
    customer: Customer | None = None
    note: str | None = None  # free text: an edit by staff, a dead-letter reason
    text_override: str | None = None  # staff-edited wording replacing the template's text
    test: bool = False  # `paybot send-test`: marked [TEST] in the subject and the text
    unreachable: str | None = None  # finance: why the customer could not be told (no usable channel)
    wording: Wording = Wording()  # set by the Notifier from the settings

    @property
    def audience(self) -> Audience:
        return Audience.CUSTOMER if self.purpose is Purpose.RECEIPT else Audience.FINANCE

    @property
    def locale(self) -> str:
        """The reader's: the customer's for their messages, the business's for finance (one way for all)."""
        return self.receipt.locale if self.audience is Audience.CUSTOMER else self.wording.business.locale

    @property
    def timezone(self) -> str:
        business = self.wording.business.timezone
        return (self.receipt.timezone or business) if self.audience is Audience.CUSTOMER else business


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


#: How each surface escapes a value filled into a template (Jinja's `finalize` runs on every `{{ … }}`, and
#: autoescape then escapes it for `.html` templates).
_ESCAPE = {Surface.EMAIL: surfaces.plain, Surface.SLACK: surfaces.slack, Surface.SHORT: surfaces.line}


@lru_cache(maxsize=16)
def _environment(templates_dir: str | None, surface: Surface = Surface.EMAIL) -> Environment:
    builtin = PackageLoader("bot", "templates")
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(templates_dir), builtin]) if templates_dir else builtin,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_ESCAPE[surface],
        auto_reload=False,  # templates are read once per process: restart after editing them (README)
    )


@lru_cache(maxsize=1024)
def _names(purpose: str, locale: str, part: str) -> tuple[str, ...]:
    return tuple(template_names(purpose, locale, part))


def template_names(purpose: str, locale: str, part: str) -> list[str]:
    """Most specific first: `receipt.es-MX.txt`, `receipt.es.txt`, `receipt.txt`."""
    tag = locale.replace("_", "-")
    language = tag.split("-")[0].lower()
    return list(dict.fromkeys([f"{purpose}.{tag}.{part}", f"{purpose}.{language}.{part}", f"{purpose}.{part}"]))


def template_data(message: Message) -> dict[str, Any]:
    """Everything a template or card may use (README: "Customising the wording" lists it)."""
    receipt_data = message.receipt.as_template_data(message.locale, message.timezone)
    return receipt_data | message.wording.business.as_template_data() | {
        "note": message.note, "unreachable": message.unreachable, "locale": message.locale.replace("_", "-")}


def render(message: Message, surface: Surface = Surface.EMAIL) -> Rendered:
    """The subject, text and HTML for a message; `text` has every value escaped for `surface` (for Slack it is
    `Mrkdwn`), subject and HTML are the email's. Staff-edited text replaces the template's text.

    Raises whatever a template or the reader's locale raises (an unknown locale, a template error): the caller
    records that as a failed notification."""
    email, data = _environment(message.wording.templates_dir), template_data(message)
    subject = surfaces.line(shapes.render(_template(email, message, "subject.txt"), data))
    if message.test:
        subject = f"[TEST] {subject}"
    text = _marked(message, _words(message, Surface.EMAIL, data))
    html_template = None
    if not message.text_override and not message.test:
        try:
            html_template = _template(email, message, "html")
        except TemplatesNotFound:
            pass
    html = (shapes.render(html_template, data) if html_template is not None
            else email.get_template("text.html").render(text=text))
    if surface is Surface.SLACK:
        text = surfaces.Mrkdwn(_marked(message, _words(message, surface, data)))  # every value went through `finalize`
    return Rendered(subject=subject, text=text, html=html)


def _marked(message: Message, words: str) -> str:
    """`paybot send-test`'s words say first that they are a test (TEST_NOTE is ours: nothing in it to escape)."""
    return f"[TEST] {TEST_NOTE}\n\n{words}" if message.test else words


def _words(message: Message, surface: Surface, data: dict[str, Any]) -> str:
    if message.text_override:
        return _ESCAPE[surface](message.text_override).strip()
    return shapes.render(_template(_environment(message.wording.templates_dir, surface), message, "txt"),
                         data).strip()


def _template(env: Environment, message: Message, part: str) -> Template:
    """The most specific template there is for the message's purpose and reader (see `template_names`)."""
    names = _names(message.purpose.value, message.locale, part)
    found = _selected(env, names)
    if found is None:
        raise TemplatesNotFound(list(names))
    return found


@lru_cache(maxsize=1024)
def _selected(env: Environment, names: tuple[str, ...]) -> Template | None:
    """Which template answers to `names`, decided once per process: Jinja caches the templates it found, not the
    more specific names it looked for in vain, and looking for those again (a file each) on every message, with
    every found template's file checked for changes, was a third of what writing a message cost."""
    try:
        return env.select_template(list(names))
    except TemplatesNotFound:
        return None


def render_slack_text(purpose: Purpose, **data: Any) -> surfaces.Mrkdwn:
    """A Slack message about no payment (e.g. the audit anchor): its text template alone, every value escaped."""
    return surfaces.Mrkdwn(_environment(None, Surface.SLACK).get_template(f"{purpose.value}.txt").render(data).strip())


# Short renderers: the same facts and the same template lookup, for channels with little room. An SMS is
# `{purpose}.sms.txt` (`receipt.es.sms.txt`, …), a push notification's body the same words and its title the
# email's subject, WhatsApp's template the values alone (its wording lives at Meta, per language).

#: A payment SMS never costs more than this many segments, in any language (see `bot.domain.sms`).
SMS_MAX_SEGMENTS = 2
TEST_MARK = "[TEST] "


def render_sms(message: Message, max_segments: int = SMS_MAX_SEGMENTS) -> str:
    """The message as one SMS of at most `max_segments` segments. It keeps the customer's spelling when that fits
    (UCS-2 for `á`); else it is written GSM-7 (`a`); else the name is shortened to its first word, then left out,
    then the business name; at last the text is cut."""
    text = ""
    for data in _short_variants(message):
        text = _short_words(message, "sms.txt", data)
        fitted = sms.fit(text, max_segments)
        if fitted is not None:
            return fitted
    return sms.cut(text, max_segments)


def render_push(message: Message) -> tuple[str, str]:
    """A push notification's title and body: the email subject and the SMS words (both short by design)."""
    subject = render(message).subject
    return subject, render_sms(message)


def whatsapp_parameters(message: Message) -> list[str]:
    """The approved template's body parameters, in order: name, invoice, amount, balance (money in the reader's
    locale; one line of plain text each, as WhatsApp refuses new lines in a parameter)."""
    data = template_data(message)
    values = (data["greeting_name"] or data["customer_name"], data["invoice_number"] or "—", data["amount"],
              data["balance"] or data["credit"] or "—")
    return [surfaces.line(v) or "—" for v in values]


def _short_variants(message: Message) -> list[dict[str, Any]]:
    data = template_data(message)
    name = str(data.get("greeting_name") or "").split()
    return [data, data | {"greeting_name": name[0][:20] if name else ""}, data | {"greeting_name": ""},
            data | {"greeting_name": "", "business_name": None}]


def _short_words(message: Message, part: str, data: dict[str, Any]) -> str:
    if message.text_override:
        words = surfaces.line(message.text_override)
    else:
        env = _environment(message.wording.templates_dir, Surface.SHORT)
        words = " ".join(shapes.render(_template(env, message, part), data).split())
    return TEST_MARK + words if message.test else words
