"""Node-side solution verification and solution-range math (spec 04 section 5) against the
reference ``subspace-verification``.

Every reference Solution of ``sector_ref.json`` / ``sector_history_ref.json`` must verify with
the reference's distance (piece checks with mainnet parameters, current history size = the
sector's), and the chunk bit-flip negative must fail with the reference's error text. The
history-size-64 Solutions carry 10 verification variants each (expiry before / at / after,
future history size, wrong segment commitment, piece offset past the maximum, range 0) with the
reference verdict. ``derivations_ref.json`` holds the solution-range functions, including the
u64 wrap of ``pieces_to_solution_range`` at slot probability 1/2 and more. Flipping a byte of
any other Solution field must fail with the reference error kind.
"""

from __future__ import annotations

import dataclasses

import pytest
from reference_vectors import load_json, mainnet_kzg, reference_sector, solution_from_vector, xof

from services.protocol.verification import (
    FUTURE_HISTORY_SIZE,
    INVALID_CHUNK,
    INVALID_CHUNK_WITNESS,
    INVALID_PIECE,
    INVALID_PROOF_OF_SPACE,
    MAINNET_INITIAL_SOLUTION_RANGE,
    OUTSIDE_SOLUTION_RANGE,
    PieceCheckParams,
    SolutionVerificationError,
    VerifySolutionParams,
    derive_next_solution_range,
    fork_weight,
    pieces_to_solution_range,
    solution_piece_index,
    solution_range_to_pieces,
    verify_solution,
    voting_solution_range,
)

U64_MAX = 2**64 - 1
# The vectors' "chunk bit-flip" negative: bit 0 of chunk byte 5, the one single-bit flip that
# reproduces the distances the reference reports for it (the files do not name the bit).
FLIPPED_CHUNK_BYTE = 5


def _mainnet_piece_check(solution, segment_commitment: bytes) -> PieceCheckParams:  # noqa: ANN001
    return PieceCheckParams(1000, segment_commitment, 5, (1, 10), 4, solution.history_size, None)


def _verdict(  # noqa: ANN001
    solution, slot: int, pot_output: bytes, solution_range: int, piece_check: PieceCheckParams | None
) -> dict:
    """Our verification result in the vectors' verdict form."""
    try:
        distance = verify_solution(solution, slot, VerifySolutionParams(pot_output, solution_range, piece_check), mainnet_kzg())
    except SolutionVerificationError as error:
        return {"ok": False, "kind": error.kind, "error": error.message}
    return {"ok": True, "distance": str(distance)}


def _solutions(name: str) -> list[dict]:
    return reference_sector(name).vector["solutions"]


def _segment_commitments(name: str) -> dict[int, str]:
    """Segment index -> commitment of the segments the sector's pieces come from (vectors)."""
    sector = reference_sector(name)
    if name == "p6":
        return {s["segment_index"]: s["header"]["segment_commitment"] for s in sector.file["segments"]}
    return {0: load_json("archiver_ref.json")["segments"][0]["header"]["segment_commitment"]}


