"""Node-side solution verification and solution-range arithmetic (spec 04 sections 5).

``verify_solution`` replays, in the reference's order, every check a node makes on a farmer's
solution: proof of space for the audited s-bucket, audit distance within the solution range,
chunk KZG opening against the record commitment, and (when piece-check parameters are given)
history size, piece offset, sector expiry and the record commitment's opening against the
segment commitment.  A failed check raises :class:`SolutionVerificationError` whose ``kind``
names the reference error variant; success returns the audit distance.

The solution-range helpers convert between ranges and plotted space and implement the era
retargeting rule, all with the reference's integer operation order.

Main API: ``verify_solution(solution, slot, VerifySolutionParams(proof_of_time, solution_range,
piece_check_params), kzg, pos_verifier=None) -> distance`` (``pos_verifier`` defaults to the real
K=20 ``pos.verify``; pass ``pos.shim_verify`` for shim chains), ``verify_solution_with_challenge``
(given the global challenge), ``solution_piece_index`` (to look up the segment commitment for
``PieceCheckParams``), ``pieces_to_solution_range`` / ``solution_range_to_pieces`` /
``derive_next_solution_range`` / ``voting_solution_range`` / ``fork_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from py_arkworks_bls12381 import G1Point

from services.protocol.auditing import (
    chunk_distance,
    global_challenge_from_pot_output,
    is_within_solution_range,
    s_bucket_audit_index,
    sector_slot_challenge,
    xor32,
)
from services.protocol.constants import BLS12_381_R, NUM_PIECES, RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS
from services.protocol.hashes import blake3_254_hash_to_scalar, blake3_hash
from services.protocol.sector import (
    derive_evaluation_seed,
    derive_expiration_history_size,
    derive_piece_index,
    derive_sector_id,
)
from services.protocol.solution import Solution
from services.protocol.validation import U64_MAX

U128_MAX = (1 << 128) - 1

# Reference error variants (subspace-verification ``Error``)
INVALID_PIECE_OFFSET = "InvalidPieceOffset"
FUTURE_HISTORY_SIZE = "FutureHistorySize"
SECTOR_EXPIRED = "SectorExpired"
INVALID_HISTORY_SIZE = "InvalidHistorySize"
INVALID_PROOF_OF_SPACE = "InvalidProofOfSpace"
OUTSIDE_SOLUTION_RANGE = "OutsideSolutionRange"
INVALID_CHUNK = "InvalidChunk"
INVALID_CHUNK_WITNESS = "InvalidChunkWitness"
INVALID_PIECE = "InvalidPiece"


class SolutionVerificationError(ValueError):
    """A solution failed verification: ``kind`` is the reference error variant name and
    ``message`` the reference error's display text (``subspace-verification`` ``Error``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class KzgVerifier(Protocol):
    def verify(self, commitment: bytes, num_values: int, index: int, value: bytes, witness: bytes) -> bool: ...


PosVerifier = Callable[[bytes, int, bytes], bool]


def _is_g1_point(data: bytes) -> bool:
    try:
        G1Point.from_compressed_bytes(data)
    except (ValueError, TypeError):
        return False
    return True


def _default_pos_verifier(seed: bytes, challenge_index: int, proof: bytes) -> bool:
    from services.protocol.pos import verify  # imported lazily: heavy numba module

    return bool(verify(seed, challenge_index, proof))


@dataclass(frozen=True)
class PieceCheckParams:
    """What the node knows about history to check the piece behind a solution (spec 04 s5.6).

    ``segment_commitment`` is the commitment of the segment the solution's piece belongs to
    (see :func:`solution_piece_index`); ``sector_expiration_check_segment_commitment`` is the
    commitment of segment ``history_size + min_sector_lifetime - 1`` if the node has it.
    """

    max_pieces_in_sector: int
    segment_commitment: bytes
    recent_segments: int
    recent_history_fraction: tuple[int, int]
    min_sector_lifetime: int
    current_history_size: int
    sector_expiration_check_segment_commitment: bytes | None = None


@dataclass(frozen=True)
class VerifySolutionParams:
    """``proof_of_time`` is the slot's 16-byte PoT output; ``solution_range`` block or vote range."""

    proof_of_time: bytes
    solution_range: int
    piece_check_params: PieceCheckParams | None = None


