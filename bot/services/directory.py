"""Customers and invoices: upserts, and the CSV imports of the contract (bad rows reported by line).

An import never erases what the file does not say: a column the file lacks leaves the stored value alone (an
empty cell clears it). Each row lands in its own savepoint, each change is audited field by field (before →
after), and a dry run does all of it in a savepoint it rolls back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from sqlalchemy import and_, or_, select

from bot.domain.contact import country_code, email_address, locale_tag, phone_e164, time_zone
from bot.domain.money import CurrencyError, Money, normalise_currency, parse_amount
from bot.domain.parties import CUSTOMER_CHANNELS, Customer
from bot.services.csv_files import FileError, Row, decode, table
from bot.storage import models, repo
from bot.storage.database import UnitOfWork

__all__ = ["FileError", "ImportReport", "RowError", "import_customers", "import_invoices", "save_customer",
           "save_invoice"]


class RowError(ValueError):
    """One CSV row is wrong; the message names the column."""


@dataclass(frozen=True, slots=True)
class Change:
    """What one row did: created a record, or changed these fields (`{field: (before, after)}`)."""

    line: int
    key: str  # the customer id or invoice number
    created: bool
    fields: dict[str, tuple[Any, Any]]

    def described(self) -> str:
        """`C1 changed: email 'a@x.com' → 'b@x.com'`, as a dry run lists it."""
        if self.created:
            return f"{self.key} new: " + "; ".join(f"{name} {_plain(new)!r}" for name, (_, new) in self.fields.items())
        changes = "; ".join(f"{name} {_plain(old)!r} → {_plain(new)!r}" for name, (old, new) in self.fields.items())
        return f"{self.key} changed: {changes}"


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, message)
    changes: list[Change] = field(default_factory=list)
    landed: list[tuple[int, str]] = field(default_factory=list)  # (line, id) of every row that landed

    @property
    def imported(self) -> int:
        """Rows that landed (or, in a dry run, would land), each counted once."""
        return self.created + self.updated + self.unchanged


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
        refuse_changes_to_paid(row, customer_id, amount)
        row.customer_id, row.currency, row.amount_minor = customer_id, amount.currency, amount.minor
        row.issued_on, row.due_on = issued_on, due_on
    await uow.session.flush()
    await repo.set_external_ids(uow.session, "invoice", number, external_ids or {})


def refuse_changes_to_paid(row: models.Invoice, customer_id: str, amount: Money) -> None:
    """Money already received against an invoice pins its customer and currency, and its amount from below."""
    if not row.paid_minor:
        return
    paid = Money(row.currency, row.paid_minor)
    if amount.currency != row.currency:
        raise RowError(f"invoice {row.number} has payments in {row.currency}; its currency cannot change")
    if customer_id != row.customer_id:
        raise RowError(f"invoice {row.number} has payments ({paid.amount} {paid.currency} from customer "
                       f"{row.customer_id}); its customer cannot change")
    if amount < paid:
        raise RowError(f"amount {amount.amount} is below the {paid.amount} {paid.currency} already paid "
                       f"on invoice {row.number}")


# --- reading a row's cells --------------------------------------------------------------------------------------

class Column(NamedTuple):
    parse: Callable[[str], Any]  # a non-empty cell (stripped) → the stored value, or ValueError why not
    empty: Any  # what an empty cell stores


def _channels(value: str) -> list[str]:
    channels = [c.strip().lower() for c in value.split(";") if c.strip()]
    if unknown := [c for c in channels if c not in CUSTOMER_CHANNELS]:
        raise ValueError(f"unknown {', '.join(unknown)} (known: {' '.join(CUSTOMER_CHANNELS)})")
    return channels or ["email"]


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from exc


CUSTOMER_COLUMNS: dict[str, Column] = {
    "id": Column(str, None), "name": Column(str, None),
    "email": Column(email_address, None),
    "phone": Column(str, None),  # parsed for the row's country, below
    "country": Column(country_code, "US"),
    "locale": Column(locale_tag, "en-US"),
    "timezone": Column(time_zone, None),
    "channels": Column(_channels, ["email"]),
    "slack_channel": Column(str, None), "teams_conversation": Column(str, None),
    "external_ids": Column(str, ""),  # parsed on its own: refs live in their own table
}
INVOICE_COLUMNS = {"number", "customer_id", "amount", "currency", "issued_on", "due_on", "external_ids"}
CUSTOMER_REQUIRED = {"id", "name"}
INVOICE_REQUIRED = {"number", "customer_id", "amount", "currency"}
_KEYS_AND_REFS = {"id", "external_ids"}
NEW_CUSTOMER = {"channels": ["email"], "country": "US", "locale": "en-US"}  # what a file that does not say gets


def cell(cells: dict[str, str], column: str, parse: Callable[[str], Any], empty: Any = None) -> Any:
    value = cells[column].strip()
    try:
        return parse(value) if value else empty
    except ValueError as exc:
        raise RowError(f"{column}: {exc}") from exc


def customer_values(cells: dict[str, str], stored_country: str | None) -> dict[str, Any]:
    """The customer's fields this row gives: a column the file lacks is not among them."""
    values = {column: cell(cells, column, *spec) for column, spec in CUSTOMER_COLUMNS.items()
              if column in cells and column not in _KEYS_AND_REFS}
    if values.get("phone"):
        country = values.get("country") or stored_country or "US"
        values["phone"] = cell(cells, "phone", lambda v: phone_e164(v, country))
    return values


