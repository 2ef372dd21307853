"""Customers and invoices: upserts, and the CSV imports of the contract (bad rows reported by line).

An import never erases what the file does not say: a column the file lacks leaves the stored value alone (an
empty cell clears it). A file lands a chunk of rows at a time: each chunk is planned from a few batched lookups,
written with a few Core statements and committed with its audit entries (each change field by field, before →
after), so a large file never holds the database's writer for long. A dry run plans the same and writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from itertools import islice
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.contact import country_code, email_address, locale_tag, phone_e164, time_zone
from bot.domain.money import CurrencyError, Money, normalise_currency, parse_amount
from bot.domain.parties import CUSTOMER_CHANNELS, Customer
from bot.services.csv_files import FileError, Row, decode, table
from bot.storage import models, repo
from bot.storage.database import Database, UnitOfWork

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


# --- planning a chunk: what each row changes, from a few batched lookups -----------------------------------------

@dataclass(slots=True)
class Planned:
    """A row that lands: what it changes, and the values of the statements that make it so."""

    change: Change
    insert: dict[str, Any] | None = None  # a new record's columns
    update: dict[str, Any] | None = None  # a changed record's new values, its key as `key_`
    refs: RefsPlan | None = None


@dataclass(slots=True)
class RefsPlan:
    """How a record's platform ids change: rows of external_refs to delete, to update, to insert."""

    delete: list[int] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    insert: list[dict[str, Any]] = field(default_factory=list)


#: Who holds a platform id `(source, external_id)` after the file's rows so far (None: released). It overlays the
#: database, so a claim is judged as if the rows landed one by one, across chunks and in a dry run that writes nothing.
Claims = dict[tuple[str, str], str | None]


@dataclass(slots=True)
class StoredRefs:
    """The platform ids a chunk's rows touch, as stored: each record's own, and who holds each claimed one."""

    mine: dict[str, dict[str, tuple[int, str]]]  # key → {source: (ref id, external_id)}
    holders: dict[tuple[str, str], str]  # (source, external_id) → key

    @classmethod
    async def of(cls, session: AsyncSession, entity: str, rows: list[Row], key: str) -> StoredRefs:
        keys = [row.cells[key].strip() for row in rows]
        claimed = {external_id for row in rows if "external_ids" in row.cells
                   for external_id in _claimed_ids(row.cells["external_ids"])}
        ref = models.ExternalRef
        found = await session.execute(select(ref.id, ref.source, ref.external_id, ref.entity_id).where(
            ref.entity == entity, or_(ref.entity_id.in_(keys), ref.external_id.in_(claimed))))
        stored = cls({}, {})
        for ref_id, source, external_id, entity_id in found:
            stored.mine.setdefault(entity_id, {})[source] = (ref_id, external_id)
            stored.holders[(source, external_id)] = entity_id
        return stored

    def plan(self, entity: str, key: str, wanted: dict[str, str], claims: Claims) -> tuple[RefsPlan, str | None,
                                                                                           str | None]:
        """Make the record's platform ids exactly `wanted` (and note the claims); (plan, before, after) with the
        ids as `source:id;…`. An id that is another record's is a RowError (never the unique constraint's)."""
        for pair in wanted.items():
            holder = claims[pair] if pair in claims else self.holders.get(pair)
            if holder is not None and holder != key:
                raise RowError(f"external_ids: {pair[0]}:{pair[1]} is already {entity} {holder}'s")
        mine = self.mine.get(key, {})
        plan = RefsPlan()
        for source, (ref_id, external_id) in mine.items():
            claims[(source, external_id)] = None
            if source not in wanted:
                plan.delete.append(ref_id)
            elif wanted[source] != external_id:
                plan.update.append({"ref_id": ref_id, "external_id": wanted[source]})
        plan.insert = [{"entity": entity, "source": source, "external_id": external_id, "entity_id": key}
                       for source, external_id in wanted.items() if source not in mine]
        claims.update({pair: key for pair in wanted.items()})
        return plan, _shown({source: external_id for source, (_, external_id) in mine.items()}), _shown(wanted)


def _claimed_ids(value: str) -> list[str]:
    """The ids a cell names, for the lookup only (a malformed cell is the row's error later, in its turn)."""
    try:
        return list(parse_external_ids(value).values())
    except RowError:
        return []


def _shown(refs: dict[str, str]) -> str | None:
    return ";".join(f"{source}:{refs[source]}" for source in sorted(refs)) or None


def _differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {name: (before.get(name), value) for name, value in after.items() if before.get(name) != value}


CUSTOMER_FIELDS = tuple(c for c in models.Customer.__table__.c.keys() if c != "id")


