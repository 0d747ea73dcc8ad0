"""JSON shapes (spec 05 §2) and SCALE forms (spec 05 §4) of the node RPC types.

The exact ``serde_json`` text of every type in ``json_forms_ref.json`` that our RPC types carry
(as a field or a parameter) must come out of our renderers; ``official_farm/`` holds the
farmer app info the official farmer accepted. The SCALE forms of these RPC types and the JSON
shapes of ``SlotInfo`` / ``RewardSigningInfo`` as whole objects are not in the vectors: for
them only round trips and rejections are checked.
"""

from __future__ import annotations

import json

import pytest
from reference_vectors import farm_path, load_json, solution_from_vector

from services.node.rpc_types import (
    FarmerAppInfo,
    FarmerProtocolInfo,
    RewardSignatureResponse,
    RewardSigningInfo,
    SlotInfo,
    SolutionResponse,
)
from services.protocol.segments import ArchivedBlockProgress, LastArchivedBlock, SegmentHeader
from services.protocol.solution import Solution
from services.protocol.validation import U64_MAX, check_uint


def _text(value: object) -> str:
    """serde_json's compact text (what ``services.node.rpc_server`` writes)."""
    return json.dumps(value, separators=(",", ":"))


def _forms() -> list[dict]:
    return load_json("json_forms_ref.json")["forms"]


def _history_solution() -> Solution:
    return solution_from_vector(load_json("sector_history_ref.json")["sectors"][0]["solutions"][0]["solution"])


def _solution_with(**fields: object) -> dict:
    """The JSON of the history solution with some fields replaced, parsed and rendered by us."""
    return Solution.from_json({**_history_solution().to_json(), **fields}).to_json()


def _decimal(text: str) -> int:
    return check_uint(json.loads(text), U64_MAX, "number")


# type in json_forms_ref.json -> our JSON value for the vector's value (parsed from its text)
RENDERERS = {
    "Solution<PublicKey>": lambda text: SolutionResponse(1, Solution.from_json(json.loads(text))).to_json()["solution"],
    "PublicKey": lambda text: RewardSigningInfo(bytes(32), bytes.fromhex(json.loads(text))).to_json()["publicKey"],
    "RewardSignature": lambda text: RewardSignatureResponse(
        bytes(32), bytes.fromhex(json.loads(text))
    ).to_json()["signature"],
    "Blake3Hash": lambda text: SlotInfo(1, bytes.fromhex(json.loads(text)), 1, 1).to_json()["globalChallenge"],
    "SegmentCommitment": lambda text: SegmentHeader(
        0, bytes.fromhex(json.loads(text)), bytes(32), LastArchivedBlock(0, ArchivedBlockProgress.complete())
    ).to_json()["v0"]["segmentCommitment"],
    "FarmerProtocolInfo": lambda text: FarmerProtocolInfo.from_json(json.loads(text)).to_json(),
    "PieceIndex": _decimal,
    "SegmentIndex": _decimal,
    "HistorySize": lambda text: FarmerProtocolInfo(_decimal(text), 1, 1, (1, 1), 1).to_json()["historySize"],
    # fields of the history-size-64 solution ("of solution")
    "RecordCommitment": lambda _: _history_solution().to_json()["recordCommitment"],
    "RecordWitness": lambda _: _history_solution().to_json()["recordWitness"],
    "ChunkWitness": lambda _: _history_solution().to_json()["chunkWitness"],
    "ScalarBytes": lambda _: _history_solution().to_json()["chunk"],
    "PosProof": lambda _: _history_solution().to_json()["proofOfSpace"],
    "PieceOffset": lambda text: _solution_with(pieceOffset=json.loads(text))["pieceOffset"],
    "SectorIndex (u16)": lambda text: _solution_with(sectorIndex=json.loads(text))["sectorIndex"],
}
CHECKED_ELSEWHERE = {  # tests/protocol
    "SegmentHeader", "LastArchivedBlock", "ArchivedBlockProgress", "Piece (abridged)",
}  # fmt: skip
# Types no RPC type of ours carries: PoT values and sector ids (the farmer gets the global
# challenge only), s-buckets, and the object-mapping types (subspace_subscribeObjectMappings is
# not served: spec 05, "not needed by a farmer").
NOT_CARRIED = {
    "Randomness", "PotOutput", "PotSeed", "PotKey", "SectorId", "SBucket",
    "BlockObject", "BlockObjectMapping", "GlobalObject", "GlobalObjectMapping",
}  # fmt: skip


