"""Solution SCALE (412 bytes, struct order) and spec-05 JSON forms (spec 04 section 4)."""

from __future__ import annotations

import json

import pytest

from services.protocol.scale import ScaleError
from services.protocol.solution import SOLUTION_SIZE, RewardSignature, Solution


def _solution() -> Solution:
    return Solution(
        public_key=bytes([1]) * 32,
        reward_address=bytes([2]) * 32,
        sector_index=0x0304,
        history_size=0x0506070809,
        piece_offset=0x0A0B,
        record_commitment=bytes([0xC1]) * 48,
        record_witness=bytes([0xC2]) * 48,
        chunk=bytes(range(32)),
        chunk_witness=bytes([0xC3]) * 48,
        proof_of_space=bytes(range(160)),
    )


def test_scale_layout_is_field_order_fixed_size() -> None:
    encoded = _solution().to_scale()
    assert SOLUTION_SIZE == 412 and len(encoded) == 412
    expected = (
        bytes([1]) * 32 + bytes([2]) * 32 + b"\x04\x03" + (0x0506070809).to_bytes(8, "little") + b"\x0b\x0a"
        + bytes([0xC1]) * 48 + bytes([0xC2]) * 48 + bytes(range(32)) + bytes([0xC3]) * 48 + bytes(range(160))
    )  # fmt: skip
    assert encoded == expected
    assert Solution.from_scale(encoded) == _solution()


def test_scale_rejects_truncated_trailing_and_zero_history() -> None:
    encoded = _solution().to_scale()
    with pytest.raises(ScaleError, match="truncated"):
        Solution.from_scale(encoded[:-1])
    with pytest.raises(ScaleError, match="trailing"):
        Solution.from_scale(encoded + b"\x00")
    zero_history = encoded[:66] + bytes(8) + encoded[74:]
    with pytest.raises(ScaleError, match="history size must be non-zero"):
        Solution.from_scale(zero_history)


def test_json_form() -> None:
    value = _solution().to_json()
    assert value == {
        "publicKey": "01" * 32,
        "rewardAddress": "02" * 32,
        "sectorIndex": 0x0304,
        "historySize": 0x0506070809,
        "pieceOffset": 0x0A0B,
        "recordCommitment": "c1" * 48,
        "recordWitness": "c2" * 48,
        "chunk": list(range(32)),
        "chunkWitness": "c3" * 48,
        "proofOfSpace": bytes(range(160)).hex(),
    }
    assert Solution.from_json(json.loads(json.dumps(value))) == _solution()


def test_json_accepts_uppercase_hex_and_rejects_bad_input() -> None:
    value = _solution().to_json()
    assert Solution.from_json({**value, "publicKey": "AB" * 32}).public_key == bytes([0xAB]) * 32
    with pytest.raises(ValueError, match="0x"):
        Solution.from_json({**value, "publicKey": "0x" + "01" * 31})
    with pytest.raises(ValueError, match="chunk must be a JSON array"):
        Solution.from_json({**value, "chunk": "00" * 32})
    with pytest.raises(ValueError, match=r"chunk\[3\]"):
        Solution.from_json({**value, "chunk": [0, 1, 2, 256] + [0] * 28})
    with pytest.raises(ValueError, match="proofOfSpace must be 160 bytes"):
        Solution.from_json({**value, "proofOfSpace": "00" * 159})
    missing = dict(value)
    del missing["chunkWitness"]
    with pytest.raises(ValueError, match="chunkWitness"):
        Solution.from_json(missing)
    with pytest.raises(ValueError, match="sectorIndex"):
        Solution.from_json({**value, "sectorIndex": 65536})


def test_constructor_validates_sizes() -> None:
    with pytest.raises(ValueError, match="chunk must be 32 bytes"):
        Solution(**{**_solution().__dict__, "chunk": bytes(31)})
    with pytest.raises(ValueError, match="history_size must be non-zero"):
        Solution(**{**_solution().__dict__, "history_size": 0})


def test_reward_signature() -> None:
    signature = RewardSignature(bytes(range(64)))
    assert RewardSignature.from_json(signature.to_json()) == signature
    with pytest.raises(ValueError, match="64 bytes"):
        RewardSignature(bytes(63))