async def _plan_customers(session: AsyncSession, rows: list[Row], claims: Claims) -> list[Planned | RowError]:
    keys = [row.cells["id"].strip() for row in rows]
    stored = {c.id: c for c in await session.scalars(select(models.Customer).where(models.Customer.id.in_(keys)))}
    refs = await StoredRefs.of(session, "customer", rows, "id")
    planned: list[Planned | RowError] = []
    for row, customer_id in zip(rows, keys, strict=True):
        try:
            planned.append(_plan_customer(row, customer_id, stored.get(customer_id), refs, claims))
        except RowError as exc:
            planned.append(exc)
    return planned


def _plan_customer(row: Row, customer_id: str, stored: models.Customer | None, refs: StoredRefs,
                   claims: Claims) -> Planned:
    values = customer_values(row.cells, stored.country if stored else None)
    plan = Planned(Change(row.line, customer_id, created=stored is None, fields={}))
    if stored is None:
        values |= {name: default for name, default in NEW_CUSTOMER.items() if name not in values}
        plan.insert = dict.fromkeys(CUSTOMER_FIELDS) | values | {"id": customer_id}
        plan.change.fields.update({name: (None, value) for name, value in values.items() if value is not None})
    else:
        plan.change.fields.update(_differences({name: getattr(stored, name) for name in values}, values))
        plan.update = values | {"key_": customer_id} if plan.change.fields else None
    if "external_ids" in row.cells:
        plan.refs, before, after = refs.plan("customer", customer_id, parse_external_ids(row.cells["external_ids"]),
                                             claims)
        if before != after:
            plan.change.fields["external_ids"] = (before, after)
    return plan


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


async def _plan_invoices(session: AsyncSession, rows: list[Row], claims: Claims) -> list[Planned | RowError]:
    keys = [row.cells["number"].strip() for row in rows]
    customer_ids = {row.cells["customer_id"].strip() for row in rows}
    known = set(await session.scalars(select(models.Customer.id).where(models.Customer.id.in_(customer_ids))))
    stored = {i.number: i for i in await session.scalars(select(models.Invoice).where(models.Invoice.number.in_(keys)))}
    refs = await StoredRefs.of(session, "invoice", rows, "number")
    planned: list[Planned | RowError] = []
    for row, number in zip(rows, keys, strict=True):
        try:
            planned.append(_plan_invoice(row, number, known, stored.get(number), refs, claims))
        except RowError as exc:
            planned.append(exc)
    return planned


def _plan_invoice(row: Row, number: str, known_customers: set[str], stored: models.Invoice | None,
                  refs: StoredRefs, claims: Claims) -> Planned:
    values = _invoice_values(row.cells)
    amount: Money = values["amount"]
    if values["customer_id"] not in known_customers:
        raise RowError(f"customer_id {values['customer_id']!r} is not a known customer")
    columns = {"customer_id": values["customer_id"], "currency": amount.currency, "amount_minor": amount.minor} | {
        column: values[column] for column in ("issued_on", "due_on") if column in values}
    if stored is None:
        before: dict[str, Any] = {}
        insert = {"number": number, "paid_minor": 0, "issued_on": None, "due_on": None} | columns
    else:
        refuse_changes_to_paid(stored, values["customer_id"], amount)
        before, insert = _invoice_fields(stored), None
    fields = {name: (_plain(old), _plain(new)) for name, (old, new) in _differences(before, values).items()
              if new is not None or stored is not None}
    plan = Planned(Change(row.line, number, created=stored is None, fields=fields), insert=insert,
                   update=columns | {"key_": number} if stored is not None and fields else None)
    if "external_ids" in row.cells:
        plan.refs, *shown = refs.plan("invoice", number, parse_external_ids(row.cells["external_ids"]), claims)
        if shown[0] != shown[1]:
            fields["external_ids"] = (shown[0], shown[1])
    return plan


def _plain(value: Any) -> Any:
    """A value as the audit trail (JSON) and the operator read it."""
    if isinstance(value, Money):
        return f"{value.amount} {value.currency}"
    return value.isoformat() if isinstance(value, date) else value


# --- writing a chunk: a few Core statements, each one round trip ------------------------------------------------

def _table(model: type[models.Base]) -> Table:
    return cast(Table, model.__table__)


async def _write(session: AsyncSession, table: Table, key: str, planned: list[Planned]) -> None:
    """The chunk's records, then their platform ids: every release before any claim, in the file's order, so the
    unique (entity, source, external_id) holds at each statement as it did row by row."""
    if inserts := [p.insert for p in planned if p.insert is not None]:
        await session.execute(insert(table), inserts)
    if updates := [p.update for p in planned if p.update is not None]:
        await session.execute(update(table).where(table.c[key] == bindparam("key_")), updates)
    refs = _table(models.ExternalRef)
    plans = [p.refs for p in planned if p.refs is not None]
    if deleted := [ref_id for plan in plans for ref_id in plan.delete]:
        await session.execute(delete(refs).where(refs.c.id.in_(deleted)))
    if changed := [change for plan in plans for change in plan.update]:
        await session.execute(update(refs).where(refs.c.id == bindparam("ref_id")), changed)
    if added := [row for plan in plans for row in plan.insert]:
        await session.execute(insert(refs), added)


