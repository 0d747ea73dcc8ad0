"""GPU backend parity: tables built with cupy must equal the CPU tables array for array, and
reproduce the reference vectors. Skipped (with the reason) where cupy or a CUDA device is
missing."""

from __future__ import annotations

import numpy as np
import pytest
from pos_vector_data import load_vectors

from services.protocol.pos import TableScratch, available_backends, create_tables
from services.protocol.pos.cpu_backend import build_tables_cpu

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif("gpu" not in available_backends(),
                       reason="no CUDA GPU visible to cupy (or cupy not installed): GPU parity NOT checked"),
]


def _assert_same_arrays(gpu_tables, cpu_arrays):
    arrays = gpu_tables._arrays
    assert arrays.sizes == cpu_arrays.sizes
    assert len(arrays.ys) == 7
    for table, (got, expected) in enumerate(zip(arrays.ys, cpu_arrays.ys), start=1):
        assert np.array_equal(got, expected), f"table {table} ys differ"
    assert np.array_equal(arrays.y7, cpu_arrays.y7)
    assert np.array_equal(arrays.x, cpu_arrays.x)
    assert arrays.pair_bits == cpu_arrays.pair_bits
    assert len(arrays.children) == len(cpu_arrays.children) == 6
    for table, (got, expected) in enumerate(zip(arrays.children, cpu_arrays.children), start=2):
        assert got.dtype == expected.dtype and np.array_equal(got, expected), f"table {table} parents differ"


@pytest.mark.parametrize("seed_index", range(8))
def test_gpu_matches_cpu_and_vectors_k17(seed_index):
    entry = load_vectors(17)["seeds"][seed_index]
    seed = bytes.fromhex(entry["seed"])
    tables = create_tables(seed, 17, backend="gpu", keep_table_ys=True)
    assert tables.backend == "gpu"
    _assert_same_arrays(tables, build_tables_cpu(seed, 17, TableScratch(), keep_table_ys=True))
    for challenge in entry["challenges"]:
        assert [p.hex() for p in tables.find_proofs(challenge["challenge_index"])] == challenge["proofs"]


def test_gpu_matches_cpu_k20_and_all_s_buckets():
    entry = load_vectors(20)["seeds"][0]
    seed = bytes.fromhex(entry["seed"])
    gpu_tables = create_tables(seed, 20, backend="gpu", keep_table_ys=True)
    cpu_tables = create_tables(seed, 20, backend="cpu", keep_table_ys=True)
    _assert_same_arrays(gpu_tables, cpu_tables._arrays)
    gpu_proofs, gpu_found = gpu_tables.find_proofs_for_all_s_buckets()
    cpu_proofs, cpu_found = cpu_tables.find_proofs_for_all_s_buckets()
    assert np.array_equal(gpu_found, cpu_found)
    assert np.array_equal(gpu_proofs, cpu_proofs)
    for challenge in entry["challenges"]:
        first = gpu_tables.find_proof(challenge["challenge_index"])
        assert (first.hex() if first else None) == challenge["first_proof"]


def test_auto_prefers_gpu():
    tables = create_tables(bytes(32), 17, backend="auto")
    assert tables.backend == "gpu"
