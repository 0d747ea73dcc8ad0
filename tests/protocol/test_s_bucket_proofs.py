"""Per-s-bucket proofs of a seed: mask hashes are BLAKE3 of each found proof, providers are
checked for shape, and the shim provider agrees with the shim table's own proof search."""

from __future__ import annotations

import numpy as np
import pytest
from blake3 import blake3

from services.protocol.pos import create_shim_tables
from services.protocol.s_bucket_proofs import SBucketProofs, check_s_bucket_proofs, shim_proofs_for_seed


def test_mask_hashes_are_blake3_of_found_proofs():
    rng = np.random.default_rng(3)
    found = rng.random(65536) < 0.5
    proofs = np.where(found[:, None], rng.integers(0, 256, (65536, 160), dtype=np.uint8), 0).astype(np.uint8)
    hashes = SBucketProofs(found, proofs).mask_hashes()
    for s in (int(np.flatnonzero(found)[0]), int(np.flatnonzero(found)[-1]), int(np.flatnonzero(~found)[0])):
        expected = blake3(proofs[s].tobytes()).digest() if found[s] else bytes(32)
        assert hashes[s].tobytes() == expected


def test_shim_provider_matches_the_table():
    seed = bytes(range(32))
    proofs = shim_proofs_for_seed(seed)
    table = create_shim_tables(seed)
    for s in (0, 1, 2, 777, 65535):
        assert proofs.proof(s) == table.find_proof(s)


def test_wrong_shapes_refused():
    with pytest.raises(ValueError, match="PoS backend returned arrays shaped"):
        check_s_bucket_proofs(SBucketProofs(np.zeros(10, bool), np.zeros((10, 160), np.uint8)))
