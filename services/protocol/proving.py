"""Proving: turn an audit candidate into a ``Solution`` (spec 04 section 3).

For the winning chunk the farmer must show (a) the proof of space that un-masks it, (b) the
un-masked chunk with a KZG witness opening the record commitment at ``w_16^s``, and (c) the
record commitment with its witness against the segment commitment (stored in the sector's
record metadata).  That requires rebuilding the record's PoS tables, reading all 32 768 of its
chunks, recovering the record polynomial and committing to a 32 767-coefficient quotient.

Pure: the sector comes in as bytes / memoryview (mmap), the PoS and erasure backends and the
KZG instance are parameters.

Main API: ``prove_audit_result(sector, sector_metadata, public_key, reward_address,
audit_result, kzg, erasure_coding, proofs_for_seed, max_solutions=None) -> list[Solution]``;
finer grained ``resolve_candidates`` (drops unencoded chunks) and ``prove`` (one candidate).
The farming timeout (spec 04 s2.4) is the caller's business.  Errors: ``ProvingError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.protocol.auditing import AuditCandidate, SectorAuditResult
from services.protocol.constants import RECORD_NUM_S_BUCKETS
from services.protocol.s_bucket_proofs import ProofsForSeed
from services.protocol.kzg import Polynomial
from services.protocol.reading import ReadingError, read_record_shards, recover_record_polynomial
from services.protocol.sector import (
    SectorContentsMap,
    SectorError,
    SectorMetadata,
    derive_sector_id,
    read_record_metadata,
)
from services.protocol.solution import Solution


class ProvingError(ValueError):
    """The sector cannot produce a solution for this candidate (corrupt data, bad input)."""


@dataclass(frozen=True)
class ProvingCandidate:
    """An audited chunk resolved to its record: encoded candidates only can be proven."""

    s_bucket: int
    chunk_offset: int
    piece_offset: int
    encoded: bool
    distance: int


def resolve_candidates(
    contents_map: SectorContentsMap, s_bucket: int, candidates: tuple[AuditCandidate, ...] | list[AuditCandidate]
) -> list[ProvingCandidate]:
    """Map audit candidates (chunk offsets in the s-bucket) to piece offsets; drop unencoded ones.

    Keeps the audit order (best distance first).  Raises ProvingError when a chunk offset is
    beyond the s-bucket per the contents map (metadata and contents map disagree).
    """
    records = contents_map.s_bucket_records(s_bucket)
    resolved = []
    for candidate in candidates:
        if candidate.chunk_offset >= len(records):
            raise ProvingError(
                f"chunk offset {candidate.chunk_offset} beyond s-bucket {s_bucket} of {len(records)} chunks"
            )
        piece_offset, encoded = records[candidate.chunk_offset]
        if encoded:
            resolved.append(ProvingCandidate(s_bucket, candidate.chunk_offset, piece_offset, True, candidate.distance))
    return resolved


def prove(
    sector: bytes | bytearray | memoryview | np.ndarray,
    sector_metadata: SectorMetadata,
    public_key: bytes,
    reward_address: bytes,
    candidate: ProvingCandidate,
    kzg,  # noqa: ANN001 - services.protocol.kzg.Kzg
    erasure_coding,  # noqa: ANN001 - services.protocol.erasure.ErasureCoding(16)
    proofs_for_seed: ProofsForSeed,
    contents_map: SectorContentsMap | None = None,
) -> Solution:
    """Build the solution for one encoded candidate of a sector."""
    if not candidate.encoded:
        raise ProvingError(f"candidate at piece offset {candidate.piece_offset} is unencoded; it cannot be proven")
    s = candidate.s_bucket
    if not 0 <= s < RECORD_NUM_S_BUCKETS:
        raise ProvingError(f"s-bucket {s} out of range")
    n = sector_metadata.pieces_in_sector
    sector_id = derive_sector_id(public_key, sector_metadata.sector_index, sector_metadata.history_size)
    try:  # read_record_shards builds (and checks) the contents map when none is given
        shards = read_record_shards(
            sector, sector_metadata, sector_id, candidate.piece_offset, proofs_for_seed, contents_map
        )
        record_metadata = read_record_metadata(sector, n, candidate.piece_offset)
    except (ReadingError, SectorError) as error:
        raise ProvingError(f"sector {sector_metadata.sector_index}: {error}") from None
    if not shards.encoded[s]:
        raise ProvingError(
            f"record {candidate.piece_offset} has no encoded chunk in s-bucket {s} (contents map disagrees)"
        )
    try:
        coefficients = recover_record_polynomial(erasure_coding, shards)
    except ReadingError as error:
        raise ProvingError(f"sector {sector_metadata.sector_index}: {error}") from None
    coefficients.flags.writeable = False
    poly = Polynomial(coefficients)
    proof = shards.proofs[s].tobytes()
    # The winning chunk is stored encoded, so it is a known shard; recovery verified that all
    # known shards are evaluations of the recovered polynomial.
    chunk = shards.values[s].tobytes()
    chunk_witness = kzg.create_witness(poly, RECORD_NUM_S_BUCKETS, s)
    return Solution(
        public_key=public_key,
        reward_address=reward_address,
        sector_index=sector_metadata.sector_index,
        history_size=sector_metadata.history_size,
        piece_offset=candidate.piece_offset,
        record_commitment=record_metadata.commitment,
        record_witness=record_metadata.witness,
        chunk=chunk,
        chunk_witness=chunk_witness,
        proof_of_space=proof,
    )


def prove_audit_result(
    sector: bytes | bytearray | memoryview | np.ndarray,
    sector_metadata: SectorMetadata,
    public_key: bytes,
    reward_address: bytes,
    audit_result: SectorAuditResult,
    kzg,  # noqa: ANN001
    erasure_coding,  # noqa: ANN001
    proofs_for_seed: ProofsForSeed,
    max_solutions: int | None = None,
) -> list[Solution]:
    """Solutions for an audited sector's encoded candidates, best distance first."""
    contents_map = SectorContentsMap.from_sector(sector, sector_metadata.pieces_in_sector)
    solutions = []
    for candidate in resolve_candidates(contents_map, audit_result.s_bucket, audit_result.candidates):
        if max_solutions is not None and len(solutions) >= max_solutions:
            break
        solutions.append(
            prove(
                sector,
                sector_metadata,
                public_key,
                reward_address,
                candidate,
                kzg,
                erasure_coding,
                proofs_for_seed,
                contents_map,
            )
        )
    return solutions
