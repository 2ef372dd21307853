"""Appending to, verifying and exporting the hash-chained audit trail (keyed with AUDIT_KEY when it is set)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import get_context
from typing import Any

from sqlalchemy import String, bindparam, insert, select, type_coerce, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.domain.audit import (FIELDS, GENESIS, KEYED, Anchor, AuditRecord, Broken, ChainCheck, Keyring, chain_hash,
                              marker)
from bot.errors import ConfigError
from bot.storage.engine import create_engine, json_value
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
    head = connection.execute(HEAD_LOCKED).one()
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
    connection.execute(NEW_ENTRIES, rows)
    connection.execute(HEAD_MOVED, {"to_seq": seq, "to_hash": prev, "to_key_id": current.id if current else None})


# Built once: appending is on every hot path, and building a statement cost more than running it.
HEAD_LOCKED = select(AuditHead.seq, AuditHead.hash, AuditHead.key_id).where(AuditHead.id == 1).with_for_update()
NEW_ENTRIES = insert(AuditEntry)
HEAD_MOVED = update(AuditHead).where(AuditHead.id == 1).values(
    seq=bindparam("to_seq"), hash=bindparam("to_hash"), key_id=bindparam("to_key_id"))


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

    @classmethod
    def of(cls, check: ChainCheck, broken: Broken | None) -> Verification:
        return cls(check.count, broken, check.first_keyed, tuple(check.key_ids), tuple(check.anchored))


#: Entries per page when the trail is read whole: a page is one statement and one list in memory, so a million
#: entries are read in constant memory and at about the speed of one statement.
PAGE = 10_000
#: The trail's columns as the chain check reads them; `detail` as stored text, decoded as JSON columns are (`_decoded`).
_CHAIN = (AuditEntry.seq, AuditEntry.prev_hash, AuditEntry.hash, *(getattr(AuditEntry, name) for name in FIELDS[:-1]),
          type_coerce(AuditEntry.detail, String))
assert FIELDS[-1] == "detail"
#: A trail at least this long is checked in stretches side by side, a process each (`verify_in_parallel`).
PARALLEL_FROM = 100_000


async def verify(session: AsyncSession, keys: Keyring = Keyring(), anchors: Sequence[Anchor] = (), *,
                 page: int = PAGE) -> Verification:
    """Walk the chain from genesis to the head, with the keys its markers name, against published anchors.

    The head is read first and the chain up to it, in pages (Core rows, keyset on seq): entries appended meanwhile
    are after it, and change nothing of what is proven."""
    connection = await session.connection()  # Core rows, without the ORM's result machinery (a quarter of the cost)
    return await _walk_whole(connection, await _head(connection), keys, anchors, page)


async def _head(connection: AsyncConnection) -> Row[int, str]:
    return (await connection.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1))).one()


async def _walk_whole(connection: AsyncConnection, head: Row[int, str], keys: Keyring, anchors: Sequence[Anchor],
                      page: int) -> Verification:
    check = ChainCheck(keys=keys, anchors=tuple(anchors))
    broken = await _walk(connection, check, 0, head.seq, page) or check.finish(head.seq, head.hash)
    return Verification.of(check, broken)


async def _walk(connection: AsyncConnection, check: ChainCheck, after: int, last: int, page: int) -> Broken | None:
    """`check` over entries after..last, a page at a time; the first break, if any."""
    while after < last:
        rows = (await connection.execute(select(*_CHAIN).where(AuditEntry.seq > after, AuditEntry.seq <= last)
                                         .order_by(AuditEntry.seq).limit(page))).all()
        if not rows:
            break
        if (broken := check.walk(_decoded(rows))) is not None:
            return broken
        after = rows[-1].seq
    return None


def _decoded(rows: Sequence[Row[Any]]) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        columns: tuple[Any, ...] = tuple(row[:-1])
        yield *columns, _detail(row[-1])


def _detail(stored: Any) -> Any:
    """`detail` as stored text (SQLite), decoded as every JSON column is; asyncpg hands it over decoded already."""
    return json_value(stored) if isinstance(stored, str) else stored


@dataclass(frozen=True, slots=True)
class Stretch:
    """Entries first..last, checked on their own: each entry's hash needs only its own content and the hash before
    it. `prev` is the stored hash of entry first − 1 (checked by the stretch before), `key_id` the key the last
    marker before `first` switched to."""
    first: int
    last: int
    prev: str
    key_id: str | None
    is_last: bool


@dataclass(frozen=True, slots=True)
class Checked:
    broken: Broken | None
    count: int
    prev: str
    first_keyed: int | None
    key_ids: list[str]
    anchored: list[Anchor]


async def verify_in_parallel(database_url: str, keys: Keyring = Keyring(), anchors: Sequence[Anchor] = (), *,
                             processes: int, page: int = PAGE) -> Verification:
    """`verify`, the trail cut into `processes` stretches checked side by side, a process each: what one core
    does in 15 s, two do in 8. The answer is the one `verify` gives: the first break of the first broken stretch
    (the stretches before it intact), then the head and the anchors checked over the whole."""
    engine = create_engine(database_url, read_only=True)
    try:
        async with engine.connect() as connection:
            head = await _head(connection)
            if processes < 2 or head.seq < PARALLEL_FROM:
                return await _walk_whole(connection, head, keys, anchors, page)
            size = -(-head.seq // processes)
            stretches = [await _stretch(connection, first, min(first + size - 1, head.seq), head.seq)
                         for first in range(1, head.seq + 1, size)]
    finally:
        await engine.dispose()
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(len(stretches), mp_context=get_context("spawn")) as pool:
        results = await asyncio.gather(*(loop.run_in_executor(pool, check_stretch, database_url, keys,
                                                              tuple(anchors), stretch, page)
                                         for stretch in stretches))
    check = ChainCheck(keys=keys, anchors=tuple(anchors))
    for result in results:
        check.count, check.prev = result.count, result.prev
        check.first_keyed = check.first_keyed or result.first_keyed
        check.key_ids += result.key_ids
        check.anchored += result.anchored
        if result.broken is not None:
            return Verification.of(check, result.broken)
    return Verification.of(check, check.finish(head.seq, head.hash))


async def _stretch(connection: AsyncConnection, first: int, last: int, head: int) -> Stretch:
    prev = GENESIS if first == 1 else (await connection.execute(
        select(AuditEntry.hash).where(AuditEntry.seq == first - 1))).scalar_one_or_none()
    switch = (await connection.execute(
        select(type_coerce(AuditEntry.detail, String)).where(AuditEntry.kind == KEYED, AuditEntry.seq < first)
        .order_by(AuditEntry.seq.desc()).limit(1))).scalar_one_or_none()
    key_id = str(_detail(switch).get("key_id")) if switch is not None else None
    # An entry missing before `first` is found by the stretch before; this one's answer is then not read.
    return Stretch(first, last, prev or GENESIS, key_id, last == head)


def check_stretch(database_url: str, keys: Keyring, anchors: tuple[Anchor, ...], stretch: Stretch,
                  page: int) -> Checked:
    """One stretch, in a process of its own (`verify_in_parallel`)."""
    gc.disable()  # a few objects per entry, freed by reference counting; the collector would only rescan them
    return asyncio.run(_check_stretch(database_url, keys, anchors, stretch, page))


async def _check_stretch(database_url: str, keys: Keyring, anchors: tuple[Anchor, ...], stretch: Stretch,
                         page: int) -> Checked:
    check = ChainCheck(keys=keys, anchors=anchors, count=stretch.first - 1, prev=stretch.prev,
                       key=keys.find(stretch.key_id) if stretch.key_id else None)
    engine = create_engine(database_url, read_only=True)
    try:
        async with engine.connect() as connection:
            broken = await _walk(connection, check, stretch.first - 1, stretch.last, page)
    finally:
        await engine.dispose()
    if broken is None and not stretch.is_last and check.count != stretch.last:  # the last: `finish` says it
        broken = Broken(check.count + 1, f"entry {check.count + 1} is missing")
    return Checked(broken, check.count, check.prev, check.first_keyed, check.key_ids, check.anchored)


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
