"""`paybot preview INVOICE [--customer ID]`: a payment's acknowledgement as each of the customer's channels would
carry it (email subject and text, SMS with its encoding and segments, push, WhatsApp parameters, Slack), rendered
from the one wording and sent nowhere.

The invoice's latest payment is shown; an invoice without one is previewed as paid now for its open balance.
`--customer` reads it as another customer would (their language, time zone and channels). No provider is called and
no worker runs; on a fresh directory the SQLite file is created empty and the answer says what to import.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import contact, reach, sms
from bot.domain.matching import Settlement
from bot.domain.money import Money
from bot.domain.parties import Customer
from bot.domain.payments import PaymentKind
from bot.domain.receipt import Receipt
from bot.errors import ConfigError
from bot.integrations.channels import CHANNELS
from bot.messages import (Message, Purpose, Surface, Wording, render, render_push, render_sms,
                          whatsapp_parameters)
from bot.services import receipts
from bot.services.notify import redact
from bot.settings import Settings
from bot.storage import models, repo
from bot.storage.connect import open_database
from bot.text import plain


@dataclass(frozen=True, slots=True)
class Preview:
    title: str
    sections: list[tuple[str, str]]  # (heading, what the channel would carry)

    def text(self) -> str:
        return "\n\n".join([self.title, *(f"== {heading}\n{body}" for heading, body in self.sections)]) + "\n"


async def cmd_preview(settings: Settings, args: argparse.Namespace) -> int:
    db = await open_database(settings.database_url, audit_keys=settings.audit_keyring())
    try:
        async with db.read() as session:
            receipt, customer, note = await _payment(session, args.invoice, args.customer, db.clock)
    finally:
        await db.dispose()
    print(preview(receipt, customer, settings, note).text(), end="")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("preview", help="render a payment's acknowledgement on every channel of the "
                                  "customer; sends nothing")
    command.add_argument("invoice", help="the invoice number, as printed")
    command.add_argument("--customer", metavar="ID", help="read it as this customer would (default: the invoice's)")
    command.set_defaults(run=cmd_preview)


async def _payment(session: AsyncSession, number: str, customer_id: str | None,
                   clock: Callable[[], object]) -> tuple[Receipt, Customer, str]:
    invoice = await repo.invoice_named(session, number)
    if invoice is None:
        empty = await session.scalar(select(models.Invoice.id).limit(1)) is None
        hint = ("the database has no invoices yet: import them first (paybot import customers FILE.csv, then "
                "paybot import invoices FILE.csv)" if empty else "check the number (paybot find, /payments find)")
        raise ConfigError(f"no invoice {plain(number)!r}: {hint}")
    payment_id = await session.scalar(select(models.Payment.id).where(
        models.Payment.invoice_id == invoice.id, models.Payment.kind == PaymentKind.PAYMENT.value,
        models.Payment.duplicate_of.is_(None)).order_by(models.Payment.occurred_at.desc(), models.Payment.id.desc()))
    loaded = await receipts.load(session, payment_id) if payment_id is not None else None
    if loaded is not None:
        receipt, owner = loaded
        note = f"payment #{payment_id}"
    else:
        owners = await repo.customers_by_id(session, [invoice.customer_id])
        owner = owners[0] if owners else None
        [parsed] = await repo.invoices(session, [invoice])
        due = parsed.balance if parsed.balance.minor > 0 else parsed.amount
        receipt = Receipt(payment_id=0, kind=PaymentKind.PAYMENT, source="preview", amount=due,
                          paid_at=clock(), customer_id=invoice.customer_id,  # type: ignore[arg-type]
                          customer_name=owner.name if owner else None, locale=owner.locale if owner else "en-US",
                          invoice_number=invoice.number, invoice_total=parsed.amount,
                          balance=Money.zero(due.currency), settlement=Settlement.FULL,
                          match_reason="paybot preview", timezone=owner.timezone if owner else None)
        note = f"no payment recorded yet: as if {due.format('en-US')} were paid now"
    customer = owner
    if customer_id is not None:
        found = await repo.customers_by_id(session, [customer_id])
        if not found:
            raise ConfigError(f"--customer {plain(customer_id)!r}: no such customer (paybot import customers FILE.csv)")
        customer = found[0]
    if customer is None:
        raise ConfigError(f"invoice {invoice.number}'s customer {invoice.customer_id!r} is not on file")
    receipt = replace(receipt, customer_id=customer.id, customer_name=customer.name, locale=customer.locale,
                      timezone=customer.timezone)
    return receipt, customer, note


def preview(receipt: Receipt, customer: Customer, settings: Settings, note: str) -> Preview:
    wording = Wording(business=settings.business, templates_dir=settings.templates_dir)
    title = (f"Acknowledgement of {note} on invoice {receipt.invoice_number} ({receipt.money(receipt.amount)}) to "
             f"{customer.id} ({plain(customer.name)}), {customer.locale}, time zone "
             f"{customer.timezone or settings.business_timezone} — a preview: nothing is sent.")
    sections = []
    for preference in customer.channels:
        address = reach.address_of(customer, preference)
        message = Message(Purpose.RECEIPT, address or "", receipt, customer, wording=wording)
        heading = f"{preference} ({_carrier(preference, settings)}; to {_address(preference, address, customer)})"
        try:
            sections.append(_render(preference, message, heading))
        except Exception as exc:  # a broken operator template or an unknown locale: say so, show the rest
            sections.append((heading, f"(cannot be written: {type(exc).__name__}: {exc})"))
    return Preview(title, sections or [("(no channels)", "the customer has no channels on file")])


def _render(preference: str, message: Message, heading: str) -> tuple[str, str]:
    if preference == "sms":
        text = render_sms(message)
        return (f"{heading} — {sms.encoding(text)}, {sms.segments(text)} segment(s), {len(text)} characters",
                text)
    if preference == "push":
        title, body = render_push(message)
        return heading, f"Title: {title}\n{body}"
    if preference == "whatsapp":
        values = "\n".join(f"{{{{{i}}}}} {v}" for i, v in enumerate(whatsapp_parameters(message), 1))
        return f"{heading} — template parameters, language {message.locale.replace('-', '_')}", values
    if preference == "slack":
        return heading, str(render(message, Surface.SLACK).text)
    email = render(message)
    return heading, f"Subject: {email.subject}\n\n{email.text}"


def _carrier(preference: str, settings: Settings) -> str:
    """Which provider would carry it, and whether it is configured."""
    from bot.runtime import integration_settings

    providers = [name for name, factory in CHANNELS.items() if factory.serves == preference]
    if not providers:
        return f"paybot cannot send {preference} yet"
    if preference == "email" and settings.email_provider in providers:
        providers = [settings.email_provider]
    for name in providers:
        config = integration_settings(None, name, CHANNELS[name].Settings)
        if config is not None and not config.missing():
            return f"via {name}"
    return f"via {providers[0]}, not configured"


def _address(preference: str, address: str | None, customer: Customer) -> str:
    if not address:
        return f"nothing on file: the {reach.ADDRESS_FIELDS.get(preference, preference)} is empty, so it is skipped"
    if reach.ADDRESS_FIELDS.get(preference) == "phone":
        try:
            address = contact.phone_e164(address, customer.country)
        except ValueError:
            return f"{redact(address)}, which does not parse as a {customer.country} number: skipped"
    return redact(address)
