"""Appending to, verifying and exporting the hash-chained audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.audit import GENESIS, AuditRecord, chain_hash
from bot.storage.models import AuditEntry, AuditHead

EXPORT_FIELDS = ("seq", "at", "kind", "actor", "source", "channel", "invoice", "customer_id", "amount",
                 "currency", "detail", "prev_hash", "hash")


async def append(session: AsyncSession, records: Sequence[AuditRecord]) -> None:
    """Chain `records` onto the trail inside the caller's transaction (the head row lock serialises appenders)."""
    if records:
        await session.run_sync(lambda sync: append_rows(sync.connection(), records))


def append_rows(connection: Connection, records: Sequence[AuditRecord]) -> None:
    """`append` for a synchronous connection (and the one implementation behind both)."""
    head = connection.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()).one()
    seq, prev = head.seq, head.hash
    rows = []
    for record in records:
        seq += 1
        digest = chain_hash(prev, seq, record)
        rows.append({"seq": seq, "prev_hash": prev, "hash": digest, **_columns(record)})
        prev = digest
    # Core statements: the trail is append-only, no ORM identity needed (and an executemany is one round trip).
    connection.execute(insert(AuditEntry), rows)
    connection.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=seq, hash=prev))


def _columns(record: AuditRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in AuditRecord.__dataclass_fields__}


def record_of(entry: AuditEntry) -> AuditRecord:
    return AuditRecord(**{name: getattr(entry, name) for name in AuditRecord.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Broken:
    seq: int
    reason: str


async def verify(session: AsyncSession) -> tuple[int, Broken | None]:
    """Walk the chain; return how many entries were checked and the first broken one, if any."""
    prev, expected_seq, count = GENESIS, 1, 0
    result = await session.stream_scalars(select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=500))
    async for entry in result:
        if entry.seq != expected_seq:
            return count, Broken(expected_seq, f"entry {expected_seq} is missing")
        if entry.prev_hash != prev:
            return count, Broken(entry.seq, "prev_hash does not match the previous entry's hash")
        if chain_hash(prev, entry.seq, record_of(entry)) != entry.hash:
            return count, Broken(entry.seq, "content does not match its hash")
        prev, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    head = (await session.execute(select(AuditHead).where(AuditHead.id == 1))).scalar_one()
    if head.seq != count or head.hash != prev:
        return count, Broken(count + 1, f"chain ends at {count} but its head says {head.seq}: entries were removed")
    return count, None


async def entries(session: AsyncSession, *, since: datetime | None = None,
                  invoice: str | None = None) -> AsyncIterator[dict[str, object]]:
    query = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=500)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if invoice is not None:
        query = query.where(AuditEntry.invoice == invoice)
    async for entry in await session.stream_scalars(query):
        row = {name: getattr(entry, name) for name in EXPORT_FIELDS}
        row["at"] = entry.at.isoformat().replace("+00:00", "Z")
        yield row
