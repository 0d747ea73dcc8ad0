"""Archiver input from a Substrate ``chain_getBlock`` result (the reference's ``encode_block``):
SCALE layout, justification filtering, and the genesis extension to a whole segment."""

from __future__ import annotations

import numpy as np
import pytest

from services.protocol.constants import RECORDED_HISTORY_SEGMENT_SIZE
from services.protocol.pos.chacha8 import keystream_words
from services.utils.block_source import BlockSourceError, encode_header, encode_signed_block

PARENT = "0x" + "11" * 32
STATE = "0x" + "22" * 32
EXTRINSICS_ROOT = "0x" + "33" * 32


def _block(number: int, extrinsics: list[str], justifications=None) -> dict:  # noqa: ANN001
    header = {"parentHash": PARENT, "number": hex(number), "stateRoot": STATE, "extrinsicsRoot": EXTRINSICS_ROOT,
              "digest": {"logs": ["0x0601020304", "0x0405"]}}
    return {"block": {"header": header, "extrinsics": extrinsics}, "justifications": justifications}


def test_header_scale_layout() -> None:
    encoded = encode_header(_block(70000, [])["block"]["header"])
    # parent hash, compact(70000) = 4-byte mode, state root, extrinsics root, 2 logs as they are
    assert encoded == (bytes.fromhex("11" * 32) + (70000 << 2 | 2).to_bytes(4, "little") + bytes.fromhex("22" * 32)
                       + bytes.fromhex("33" * 32) + bytes([2 << 2]) + bytes.fromhex("0601020304") + bytes.fromhex("0405"))


def test_block_with_extrinsics_and_filtered_justifications() -> None:
    pot = [0] + [7] * 16 + [1 << 2] + [9] * 128  # PotCheckpoints { seed, checkpoints: vec of one } (SCALE)
    justifications = [
        [list(b"FRNK"), [1, 2, 3]],            # not a Subspace justification: dropped
        [list(b"SUB_"), pot],                  # kept
        [list(b"SUB_"), [0, 1, 2]],            # Subspace but does not decode: dropped
    ]
    block = _block(5, ["0x0c010203", "0x0401"], justifications)
    encoded = encode_signed_block(block)
    header = encode_header(block["block"]["header"])
    body = bytes([2 << 2]) + bytes.fromhex("0c010203") + bytes.fromhex("0401")
    # compact(len(pot)) for 146 bytes is the two-byte form
    kept = b"SUB_" + ((len(pot) << 2) | 1).to_bytes(2, "little") + bytes(pot)
    assert encoded == header + body + b"\x01" + bytes([1 << 2]) + kept
    # no justification left: None
    assert encode_signed_block(_block(5, [], [[list(b"FRNK"), [1]]])).endswith(bytes([0]) + b"\x00")
    assert encode_signed_block(_block(5, [], None)) == encode_header(_block(5, [])["block"]["header"]) + b"\x00\x00"


def test_genesis_is_extended_to_a_segment_with_chacha8_keystream() -> None:
    encoded = encode_signed_block(_block(0, ["0x0401"]))
    assert len(encoded) == RECORDED_HISTORY_SEGMENT_SIZE
    plain = encode_header(_block(0, [])["block"]["header"]) + bytes([1 << 2]) + bytes.fromhex("0401") + b"\x00"
    assert encoded[: len(plain)] == plain
    stream = keystream_words(np.frombuffer(bytes.fromhex("22" * 32), dtype=np.uint8), 4).view(np.uint8).tobytes()
    assert encoded[len(plain): len(plain) + 256] == stream[:256]


def test_bad_json_is_one_error() -> None:
    with pytest.raises(BlockSourceError):
        encode_signed_block({"block": {"header": {"number": "0x1"}}})
    with pytest.raises(BlockSourceError):
        encode_signed_block(_block(1, ["0xzz"]))