def solution_piece_index(
    solution: Solution, max_pieces_in_sector: int, recent_segments: int, recent_history_fraction: tuple[int, int]
) -> int:
    """Piece index a solution claims to have plotted (to look up its segment commitment)."""
    sector_id = derive_sector_id(solution.public_key, solution.sector_index, solution.history_size)
    return derive_piece_index(
        sector_id,
        solution.piece_offset,
        solution.history_size,
        max_pieces_in_sector,
        recent_segments,
        recent_history_fraction,
    )


def verify_solution_with_challenge(
    solution: Solution,
    global_challenge: bytes,
    solution_range: int,
    kzg: KzgVerifier,
    piece_check_params: PieceCheckParams | None = None,
    pos_verifier: PosVerifier | None = None,
) -> int:
    """:func:`verify_solution` given the slot's global challenge directly."""
    if isinstance(solution_range, bool) or not isinstance(solution_range, int) or not 0 <= solution_range <= U64_MAX:
        raise ValueError(f"solution range must be a u64, got {solution_range!r}")
    verify_pos = pos_verifier or _default_pos_verifier

    sector_id = derive_sector_id(solution.public_key, solution.sector_index, solution.history_size)
    slot_challenge = sector_slot_challenge(sector_id, global_challenge)
    s_bucket = s_bucket_audit_index(slot_challenge)

    seed = derive_evaluation_seed(sector_id, solution.piece_offset)
    if not verify_pos(seed, s_bucket, solution.proof_of_space):
        raise SolutionVerificationError(INVALID_PROOF_OF_SPACE, "Invalid proof of space")

    masked_chunk = xor32(solution.chunk, blake3_hash(solution.proof_of_space))
    distance = chunk_distance(slot_challenge, global_challenge, masked_chunk)
    if not is_within_solution_range(distance, solution_range):
        raise SolutionVerificationError(
            OUTSIDE_SOLUTION_RANGE,
            f"Solution distance {distance} is outside of solution range {solution_range // 2} "
            "(half of actual solution range)",
        )

    # Reference order: the record commitment is decoded first (failure: InvalidChunkWitness),
    # then the chunk as a scalar (InvalidChunk), then the witness and the opening.
    if not _is_g1_point(solution.record_commitment):
        raise SolutionVerificationError(INVALID_CHUNK_WITNESS, "Invalid chunk witness")
    if int.from_bytes(solution.chunk, "big") >= BLS12_381_R:
        raise SolutionVerificationError(INVALID_CHUNK, "Invalid chunk: Invalid scalar")
    if not kzg.verify(solution.record_commitment, RECORD_NUM_S_BUCKETS, s_bucket, solution.chunk, solution.chunk_witness):
        raise SolutionVerificationError(INVALID_CHUNK_WITNESS, "Invalid chunk witness")

    if piece_check_params is not None:
        _check_piece(solution, sector_id, kzg, piece_check_params)
    return distance


def verify_solution(
    solution: Solution,
    slot: int,
    params: VerifySolutionParams,
    kzg: KzgVerifier,
    pos_verifier: PosVerifier | None = None,
) -> int:
    """Verify ``solution`` for ``slot``; return its audit distance or raise the failure reason."""
    global_challenge = global_challenge_from_pot_output(params.proof_of_time, slot)
    return verify_solution_with_challenge(
        solution, global_challenge, params.solution_range, kzg, params.piece_check_params, pos_verifier
    )


def _check_piece(solution: Solution, sector_id: bytes, kzg: KzgVerifier, params: PieceCheckParams) -> None:
    if solution.history_size > params.current_history_size + 1:
        raise SolutionVerificationError(
            FUTURE_HISTORY_SIZE,
            f"History size {solution.history_size} is in the future, current is {params.current_history_size}",
        )
    if solution.piece_offset >= params.max_pieces_in_sector:
        # the reference's display text for this variant is the generic one
        raise SolutionVerificationError(INVALID_PIECE_OFFSET, "Piece verification failed")
    if params.sector_expiration_check_segment_commitment is not None:
        expiration = derive_expiration_history_size(
            sector_id,
            solution.history_size,
            params.sector_expiration_check_segment_commitment,
            params.min_sector_lifetime,
        )
        if expiration is None:
            raise SolutionVerificationError(INVALID_HISTORY_SIZE, "Invalid history size")
        if expiration <= params.current_history_size:
            raise SolutionVerificationError(SECTOR_EXPIRED, "Sector expired")
    piece_index = derive_piece_index(
        sector_id,
        solution.piece_offset,
        solution.history_size,
        params.max_pieces_in_sector,
        params.recent_segments,
        params.recent_history_fraction,
    )
    position = piece_index % NUM_PIECES
    commitment_hash = blake3_254_hash_to_scalar(solution.record_commitment)
    if not kzg.verify(params.segment_commitment, NUM_PIECES, position, commitment_hash, solution.record_witness):
        raise SolutionVerificationError(INVALID_PIECE, "Piece verification failed")


