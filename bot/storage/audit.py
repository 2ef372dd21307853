"""Appending to, verifying and exporting the hash-chained audit trail (keyed with AUDIT_KEY when it is set)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.audit import FIELDS, Anchor, AuditRecord, Broken, ChainCheck, Keyring, chain_hash, marker
from bot.errors import ConfigError
from bot.storage.models import AuditEntry, AuditHead

EXPORT_FIELDS = ("seq", "at", "kind", "actor", "source", "channel", "invoice", "customer_id", "amount",
                 "currency", "detail", "prev_hash", "hash")


class AuditKeyMissing(ConfigError):
    """the audit trail is keyed but AUDIT_KEY is not set"""


async def append(session: AsyncSession, records: Sequence[AuditRecord], keys: Keyring = Keyring()) -> None:
    """Chain `records` onto the trail inside the caller's transaction (the head row lock serialises appenders)."""
    if records:
        await session.run_sync(lambda sync: append_rows(sync.connection(), records, keys))


async def adopt(session: AsyncSession, keys: Keyring, at: datetime) -> str | None:
    """Switch the chain to `keys.current` now if it is not chained with it yet (a marker entry); at start-up, so
    that the switch is on record before anything else. Returns the key id the trail uses from here on."""
    def run(connection: Connection) -> str | None:
        append_rows(connection, [], keys, at=at)
        return connection.execute(select(AuditHead.key_id).where(AuditHead.id == 1)).scalar_one()
    return await session.run_sync(lambda sync: run(sync.connection()))


def append_rows(connection: Connection, records: Sequence[AuditRecord], keys: Keyring = Keyring(),
                at: datetime | None = None) -> None:
    """`append` for a synchronous connection (and the one implementation behind both; `at` stamps a marker when
    there are no records). A chain keyed with another key (or none) first gets a marker switching it to
    `keys.current`: every entry after it is keyed."""
    head = connection.execute(select(AuditHead.seq, AuditHead.hash, AuditHead.key_id)
                              .where(AuditHead.id == 1).with_for_update()).one()
    current = keys.current
    if head.key_id is not None and current is None:
        raise AuditKeyMissing(f"the audit trail is keyed (key {head.key_id}) but AUDIT_KEY is not set")
    if current is not None and head.key_id != current.id:
        records = [marker(at or records[0].at, current, head.key_id), *records]
    if not records:
        return
    seq, prev = head.seq, head.hash
    rows = []
    for record in records:
        seq += 1
        digest = chain_hash(prev, seq, record, current)
        rows.append({"seq": seq, "prev_hash": prev, "hash": digest, **_columns(record)})
        prev = digest
    # Core statements: the trail is append-only, no ORM identity needed (and an executemany is one round trip).
    connection.execute(insert(AuditEntry), rows)
    connection.execute(update(AuditHead).where(AuditHead.id == 1).values(
        seq=seq, hash=prev, key_id=current.id if current else None))


def _columns(record: AuditRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in AuditRecord.__dataclass_fields__}


def record_of(entry: AuditEntry) -> AuditRecord:
    return AuditRecord(**{name: getattr(entry, name) for name in AuditRecord.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Verification:
    count: int
    broken: Broken | None
    first_keyed: int | None  # the first key marker's seq; None: no entry is keyed
    key_ids: tuple[str, ...]  # the keys the trail switched to, in order
    anchors: tuple[Anchor, ...]  # the published anchors the trail matched


#: Entries per page when the trail is read whole: a page is one statement and one list in memory, so a million
#: entries are read in constant memory and at about the speed of one statement.
PAGE = 10_000
_CHAIN = (AuditEntry.seq, AuditEntry.prev_hash, AuditEntry.hash, *(getattr(AuditEntry, name) for name in FIELDS))


async def verify(session: AsyncSession, keys: Keyring = Keyring(), anchors: Sequence[Anchor] = (), *,
                 page: int = PAGE) -> Verification:
    """Walk the chain from genesis to the head, with the keys its markers name, against published anchors.

    The head is read first and the chain up to it, in pages (Core rows, keyset on seq): entries appended meanwhile
    are after it, and change nothing of what is proven."""
    check = ChainCheck(keys=keys, anchors=tuple(anchors))
    connection = await session.connection()  # Core rows, without the ORM's result machinery (a quarter of the cost)
    head = (await connection.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1))).one()
    broken: Broken | None = None
    after = 0
    while broken is None and after < head.seq:
        rows = (await connection.execute(select(*_CHAIN).where(AuditEntry.seq > after, AuditEntry.seq <= head.seq)
                                         .order_by(AuditEntry.seq).limit(page))).all()
        if not rows:
            break
        broken = check.walk(rows)
        after = rows[-1].seq
    if broken is None:
        broken = check.finish(head.seq, head.hash)
    return Verification(check.count, broken, check.first_keyed, tuple(check.key_ids), tuple(check.anchored))


async def head(session: AsyncSession) -> tuple[Anchor | None, str | None]:
    """The chain's head as an anchor to publish (None while the trail is empty), and its key id."""
    row = (await session.execute(select(AuditHead).where(AuditHead.id == 1))).scalar_one()
    return (Anchor(row.seq, row.hash) if row.seq else None), row.key_id


async def entries(session: AsyncSession, *, since: datetime | None = None, invoice: str | None = None,
                  page: int = PAGE) -> AsyncIterator[dict[str, object]]:
    """The trail oldest first, a page at a time (keyset on seq): memory stays that of one page, however long."""
    query = select(*(getattr(AuditEntry, name) for name in EXPORT_FIELDS)).order_by(AuditEntry.seq).limit(page)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if invoice is not None:
        query = query.where(AuditEntry.invoice == invoice)
    connection = await session.connection()
    after = 0
    while rows := (await connection.execute(query.where(AuditEntry.seq > after))).all():
        for entry in rows:
            row = entry._asdict()
            row["at"] = entry.at.isoformat().replace("+00:00", "Z")
            yield row
        after = rows[-1].seq
