"""Challenges, audit distance and sector auditing (spec 04 sections 1-2) against the reference.

``sector_ref.json`` / ``sector_history_ref.json`` hold the reference ``audit_sector_sync`` on
their sectors for 20 / 16 challenges (built by the files' challenge rule): global challenge,
sector slot challenge, audited s-bucket and its size, every winning chunk offset with its
distance in the reference's order. ``derivations_ref.json`` holds ``bidirectional_distance``
and ``is_within_solution_range`` cases. The numba BLAKE3 kernels are also checked against the
maintained ``blake3`` package.
"""

from __future__ import annotations

import numpy as np
import pytest
from blake3 import blake3
from reference_vectors import challenge, load_json, reference_sector

from services.protocol.auditing import (
    AuditError,
    audit_location,
    audit_sector,
    audit_values,
    bidirectional_distance,
    blake3_hash_rows,
    chunk_distance,
    derive_global_challenge,
    derive_global_randomness,
    global_challenge_from_pot_output,
    is_within_solution_range,
    order_by_best_distance,
    s_bucket_audit_index,
    sector_audit_location,
    sector_slot_challenge,
)

U64_MAX = 2**64 - 1
RNG = np.random.default_rng(7)


def _bytes(n: int) -> bytes:
    return RNG.integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("name", ["p4", pytest.param("p8", marks=pytest.mark.slow), "p6"])
def test_reference_audits(name: str) -> None:
    """Every field of every audit of a reference sector (``p8`` is audited on our plot of it,
    which ``reference_vectors`` checks against the reference's sector hash first)."""
    sector = reference_sector(name)
    data = sector.sector_bytes()
    metadata = sector.metadata()
    sector_id = bytes.fromhex(sector.vector["sector_id"])
    audits = sector.vector["audits"]
    assert any(a["won"] for a in audits) and not all(a["won"] for a in audits)
    for audit in audits:
        where = f"audit {audit['i']}"
        pot_output, slot = challenge(sector.set_name, audit["i"])
        assert (pot_output.hex(), slot) == (audit["pot_output"], audit["slot"]), where
        global_challenge = derive_global_challenge(derive_global_randomness(pot_output), slot)
        assert global_challenge == global_challenge_from_pot_output(pot_output, slot)
        assert global_challenge.hex() == audit["global_challenge"], where
        slot_challenge = sector_slot_challenge(sector_id, global_challenge)
        assert slot_challenge.hex() == audit["sector_slot_challenge"], where
        assert s_bucket_audit_index(slot_challenge) == audit["s_bucket"], where

        s_bucket, offset, size = sector_audit_location(sector_id, global_challenge, metadata)
        assert (s_bucket, size) == (audit["s_bucket"], 32 * audit["s_bucket_size"]), where
        assert audit_location(sector_id, global_challenge, metadata.s_bucket_sizes, sector.pieces_in_sector) == (
            s_bucket, offset, size,
        )  # fmt: skip
        solution_range = int(audit["solution_range"])
        result = audit_sector(sector.sector_index, sector_id, global_challenge, solution_range, data[offset : offset + size])
        assert (result is not None) == audit["won"], where
        if result is None:
            assert audit["sector_index"] is None and audit["candidates"] == [], where
            continue
        assert result.sector_index == audit["sector_index"] and result.s_bucket == audit["s_bucket"], where
        assert result.sector_id == sector_id
        assert [(c.chunk_offset, c.distance) for c in result.candidates] == [
            (c["chunk_offset"], int(c["solution_distance"])) for c in audit["candidates"]
        ], where


def test_bidirectional_distance() -> None:
    cases = load_json("derivations_ref.json")["solution_range"]["bidirectional_distance"]
    for case in cases:
        assert bidirectional_distance(int(case["a"]), int(case["b"])) == int(case["distance"]), case


def test_is_within_solution_range() -> None:
    cases = load_json("derivations_ref.json")["solution_range"]["is_within_solution_range"]
    assert {case["within"] for case in cases} == {True, False}
    for case in cases:
        sector_id, global_challenge = bytes.fromhex(case["sector_id"]), bytes.fromhex(case["global_challenge"])
        slot_challenge = sector_slot_challenge(sector_id, global_challenge)
        assert slot_challenge.hex() == case["sector_slot_challenge"]
        assert s_bucket_audit_index(slot_challenge) == case["s_bucket_audit_index"]
        chunk = bytes.fromhex(case["chunk"])
        distance = chunk_distance(slot_challenge, global_challenge, chunk)
        assert distance == int(case["solution_distance"]), case
        assert is_within_solution_range(distance, int(case["solution_range"])) == case["within"], case
        keyed = blake3(chunk, key=slot_challenge).digest()
        assert int(audit_values(slot_challenge, chunk)[0]) == int.from_bytes(keyed[:8], "little")


# ---- properties and bad input


def test_kernel_matches_blake3_keyed_hash() -> None:
    key = _bytes(32)
    chunks = _bytes(32 * 1000)  # not a multiple of the 16 lanes: exercises the tail
    values = audit_values(key, chunks + _bytes(32 * 3))[:1000]
    for i in range(1000):
        expected = int.from_bytes(blake3(chunks[32 * i : 32 * i + 32], key=key).digest()[:8], "little")
        assert int(values[i]) == expected


def test_audit_range_extremes() -> None:
    global_challenge, sector_id, data = _bytes(32), _bytes(32), _bytes(32 * 50)
    assert len(audit_sector(0, sector_id, global_challenge, U64_MAX, data).candidates) == 50
    assert audit_sector(0, sector_id, global_challenge, 0, data) is None


def test_ties_keep_chunk_order() -> None:
    result = audit_sector(0, _bytes(32), _bytes(32), U64_MAX, _bytes(32) * 5)
    assert [c.chunk_offset for c in result.candidates] == [0, 1, 2, 3, 4]


def test_order_by_best_distance() -> None:
    global_challenge = _bytes(32)
    results = [audit_sector(i, _bytes(32), global_challenge, 2**63, _bytes(32 * 40)) for i in range(5)]
    ordered = order_by_best_distance(results + [None])
    assert [r.best_distance for r in ordered] == sorted(r.best_distance for r in ordered)


def test_bad_input() -> None:
    with pytest.raises(AuditError, match="multiple of 32"):
        audit_sector(0, bytes(32), bytes(32), 10, bytes(33))
    with pytest.raises(AuditError, match="u64"):
        audit_sector(0, bytes(32), bytes(32), 2**64, bytes(32))
    with pytest.raises(ValueError, match="sector id"):
        audit_sector(0, bytes(31), bytes(32), 10, bytes(32))
    with pytest.raises(ValueError, match="16 bytes"):
        derive_global_randomness(bytes(15))
    with pytest.raises(ValueError, match="u64"):
        derive_global_challenge(bytes(32), -1)


@pytest.mark.parametrize("length", [0, 1, 32, 64, 65, 160, 1024])
def test_blake3_hash_rows_matches_blake3(length: int) -> None:
    rows = RNG.integers(0, 256, (21, length), dtype=np.uint8)
    digests = blake3_hash_rows(rows)
    for i in range(21):
        assert digests[i].tobytes() == blake3(rows[i].tobytes()).digest()
    with pytest.raises(ValueError, match="1024"):
        blake3_hash_rows(np.zeros((1, 1025), dtype=np.uint8))
