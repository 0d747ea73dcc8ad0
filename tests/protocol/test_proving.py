"""Proving audit candidates into solutions (spec 04 section 3), with the shim PoS table, and
the reference's solutions proven from one record's data with real K=20 tables (slow).

``build_shim_solution`` (a sector, a winning slot challenge and its solution) is shared with the
verification tests.
"""

from __future__ import annotations

import functools
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from test_plotting import ShimSector, build_shim_sector

from services.protocol.auditing import (
    AuditCandidate,
    SectorAuditResult,
    audit_location,
    audit_sector,
    sector_slot_challenge,
    s_bucket_audit_index,
)
from services.protocol.hashes import blake3_hash
from services.protocol.plotting import shim_proofs_for_seed
from services.protocol.pos.shim import shim_verify
from services.protocol.proving import (
    ProvingCandidate,
    ProvingError,
    prove,
    prove_audit_result,
    prove_record,
    resolve_candidates,
)
from services.protocol.reading import RecordData, read_record_data
from services.protocol.sector import SectorContentsMap, SectorMetadata, derive_evaluation_seed
from services.protocol.solution import Solution
from shared_paths import require_vectors

U64_MAX = 2**64 - 1
REWARD_ADDRESS = bytes([0xAA]) * 32


@dataclass
class ShimSolution:
    shim: ShimSector
    global_challenge: bytes
    audit: SectorAuditResult
    solution: Solution


def _audit(shim: ShimSector, global_challenge: bytes, solution_range: int = U64_MAX) -> SectorAuditResult | None:
    result = shim.result
    sector_id = result.plotted_sector.sector_id
    _, offset, size = audit_location(sector_id, global_challenge, result.metadata.s_bucket_sizes, 3)
    return audit_sector(0, sector_id, global_challenge, solution_range, result.sector[offset : offset + size])


@functools.cache
def build_shim_solution() -> ShimSolution:
    shim = build_shim_sector()
    contents_map = SectorContentsMap.from_sector(shim.result.sector, 3)
    for counter in range(1000):  # find a challenge whose best candidate is encoded
        global_challenge = blake3_hash(counter.to_bytes(4, "little"))
        audit = _audit(shim, global_challenge)
        resolved = resolve_candidates(contents_map, audit.s_bucket, audit.candidates)
        if resolved and resolved[0].chunk_offset == audit.candidates[0].chunk_offset:
            solutions = prove_audit_result(
                shim.result.sector, shim.result.metadata, shim.public_key, REWARD_ADDRESS, audit,
                shim.kzg, shim.erasure, shim_proofs_for_seed, max_solutions=1,
            )  # fmt: skip
            return ShimSolution(shim, global_challenge, audit, solutions[0])
    raise AssertionError("no challenge with an encoded best candidate found")


