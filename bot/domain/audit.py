"""The audit chain's arithmetic: each entry's hash covers the previous hash and its own canonical content.

Unkeyed, a hash is SHA-256(prev_hash "\\n" canonical): anyone who can write the database can recompute it. Keyed,
it is HMAC-SHA256(key, the same bytes): without the key nobody can. A trail switches key with a marker entry
(`audit.keyed`, naming the new key's id, hashed with the new key); everything after it uses that key, everything
before keeps the hash it was written with, so a trail started unkeyed stays verifiable when it becomes keyed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import orjson

GENESIS = "0" * 64
KEYED = "audit.keyed"  # the marker entry's kind: detail {"key_id": …, "previous_key_id": … or None}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    kind: str
    at: datetime
    actor: str = "system"
    source: str | None = None
    channel: str | None = None
    invoice: str | None = None
    customer_id: str | None = None
    amount: str | None = None
    currency: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


FIELDS = tuple(f.name for f in fields(AuditRecord))


@dataclass(frozen=True, slots=True)
class AuditKey:
    """A chain key. Only its id (a fingerprint that reveals nothing of it) is ever written or printed."""

    secret: bytes = field(repr=False)

    @property
    def id(self) -> str:
        return hmac.new(self.secret, b"paybot-audit-key-id", hashlib.sha256).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class Keyring:
    """The key new entries are chained with, and older keys still needed to verify what they chained."""

    current: AuditKey | None = None
    previous: tuple[AuditKey, ...] = ()

    @classmethod
    def of(cls, current: str | None, previous: Iterable[str] = ()) -> Keyring:
        return cls(AuditKey(current.encode()) if current else None,
                   tuple(AuditKey(p.encode()) for p in previous if p))

    def find(self, key_id: str) -> AuditKey | None:
        return next((k for k in (self.current, *self.previous) if k is not None and k.id == key_id), None)


#: json.dumps(…, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str), built once: a verify of a
#: million entries would otherwise build a million encoders.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical(seq: int, record: AuditRecord) -> bytes:
    content = {name: getattr(record, name) for name in FIELDS}
    content["seq"], content["at"] = seq, record.at.isoformat()
    return _CANONICAL.encode(content).encode()


def chain_hash(prev_hash: str, seq: int, record: AuditRecord, key: AuditKey | None = None) -> str:
    return _digest(prev_hash.encode() + b"\n" + canonical(seq, record), key)


def hashes_to(digest: str, prev_hash: str, seq: int, record: AuditRecord, key: AuditKey | None = None) -> bool:
    """`chain_hash(…) == digest`, for an entry read back from the database, in half the time: orjson encodes what
    the database gives back (strings, integers, lists, objects) to json's canonical bytes exactly, so it is tried
    first; json itself decides whenever the two could differ (a float, an integer beyond 64 bits)."""
    content = {name: getattr(record, name) for name in FIELDS}
    content["seq"], content["at"] = seq, record.at.isoformat()
    prefix = prev_hash.encode() + b"\n"
    try:
        if _digest(prefix + orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=str), key) == digest:
            return True
    except orjson.JSONEncodeError:
        pass
    return _digest(prefix + _CANONICAL.encode(content).encode(), key) == digest


def _digest(message: bytes, key: AuditKey | None) -> str:
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.digest(key.secret, message, "sha256").hex()  # hmac.new(…).hexdigest(), without the object


def marker(at: datetime, key: AuditKey, previous_key_id: str | None) -> AuditRecord:
    """The entry that switches the chain to `key` from here on (itself hashed with `key`)."""
    return AuditRecord(kind=KEYED, at=at, detail={"key_id": key.id, "previous_key_id": previous_key_id})


@dataclass(frozen=True, slots=True)
class Anchor:
    """A published head: entry `seq` had hash `hash` when it was published outside the database."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """`SEQ:HASH`, as logged, posted and printed; ValueError otherwise."""
        seq, sep, digest = text.strip().partition(":")
        digest = digest.lower()
        if not sep or not seq.isdigit() or int(seq) < 1 or len(digest) != 64 \
                or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{text!r} is not SEQ:HASH (a positive entry number and a 64-digit hex hash)")
        return cls(int(seq), digest)

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


@dataclass(frozen=True, slots=True)
class Broken:
    seq: int
    reason: str


@dataclass
class ChainCheck:
    """Walks a trail entry by entry (oldest first) and says where it first stops being what it claims to be.

    Feed every entry to `step`; the first non-None answer is the break. Then `finish` with the head row.
    """

    keys: Keyring = field(default_factory=Keyring)
    anchors: tuple[Anchor, ...] = ()
    count: int = 0
    prev: str = GENESIS
    key: AuditKey | None = None
    first_keyed: int | None = None  # the seq of the first marker, if any
    key_ids: list[str] = field(default_factory=list)
    anchored: list[Anchor] = field(default_factory=list)

    def step(self, seq: int, prev_hash: str, digest: str, record: AuditRecord) -> Broken | None:
        expected = self.count + 1
        if seq != expected:
            return Broken(expected, f"entry {expected} is missing")
        if prev_hash != self.prev:
            return Broken(seq, "prev_hash does not match the previous entry's hash")
        if record.kind == KEYED:
            key_id = str(record.detail.get("key_id"))
            key = self.keys.find(key_id)
            if key is None:
                return Broken(seq, f"switches to key {key_id}, which is neither AUDIT_KEY nor in AUDIT_PREVIOUS_KEYS"
                              if self.keys.current else f"switches to key {key_id}: set AUDIT_KEY to verify it")
            self.key = key
            self.first_keyed = self.first_keyed or seq
            self.key_ids.append(key_id)
        if not hashes_to(digest, prev_hash, seq, record, self.key):
            return Broken(seq, "content does not match its hash" + (f" (key {self.key.id})" if self.key else ""))
        for anchor in self.anchors:
            if anchor.seq == seq:
                if anchor.hash != digest:
                    return Broken(seq, f"its hash differs from the published anchor {anchor}")
                self.anchored.append(anchor)
        self.prev, self.count = digest, seq
        return None

    def walk(self, rows: Iterable[Sequence[Any]]) -> Broken | None:
        """`step` for each row of (seq, prev_hash, hash, *FIELDS), in order; the first break, if any."""
        for seq, prev_hash, digest, *content in rows:
            if (broken := self.step(seq, prev_hash, digest, AuditRecord(*content))) is not None:
                return broken
        return None

    def finish(self, head_seq: int, head_hash: str) -> Broken | None:
        if head_seq != self.count or head_hash != self.prev:
            return Broken(self.count + 1,
                          f"chain ends at {self.count} but its head says {head_seq}: entries were removed")
        for anchor in self.anchors:
            if anchor not in self.anchored:
                return Broken(anchor.seq, f"entry {anchor.seq} of the published anchor {anchor} is missing: "
                                          "the trail was cut below it")
        if self.keys.current is not None and self.count and self.first_keyed is None:
            return Broken(1, "AUDIT_KEY is set but no entry is keyed: paybot has not run with it yet "
                             "(start it once), or the trail was rewritten without its key markers")
        return None