def parse_external_ids(value: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(";"))):
        source, sep, external_id = item.partition(":")
        source, external_id = source.strip().lower(), external_id.strip()
        if not sep or not source or not external_id:
            raise RowError(f"external_ids: {item!r} is not source:id")
        if source in pairs:
            raise RowError(f"external_ids: {source} appears twice")
        pairs[source] = external_id
    return pairs


# --- writing ----------------------------------------------------------------------------------------------------

def _differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {name: (before.get(name), value) for name, value in after.items() if before.get(name) != value}


def _shown(refs: dict[str, str]) -> str | None:
    return ";".join(f"{source}:{refs[source]}" for source in sorted(refs)) or None


async def _replace_external_ids(uow: UnitOfWork, entity: str, entity_id: str,
                                wanted: dict[str, str]) -> tuple[str | None, str | None]:
    """Make the record's platform ids exactly `wanted`; (before, after) as `source:id;…`. An id that is another
    record's is a RowError (never the unique constraint's traceback). One query, whatever the number of ids."""
    ref = models.ExternalRef
    claims = [and_(ref.source == source, ref.external_id == external_id) for source, external_id in wanted.items()]
    found = await uow.session.scalars(select(ref).where(ref.entity == entity,
                                                        or_(ref.entity_id == entity_id, *claims)))
    mine: dict[str, models.ExternalRef] = {}
    for row in found:
        if row.entity_id == entity_id:
            mine[row.source] = row
        elif wanted.get(row.source) == row.external_id:
            raise RowError(f"external_ids: {row.source}:{row.external_id} is already {entity} {row.entity_id}'s")
    before = {source: row.external_id for source, row in mine.items()}
    for source, row in mine.items():
        if source not in wanted:
            await uow.session.delete(row)
    for source, external_id in wanted.items():
        if source in mine:
            mine[source].external_id = external_id
        else:
            uow.session.add(ref(entity=entity, source=source, external_id=external_id, entity_id=entity_id))
    return _shown(before), _shown(wanted)


async def _import_customer(uow: UnitOfWork, line: int, cells: dict[str, str]) -> Change:
    customer_id = cells["id"].strip()
    row = await uow.session.get(models.Customer, customer_id)
    values = customer_values(cells, row.country if row else None)
    created = row is None
    if row is None:
        values |= {name: default for name, default in NEW_CUSTOMER.items() if name not in values}
        row = models.Customer(id=customer_id, **values)
        uow.session.add(row)
        fields: dict[str, tuple[Any, Any]] = {name: (None, value) for name, value in values.items()
                                              if value is not None}
    else:
        fields = _differences({name: getattr(row, name) for name in values}, values)
        for name, (_, value) in fields.items():
            setattr(row, name, value)
    await uow.session.flush()
    if "external_ids" in cells:
        wanted = parse_external_ids(cells["external_ids"])
        before, after = await _replace_external_ids(uow, "customer", customer_id, wanted)
        if before != after:
            fields["external_ids"] = (before, after)
    return Change(line, customer_id, created=created, fields=fields)


def _invoice_values(cells: dict[str, str]) -> dict[str, Any]:
    currency = cell(cells, "currency", normalise_currency)
    try:
        amount = parse_amount(cells["amount"], currency)
    except (CurrencyError, ValueError) as exc:
        raise RowError(f"amount: {exc}") from exc
    if amount.minor <= 0:
        raise RowError("amount must be positive")
    values: dict[str, Any] = {"customer_id": cells["customer_id"].strip(), "amount": amount}
    values |= {column: cell(cells, column, _iso_date) for column in ("issued_on", "due_on") if column in cells}
    return values


def _invoice_fields(row: models.Invoice) -> dict[str, Any]:
    return {"customer_id": row.customer_id, "amount": Money(row.currency, row.amount_minor),
            "issued_on": row.issued_on, "due_on": row.due_on}


