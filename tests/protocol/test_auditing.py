"""Challenges, audit distance and sector auditing (spec 04 sections 1-2).

The numba keyed-BLAKE3 kernel is checked against the ``blake3`` package; expected challenge
values are recomputed from the spec formulas.
"""

from __future__ import annotations

import numpy as np
import pytest
from blake3 import blake3

from services.protocol.auditing import (
    AuditError,
    audit_location,
    audit_plot,
    audit_sector,
    audit_sectors,
    audit_values,
    bidirectional_distance,
    blake3_hash_rows,
    derive_global_challenge,
    derive_global_randomness,
    global_challenge_from_pot_output,
    order_by_best_distance,
    s_bucket_audit_index,
    sector_slot_challenge,
)
from services.protocol.sector import SectorMetadata, sector_contents_map_size, sector_size

U64_MAX = 2**64 - 1
RNG = np.random.default_rng(7)


def _bytes(n: int) -> bytes:
    return RNG.integers(0, 256, n, dtype=np.uint8).tobytes()


def _reference_distance(key: bytes, chunk: bytes, global_challenge: bytes) -> int:
    a = int.from_bytes(blake3(chunk, key=key).digest()[:8], "little")
    g = int.from_bytes(global_challenge[:8], "little")
    return min((a - g) % 2**64, (g - a) % 2**64)


def test_global_challenge_formula() -> None:
    pot_output = bytes(range(16))
    randomness = blake3(pot_output).digest()
    assert derive_global_randomness(pot_output) == randomness
    expected = blake3(randomness + (12345).to_bytes(8, "little")).digest()
    assert derive_global_challenge(randomness, 12345) == expected
    assert global_challenge_from_pot_output(pot_output, 12345) == expected
    with pytest.raises(ValueError, match="16 bytes"):
        derive_global_randomness(bytes(15))
    with pytest.raises(ValueError, match="u64"):
        derive_global_challenge(randomness, -1)


def test_sector_slot_challenge_and_s_bucket() -> None:
    sector_id = bytes(range(32))
    challenge = bytes([0xFF]) * 32
    slot_challenge = sector_slot_challenge(sector_id, challenge)
    assert slot_challenge == bytes(b ^ 0xFF for b in sector_id)
    assert s_bucket_audit_index(slot_challenge) == int.from_bytes(slot_challenge[:2], "little") == 0xFEFF


def test_bidirectional_distance_wraps() -> None:
    assert bidirectional_distance(5, 3) == 2
    assert bidirectional_distance(3, 5) == 2
    assert bidirectional_distance(0, U64_MAX) == 1
    assert bidirectional_distance(0, 2**63) == 2**63


def test_kernel_matches_blake3_keyed_hash() -> None:
    key = _bytes(32)
    chunks = _bytes(32 * 1000)  # not a multiple of the 16 lanes: exercises the tail
    values = audit_values(key, chunks + _bytes(32 * 3))[:1000]
    for i in range(1000):
        expected = int.from_bytes(blake3(chunks[32 * i : 32 * i + 32], key=key).digest()[:8], "little")
        assert int(values[i]) == expected


