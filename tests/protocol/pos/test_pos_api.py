"""Public API behaviour: input validation, verification negatives, backend selection, shim."""

from __future__ import annotations

import numpy as np
import pytest

from services.protocol.hashes import blake3_hash
from services.protocol.pos import (
    available_backends,
    create_shim_tables,
    create_tables,
    proof_hash,
    quality_of_proof,
    shim_verify,
    verify,
    verify_quality,
)
from services.protocol.pos.api import resolve_backend

SEED = blake3_hash(b"pos api tests")


@pytest.fixture(scope="module")
def tables17():
    return create_tables(SEED, 17, backend="cpu")


def _some_proof(tables):
    for ci in range(1000):
        proof = tables.find_proof(ci)
        if proof is not None:
            return ci, proof
    raise AssertionError("no proof in 1000 challenges")


def test_verify_rejects_tampering(tables17):
    ci, proof = _some_proof(tables17)
    assert verify(SEED, ci, proof, 17)
    for byte in (0, 67, 135):
        for bit in (0, 7):
            tampered = bytearray(proof)
            tampered[byte] ^= 1 << bit
            assert not verify(SEED, ci, bytes(tampered), 17)
    assert not verify(SEED, ci, bytes(136), 17)
    assert not verify(bytes(32), ci, proof, 17)


def test_input_errors(tables17):
    with pytest.raises(ValueError, match="136 bytes"):
        verify(SEED, 1, bytes(160), 17)
    with pytest.raises(ValueError, match="32 bytes"):
        create_tables(b"short", 17)
    with pytest.raises(ValueError, match="K=5"):
        create_tables(SEED, 5)
    with pytest.raises(ValueError, match="u32"):
        tables17.find_proof(1 << 32)
    with pytest.raises(ValueError, match="u32"):
        tables17.find_proofs(-1)
    with pytest.raises(ValueError, match="int"):
        tables17.find_proof("3")
    with pytest.raises(ValueError, match="u32"):
        tables17.find_first_proofs(np.array([-1, 2]))
    with pytest.raises(ValueError, match="q=1"):
        verify_quality(SEED, bytes(31) + b"\x01", bytes(136), 17)
    with pytest.raises(ValueError, match="backend"):
        create_tables(SEED, 17, backend="tpu")


def test_quality_uses_proof_order_pair(tables17):
    ci, proof = _some_proof(tables17)
    challenge = ci.to_bytes(4, "little") + bytes(27) + b"\x05"  # q = 5
    qualities = tables17.find_qualities(challenge)
    assert qualities[0] == quality_of_proof(challenge, proof, 17)
    q0 = ci.to_bytes(4, "little") + bytes(28)
    assert verify_quality(SEED, q0, proof, 17) == tables17.find_qualities(q0)[0]


def test_proof_hash_is_blake3():
    assert proof_hash(b"\x01" * 160) == blake3_hash(b"\x01" * 160)


def test_backend_selection(monkeypatch):
    assert "cpu" in available_backends()
    assert resolve_backend(" CPU") == "cpu"
    monkeypatch.setenv("AUTONOMYS_POS_BACKEND", "bogus")  # the core reads no environment
    assert resolve_backend("cpu") == "cpu"
    with pytest.raises(ValueError, match="bogus"):
        resolve_backend("bogus")
    with pytest.raises(ValueError, match="cpu, gpu, auto"):
        resolve_backend(3)
    assert resolve_backend("auto") in ("cpu", "gpu")
    assert resolve_backend(None) == resolve_backend("auto")  # older callers' None: no environment
    if "gpu" not in available_backends():
        with pytest.raises(RuntimeError, match="gpu"):
            resolve_backend("gpu")


def test_tables_are_thread_safe_to_build():
    from concurrent.futures import ThreadPoolExecutor

    seeds = [blake3_hash(bytes([i])) for i in range(4)]
    with ThreadPoolExecutor(2) as pool:
        built = list(pool.map(lambda s: create_tables(s, 17, backend="cpu"), seeds))
    for seed, tables in zip(seeds, built):
        again = create_tables(seed, 17, backend="cpu")
        for ci in (1, 2, 3, 1000, 40000):
            assert tables.find_proofs(ci) == again.find_proofs(ci)


SPEC_SEED = bytes.fromhex("23023404333717545b0a6f0c0dde9710e4d3fe2d5cc6cc0a090a0b818bab0f17")
SHIM_Q1 = bytes.fromhex("c610e85212d0697cb161d4ba431ba603f273feee7dcb7927c9ff5d74ae6cbfa3")


def test_shim_spec_vectors():
    shim = create_shim_tables(SPEC_SEED)
    assert shim.find_proof(0) is None
    assert shim.find_proof(3) is None
    assert shim.find_proof(7) is None
    proof = shim.find_proof(1)
    assert proof == (SPEC_SEED + SHIM_Q1 * 4)[:160]
    assert shim.find_proofs(1) == [proof]
    assert shim_verify(SPEC_SEED, 1, proof)
    assert not shim_verify(SPEC_SEED, 2, proof)
    assert not shim_verify(bytes(32), 1, proof)


def test_shim_all_s_buckets():
    shim = create_shim_tables(SPEC_SEED)
    proofs, found = shim.find_proofs_for_all_s_buckets()
    assert proofs.shape == (65536, 160)
    assert not found[0] and found[1] and not found[3] and not found[7]
    for s_bucket in (1, 2, 500, 65535):
        single = shim.find_proof(s_bucket)
        assert bool(found[s_bucket]) == (single is not None)
        assert proofs[s_bucket].tobytes() == (single or bytes(160))


@pytest.mark.parametrize("k", [10, 12, 15])
def test_small_k_round_trip(k):
    """Small tables shrink level by level (K=10 has an empty table 7: no proof at all)."""
    tables = create_tables(SEED, k, backend="cpu")
    proofs, found = tables.find_proofs_for_all_s_buckets()
    assert proofs.shape == (65536, 8 * k)
    if k == 10:
        assert tables.table_ys(7).shape[0] == 0 and not found.any()
        return
    assert found.any()
    for ci in np.flatnonzero(found)[:40]:
        proof = proofs[ci].tobytes()
        assert tables.find_proof(int(ci)) == proof
        assert verify(SEED, int(ci), proof, k)
        assert not verify(SEED, int(ci) ^ 0x80, proof, k)  # flips the target's top bit
