"""Proving from one record's data (the proof-server's path): ``read_record_data`` gathers the
stored record, ``prove_record`` proves from it; equal to proving from the sector, and the
reference Solutions come out of record data alone."""

from __future__ import annotations

import functools
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

from test_plotting import ShimSector, build_shim_sector
from services.protocol.auditing import SectorAuditResult, audit_location, audit_sector
from services.protocol.hashes import blake3_hash
from services.protocol.plotting import shim_proofs_for_seed
from services.protocol.proving import ProvingError, prove_audit_result, prove_record, resolve_candidates
from services.protocol.reading import RecordData, read_record_data
from services.protocol.sector import SectorContentsMap, SectorMetadata
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


@pytest.mark.parametrize("sparse", [False, True])
def test_record_data_is_the_stored_record(sparse: bool) -> None:
    """``read_record_data`` gives back exactly what record encoding stored (chunks in stored
    order, bitfield, metadata), without PoS work, and survives its byte form."""
    from services.protocol.plotting import CpuRecordEncoder
    from services.protocol.reading import ReadingError
    from services.protocol.sector import derive_evaluation_seed, read_record_metadata

    shim = build_shim_sector(sparse=sparse)
    result = shim.result
    encoder = CpuRecordEncoder(shim.erasure, shim.proofs_for_seed)
    for offset, index in enumerate(result.plotted_sector.piece_indexes):
        record = read_record_data(result.sector, result.metadata, offset)
        expected = encoder.encode(np.frombuffer(shim.pieces[index][: 1 << 20], np.uint8).reshape(-1, 32),
                                  derive_evaluation_seed(result.plotted_sector.sector_id, offset))
        assert np.array_equal(record.chunks, expected.chunks)
        assert np.array_equal(record.encoded_mask(), expected.encoded_mask)
        assert record.metadata == read_record_metadata(result.sector, 3, offset)
        again = RecordData.from_bytes(offset, record.to_bytes())
        assert again.to_bytes() == record.to_bytes() and len(record.to_bytes()) == RecordData.SIZE
    with pytest.raises(ReadingError, match="record data must be"):
        RecordData.from_bytes(0, b"\x00" * 100)