# --------------------------------------------------------------------------------------------
# Solution range arithmetic (spec 04 section 5)

ERA_DURATION_IN_BLOCKS = 2016
MAINNET_SLOT_PROBABILITY = (1, 6)
TEST_RUNTIME_SLOT_PROBABILITY = (1, 1)
MAINNET_EXPECTED_VOTES_PER_BLOCK = 9


def _check_fraction(fraction: tuple[int, int], name: str) -> tuple[int, int]:
    num, den = fraction
    if not 0 < num <= U64_MAX or not 0 < den <= U64_MAX:
        raise ValueError(f"{name} must be two u64 values above zero, got {fraction!r}")
    return num, den


def _pieces_and_range_numerator(slot_probability: tuple[int, int]) -> int:
    """``u64::MAX / den * num / NUM_CHUNKS * NUM_S_BUCKETS`` in u64 arithmetic that wraps on
    overflow, as the reference (``const fn``, built for release) computes it: the products
    exceed u64 for slot probabilities of 1/2 and more, and the reference's results (recorded in
    ``derivations_ref.json``) are the wrapped ones."""
    num, den = _check_fraction(slot_probability, "slot probability")
    value = (U64_MAX // den * num) & U64_MAX
    return (value // RECORD_NUM_CHUNKS * RECORD_NUM_S_BUCKETS) & U64_MAX


def pieces_to_solution_range(pieces: int, slot_probability: tuple[int, int]) -> int:
    """Solution range at which ``pieces`` plotted pieces win a slot with ``slot_probability``
    (reference ``pieces_to_solution_range``, u64 wrapping arithmetic)."""
    if not 0 < pieces <= U64_MAX:
        raise ValueError(f"pieces must be a u64 above zero, got {pieces}")
    return _pieces_and_range_numerator(slot_probability) // pieces


def solution_range_to_pieces(solution_range: int, slot_probability: tuple[int, int]) -> int:
    """Inverse of :func:`pieces_to_solution_range` (reference ``solution_range_to_pieces``)."""
    if not 0 < solution_range <= U64_MAX:
        raise ValueError(f"solution range must be a u64 above zero, got {solution_range}")
    return _pieces_and_range_numerator(slot_probability) // solution_range


MAINNET_INITIAL_SOLUTION_RANGE = pieces_to_solution_range(1000, MAINNET_SLOT_PROBABILITY)
TEST_RUNTIME_INITIAL_SOLUTION_RANGE = U64_MAX


def derive_next_solution_range(
    start_slot: int,
    current_slot: int,
    slot_probability: tuple[int, int],
    current_solution_range: int,
    era_duration: int = ERA_DURATION_IN_BLOCKS,
) -> int:
    """Era retargeting: scale by actual/expected slots per block, clamped to [1/4, 4]x."""
    num, den = _check_fraction(slot_probability, "slot probability")
    if current_slot < start_slot:
        raise ValueError(f"current slot {current_slot} precedes era start slot {start_slot}")
    if era_duration <= 0:
        raise ValueError(f"era duration must be positive, got {era_duration}")
    era_slot_count = current_slot - start_slot
    scaled = min(current_solution_range * era_slot_count, U128_MAX)
    scaled = min(scaled * num, U128_MAX)
    next_range = scaled // era_duration // den
    next_range = min(next_range, U64_MAX)
    low = current_solution_range // 4
    high = min(current_solution_range * 4, U64_MAX)
    return max(low, min(next_range, high))


def voting_solution_range(solution_range: int, expected_votes_per_block: int, adjustment_enabled: bool) -> int:
    """Voting range: ×(votes + 1) (saturating) only while solution-range adjustment is enabled."""
    if not adjustment_enabled:
        return solution_range
    return min(solution_range * (expected_votes_per_block + 1), U64_MAX)


def fork_weight(solution_range: int) -> int:
    return U64_MAX - solution_range