async def _import_invoice(uow: UnitOfWork, line: int, cells: dict[str, str]) -> Change:
    number = cells["number"].strip()
    values = _invoice_values(cells)
    amount: Money = values["amount"]
    if await uow.session.get(models.Customer, values["customer_id"]) is None:
        raise RowError(f"customer_id {values['customer_id']!r} is not a known customer")
    row = await repo.invoice_row(uow.session, number)
    created = row is None
    if row is None:
        row = models.Invoice(number=number, customer_id=values["customer_id"], currency=amount.currency,
                             amount_minor=amount.minor, paid_minor=0,
                             issued_on=values.get("issued_on"), due_on=values.get("due_on"))
        uow.session.add(row)
        before: dict[str, Any] = {}
    else:
        refuse_changes_to_paid(row, values["customer_id"], amount)
        before = _invoice_fields(row)
        row.customer_id, row.currency, row.amount_minor = values["customer_id"], amount.currency, amount.minor
        for column in ("issued_on", "due_on"):
            if column in values:
                setattr(row, column, values[column])
    await uow.session.flush()
    fields = {name: (_plain(old), _plain(new)) for name, (old, new) in _differences(before, values).items()
              if new is not None or not created}
    if "external_ids" in cells:
        refs = await _replace_external_ids(uow, "invoice", number, parse_external_ids(cells["external_ids"]))
        if refs[0] != refs[1]:
            fields["external_ids"] = refs
    return Change(line, number, created=created, fields=fields)


def _plain(value: Any) -> Any:
    """A value as the audit trail (JSON) and the operator read it."""
    if isinstance(value, Money):
        return f"{value.amount} {value.currency}"
    return value.isoformat() if isinstance(value, date) else value


# --- the import -------------------------------------------------------------------------------------------------

ImportRow = Callable[[UnitOfWork, int, dict[str, str]], Awaitable[Change]]


async def _import(uow: UnitOfWork, data: bytes | str, what: str, key: str, columns: set[str],
                  required: set[str], import_row: ImportRow, *, dry_run: bool) -> ImportReport:
    """Each good row lands in its own savepoint; each bad one is reported with its line number. A dry run
    reports the same and writes nothing."""
    text = decode(data) if isinstance(data, bytes) else data
    rows = table(text, columns)
    if unknown := [c for c in rows.columns if c not in columns]:
        raise FileError(f"line 1: unknown columns {', '.join(unknown)} (known: {', '.join(sorted(columns))})")
    if missing := required - set(rows.columns):
        raise FileError(f"line 1: missing required columns {', '.join(sorted(missing))}")
    report = ImportReport()
    first_seen: dict[str, int] = {}  # key → line
    async with uow.session.begin_nested() as rehearsal:
        for row in rows.rows:
            try:
                change = await _import_one(uow, row, key, required, first_seen, import_row)
            except RowError as exc:
                report.errors.append((row.line, str(exc)))
                continue
            _count(report, change, row.line)
            if not dry_run and change.fields:
                uow.audit(f"{what}.{'imported' if change.created else 'updated'}",
                          customer_id=change.key if what == "customer" else None,
                          invoice=change.key if what == "invoice" else None,
                          detail={name: list(pair) for name, pair in change.fields.items()})
        if dry_run:
            await rehearsal.rollback()
    if not dry_run:
        uow.audit("directory.imported", detail={"what": f"{what}s", "imported": report.imported,
                                                "created": report.created, "updated": report.updated,
                                                "unchanged": report.unchanged, "rejected": len(report.errors)})
    return report


async def _import_one(uow: UnitOfWork, row: Row, key: str, required: set[str], first_seen: dict[str, int],
                      import_row: ImportRow) -> Change:
    if row.problem:
        raise RowError(row.problem)
    if missing := [c for c in sorted(required) if not row.cells[c].strip()]:
        raise RowError(f"{missing[0]} is required")
    value = row.cells[key].strip()
    if value in first_seen:
        raise RowError(f"{key} {value} appears again (first on line {first_seen[value]}); this row is skipped")
    first_seen[value] = row.line
    async with uow.session.begin_nested():
        return await import_row(uow, row.line, row.cells)


def _count(report: ImportReport, change: Change, line: int) -> None:
    report.landed.append((line, change.key))
    if change.created:
        report.created += 1
    elif change.fields:
        report.updated += 1
    else:
        report.unchanged += 1
    if change.created or change.fields:
        report.changes.append(change)


async def import_customers(uow: UnitOfWork, data: bytes | str, *, dry_run: bool = False) -> ImportReport:
    return await _import(uow, data, "customer", "id", set(CUSTOMER_COLUMNS), CUSTOMER_REQUIRED, _import_customer,
                         dry_run=dry_run)


async def import_invoices(uow: UnitOfWork, data: bytes | str, *, dry_run: bool = False) -> ImportReport:
    return await _import(uow, data, "invoice", "number", INVOICE_COLUMNS, INVOICE_REQUIRED, _import_invoice,
                         dry_run=dry_run)
