from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.domain.audit import GENESIS, KEYED, Anchor, AuditKey, AuditRecord, ChainCheck, Keyring, chain_hash, marker

R = AuditRecord(kind="payment.matched", at=datetime(2026, 11, 28, tzinfo=UTC), invoice="INV-1", detail={"b": 1, "a": 2})
KEY, OTHER = AuditKey(b"k" * 32), AuditKey(b"o" * 32)


def test_hash_covers_previous_hash_sequence_and_content():
    h = chain_hash(GENESIS, 1, R)
    assert h != chain_hash("1" * 64, 1, R)
    assert h != chain_hash(GENESIS, 2, R)
    assert h != chain_hash(GENESIS, 1, replace(R, invoice="INV-2"))


def test_hash_is_canonical():
    same = AuditRecord(kind=R.kind, at=R.at, invoice="INV-1", detail={"a": 2, "b": 1})
    assert chain_hash(GENESIS, 1, R) == chain_hash(GENESIS, 1, same)


def test_a_keyed_hash_needs_the_key():
    keyed = chain_hash(GENESIS, 1, R, KEY)
    assert keyed != chain_hash(GENESIS, 1, R) and keyed != chain_hash(GENESIS, 1, R, OTHER)
    assert keyed == chain_hash(GENESIS, 1, R, AuditKey(b"k" * 32))


def test_a_key_id_is_a_fingerprint_that_reveals_nothing():
    assert len(KEY.id) == 8 and KEY.id != OTHER.id and "kkkk" not in KEY.id + repr(KEY)
    assert Keyring.of("n" * 20, ["k" * 32]).find(KEY.id) == KEY


def chain(*steps: tuple[AuditRecord, AuditKey | None]) -> list[tuple[int, str, str, AuditRecord]]:
    prev, rows = GENESIS, []
    for seq, (record, key) in enumerate(steps, 1):
        digest = chain_hash(prev, seq, record, key)
        rows.append((seq, prev, digest, record))
        prev = digest
    return rows


def walk(rows: list[tuple[int, str, str, AuditRecord]], check: ChainCheck):  # type: ignore[no-untyped-def]
    for row in rows:
        if (broken := check.step(*row)) is not None:
            return broken
    return check.finish(rows[-1][0], rows[-1][2])


def test_plain_entries_then_a_marker_then_keyed_entries_verify():
    rows = chain((R, None), (R, None), (marker(R.at, KEY, None), KEY), (R, KEY))
    check = ChainCheck(keys=Keyring(KEY))
    assert walk(rows, check) is None
    assert (check.first_keyed, check.key_ids) == (3, [KEY.id])


def test_a_keyed_trail_rewritten_with_plain_hashes_is_broken():
    rows = chain((marker(R.at, KEY, None), KEY), (R, KEY), (R, KEY))
    # The attacker keeps the marker, edits entry 2 and recomputes 2 and 3 as best they can: without the key.
    edited = replace(R, invoice="INV-9")
    h2 = chain_hash(rows[0][2], 2, edited)
    forged = [rows[0], (2, rows[0][2], h2, edited), (3, h2, chain_hash(h2, 3, R), R)]
    broken = walk(forged, ChainCheck(keys=Keyring(KEY)))
    assert broken is not None and broken.seq == 2 and "does not match its hash" in broken.reason
    assert walk(rows, ChainCheck(keys=Keyring(KEY))) is None


def test_markers_removed_and_everything_recomputed_plain_is_broken_when_a_key_is_set():
    plain = chain((R, None), (R, None))
    broken = walk(plain, ChainCheck(keys=Keyring(KEY)))
    assert broken is not None and "no entry is keyed" in broken.reason
    assert walk(plain, ChainCheck()) is None  # without a key, nobody can tell


def test_a_marker_for_an_unknown_key_is_named():
    rows = chain((marker(R.at, OTHER, None), OTHER))
    broken = walk(rows, ChainCheck(keys=Keyring(KEY)))
    assert broken is not None and OTHER.id in broken.reason and "AUDIT_PREVIOUS_KEYS" in broken.reason
    broken = walk(rows, ChainCheck())
    assert broken is not None and "set AUDIT_KEY" in broken.reason


def test_an_anchor_must_match_and_still_be_there():
    rows = chain((R, None), (R, None), (R, None))
    assert walk(rows, ChainCheck(anchors=(Anchor(2, rows[1][2]),))) is None
    broken = walk(rows, ChainCheck(anchors=(Anchor(2, "f" * 64),)))
    assert broken is not None and broken.seq == 2
    broken = walk(rows[:1], ChainCheck(anchors=(Anchor(2, rows[1][2]),)))  # the tail cut, the head moved back
    assert broken is not None and "cut below it" in broken.reason


@pytest.mark.parametrize("text", ["", "12", "0:" + "a" * 64, "x:" + "a" * 64, "3:" + "a" * 63, "3:" + "g" * 64])
def test_an_anchor_is_seq_colon_hash(text):
    with pytest.raises(ValueError):
        Anchor.parse(text)
    assert str(Anchor.parse("3:" + "A" * 64)) == "3:" + "a" * 64


def test_the_marker_kind():
    assert marker(R.at, KEY, "abcd1234").detail == {"key_id": KEY.id, "previous_key_id": "abcd1234"}
    assert marker(R.at, KEY, None).kind == KEYED
