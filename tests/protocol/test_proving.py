"""Proving audit candidates into solutions (spec 04 section 3) against the reference prover.

For the first winning audits of each reference sector the vectors hold the Solutions of the
reference ``SolutionCandidates::into_solutions`` (all candidates, in order): our
``prove_audit_result`` on the same sector bytes must produce them byte for byte (SCALE) and
field by field. Records with unencoded chunks are not in the vectors; the candidate filtering
for them is checked on a shim-PoS sector with sparse proofs.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from reference_vectors import erasure_coding, k20_proofs, mainnet_kzg, reference_sector, solution_from_vector
from test_plotting import build_shim_sector

from services.protocol.auditing import AuditCandidate, audit_sector, global_challenge_from_pot_output, sector_audit_location
from services.protocol.hashes import blake3_hash
from services.protocol.proving import ProvingCandidate, ProvingError, prove, prove_audit_result, resolve_candidates
from services.protocol.sector import SectorContentsMap

REWARD_ADDRESS = bytes([0xAA]) * 32


def _audit(sector, pot_output: bytes, slot: int, solution_range: int):  # noqa: ANN001, ANN202
    global_challenge = global_challenge_from_pot_output(pot_output, slot)
    sector_id = bytes.fromhex(sector.vector["sector_id"])
    _, offset, size = sector_audit_location(sector_id, global_challenge, sector.metadata())
    data = sector.sector_bytes()
    return audit_sector(sector.sector_index, sector_id, global_challenge, solution_range, data[offset : offset + size])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["p4", "p8", "p6"])
def test_reference_solutions(name: str) -> None:
    sector = reference_sector(name)
    by_audit: dict[int, list[dict]] = defaultdict(list)
    for solution in sector.vector["solutions"]:
        by_audit[solution["audit_i"]].append(solution)
    assert len(by_audit) == sector.file["solutions_to_prove"]
    data = sector.sector_bytes()
    for audit_i, expected in by_audit.items():
        first = expected[0]
        assert all((s["pot_output"], s["slot"], s["solution_range"]) == (first["pot_output"], first["slot"],
                   first["solution_range"]) for s in expected)  # fmt: skip
        audit = _audit(sector, bytes.fromhex(first["pot_output"]), first["slot"], int(first["solution_range"]))
        solutions = prove_audit_result(
            data, sector.metadata(), sector.public_key, sector.reward_address, audit,
            mainnet_kzg(), erasure_coding(), k20_proofs,
        )  # fmt: skip
        assert [s["k"] for s in expected] == list(range(len(expected)))
        assert len(solutions) == len(expected), f"audit {audit_i}"
        for solution, vector in zip(solutions, expected):
            where = f"audit {audit_i} solution {vector['k']}"
            assert solution == solution_from_vector(vector["solution"]), where
            assert solution.to_scale().hex() == vector["solution"]["scale"], where
            assert sector.vector["piece_indexes"][solution.piece_offset] == vector["piece_index"], where


# ---- properties and failures


def test_resolve_candidates_maps_chunk_offsets_to_records() -> None:
    sector = reference_sector("p4")
    contents_map = SectorContentsMap.from_sector(sector.sector_bytes(), 4)
    for s_bucket in range(0, 65536, 4099):
        records = contents_map.s_bucket_records(s_bucket)
        assert len(records) == sector.metadata().s_bucket_sizes[s_bucket]
        candidates = [AuditCandidate(i, 10 * i) for i in range(len(records))]
        resolved = resolve_candidates(contents_map, s_bucket, candidates)
        assert [r.piece_offset for r in resolved] == [p for p, _ in records]  # every chunk is encoded here
    with pytest.raises(ProvingError, match="beyond s-bucket"):
        resolve_candidates(contents_map, 0, [AuditCandidate(4, 0)])


def test_sparse_sector_proves_encoded_candidates_only() -> None:
    shim = build_shim_sector(sparse=True)
    result = shim.result
    contents_map = SectorContentsMap.from_sector(result.sector, 3)
    sector_id = result.plotted_sector.sector_id
    for counter in range(100):
        global_challenge = blake3_hash(b"sparse" + bytes([counter]))
        _, offset, size = sector_audit_location(sector_id, global_challenge, result.metadata)
        audit = audit_sector(0, sector_id, global_challenge, 2**64 - 1, result.sector[offset : offset + size])
        if audit is None:  # an empty s-bucket (possible when records have unencoded chunks)
            continue
        resolved = resolve_candidates(contents_map, audit.s_bucket, audit.candidates)
        records = contents_map.s_bucket_records(audit.s_bucket)
        assert len(resolved) == sum(1 for _, encoded in records if encoded)
        if resolved:
            break
    else:
        raise AssertionError("no challenge hit an encoded chunk")
    solution = prove(
        result.sector, result.metadata, shim.public_key, REWARD_ADDRESS, resolved[0],
        shim.kzg, shim.erasure, shim.proofs_for_seed, contents_map,
    )  # fmt: skip
    assert shim.kzg.verify(solution.record_commitment, 65536, audit.s_bucket, solution.chunk, solution.chunk_witness)


def test_unencoded_candidate_cannot_be_proven() -> None:
    sector = reference_sector("p4")
    with pytest.raises(ProvingError, match="unencoded"):
        prove(
            sector.sector_bytes(), sector.metadata(), sector.public_key, REWARD_ADDRESS,
            ProvingCandidate(0, 0, 0, False, 0), mainnet_kzg(), erasure_coding(), k20_proofs,
        )  # fmt: skip


def test_corrupt_sector_gives_proving_error() -> None:
    sector = reference_sector("p4")
    corrupt = bytearray(sector.sector_bytes())
    corrupt[0] ^= 1
    with pytest.raises(ProvingError, match="contents map checksum"):
        prove(
            bytes(corrupt), sector.metadata(), sector.public_key, REWARD_ADDRESS,
            ProvingCandidate(0, 0, 0, True, 0), mainnet_kzg(), erasure_coding(), k20_proofs,
        )  # fmt: skip


def test_contents_map_disagreement_is_reported() -> None:
    shim = build_shim_sector(sparse=True)
    contents_map = SectorContentsMap.from_sector(shim.result.sector, 3)
    unencoded = [
        (s, p) for s in range(0, 65536, 97) for p, encoded in contents_map.s_bucket_records(s) if not encoded
    ]
    s_bucket, piece_offset = unencoded[0]
    with pytest.raises(ProvingError, match="no encoded chunk"):
        prove(
            shim.result.sector, shim.result.metadata, shim.public_key, REWARD_ADDRESS,
            ProvingCandidate(s_bucket, 0, piece_offset, True, 0), shim.kzg, shim.erasure, shim.proofs_for_seed,
        )  # fmt: skip