# --- the import -------------------------------------------------------------------------------------------------

#: Rows per transaction: each chunk commits, so on SQLite the one writer's lock is free between chunks (a webhook
#: waits for at most one chunk, not for the file).
CHUNK_ROWS = 2000

PlanChunk = Callable[[AsyncSession, list[Row], Claims], Awaitable[list[Planned | RowError]]]
Progress = Callable[[int], None]  # told the line reached after each chunk


@dataclass(frozen=True, slots=True)
class _Kind:
    what: str  # customer | invoice
    key: str  # the column naming the record
    columns: set[str]
    required: set[str]
    table: Table
    plan: PlanChunk


CUSTOMERS = _Kind("customer", "id", set(CUSTOMER_COLUMNS), CUSTOMER_REQUIRED, _table(models.Customer),
                  _plan_customers)
INVOICES = _Kind("invoice", "number", INVOICE_COLUMNS, INVOICE_REQUIRED, _table(models.Invoice), _plan_invoices)


async def _import(db: Database, data: bytes | str, kind: _Kind, *, dry_run: bool, chunk_rows: int,
                  progress: Progress | None) -> ImportReport:
    """Good rows land a chunk at a time, each chunk in its own transaction with its audit entries; each bad row is
    reported with its line number. A dry run plans the same on a reading session and writes nothing."""
    text = decode(data) if isinstance(data, bytes) else data
    rows = table(text, kind.columns)
    if unknown := [c for c in rows.columns if c not in kind.columns]:
        raise FileError(f"line 1: unknown columns {', '.join(unknown)} (known: {', '.join(sorted(kind.columns))})")
    if missing := kind.required - set(rows.columns):
        raise FileError(f"line 1: missing required columns {', '.join(sorted(missing))}")
    report = ImportReport()
    first_seen: dict[str, int] = {}  # key → line
    claims: Claims = {}
    while chunk := list(islice(rows.rows, chunk_rows)):
        errors: list[tuple[int, str]] = []
        candidates = []
        for row in chunk:
            try:
                _check_shape(row, kind, first_seen)
                candidates.append(row)
            except RowError as exc:
                errors.append((row.line, str(exc)))
        if dry_run:
            async with db.read() as session:
                planned = await kind.plan(session, candidates, claims)
        else:
            async with db.transaction() as uow:
                planned = await kind.plan(uow.session, candidates, claims)
                landing = [p for p in planned if isinstance(p, Planned)]
                await _write(uow.session, kind.table, kind.key, landing)
                for p in landing:
                    if p.change.fields:
                        _audit(uow, kind.what, p.change)
        for row, outcome in zip(candidates, planned, strict=True):
            if isinstance(outcome, RowError):
                errors.append((row.line, str(outcome)))
            else:
                _count(report, outcome.change, row.line)
        report.errors += sorted(errors)
        if progress is not None:
            progress(chunk[-1].line)
        if not dry_run:
            await db.hand_over()
    if not dry_run:
        async with db.transaction() as uow:
            uow.audit("directory.imported", detail={"what": f"{kind.what}s", "imported": report.imported,
                                                    "created": report.created, "updated": report.updated,
                                                    "unchanged": report.unchanged, "rejected": len(report.errors)})
        await db.analyze(kind.table.name, models.ExternalRef.__tablename__)
    return report


def _check_shape(row: Row, kind: _Kind, first_seen: dict[str, int]) -> None:
    if row.problem:
        raise RowError(row.problem)
    if missing := [c for c in sorted(kind.required) if not row.cells[c].strip()]:
        raise RowError(f"{missing[0]} is required")
    value = row.cells[kind.key].strip()
    if value in first_seen:
        raise RowError(f"{kind.key} {value} appears again (first on line {first_seen[value]}); this row is skipped")
    first_seen[value] = row.line


def _audit(uow: UnitOfWork, what: str, change: Change) -> None:
    uow.audit(f"{what}.{'imported' if change.created else 'updated'}",
              customer_id=change.key if what == "customer" else None,
              invoice=change.key if what == "invoice" else None,
              detail={name: list(pair) for name, pair in change.fields.items()})


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


async def import_customers(db: Database, data: bytes | str, *, dry_run: bool = False, chunk_rows: int = CHUNK_ROWS,
                           progress: Progress | None = None) -> ImportReport:
    return await _import(db, data, CUSTOMERS, dry_run=dry_run, chunk_rows=chunk_rows, progress=progress)


async def import_invoices(db: Database, data: bytes | str, *, dry_run: bool = False, chunk_rows: int = CHUNK_ROWS,
                          progress: Progress | None = None) -> ImportReport:
    return await _import(db, data, INVOICES, dry_run=dry_run, chunk_rows=chunk_rows, progress=progress)
