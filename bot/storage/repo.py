"""Reading and writing customers and invoices as domain objects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import matching, parties
from bot.domain.matching import Candidates, LookupKeys
from bot.domain.money import Money
from bot.storage import sql
from bot.storage.models import Customer, ExternalRef, Invoice


async def external_ids(session: AsyncSession, entity: str, ids: Iterable[str]) -> dict[str, dict[str, str]]:
    return (await external_ids_of(session, {entity: ids}))[entity]


async def external_ids_of(session: AsyncSession,
                          wanted: Mapping[str, Iterable[str]]) -> dict[str, dict[str, dict[str, str]]]:
    """`{entity: {entity_id: {source: external_id}}}` for several entities in one query."""
    ids = {entity: set(entity_ids) for entity, entity_ids in wanted.items()}
    found: dict[str, dict[str, dict[str, str]]] = {entity: {i: {} for i in v} for entity, v in ids.items()}
    conditions = [and_(ExternalRef.entity == entity, ExternalRef.entity_id.in_(v)) for entity, v in ids.items() if v]
    if conditions:
        columns = ExternalRef.entity, ExternalRef.entity_id, ExternalRef.source, ExternalRef.external_id
        for entity, entity_id, source, external_id in await session.execute(select(*columns).where(or_(*conditions))):
            found[entity][entity_id][source] = external_id
    return found


def to_customer(row: Customer, refs: dict[str, str]) -> parties.Customer:
    return parties.Customer(
        id=row.id, name=row.name, email=row.email, phone=row.phone, country=row.country, locale=row.locale,
        timezone=row.timezone,
        channels=tuple(row.channels), slack_channel=row.slack_channel, teams_conversation=row.teams_conversation,
        external_ids=refs,
    )


def to_invoice(row: Invoice, refs: dict[str, str]) -> parties.Invoice:
    return parties.Invoice(
        number=row.number, customer_id=row.customer_id, amount=Money(row.currency, row.amount_minor),
        paid=Money(row.currency, row.paid_minor), issued_on=row.issued_on, due_on=row.due_on, external_ids=refs,
    )


async def customers_by_id(session: AsyncSession, ids: Iterable[str]) -> list[parties.Customer]:
    rows = list(await session.scalars(select(Customer).where(Customer.id.in_(set(ids)))))
    refs = await external_ids(session, "customer", (r.id for r in rows))
    return [to_customer(r, refs[r.id]) for r in rows]


async def common_locales(session: AsyncSession, limit: int) -> list[str]:
    """The locales customers read in, the most common first."""
    return list(await session.scalars(select(Customer.locale).group_by(Customer.locale)
                                      .order_by(func.count().desc(), Customer.locale).limit(limit)))


async def invoices(session: AsyncSession, rows: Sequence[Invoice]) -> list[parties.Invoice]:
    refs = await external_ids(session, "invoice", (r.number for r in rows))
    return [to_invoice(r, refs[r.number]) for r in rows]


async def candidates(session: AsyncSession, keys: LookupKeys, *, customer_invoices: bool = True) -> Candidates:
    """Every invoice and customer the keys could point at, for `bot.domain.matching.match` to choose from.

    Without `customer_invoices`, only the invoices the keys name (by number or platform id): enough whenever
    those decide the match, and far cheaper than a customer's whole ledger.
    """
    invoice_conditions: list[ColumnElement[bool]] = []
    if keys.invoice_numbers:
        invoice_conditions.append(sql.invoice_key(Invoice.number).in_(keys.invoice_numbers))
    if keys.invoice_external_id:
        source, ext = keys.invoice_external_id
        invoice_conditions.append(Invoice.number.in_(
            select(ExternalRef.entity_id).where(ExternalRef.entity == "invoice", ExternalRef.source == source,
                                                ExternalRef.external_id == ext)))
    customer_conditions: list[ColumnElement[bool]] = []
    if keys.customer_external_id:
        source, ext = keys.customer_external_id
        customer_conditions.append(Customer.id.in_(
            select(ExternalRef.entity_id).where(ExternalRef.entity == "customer", ExternalRef.source == source,
                                                ExternalRef.external_id == ext)))
    if keys.email:
        customer_conditions.append(Customer.email == keys.email)
    if keys.phone:
        customer_conditions.append(Customer.phone == keys.phone)
    if customer_conditions and customer_invoices:
        # The customer's open invoices are candidates for the "customer + amount" rule.
        customer_ids = select(Customer.id).where(sql.any_of(Customer.id, customer_conditions))
        invoice_conditions.append(and_(Invoice.customer_id.in_(customer_ids),
                                       Invoice.paid_minor < Invoice.amount_minor))
    rows = list(await session.scalars(select(Invoice).where(sql.any_of(Invoice.id, invoice_conditions)))) \
        if invoice_conditions else []
    if rows:  # the invoices' customers, beside those the keys name
        customer_conditions.append(Customer.id.in_({r.customer_id for r in rows}))
    customers = list(await session.scalars(select(Customer).where(sql.any_of(Customer.id, customer_conditions)))) \
        if customer_conditions else []
    refs = await external_ids_of(session, {"invoice": [r.number for r in rows], "customer": [c.id for c in customers]})
    return Candidates(invoices=[to_invoice(r, refs["invoice"][r.number]) for r in rows],
                      customers=[to_customer(c, refs["customer"][c.id]) for c in customers])


async def invoice_row(session: AsyncSession, number: str) -> Invoice | None:
    return await session.scalar(select(Invoice).where(Invoice.number == number))


async def invoice_named(session: AsyncSession, number: str, *, for_update: bool = False) -> Invoice | None:
    """The invoice someone names, whatever the case of its letters (`inv-1042` is `INV-1042`): the one spelled
    exactly so if there is one, else the only one differing in case (None when several do)."""
    statement = select(Invoice).where(sql.invoice_key(Invoice.number) == matching.invoice_key(number))
    rows = list(await session.scalars(statement.with_for_update() if for_update else statement))
    exact = [r for r in rows if r.number == number.strip()]
    return exact[0] if exact else rows[0] if len(rows) == 1 else None


async def set_external_ids(session: AsyncSession, entity: str, entity_id: str, ids: dict[str, str]) -> None:
    existing = (await external_ids(session, entity, [entity_id]))[entity_id]
    for source, external_id in ids.items():
        if existing.get(source) == external_id:
            continue
        ref = await session.scalar(select(ExternalRef).where(
            ExternalRef.entity == entity, ExternalRef.source == source, ExternalRef.entity_id == entity_id))
        if ref is None:
            session.add(ExternalRef(entity=entity, source=source, external_id=external_id, entity_id=entity_id))
        else:
            ref.external_id = external_id
