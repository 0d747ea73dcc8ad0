"""End-to-end conformance round trip with the real K=20 proof of space.

archive random history (Archiver, dev KZG) -> plot a 2-piece sector with the Chia K=20 tables
-> read every piece back byte-identically -> audit -> prove -> node-side verify_solution (with
piece checks against the archived segment header) -> flipping any byte of chunk, chunk witness,
proof of space or record commitment makes verification fail.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import pytest

from services.protocol.archiver import Archiver, is_piece_valid
from services.protocol.auditing import audit_location, audit_sector, global_challenge_from_pot_output
from services.protocol.constants import RECORDED_HISTORY_SEGMENT_SIZE
from services.protocol.erasure import ErasureCoding
from services.protocol.kzg import Kzg
from services.protocol.pieces import Piece
from services.protocol.plotting import CpuRecordEncoder, SBucketProofs, chia_proofs_for_seed, plot_sector
from services.protocol.proving import prove_audit_result, resolve_candidates
from services.protocol.reading import read_piece
from services.protocol.sector import FarmerProtocolInfo, SectorContentsMap
from services.protocol.verification import (
    INVALID_CHUNK,
    INVALID_CHUNK_WITNESS,
    INVALID_PROOF_OF_SPACE,
    PieceCheckParams,
    SolutionVerificationError,
    VerifySolutionParams,
    verify_solution,
)

pytestmark = pytest.mark.slow

PIECES_IN_SECTOR = 2
U64_MAX = 2**64 - 1


@functools.cache
def _archived_segment():
    kzg = Kzg.dev()
    erasure = ErasureCoding(16)
    archiver = Archiver(kzg, erasure)
    segments = archiver.add_block(os.urandom(RECORDED_HISTORY_SEGMENT_SIZE))
    assert segments, "one segment's worth of block data must complete segment 0"
    return kzg, erasure, segments[0]


@functools.cache
def _k20_proofs(seed: bytes) -> SBucketProofs:
    """Real K=20 tables, built once per seed for the whole module (deterministic)."""
    return chia_proofs_for_seed("cpu")(seed)


@functools.cache
def _plotted():
    kzg, erasure, segment = _archived_segment()
    public_key = bytes(range(32))
    info = FarmerProtocolInfo.test_runtime(1)  # history = segment 0 only
    pieces = {index: bytes(piece) for index, piece in enumerate(segment.pieces)}
    result = plot_sector(public_key, 0, info, PIECES_IN_SECTOR, pieces, CpuRecordEncoder(erasure, _k20_proofs))
    return kzg, erasure, segment, public_key, result


def test_archived_pieces_are_valid() -> None:
    kzg, _, segment = _archived_segment()
    _, _, _, _, result = _plotted()
    for index in set(result.plotted_sector.piece_indexes):
        assert is_piece_valid(kzg, segment.pieces[index], segment.header.segment_commitment, index % 256)


def test_plotted_pieces_read_back_byte_identical() -> None:
    _, erasure, segment, _, result = _plotted()
    sector_id = result.plotted_sector.sector_id
    for offset, index in enumerate(result.plotted_sector.piece_indexes):
        piece = read_piece(result.sector, result.metadata, sector_id, offset, erasure, _k20_proofs)
        assert isinstance(piece, Piece)
        assert bytes(piece) == bytes(segment.pieces[index])


def test_audit_prove_verify_and_tamper() -> None:
    kzg, erasure, segment, public_key, result = _plotted()
    sector_id = result.plotted_sector.sector_id
    contents_map = SectorContentsMap.from_sector(result.sector, PIECES_IN_SECTOR)
    pot_output = bytes(16)
    for slot in range(1, 200):
        challenge = global_challenge_from_pot_output(pot_output, slot)
        _, offset, size = audit_location(sector_id, challenge, result.metadata.s_bucket_sizes, PIECES_IN_SECTOR)
        audit = audit_sector(0, sector_id, challenge, U64_MAX, result.sector[offset : offset + size])
        if audit is None:
            continue
        records = contents_map.s_bucket_records(audit.s_bucket)
        if any(encoded for _, encoded in records):
            break
    else:
        raise AssertionError("no slot hit an encoded chunk")
    solutions = prove_audit_result(
        result.sector, result.metadata, public_key, public_key, audit, kzg, erasure, _k20_proofs, max_solutions=1
    )
    assert solutions
    solution = solutions[0]

    piece_check = PieceCheckParams(
        max_pieces_in_sector=32,
        segment_commitment=segment.header.segment_commitment,
        recent_segments=5,
        recent_history_fraction=(1, 10),
        min_sector_lifetime=4,
        current_history_size=1,
        sector_expiration_check_segment_commitment=None,
    )
    params = VerifySolutionParams(pot_output, U64_MAX, piece_check)
    distance = verify_solution(solution, slot, params, kzg)  # real K=20 PoS verifier
    assert distance == resolve_candidates(contents_map, audit.s_bucket, audit.candidates)[0].distance

    def flipped(field: str, index: int):
        data = bytearray(getattr(solution, field))
        data[index] ^= 0x01
        return dataclasses.replace(solution, **{field: bytes(data)})

    cases = [
        ("chunk", 0, {INVALID_CHUNK, INVALID_CHUNK_WITNESS}),
        ("chunk", 31, {INVALID_CHUNK, INVALID_CHUNK_WITNESS}),
        ("chunk_witness", 10, {INVALID_CHUNK_WITNESS}),
        ("proof_of_space", 0, {INVALID_PROOF_OF_SPACE}),
        ("proof_of_space", 159, {INVALID_PROOF_OF_SPACE}),
        ("record_commitment", 47, {INVALID_CHUNK_WITNESS}),
    ]
    for field, index, kinds in cases:
        with pytest.raises(SolutionVerificationError) as error:
            verify_solution(flipped(field, index), slot, params, kzg)
        assert error.value.kind in kinds, (field, index, error.value)
