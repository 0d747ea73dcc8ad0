"""Tables, proofs, qualities and verification against the reference-generated vector files.

Every field of pos_k17.json / pos_k20.json seeds is checked: table counts, sorted-y hashes,
first/last ys, every challenge's proofs in order, first proof, proof hashes, qualities, verify
results and the three negative cases. K=20 over all 8 seeds is marked slow.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from pos_vector_data import load_vectors

from services.protocol.hashes import blake3_hash
from services.protocol.parallel import Workers
from services.protocol.pos import create_tables, proof_hash, proof_size, verify, verify_quality


def _check_tables(tables, seed_entry):
    for expected in seed_entry["tables"]:
        ys = tables.table_ys(expected["table"])
        assert ys.shape[0] == expected["count"], expected["table"]
        is_sorted = bool(np.all(ys[1:] >= ys[:-1]))
        assert is_sorted == expected["bucket_order_is_sorted"]
        assert blake3_hash(np.sort(ys).astype("<u4").tobytes()).hex() == expected["sorted_ys_blake3"]
        assert [int(y) for y in ys[:16]] == expected["first_ys"]
        assert [int(y) for y in ys[-8:]] == expected["last_ys"]


def _check_challenges(tables, seed, next_seed, seed_entry, k, has_first_proof_field):
    batch_indices = np.array([c["challenge_index"] for c in seed_entry["challenges"]], dtype=np.uint32)
    batch_proofs, batch_found = tables.find_first_proofs(batch_indices)
    for row, challenge in enumerate(seed_entry["challenges"]):
        ci = challenge["challenge_index"]
        proofs = tables.find_proofs(ci)
        assert [p.hex() for p in proofs] == challenge["proofs"], ci
        assert len(proofs) == challenge["n_proofs"]
        first = tables.find_proof(ci)
        expected_first = challenge["proofs"][0] if challenge["proofs"] else None
        if has_first_proof_field:
            assert challenge["first_proof"] == expected_first
        assert (first.hex() if first else None) == expected_first
        assert bool(batch_found[row]) == (expected_first is not None)
        if expected_first is not None:
            assert batch_proofs[row].tobytes().hex() == expected_first
        else:
            assert not batch_proofs[row].any()
        assert [proof_hash(p).hex() for p in proofs] == challenge["proof_hashes"]
        quality_challenge = ci.to_bytes(4, "little") + bytes(28)
        assert [q.hex() for q in tables.find_qualities(quality_challenge)] == challenge["qualities"]
        assert [verify(seed, ci, p, k) for p in proofs] == challenge["verify_only"]
        qualities = [verify_quality(seed, quality_challenge, p, k) for p in proofs]
        assert [q is not None and q.hex() == expected for q, expected in
                zip(qualities, challenge["qualities"])] == challenge["verify_quality_matches"]
        wrong_ci = (ci + 1) & 0xFFFFFFFF
        assert [verify(seed, wrong_ci, p, k) for p in proofs] == challenge["verify_only_wrong_challenge"]
        flipped = [bytes([p[0] ^ 1]) + p[1:] for p in proofs]
        assert [verify(seed, ci, p, k) for p in flipped] == challenge["verify_only_bitflip"]
        assert [verify(next_seed, ci, p, k) for p in proofs] == challenge["verify_only_wrong_seed"]


def _next_seed(index: int) -> bytes:
    return blake3_hash((index + 1).to_bytes(4, "little"))


def _run_seed(k: int, seed_index: int, workers: Workers | None = None) -> None:
    data = load_vectors(k)
    assert data["proof_len"] == proof_size(k)
    entry = data["seeds"][seed_index]
    seed = bytes.fromhex(entry["seed"])
    tables = create_tables(seed, k, backend="cpu", keep_table_ys=True, workers=workers)
    _check_tables(tables, entry)
    _check_challenges(tables, seed, _next_seed(entry["index"]), entry, k, has_first_proof_field=k == 20)


@pytest.mark.parametrize("seed_index", range(8))
def test_reference_vectors_k17(seed_index):
    _run_seed(17, seed_index)


def test_reference_vectors_k20_first_seed():
    _run_seed(20, 0)


@pytest.mark.slow
@pytest.mark.parametrize("seed_index", range(1, 8))
def test_reference_vectors_k20_other_seeds(seed_index):
    _run_seed(20, seed_index)


@pytest.mark.parametrize("seed_index", range(8))
def test_reference_vectors_k17_one_build_split_over_workers(seed_index):
    # 3 parts: uneven bucket ranges and Fn ranges, concatenated in bucket order
    with ThreadPoolExecutor(3) as pool:
        _run_seed(17, seed_index, Workers(pool, 3))


def test_reference_vectors_k20_one_build_split_over_two_workers():
    with ThreadPoolExecutor(2) as pool:
        _run_seed(20, 1, Workers(pool, 2))


@pytest.mark.parametrize("k", [17, 20])
def test_vector_summary_counts(k):
    data = load_vectors(k)
    challenges = [c for s in data["seeds"] for c in s["challenges"]]
    assert len(challenges) == data["summary"]["challenges_total"]
    assert sum(c["n_proofs"] > 0 for c in challenges) == data["summary"]["challenges_with_proof"]