@pytest.mark.parametrize("name", ["p4", "p8", "p6"])
def test_reference_solutions_verify(name: str) -> None:
    commitments = _segment_commitments(name)
    for vector in _solutions(name):
        where = f"audit {vector['audit_i']} solution {vector['k']}"
        solution = solution_from_vector(vector["solution"])
        assert solution_piece_index(solution, 1000, 5, (1, 10)) == vector["piece_index"], where
        assert commitments[vector["piece_index"] // 256] == vector["segment_commitment"], where
        pot_output, slot, solution_range = bytes.fromhex(vector["pot_output"]), vector["slot"], int(vector["solution_range"])
        piece_check = _mainnet_piece_check(solution, bytes.fromhex(vector["segment_commitment"]))
        verdict = _verdict(solution, slot, pot_output, solution_range, piece_check)
        assert verdict == {"ok": True, "distance": vector["reference_verify"]["distance"]}, where
        assert vector["reference_verify"]["ok"]

        chunk = bytearray(solution.chunk)
        chunk[FLIPPED_CHUNK_BYTE] ^= 0x01
        flipped = dataclasses.replace(solution, chunk=bytes(chunk))
        verdict = _verdict(flipped, slot, pot_output, solution_range, piece_check)
        expected = vector["reference_verify_chunk_bitflip"]
        assert not verdict["ok"] and not expected["ok"], where
        assert verdict["error"] == expected["error"], where


def _piece_check_from_vector(params: dict | None) -> PieceCheckParams | None:
    if params is None:
        return None
    expiration = params["sector_expiration_check_segment_commitment"]
    return PieceCheckParams(
        params["max_pieces_in_sector"],
        bytes.fromhex(params["segment_commitment"]),
        params["recent_segments"],
        tuple(params["recent_history_fraction"]),
        params["min_sector_lifetime"],
        params["current_history_size"],
        None if expiration is None else bytes.fromhex(expiration),
    )


def test_verification_variants_at_history_size_64() -> None:
    """Every variant's verdict (distance, or error kind and text) as the reference gave it."""
    sector = reference_sector("p6")
    rule = sector.file["expiration_rule"]
    assert "XOF48('refvec history expiration check commitment', 0)" in rule

    check_commitment = xof("refvec history expiration check commitment", 0, 48).hex()
    labels = set()
    for vector in _solutions("p6"):
        solution = solution_from_vector(vector["solution"])
        extra = vector["extra"]
        assert extra["expiration_check_segment_commitment"] == check_commitment
        for variant in extra["verify_variants"]:
            labels.add(variant["label"])
            params = variant["params"]
            verdict = _verdict(
                solution, vector["slot"], bytes.fromhex(vector["pot_output"]), int(params["solution_range"]),
                _piece_check_from_vector(params["piece_check_params"]),
            )  # fmt: skip
            assert verdict == variant["verdict"], (vector["audit_i"], vector["k"], variant["label"])
    assert len(labels) == 10


# ---- solution range functions (derivations_ref.json)


def _solution_range_vectors() -> dict:
    return load_json("derivations_ref.json")["solution_range"]


def test_pieces_to_solution_range_wraps_like_the_reference() -> None:
    cases = _solution_range_vectors()["pieces_to_solution_range"]
    assert any(tuple(c["slot_probability"]) == (1, 1) for c in cases)  # the wrapping ones
    for case in cases:
        got = pieces_to_solution_range(int(case["pieces"]), tuple(case["slot_probability"]))
        assert got == int(case["solution_range"]), case
    assert MAINNET_INITIAL_SOLUTION_RANGE == int(
        next(c["solution_range"] for c in cases if c["pieces"] == "1000" and c["slot_probability"] == [1, 6])
    )


def test_solution_range_to_pieces_wraps_like_the_reference() -> None:
    for case in _solution_range_vectors()["solution_range_to_pieces"]:
        got = solution_range_to_pieces(int(case["solution_range"]), tuple(case["slot_probability"]))
        assert got == int(case["pieces"]), case


def test_derive_next_solution_range() -> None:
    cases = _solution_range_vectors()["derive_next_solution_range"]
    assert len(cases) == 135
    for case in cases:
        got = derive_next_solution_range(
            case["start_slot"], case["current_slot"], tuple(case["slot_probability"]),
            int(case["current_solution_range"]), case["era_duration"],
        )  # fmt: skip
        assert got == int(case["next_solution_range"]), case


def test_fork_weight() -> None:
    for case in _solution_range_vectors()["calculate_block_fork_weight"]:
        assert fork_weight(int(case["solution_range"])) == int(case["fork_weight"]), case


def test_solution_range_bad_input() -> None:
    with pytest.raises(ValueError, match="pieces"):
        pieces_to_solution_range(0, (1, 6))
    with pytest.raises(ValueError, match="solution range"):
        solution_range_to_pieces(0, (1, 6))
    with pytest.raises(ValueError, match="slot probability"):
        pieces_to_solution_range(1, (1, 0))
    with pytest.raises(ValueError, match="precedes"):
        derive_next_solution_range(5, 4, (1, 6), 1000)


def test_voting_range() -> None:
    """Not in the vectors (pallet-subspace is not built there): spec 04 §5."""
    assert voting_solution_range(100, 9, True) == 1000
    assert voting_solution_range(100, 9, False) == 100
    assert voting_solution_range(U64_MAX // 2, 9, True) == U64_MAX


# ---- bit-flip negatives on a reference solution


@pytest.fixture(scope="module")
def reference_solution():  # noqa: ANN201
    vector = _solutions("p6")[0]
    solution = solution_from_vector(vector["solution"])
    piece_check = _mainnet_piece_check(solution, bytes.fromhex(vector["segment_commitment"]))
    return solution, vector, piece_check


def _kind(  # noqa: ANN001
    solution, vector: dict, piece_check: PieceCheckParams | None, solution_range: int | None = None
) -> str | None:
    verdict = _verdict(
        solution, vector["slot"], bytes.fromhex(vector["pot_output"]),
        int(vector["solution_range"]) if solution_range is None else solution_range, piece_check,
    )  # fmt: skip
    return None if verdict["ok"] else verdict["kind"]


def _flip(solution, field: str, index: int):  # noqa: ANN001, ANN202
    data = bytearray(getattr(solution, field))
    data[index] ^= 0x01
    return dataclasses.replace(solution, **{field: bytes(data)})


@pytest.mark.parametrize(
    ("field", "index", "kinds"),
    [
        ("chunk", 0, {INVALID_CHUNK_WITNESS, OUTSIDE_SOLUTION_RANGE}),
        ("chunk", 31, {INVALID_CHUNK_WITNESS, OUTSIDE_SOLUTION_RANGE}),
        ("chunk_witness", 0, {INVALID_CHUNK_WITNESS}),
        ("chunk_witness", 47, {INVALID_CHUNK_WITNESS}),
        ("proof_of_space", 0, {INVALID_PROOF_OF_SPACE}),
        ("proof_of_space", 159, {INVALID_PROOF_OF_SPACE}),
        ("record_commitment", 20, {INVALID_CHUNK_WITNESS}),
        ("record_witness", 0, {INVALID_PIECE}),
        ("record_witness", 47, {INVALID_PIECE}),
    ],
)
def test_flipped_byte_fails(reference_solution, field: str, index: int, kinds: set[str]) -> None:  # noqa: ANN001
    solution, vector, piece_check = reference_solution
    assert _kind(_flip(solution, field, index), vector, piece_check) in kinds


def test_record_witness_is_only_checked_with_piece_check_params(reference_solution) -> None:  # noqa: ANN001
    solution, vector, _ = reference_solution
    assert _kind(_flip(solution, "record_witness", 0), vector, None) is None


def test_non_canonical_chunk_and_range_edge(reference_solution) -> None:  # noqa: ANN001
    solution, vector, piece_check = reference_solution
    # all-ones is >= r; its masked value still has to be within range for the scalar check to be
    # reached, so use the full range
    assert _kind(dataclasses.replace(solution, chunk=b"\xff" * 32), vector, piece_check, U64_MAX) == INVALID_CHUNK
    distance = int(vector["reference_verify"]["distance"])
    assert _kind(solution, vector, piece_check, 2 * distance) is None
    assert _kind(solution, vector, piece_check, 2 * distance - 2) == OUTSIDE_SOLUTION_RANGE
    future = dataclasses.replace(piece_check, current_history_size=solution.history_size - 2)
    assert _kind(solution, vector, future) == FUTURE_HISTORY_SIZE
