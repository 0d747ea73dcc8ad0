"""The K=20 find_proof vectors written into spec 02 §7 (including the ordering regression
markers 1011 and 650) and the batch all-s-bucket proof search."""

from __future__ import annotations

import numpy as np
import pytest

from services.protocol.pos import create_tables, verify

SPEC_K20_SEED = bytes([35, 2, 52, 4, 51, 55, 23, 84, 91, 10, 111, 12, 13, 222, 151, 16, 228, 211, 254,
                       45, 92, 198, 204, 10, 9, 10, 11, 129, 139, 171, 15, 23])

SPEC_PROOFS = {
    600426542: "e7a0b6a09787b5b8a2b649f6640a40089dfba1b02f2b60153379068d73ac2ceb238db9e7e8705ee9ea8122ea629c34247085ccf8a5205757b38eb709f350ffe99d587ec81785c55f1924962232c72af0ce4db70fcb5ce246b17537f0e1c0ccd31942c1d65bd3ec70cde72af17ad67f6bda4271cc543e9929612f6f41479abffc60b6ace8edf407849ec9ef85b8bf4863807fcac374315bcf0e866db8e2de7213",
    1011: "1247ba6def525cf9f916f673328a8387cf6c8b389baf106f04b0bb58d19abb47ae4de956d13ae3c0b94958067f3bdea621efce294134ffe97a6bda44674e2828e09db7b99b65227a33b43f5533a6d6b4c884c7411837f4c54e57500bdd91e186f54ca5f55cf30c79f98d649da122863ab17468449d88b2cf580b0cfb0c6a72c3a7b850a1da9aeda4906ce9d3df884031a68f44dd662a5ec71f5fc14c837542a5",
    650: "a303012c3b16f561f216e800682cb09d774d6ab0e2cc42d6b37ccbbca387ac2ce019bbeeafb124f03575ec819ae880b0819e4e66ab6d2d5cd4ebb387990fba64508febb6cc48fcf226b2806ace3fd33a553da86b566fbf6d1198870b6e89a717017eda4575e2a6a946045f2d103279a3fab4e18ae568661991baff81642aed7f1a186d8700c122776dfa2626bb982124932dff75958a327aa00c2cd449db3c1f",
}


@pytest.fixture(scope="module")
def spec_tables():
    return create_tables(SPEC_K20_SEED, 20, backend="cpu")


def test_no_proof(spec_tables):
    assert spec_tables.find_proof(1232460437) is None
    assert spec_tables.find_proofs(1232460437) == []


@pytest.mark.parametrize("challenge_index", sorted(SPEC_PROOFS))
def test_spec_proofs(spec_tables, challenge_index):
    proof = spec_tables.find_proof(challenge_index)
    assert proof is not None and proof.hex() == SPEC_PROOFS[challenge_index]
    assert spec_tables.find_proofs(challenge_index)[0] == proof
    assert verify(SPEC_K20_SEED, challenge_index, proof)


def test_proof_rate_over_50000_challenges(spec_tables):
    _, found = spec_tables.find_first_proofs(np.arange(50_000, dtype=np.uint32))
    assert int(found.sum()) == 31_033


def test_all_s_buckets_batch_matches_single_calls(spec_tables):
    proofs, found = spec_tables.find_proofs_for_all_s_buckets()
    assert proofs.shape == (65536, 160) and proofs.dtype == np.uint8
    assert found.shape == (65536,) and found.dtype == np.bool_
    for s_bucket in list(range(0, 65536, 97)) + [650, 1011, 65535]:
        single = spec_tables.find_proof(s_bucket)
        assert bool(found[s_bucket]) == (single is not None)
        assert proofs[s_bucket].tobytes() == (single if single is not None else bytes(160))
    assert SPEC_PROOFS[1011] == proofs[1011].tobytes().hex()
