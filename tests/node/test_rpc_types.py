"""JSON shapes (spec 05 §2) and SCALE forms (spec 05 §4) of the node RPC types."""

from __future__ import annotations

import json

import pytest

from services.node.rpc_types import (
    FarmerAppInfo,
    FarmerProtocolInfo,
    RewardSignatureResponse,
    RewardSigningInfo,
    SlotInfo,
    SolutionResponse,
)
from services.protocol.solution import Solution

U64_MAX = (1 << 64) - 1


def sample_solution() -> Solution:
    return Solution(
        public_key=bytes(range(32)),
        reward_address=bytes(range(32, 64)),
        sector_index=3,
        history_size=7,
        piece_offset=2,
        record_commitment=b"\x11" * 48,
        record_witness=b"\x22" * 48,
        chunk=b"\x00" + b"\x33" * 31,
        chunk_witness=b"\x44" * 48,
        proof_of_space=b"\x55" * 160,
    )


def test_slot_info_json_and_scale() -> None:
    info = SlotInfo(12345, bytes(range(32)), 6148914691236495, U64_MAX)
    js = info.to_json()
    assert js == {
        "slotNumber": 12345,
        "globalChallenge": bytes(range(32)).hex(),
        "solutionRange": 6148914691236495,
        "votingSolutionRange": U64_MAX,
    }
    # u64 above 2^53 survives a JSON text round trip as an exact integer
    assert SlotInfo.from_json(json.loads(json.dumps(js))) == info
    scale = info.to_scale()
    assert len(scale) == 56
    assert scale[:8] == (12345).to_bytes(8, "little") and scale[8:40] == bytes(range(32))
    assert SlotInfo.from_scale(scale) == info


def test_solution_response_forms() -> None:
    response = SolutionResponse(99, sample_solution())
    js = response.to_json()
    assert js["slotNumber"] == 99
    sol = js["solution"]
    assert sol["chunk"] == [0] + [0x33] * 31  # an array of 32 numbers, not hex
    assert sol["publicKey"] == bytes(range(32)).hex() and sol["proofOfSpace"] == "55" * 160
    assert sol["sectorIndex"] == 3 and sol["historySize"] == 7 and sol["pieceOffset"] == 2
    assert SolutionResponse.from_json(json.loads(json.dumps(js))) == response
    scale = response.to_scale()
    assert len(scale) == 8 + 412
    assert SolutionResponse.from_scale(scale) == response


def test_reward_types() -> None:
    info = RewardSigningInfo(b"\x01" * 32, b"\x02" * 32)
    assert info.to_json() == {"hash": "01" * 32, "publicKey": "02" * 32}
    assert info.to_scale() == b"\x01" * 32 + b"\x02" * 32
    assert RewardSigningInfo.from_scale(info.to_scale()) == info
    signed = RewardSignatureResponse(b"\x01" * 32, b"\x03" * 64)
    assert signed.to_json() == {"hash": "01" * 32, "signature": "03" * 64}
    assert signed.to_scale() == b"\x01" * 32 + b"\x01" + b"\x03" * 64
    unsigned = RewardSignatureResponse(b"\x01" * 32, None)
    assert unsigned.to_json()["signature"] is None
    assert unsigned.to_scale() == b"\x01" * 32 + b"\x00"
    for value in (signed, unsigned):
        assert RewardSignatureResponse.from_scale(value.to_scale()) == value
        assert RewardSignatureResponse.from_json(value.to_json()) == value


def test_farmer_app_info_forms() -> None:
    info = FarmerAppInfo(
        genesis_hash=b"\x09" * 32,
        dsn_bootstrap_nodes=("/ip4/127.0.0.1/tcp/30533",),
        syncing=False,
        farming_timeout_ms=4000,
        protocol_info=FarmerProtocolInfo(1, 1000, 5, (1, 10), 4),
    )
    assert info.to_json() == {
        "genesisHash": "09" * 32,
        "dsnBootstrapNodes": ["/ip4/127.0.0.1/tcp/30533"],
        "syncing": False,
        "farmingTimeout": {"secs": 4, "nanos": 0},
        "protocolInfo": {
            "historySize": 1,
            "maxPiecesInSector": 1000,
            "recentSegments": 5,
            "recentHistoryFraction": [1, 10],
            "minSectorLifetime": 4,
        },
    }
    scale = info.to_scale()
    # 32 genesis ‖ Vec<Vec<u8>> ‖ bool ‖ Duration(u64 secs, u32 nanos) ‖ protocol info (8+2+8+8+8+8)
    multiaddr = bytes.fromhex("047f000001067745")
    expected = (
        b"\x09" * 32
        + b"\x04" + bytes([len(multiaddr) << 2]) + multiaddr
        + b"\x00"
        + (4).to_bytes(8, "little") + (0).to_bytes(4, "little")
        + (1).to_bytes(8, "little") + (1000).to_bytes(2, "little") + (5).to_bytes(8, "little")
        + (1).to_bytes(8, "little") + (10).to_bytes(8, "little") + (4).to_bytes(8, "little")
    )
    assert scale == expected
    assert FarmerAppInfo.from_scale(scale) == info
    assert FarmerAppInfo.from_json(info.to_json()) == info


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
