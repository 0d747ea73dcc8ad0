"""Proving: turn an audit candidate into a ``Solution`` (spec 04 section 3).

For the winning chunk the farmer must show (a) the proof of space that un-masks it, (b) the
un-masked chunk with a KZG witness opening the record commitment at ``w_16^s``, and (c) the
record commitment with its witness against the segment commitment (stored in the sector's
record metadata).  That requires rebuilding the record's PoS tables, reading all 32 768 of its
chunks, recovering the record polynomial and committing to a 32 767-coefficient quotient.

Split in two so a proof-server can prove for a plot-client: the plot-client reads the winning
record off its disk (``reading.read_record_data``: stored chunks, encoded bitfield, record
metadata; bytes in, no PoS work) and :func:`prove_record` does the rest from that data alone
(rebuild the record's PoS tables, un-mask, recover the polynomial, witness the chunk, build the
``Solution``). ``prove`` and ``prove_audit_result`` compose the two over a whole sector.

Pure: the sector comes in as bytes / memoryview (mmap), the PoS and erasure backends, the KZG
instance and optionally the caller's threads (``workers``, for the erasure NTTs and the witness
MSM) are parameters.

Main API: ``prove_record(record_data, public_key, reward_address, sector_index, history_size,
s_bucket, kzg, erasure_coding, proofs_for_seed, workers=None) -> Solution``;
``prove_audit_result(sector, sector_metadata, public_key, reward_address, audit_result, kzg,
erasure_coding, proofs_for_seed, max_solutions=None, workers=None) -> list[Solution]``; finer
grained ``resolve_candidates`` (drops unencoded chunks) and ``prove`` (one candidate of a
sector). The farming timeout (spec 04 s2.4) is the caller's business.  Errors: ``ProvingError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.protocol.auditing import AuditCandidate, SectorAuditResult
from services.protocol.constants import RECORD_NUM_S_BUCKETS
from services.protocol.kzg import Polynomial
from services.protocol.parallel import Workers
from services.protocol.reading import (
    ReadingError,
    RecordData,
    read_record_data,
    recover_record_polynomial,
    unmask_record,
)
from services.protocol.s_bucket_proofs import ProofsForSeed
from services.protocol.sector import SectorContentsMap, SectorError, SectorMetadata, derive_sector_id
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


def prove_record(
    record: RecordData,
    public_key: bytes,
    reward_address: bytes,
    sector_index: int,
    history_size: int,
    s_bucket: int,
    kzg,  # noqa: ANN001 - services.protocol.kzg.Kzg
    erasure_coding,  # noqa: ANN001 - services.protocol.erasure.ErasureCoding(16)
    proofs_for_seed: ProofsForSeed,
    workers: Workers | None = None,
) -> Solution:
    """The solution for the encoded chunk of ``s_bucket`` in one record (from its data alone)."""
    s = s_bucket
    if not isinstance(s, int) or not 0 <= s < RECORD_NUM_S_BUCKETS:
        raise ProvingError(f"s-bucket {s!r} out of range")
    label = f"sector {sector_index} record {record.piece_offset}"
    if not record.encoded_mask()[s]:
        raise ProvingError(f"{label} has no encoded chunk in s-bucket {s}; it cannot be proven")
    sector_id = derive_sector_id(public_key, sector_index, history_size)
    try:
        shards = unmask_record(record, sector_id, proofs_for_seed)
        coefficients = recover_record_polynomial(erasure_coding, shards, workers)
    except ReadingError as error:
        raise ProvingError(f"{label}: {error}") from None
    coefficients.flags.writeable = False
    poly = Polynomial(coefficients)
    # The winning chunk is stored encoded, so it is a known shard; recovery verified that all
    # known shards are evaluations of the recovered polynomial.
    return Solution(
        public_key=public_key,
        reward_address=reward_address,
        sector_index=sector_index,
        history_size=history_size,
        piece_offset=record.piece_offset,
        record_commitment=record.metadata.commitment,
        record_witness=record.metadata.witness,
        chunk=shards.values[s].tobytes(),
        chunk_witness=kzg.create_witness(poly, RECORD_NUM_S_BUCKETS, s, workers),
        proof_of_space=shards.proofs[s].tobytes(),
    )


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
    workers: Workers | None = None,
) -> Solution:
    """Build the solution for one encoded candidate of a sector (read step + prove step)."""
    if not candidate.encoded:
        raise ProvingError(f"candidate at piece offset {candidate.piece_offset} is unencoded; it cannot be proven")
    try:  # read_record_data builds (and checks) the contents map when none is given
        record = read_record_data(sector, sector_metadata, candidate.piece_offset, contents_map)
    except (ReadingError, SectorError) as error:
        raise ProvingError(f"sector {sector_metadata.sector_index}: {error}") from None
    return prove_record(
        record, public_key, reward_address, sector_metadata.sector_index, sector_metadata.history_size,
        candidate.s_bucket, kzg, erasure_coding, proofs_for_seed, workers,
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
    workers: Workers | None = None,
) -> list[Solution]:
    """Solutions for an audited sector's encoded candidates, best distance first."""
    contents_map = SectorContentsMap.from_sector(sector, sector_metadata.pieces_in_sector)
    solutions = []
    for candidate in resolve_candidates(contents_map, audit_result.s_bucket, audit_result.candidates):
        if max_solutions is not None and len(solutions) >= max_solutions:
            break
        solutions.append(
            prove(
                sector, sector_metadata, public_key, reward_address, candidate, kzg, erasure_coding,
                proofs_for_seed, contents_map, workers,
            )
        )
    return solutions