def test_solution_fields() -> None:
    built = build_shim_solution()
    shim, solution = built.shim, built.solution
    result = shim.result
    assert solution.public_key == shim.public_key and solution.reward_address == REWARD_ADDRESS
    assert solution.sector_index == 0 and solution.history_size == 1
    piece = shim.pieces[result.plotted_sector.piece_indexes[solution.piece_offset]]
    assert solution.record_commitment == piece[-96:-48] and solution.record_witness == piece[-48:]
    s_bucket = s_bucket_audit_index(sector_slot_challenge(result.plotted_sector.sector_id, built.global_challenge))
    seed = derive_evaluation_seed(result.plotted_sector.sector_id, solution.piece_offset)
    assert shim_verify(seed, s_bucket, solution.proof_of_space)
    # the chunk is the (un-masked) extended record value at the s-bucket: a parity or source value
    if s_bucket % 2 == 0:
        record = piece[: 1 << 20]
        assert solution.chunk == record[32 * (s_bucket // 2) : 32 * (s_bucket // 2) + 32]
    # and its witness opens the record commitment there
    assert shim.kzg.verify(solution.record_commitment, 65536, s_bucket, solution.chunk, solution.chunk_witness)


def test_resolve_candidates_drops_unencoded_chunks() -> None:
    shim = build_shim_sector()
    contents_map = SectorContentsMap.from_sector(shim.result.sector, 3)
    for s_bucket in range(0, 65536, 4099):
        records = contents_map.s_bucket_records(s_bucket)
        candidates = [AuditCandidate(i, 10 * i) for i in range(len(records))]
        resolved = resolve_candidates(contents_map, s_bucket, candidates)
        assert [r.piece_offset for r in resolved] == [p for p, encoded in records if encoded]
        assert all(r.encoded for r in resolved)
    with pytest.raises(ProvingError, match="beyond s-bucket"):
        resolve_candidates(contents_map, 0, [AuditCandidate(3, 0)])


def test_sparse_sector_proves_encoded_candidates_only() -> None:
    shim = build_shim_sector(sparse=True)
    contents_map = SectorContentsMap.from_sector(shim.result.sector, 3)
    for counter in range(100):
        audit = _audit(shim, blake3_hash(b"sparse" + bytes([counter])))
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
        shim.result.sector, shim.result.metadata, shim.public_key, REWARD_ADDRESS, resolved[0],
        shim.kzg, shim.erasure, shim.proofs_for_seed, contents_map,
    )  # fmt: skip
    assert shim.kzg.verify(solution.record_commitment, 65536, audit.s_bucket, solution.chunk, solution.chunk_witness)


def test_unencoded_candidate_cannot_be_proven() -> None:
    shim = build_shim_sector()
    with pytest.raises(ProvingError, match="unencoded"):
        prove(
            shim.result.sector, shim.result.metadata, shim.public_key, REWARD_ADDRESS,
            ProvingCandidate(0, 0, 0, False, 0), shim.kzg, shim.erasure, shim_proofs_for_seed,
        )  # fmt: skip


def test_corrupt_sector_gives_proving_error() -> None:
    built = build_shim_solution()
    shim = built.shim
    corrupt = bytearray(shim.result.sector)
    corrupt[0] ^= 1
    with pytest.raises(ProvingError, match="contents map checksum"):
        prove(
            bytes(corrupt), shim.result.metadata, shim.public_key, REWARD_ADDRESS,
            ProvingCandidate(built.audit.s_bucket, 0, built.solution.piece_offset, True, 0),
            shim.kzg, shim.erasure, shim_proofs_for_seed,
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


def test_prove_record_from_shipped_record_data_equals_sector_proof() -> None:
    """The split a proof-server uses: read step (record data, shipped as bytes), prove step."""
    built = build_shim_solution()
    shim = built.shim
    result = shim.result
    solution = built.solution
    shipped = read_record_data(result.sector, result.metadata, solution.piece_offset).to_bytes()
    record = RecordData.from_bytes(solution.piece_offset, shipped)
    again = prove_record(
        record, shim.public_key, REWARD_ADDRESS, 0, 1, built.audit.s_bucket, shim.kzg, shim.erasure, shim_proofs_for_seed,
    )  # fmt: skip
    assert again == solution


def test_prove_record_refuses_unencoded_bucket_and_wrong_tables() -> None:
    shim = build_shim_sector(sparse=True)
    result = shim.result
    record = read_record_data(result.sector, result.metadata, 0)
    unencoded = int(next(s for s in range(65536) if not record.encoded_mask()[s]))
    encoded = int(next(s for s in range(65536) if record.encoded_mask()[s]))
    args = (shim.public_key, REWARD_ADDRESS, 0, 1)
    with pytest.raises(ProvingError, match="no encoded chunk in s-bucket"):
        prove_record(record, *args, unencoded, shim.kzg, shim.erasure, shim.proofs_for_seed)
    with pytest.raises(ProvingError, match="out of range"):
        prove_record(record, *args, 65536, shim.kzg, shim.erasure, shim.proofs_for_seed)
    # the dense shim tables have proofs where the sparse ones had none: masks differ, and the
    # un-masked chunks are no longer evaluations of one polynomial (or not canonical)
    with pytest.raises(ProvingError, match="sector 0 record 0"):
        prove_record(record, shim.public_key, REWARD_ADDRESS, 0, 2, encoded, shim.kzg, shim.erasure, shim_proofs_for_seed)


@pytest.mark.slow
@pytest.mark.parametrize("vectors", ["sector_history_ref.json", "sector_ref.json"])
def test_reference_solutions_from_record_data(vectors: str) -> None:
    """Solutions the reference farmer produced, rebuilt from one record's data each (K=20 tables,
    mainnet setup, erasure NTTs and witness MSM split over two threads): bit for bit."""
    from services.kzg_setup import mainnet_kzg
    from services.protocol.erasure import ErasureCoding
    from services.protocol.parallel import Workers
    from services.protocol.s_bucket_proofs import chia_proofs_for_seed

    data = json.loads(require_vectors(vectors).read_text())
    ref = data["sectors"][0]
    sector = require_vectors(ref["sector_bin"]).read_bytes()
    metadata = SectorMetadata.from_checksummed_bytes(bytes.fromhex(ref["sector_metadata_checksummed"]))
    public_key = bytes.fromhex(data["public_key"])
    kzg, erasure, proofs_for_seed = mainnet_kzg(), ErasureCoding(16), chia_proofs_for_seed("cpu")
    expected_solutions = ref["solutions"][:2]
    assert expected_solutions
    with ThreadPoolExecutor(2) as pool:
        for expected in expected_solutions:
            solution = expected["solution"]
            s_bucket = ref["audits"][expected["audit_i"]]["s_bucket"]
            shipped = read_record_data(sector, metadata, solution["piece_offset"]).to_bytes()
            proven = prove_record(
                RecordData.from_bytes(solution["piece_offset"], shipped), public_key,
                bytes.fromhex(data["reward_address"]), metadata.sector_index, metadata.history_size, s_bucket,
                kzg, erasure, proofs_for_seed, Workers(pool, 2),
            )  # fmt: skip
            assert proven.to_scale().hex() == solution["scale"], (vectors, expected["audit_i"])
