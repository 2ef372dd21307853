"""Customers and invoices: upserts, and the CSV imports of the contract (bad rows reported by line)."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

import phonenumbers

from bot.domain.money import Money
from bot.domain.parties import CUSTOMER_CHANNELS, Customer
from bot.storage import models, repo
from bot.storage.database import UnitOfWork

CUSTOMER_COLUMNS = {"id", "name", "email", "phone", "country", "locale", "channels", "slack_channel",
                    "teams_conversation", "external_ids"}
INVOICE_COLUMNS = {"number", "customer_id", "amount", "currency", "issued_on", "due_on", "external_ids"}


class RowError(ValueError):
    """One CSV row is wrong; the message names the column."""


@dataclass
class ImportReport:
    imported: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, message)


async def save_customer(uow: UnitOfWork, customer: Customer) -> None:
    row = await uow.session.get(models.Customer, customer.id)
    values = dict(name=customer.name, email=customer.email.lower() if customer.email else None,
                  phone=customer.phone, country=customer.country, locale=customer.locale,
                  channels=list(customer.channels), slack_channel=customer.slack_channel,
                  teams_conversation=customer.teams_conversation)
    if row is None:
        uow.session.add(models.Customer(id=customer.id, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
    await uow.session.flush()
    await repo.set_external_ids(uow.session, "customer", customer.id, customer.external_ids)


async def save_invoice(uow: UnitOfWork, number: str, customer_id: str, amount: Money, *,
                       issued_on: date | None = None, due_on: date | None = None,
                       external_ids: dict[str, str] | None = None) -> None:
    if await uow.session.get(models.Customer, customer_id) is None:
        raise RowError(f"customer_id {customer_id!r} is not a known customer")
    row = await repo.invoice_row(uow.session, number)
    if row is None:
        uow.session.add(models.Invoice(number=number, customer_id=customer_id, currency=amount.currency,
                                       amount_minor=amount.minor, paid_minor=0, issued_on=issued_on, due_on=due_on))
    else:
        if row.paid_minor and row.currency != amount.currency:
            raise RowError(f"invoice {number} has payments in {row.currency}; its currency cannot change")
        row.customer_id, row.currency, row.amount_minor = customer_id, amount.currency, amount.minor
        row.issued_on, row.due_on = issued_on, due_on
    await uow.session.flush()
    await repo.set_external_ids(uow.session, "invoice", number, external_ids or {})


def parse_external_ids(value: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(";"))):
        source, sep, external_id = item.partition(":")
        if not sep or not source.strip() or not external_id.strip():
            raise RowError(f"external_ids: {item!r} is not source:id")
        pairs[source.strip().lower()] = external_id.strip()
    return pairs


def parse_phone(value: str, country: str) -> str:
    try:
        number = phonenumbers.parse(value, country)
    except phonenumbers.NumberParseException as exc:
        raise RowError(f"phone: {value!r} does not parse ({exc})") from exc
    if not phonenumbers.is_valid_number(number):
        raise RowError(f"phone: {value!r} is not a valid number for {country}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def customer_from_row(row: dict[str, str]) -> Customer:
    country = (row.get("country") or "US").strip().upper()
    if len(country) != 2 or not country.isalpha():
        raise RowError(f"country: {country!r} is not an ISO 3166 alpha-2 code")
    channels = tuple(c.strip().lower() for c in (row.get("channels") or "email").split(";") if c.strip())
    unknown = [c for c in channels if c not in CUSTOMER_CHANNELS]
    if unknown:
        raise RowError(f"channels: unknown {', '.join(unknown)} (known: {' '.join(CUSTOMER_CHANNELS)})")
    email = (row.get("email") or "").strip() or None
    if email and "@" not in email:
        raise RowError(f"email: {email!r} is not an address")
    phone = (row.get("phone") or "").strip()
    return Customer(
        id=row["id"].strip(), name=row["name"].strip(), email=email,
        phone=parse_phone(phone, country) if phone else None, country=country,
        locale=(row.get("locale") or "en-US").strip(), channels=channels or ("email",),
        slack_channel=(row.get("slack_channel") or "").strip() or None,
        teams_conversation=(row.get("teams_conversation") or "").strip() or None,
        external_ids=parse_external_ids(row.get("external_ids") or ""),
    )


def _rows(text: str, allowed: set[str], required: set[str]) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or [])
    if not header:
        raise RowError("line 1: the header row is missing")
    if unknown := header - allowed:
        raise RowError(f"line 1: unknown columns {', '.join(sorted(unknown))}")
    if missing := required - header:
        raise RowError(f"line 1: missing required columns {', '.join(sorted(missing))}")
    for row in reader:
        yield reader.line_num, {k: v or "" for k, v in row.items() if k is not None}


async def _import(uow: UnitOfWork, text: str, what: str, columns: set[str], required: set[str],
                  save_row: Callable[[dict[str, str]], Awaitable[None]]) -> ImportReport:
    """Each good row lands (in its own savepoint); each bad one is reported with its line number."""
    report = ImportReport()
    for line, row in _rows(text, columns, required):
        try:
            if missing := [c for c in sorted(required) if not row.get(c, "").strip()]:
                raise RowError(f"{missing[0]} is required")
            async with uow.session.begin_nested():
                await save_row(row)
        except RowError as exc:
            report.errors.append((line, str(exc)))
            continue
        report.imported += 1
    uow.audit("directory.imported", detail={"what": what, "imported": report.imported,
                                            "rejected": len(report.errors)})
    return report


async def import_customers(uow: UnitOfWork, text: str) -> ImportReport:
    async def save(row: dict[str, str]) -> None:
        await save_customer(uow, customer_from_row(row))

    return await _import(uow, text, "customers", CUSTOMER_COLUMNS, {"id", "name"}, save)


def _date(row: dict[str, str], column: str) -> date | None:
    value = row.get(column, "").strip()
    try:
        return date.fromisoformat(value) if value else None
    except ValueError as exc:
        raise RowError(f"{column}: {value!r} is not an ISO date") from exc


async def import_invoices(uow: UnitOfWork, text: str) -> ImportReport:
    async def save(row: dict[str, str]) -> None:
        try:
            amount = Money.of(row["amount"].strip(), row["currency"])
        except ValueError as exc:
            raise RowError(f"amount/currency: {exc}") from exc
        if amount.minor <= 0:
            raise RowError("amount must be positive")
        await save_invoice(uow, row["number"].strip(), row["customer_id"].strip(), amount,
                           issued_on=_date(row, "issued_on"), due_on=_date(row, "due_on"),
                           external_ids=parse_external_ids(row.get("external_ids") or ""))

    return await _import(uow, text, "invoices", INVOICE_COLUMNS, {"number", "customer_id", "amount", "currency"}, save)
