"""The farm's batched audit agrees with the protocol's per-sector audit (spec 04 §2)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from official_farm import accepted_blocks, copy_farm, genesis_hash

from services.farm import AuditTable, Farm
from services.protocol.auditing import audit_plot, audit_sectors, sector_audit_location
from services.protocol.constants import RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS
from services.protocol.sector import SectorMetadata, sector_size

SEED = 20260101
PIECES = 3


def _random_sizes(rng: np.random.Generator) -> np.ndarray:
    sizes = rng.binomial(PIECES, 0.5, RECORD_NUM_S_BUCKETS).astype(np.int64)
    excess = int(sizes.sum()) - PIECES * RECORD_NUM_CHUNKS  # make the record chunks add up
    while excess:
        i = int(rng.integers(RECORD_NUM_S_BUCKETS))
        step = 1 if excess < 0 else -1
        if 0 <= sizes[i] + step <= PIECES:
            sizes[i] += step
            excess += step
    return sizes.astype(np.uint16)


@pytest.mark.parametrize("workers,batches", [(None, None), (3, None), (2, 7)])
def test_batched_audit_matches_per_sector_audit(tmp_path, workers, batches) -> None:
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    capacity, size = 6, sector_size(PIECES)
    plot = rng.integers(0, 256, capacity * size, dtype=np.uint8)
    path = tmp_path / "plot.bin"
    plot.tofile(path)
    table = AuditTable(capacity, PIECES, size)
    metadata = {}
    for row in (0, 2, 3, 5):
        metadata[row] = SectorMetadata(row, PIECES, _random_sizes(rng), 1)
        table.activate(row, rng.bytes(32), metadata[row].s_bucket_sizes)
    table.deactivate(3)
    del metadata[3]
    fd = os.open(path, os.O_RDONLY)
    words = np.fromfile(path, dtype="<u4")
    executor = ThreadPoolExecutor(workers) if workers else None
    try:
        for trial in range(20):
            challenge = rng.bytes(32)
            solution_range = int(rng.integers(1 << 60, 1 << 63)) * 2
            got = table.audit(words, challenge, solution_range, executor, batches, prefetch_fd=fd if workers else None)
            expected_input = []
            for row, md in metadata.items():
                sector_id = table.sector_ids[row].tobytes()
                _, offset, length = sector_audit_location(sector_id, challenge, md)
                start = row * size + offset
                expected_input.append((row, sector_id, plot[start:start + length]))
            expected = sorted((r for r in audit_sectors(expected_input, challenge, solution_range) if r),
                              key=lambda r: r.best_distance)
            assert [a.result for a in got] == expected, f"trial {trial}"
            assert all(a.generation == table.generation(a.result.sector_index) for a in got)
    finally:
        os.close(fd)
        if executor:
            executor.shutdown()


def test_audit_of_the_official_farm_matches_the_protocol(tmp_path) -> None:
    path = copy_farm(tmp_path / "farm")
    plot = (path / "plot.bin").read_bytes()
    with Farm.open(path, sectors=2, genesis_hash=genesis_hash(), max_pieces_in_sector=4) as farm, \
            ThreadPoolExecutor(2) as executor:
        sectors = [(farm.sector_id(i, 1), farm.sector_metadata(i)) for i in (0, 1)]
        for block in accepted_blocks():
            challenge = bytes.fromhex(block["globalChallenge"])
            got = farm.audit(challenge, block["votingSolutionRange"], executor)
            expected = sorted((r for r in audit_plot(plot, sectors, challenge, block["votingSolutionRange"]) if r),
                              key=lambda r: r.best_distance)
            assert [a.result for a in got] == expected
            winner = next(a.result for a in got if a.result.sector_index == block["solution"]["sectorIndex"])
            assert block["distance"] in [c.distance for c in winner.candidates]


def test_empty_plot_and_empty_s_buckets() -> None:
    table = AuditTable(2, PIECES, sector_size(PIECES))
    words = np.zeros(2 * sector_size(PIECES) // 4, dtype=np.uint32)
    assert table.audit(words, bytes(32), (1 << 64) - 1) == []
    table.activate(1, bytes(32), np.zeros(RECORD_NUM_S_BUCKETS, dtype=np.uint16))
    assert table.audit(words, bytes(32), (1 << 64) - 1) == []  # empty s-bucket: nothing to audit
    with pytest.raises(ValueError, match="32 bytes"):
        table.audit(words, bytes(31), 1)
