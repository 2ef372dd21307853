from dataclasses import replace
from datetime import UTC, datetime

from bot.domain.audit import GENESIS, AuditRecord, chain_hash

R = AuditRecord(kind="payment.matched", at=datetime(2026, 11, 28, tzinfo=UTC), invoice="INV-1", detail={"b": 1, "a": 2})


def test_hash_covers_previous_hash_sequence_and_content():
    h = chain_hash(GENESIS, 1, R)
    assert h != chain_hash("1" * 64, 1, R)
    assert h != chain_hash(GENESIS, 2, R)
    assert h != chain_hash(GENESIS, 1, replace(R, invoice="INV-2"))


def test_hash_is_canonical():
    same = AuditRecord(kind=R.kind, at=R.at, invoice="INV-1", detail={"a": 2, "b": 1})
    assert chain_hash(GENESIS, 1, R) == chain_hash(GENESIS, 1, same)
