"""Full node-side verification of a submitted solution for the dev node (spec 04 §5).

Wraps :func:`services.protocol.verification.verify_solution` with what the dev chain knows: the
slot's stand-in PoT output, the block solution range, and the piece-check parameters (segment
commitments of archived history, current history size, sector expiry). Every failure is a
``ValueError`` whose message names the reference error variant.
"""

from __future__ import annotations

from services.node import dev_history
from services.node.config import DevNodeConfig
from services.node.rpc_types import SlotInfo
from services.protocol.constants import NUM_PIECES
from services.protocol.solution import Solution
from services.protocol.verification import (
    PieceCheckParams,
    SolutionVerificationError,
    VerifySolutionParams,
    solution_piece_index,
    verify_solution,
)


class SolutionVerifier:
    def __init__(self, kzg, chain, config: DevNodeConfig) -> None:  # noqa: ANN001
        self.kzg = kzg
        self.chain = chain
        self.config = config

    def verify(self, solution: Solution, slot: SlotInfo) -> int:
        """Audit distance of a valid solution; raises ValueError naming why it is invalid.

        Checked against the *voting* range (a valid vote is still a valid solution); the caller
        decides block vs vote with the block solution range.
        """
        cfg = self.config
        chain = self.chain
        if solution.history_size > chain.history_size + 1:
            raise SolutionVerificationError(
                "FutureHistorySize", f"history size {solution.history_size} > current {chain.history_size} + 1"
            )
        if solution.piece_offset >= cfg.pieces_in_sector:
            raise SolutionVerificationError(
                "InvalidPieceOffset", f"piece offset {solution.piece_offset} >= max pieces in sector {cfg.pieces_in_sector}"
            )
        piece_index = solution_piece_index(
            solution, cfg.pieces_in_sector, cfg.recent_segments, tuple(cfg.recent_history_fraction)
        )
        segment_commitment = chain.segment_commitment(piece_index // NUM_PIECES)
        if segment_commitment is None:
            raise ValueError(f"SegmentCommitmentNotFound: segment {piece_index // NUM_PIECES} is not archived")
        expiration_segment = solution.history_size + cfg.min_sector_lifetime - 1
        params = VerifySolutionParams(
            proof_of_time=dev_history.pot_output(chain.genesis_hash, slot.slot_number),
            solution_range=slot.voting_solution_range,
            piece_check_params=PieceCheckParams(
                max_pieces_in_sector=cfg.pieces_in_sector,
                segment_commitment=segment_commitment,
                recent_segments=cfg.recent_segments,
                recent_history_fraction=tuple(cfg.recent_history_fraction),
                min_sector_lifetime=cfg.min_sector_lifetime,
                current_history_size=chain.history_size,
                sector_expiration_check_segment_commitment=chain.segment_commitment(expiration_segment),
            ),
        )
        return verify_solution(solution, slot.slot_number, params, self.kzg)