def test_every_form_is_accounted_for() -> None:
    types = {form["type"] for form in _forms()}
    assert types == RENDERERS.keys() | CHECKED_ELSEWHERE | NOT_CARRIED


@pytest.mark.parametrize("type_name", sorted(RENDERERS))
def test_json_text_of_the_reference_types(type_name: str) -> None:
    forms = [form for form in _forms() if form["type"] == type_name]
    assert forms
    for form in forms:
        assert _text(RENDERERS[type_name](form["json"])) == form["json"], form["value"]


def test_official_farm_app_info() -> None:
    """The farmer app info the official farmer farmed with parses and renders back unchanged."""
    value = json.loads(farm_path("farmer_app_info.json").read_text())
    info = FarmerAppInfo.from_json(value)
    params = json.loads(farm_path("params.json").read_text())
    assert info.genesis_hash.hex() == params["genesisHash"]
    assert info.farming_timeout_ms == 1000 * params["farmingTimeoutSecs"]
    assert info.protocol_info.to_json() == params["protocolInfo"]
    assert info.to_json() == value and list(info.to_json()) == list(value)
    assert FarmerAppInfo.from_scale(info.to_scale()) == info


def test_round_trips() -> None:
    solution = _history_solution()
    for value in (
        SlotInfo(12345, bytes(range(32)), 6148914691236495, U64_MAX),
        SolutionResponse(99, solution),
        RewardSigningInfo(b"\x01" * 32, b"\x02" * 32),
        RewardSignatureResponse(b"\x01" * 32, b"\x03" * 64),
        RewardSignatureResponse(b"\x01" * 32, None),
        FarmerAppInfo(b"\x09" * 32, ("/ip4/127.0.0.1/tcp/30533",), False, 4000, FarmerProtocolInfo(1, 1000, 5, (1, 10), 4)),
    ):
        cls = type(value)
        # u64 above 2^53 survives a JSON text round trip as an exact integer
        assert cls.from_json(json.loads(json.dumps(value.to_json()))) == value
        assert cls.from_scale(value.to_scale()) == value
    assert len(SlotInfo(1, bytes(32), 2, 3).to_scale()) == 8 + 32 + 8 + 8
    assert len(SolutionResponse(1, solution).to_scale()) == 8 + 412
    assert RewardSignatureResponse(b"\x01" * 32, None).to_json()["signature"] is None


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda js: js.pop("slotNumber"), "missing field 'slotNumber'"),
        (lambda js: js.update(globalChallenge="0x" + "00" * 31), "must not start with 0x"),
        (lambda js: js.update(globalChallenge="00" * 31), "must be 32 bytes"),
        (lambda js: js.update(solutionRange=1.5), "solutionRange must be an integer"),
        (lambda js: js.update(solutionRange=1 << 64), "solutionRange out of range"),
        (lambda js: js.update(slotNumber=True), "slotNumber must be an integer"),
    ],
)
def test_bad_slot_info_json_names_the_field(mutate, message) -> None:
    js = SlotInfo(1, bytes(32), 2, 3).to_json()
    mutate(js)
    with pytest.raises(ValueError, match=message):
        SlotInfo.from_json(js)


def test_bad_scale_is_rejected() -> None:
    with pytest.raises(ValueError):
        SlotInfo.from_scale(bytes(55))
    with pytest.raises(ValueError, match="trailing"):
        RewardSigningInfo.from_scale(bytes(65))
    with pytest.raises(ValueError):
        RewardSignatureResponse.from_scale(bytes(32) + b"\x02")