def test_audit_sectors_matches_reference_and_orders_candidates() -> None:
    global_challenge = _bytes(32)
    solution_range = 2**62
    sectors = [(i, _bytes(32), _bytes(32 * (17 * i + 3))) for i in range(6)]
    sectors.append((6, _bytes(32), b""))  # empty s-bucket
    results = audit_sectors(sectors, global_challenge, solution_range)
    assert len(results) == 7 and results[6] is None
    for (index, sector_id, data), result in zip(sectors, results):
        key = sector_slot_challenge(sector_id, global_challenge)
        distances = [_reference_distance(key, data[j : j + 32], global_challenge) for j in range(0, len(data), 32)]
        expected = sorted(
            [(d, j) for j, d in enumerate(distances) if d <= solution_range // 2], key=lambda t: t[0]
        )
        if not expected:
            assert result is None
            continue
        assert result.sector_index == index
        assert result.s_bucket == s_bucket_audit_index(key)
        assert [(c.distance, c.chunk_offset) for c in result.candidates] == expected


def test_audit_range_extremes() -> None:
    global_challenge = _bytes(32)
    sector_id = _bytes(32)
    data = _bytes(32 * 50)
    everything = audit_sector(0, sector_id, global_challenge, U64_MAX, data)
    assert len(everything.candidates) == 50
    assert audit_sector(0, sector_id, global_challenge, 0, data) is None


def test_ties_keep_chunk_order() -> None:
    global_challenge = _bytes(32)
    sector_id = _bytes(32)
    chunk = _bytes(32)
    result = audit_sector(0, sector_id, global_challenge, U64_MAX, chunk * 5)
    assert [c.chunk_offset for c in result.candidates] == [0, 1, 2, 3, 4]


def test_order_by_best_distance() -> None:
    global_challenge = _bytes(32)
    sectors = [(i, _bytes(32), _bytes(32 * 40)) for i in range(5)]
    ordered = order_by_best_distance(audit_sectors(sectors, global_challenge, 2**63))
    assert [r.best_distance for r in ordered] == sorted(r.best_distance for r in ordered)


def test_audit_location_uses_metadata_prefix_sums() -> None:
    sector_id = _bytes(32)
    global_challenge = _bytes(32)
    sizes = RNG.integers(0, 4, 65536).astype(np.uint16)
    s_bucket, offset, size = audit_location(sector_id, global_challenge, sizes, 3)
    assert s_bucket == s_bucket_audit_index(sector_slot_challenge(sector_id, global_challenge))
    assert offset == sector_contents_map_size(3) + 32 * int(sizes[:s_bucket].sum())
    assert size == 32 * int(sizes[s_bucket])


def test_bad_input() -> None:
    with pytest.raises(AuditError, match="multiple of 32"):
        audit_sector(0, bytes(32), bytes(32), 10, bytes(33))
    with pytest.raises(AuditError, match="u64"):
        audit_sector(0, bytes(32), bytes(32), 2**64, bytes(32))
    with pytest.raises(ValueError, match="sector id"):
        audit_sector(0, bytes(31), bytes(32), 10, bytes(32))


def test_audit_plot_reads_each_sectors_s_bucket() -> None:
    global_challenge = _bytes(32)
    n = 1
    sectors = []
    for index in range(3):
        sizes = np.zeros(65536, dtype=np.uint16)
        sizes[RNG.permutation(65536)[:32768]] = 1
        sectors.append((_bytes(32), SectorMetadata(index, n, sizes, 1)))
    plot = _bytes(3 * sector_size(n))
    results = audit_plot(memoryview(plot), sectors, global_challenge, U64_MAX)
    for (sector_id, metadata), result in zip(sectors, results):
        s_bucket, offset, size = audit_location(sector_id, global_challenge, metadata.s_bucket_sizes, n)
        assert metadata.s_bucket_byte_range(s_bucket) == (offset, size)
        start = metadata.sector_index * sector_size(n) + offset
        expected = audit_sector(metadata.sector_index, sector_id, global_challenge, U64_MAX, plot[start : start + size])
        assert result == expected
    with pytest.raises(AuditError, match="too short"):
        audit_plot(plot[: sector_size(n)], sectors, global_challenge, U64_MAX)


@pytest.mark.parametrize("length", [0, 1, 32, 64, 65, 160, 1024])
def test_blake3_hash_rows_matches_blake3(length: int) -> None:
    rows = RNG.integers(0, 256, (21, length), dtype=np.uint8)
    digests = blake3_hash_rows(rows)
    for i in range(21):
        assert digests[i].tobytes() == blake3(rows[i].tobytes()).digest()
    with pytest.raises(ValueError, match="1024"):
        blake3_hash_rows(np.zeros((1, 1025), dtype=np.uint8))
