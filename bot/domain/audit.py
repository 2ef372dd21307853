"""The audit chain's arithmetic: each entry's hash covers the previous hash and its own canonical content."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

GENESIS = "0" * 64


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


def canonical(seq: int, record: AuditRecord) -> bytes:
    content = {name: getattr(record, name) for name in FIELDS} | {"seq": seq, "at": record.at.isoformat()}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def chain_hash(prev_hash: str, seq: int, record: AuditRecord) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(seq, record)).hexdigest()
