"""The reusable build arena and the packed table layout (scratch.py, layout.py).

A reused arena must never leak one build's data into the next (same seed -> same tables, after
builds at other seeds and sizes), growing it mid-table must not change anything, and the GPU
backend's host-side packing must give the CPU layout. Checked against the reference vectors.
"""

from __future__ import annotations

import numpy as np
import pytest
from pos_vector_data import load_vectors

from services.protocol.hashes import blake3_hash
from services.protocol.pos import TableScratch, create_tables, release_thread_scratch, thread_scratch
from services.protocol.pos.layout import pack_interleaved, pair_bits, pairs_dtype, unpack_pairs
from services.protocol.pos.matching import TARGET_COL, TARGET_ROW, bucketize, find_matches, find_matches_into
from services.protocol.pos.params import num_buckets


def _vector_seed(k: int, index: int) -> tuple[bytes, dict]:
    entry = load_vectors(k)["seeds"][index]
    return bytes.fromhex(entry["seed"]), entry


def _check_against_vectors(tables, entry) -> None:
    assert list(tables.table_sizes) == [t["count"] for t in entry["tables"]]
    for challenge in entry["challenges"]:
        assert [p.hex() for p in tables.find_proofs(challenge["challenge_index"])] == challenge["proofs"]


def _same_arrays(a, b) -> bool:
    return (a.sizes == b.sizes and np.array_equal(a.x, b.x) and np.array_equal(a.y7, b.y7)
            and all(np.array_equal(p, q) for p, q in zip(a.children, b.children)))


def test_reused_scratch_gives_identical_tables():
    scratch = TableScratch()
    seed, entry = _vector_seed(17, 2)
    first = create_tables(seed, 17, backend="cpu", scratch=scratch)
    _check_against_vectors(first, entry)
    for other in (blake3_hash(b"other"), bytes(32)):
        create_tables(other, 17, backend="cpu", scratch=scratch)
    create_tables(seed, 12, backend="cpu", scratch=scratch)  # smaller K in the same arena
    again = create_tables(seed, 17, backend="cpu", scratch=scratch)
    assert _same_arrays(first._arrays, again._arrays)
    fresh = create_tables(seed, 17, backend="cpu", scratch=TableScratch())
    assert _same_arrays(first._arrays, fresh._arrays)


class _TightScratch(TableScratch):
    """An arena with room for 2^K + 512 entries: larger tables grow it mid-build."""

    HEADROOM_SHIFT = 40


def test_scratch_growth_mid_table_keeps_results():
    seed, entry = _vector_seed(17, 2)  # its tables grow to 133,007 entries
    assert max(t["count"] for t in entry["tables"]) > (1 << 17) + 512
    scratch = _TightScratch()
    tables = create_tables(seed, 17, backend="cpu", scratch=scratch)
    assert scratch.capacity > (1 << 17) + 512
    _check_against_vectors(tables, entry)


def test_find_matches_resumes_where_it_stopped():
    rng = np.random.default_rng(21)
    n_buckets = 40
    y = rng.integers(0, n_buckets * 15113, size=9000).astype(np.uint32)
    order, sorted_y, starts = bucketize(y, n_buckets)
    left, right = find_matches(sorted_y, starts, n_buckets)
    bits = pair_bits(n_buckets)
    pairs = np.empty(700, dtype=pairs_dtype(bits))  # room for one bucket pair at a time
    collected, n, next_pair, calls = [], 0, 0, 0
    while next_pair < n_buckets - 1:
        n, next_pair = find_matches_into(sorted_y, starts, n_buckets, TARGET_ROW, TARGET_COL, pairs, n, next_pair, bits)
        collected.append(pairs[:n].copy())
        n, calls = 0, calls + 1
    assert calls > 5
    got_left, got_right = unpack_pairs(np.concatenate(collected), bits)
    assert np.array_equal(got_left, left) and np.array_equal(got_right, right)


def test_layout_packing_matches_interleaved_form():
    """The GPU backend packs its interleaved (left, right) parents with ``pack_interleaved``
    (cupy); with numpy it must give exactly the CPU build's arrays."""
    tables = create_tables(blake3_hash(b"layout"), 16, backend="cpu")
    arrays = tables._arrays
    assert arrays.pair_bits == pair_bits(num_buckets(16))
    for packed in arrays.children:
        left, right = unpack_pairs(packed, arrays.pair_bits)
        assert np.all(right > left) and np.all(right - left < 1024)
        interleaved = np.empty(2 * packed.shape[0], dtype=np.uint32)
        interleaved[0::2], interleaved[1::2] = left, right
        repacked = pack_interleaved(np, interleaved, arrays.pair_bits)
        assert repacked.dtype == packed.dtype and np.array_equal(repacked, packed)
    assert pairs_dtype(pair_bits(num_buckets(20))) == np.uint32
    assert pairs_dtype(pair_bits(num_buckets(21))) == np.uint64


def test_tables_keep_only_what_proof_search_needs():
    seed, entry = _vector_seed(17, 0)
    lean = create_tables(seed, 17, backend="cpu")
    full = create_tables(seed, 17, backend="cpu", keep_table_ys=True)
    assert np.array_equal(lean.table_ys(7), full.table_ys(7))
    assert lean.nbytes < full.nbytes
    for table in range(1, 7):
        with pytest.raises(ValueError, match="keep_table_ys=True"):
            lean.table_ys(table)
    proofs, found = lean.find_proofs_for_all_s_buckets()
    full_proofs, full_found = full.find_proofs_for_all_s_buckets()
    assert np.array_equal(found, full_found) and np.array_equal(proofs, full_proofs)


def test_an_arena_serves_one_build_at_a_time():
    scratch = TableScratch()
    with scratch.in_use, pytest.raises(RuntimeError, match="in use by another table build"):
        create_tables(bytes(32), 12, backend="cpu", scratch=scratch)  # as if another thread built in it
    assert create_tables(bytes(32), 12, backend="cpu", scratch=scratch).table_sizes[0] == 1 << 12


def test_thread_scratch_is_per_thread_and_releasable():
    from concurrent.futures import ThreadPoolExecutor

    mine = thread_scratch()
    assert thread_scratch() is mine
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(thread_scratch).result() is not mine
    create_tables(bytes(32), 12, backend="cpu")
    assert thread_scratch().nbytes > 0
    release_thread_scratch()
    assert thread_scratch() is not mine and thread_scratch().nbytes == 0
