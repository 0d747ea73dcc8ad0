"""Piece layout and encodings, record helpers and index arithmetic (spec 01 sections 3-4)."""

from __future__ import annotations

import os

import pytest

from services.protocol.constants import PIECE_SIZE, RAW_RECORD_SIZE, RECORD_SIZE
from services.protocol.pieces import (
    HistorySize,
    Piece,
    is_source_piece,
    piece_index_from_bytes,
    piece_index_from_source_position,
    piece_index_to_bytes,
    piece_offset_to_bytes,
    piece_position,
    piece_segment_index,
    raw_record_from_source,
    record_chunks,
    segment_first_piece_index,
    segment_last_piece_index,
    segment_piece_indexes,
    source_position,
    source_record_from_raw,
)
from services.protocol.scale import ScaleError, encode_compact


def _sample_piece() -> Piece:
    record = bytes(i % 251 for i in range(RECORD_SIZE))
    return Piece.from_parts(record, b"\xc1" * 48, b"\xa2" * 48)


def test_piece_layout_offsets() -> None:
    piece = _sample_piece()
    data = bytes(piece)
    assert len(data) == PIECE_SIZE == 1_048_672
    assert piece.record == data[:1_048_576]
    assert piece.commitment == data[1_048_576:1_048_624] == b"\xc1" * 48
    assert piece.witness == data[1_048_624:] == b"\xa2" * 48


def test_piece_rejects_wrong_sizes() -> None:
    with pytest.raises(ValueError, match=f"must be {PIECE_SIZE} bytes, got {PIECE_SIZE - 1}"):
        Piece(bytes(PIECE_SIZE - 1))
    with pytest.raises(ValueError, match="record commitment must be 48"):
        Piece.from_parts(bytes(RECORD_SIZE), bytes(47), bytes(48))


def test_piece_scale_form() -> None:
    piece = _sample_piece()
    encoded = piece.to_scale()
    # compact(1_048_672): 4-byte mode, (n << 2) | 2 little-endian.
    assert encoded[:4] == ((PIECE_SIZE << 2) | 2).to_bytes(4, "little")
    assert encoded[4:] == bytes(piece)
    assert Piece.from_scale(encoded) == piece
    with pytest.raises(ScaleError, match=f"must be {PIECE_SIZE} bytes"):
        Piece.from_scale(encode_compact(PIECE_SIZE - 1) + bytes(piece)[:-1])
    with pytest.raises(ScaleError, match="trailing"):
        Piece.from_scale(encoded + b"\x00")
    with pytest.raises(ScaleError, match="truncated"):
        Piece.from_scale(encoded[:-1])


def test_piece_json_form() -> None:
    piece = _sample_piece()
    text = piece.to_json()
    assert text == bytes(piece).hex() and text == text.lower() and not text.startswith("0x")
    assert Piece.from_json(text) == piece
    assert Piece.from_json(text.upper()) == piece  # serde hex accepts either case
    with pytest.raises(ValueError, match="0x"):
        Piece.from_json("0x" + text)
    with pytest.raises(ValueError, match=f"must be {PIECE_SIZE} bytes"):
        Piece.from_json(text[:-2])
    with pytest.raises(ValueError, match="not valid hex"):
        Piece.from_json("zz" + text[2:])
    with pytest.raises(ValueError, match="hex string"):
        Piece.from_json(123)


def test_source_record_round_trip() -> None:
    raw = os.urandom(RAW_RECORD_SIZE)
    record = source_record_from_raw(raw)
    assert len(record) == RECORD_SIZE
    assert record[:32] == b"\x00" + raw[:31]
    assert record[-32:] == b"\x00" + raw[-31:]
    assert raw_record_from_source(record) == raw
    chunks = record_chunks(record)
    assert len(chunks) == 32768 and chunks[1] == b"\x00" + raw[31:62]
    bad = bytearray(record)
    bad[32 * 5] = 1
    with pytest.raises(ValueError, match="chunk 5 is not a safe scalar"):
        raw_record_from_source(bytes(bad))
    with pytest.raises(ValueError, match="raw record must be"):
        source_record_from_raw(raw[:-1])


def test_piece_index_arithmetic() -> None:
    assert piece_segment_index(0) == 0 and piece_position(0) == 0
    assert piece_segment_index(511) == 1 and piece_position(511) == 255
    assert piece_segment_index(512 + 7) == 2 and piece_position(512 + 7) == 7
    assert is_source_piece(256) and not is_source_piece(257)
    assert [source_position(i) for i in (0, 2, 254, 256, 300)] == [0, 1, 127, 0, 22]
    with pytest.raises(ValueError, match="parity piece"):
        source_position(3)
    for segment in (0, 1, 77):
        for sp in (0, 1, 64, 127):
            index = piece_index_from_source_position(sp, segment)
            assert index == segment * 256 + 2 * sp
            assert source_position(index) == sp and piece_segment_index(index) == segment
    with pytest.raises(ValueError, match="source position out of range: 128"):
        piece_index_from_source_position(128, 0)
    assert piece_index_to_bytes(0x0102) == b"\x02\x01" + bytes(6)
    assert piece_index_from_bytes(piece_index_to_bytes(2**64 - 1)) == 2**64 - 1
    assert piece_offset_to_bytes(999) == (999).to_bytes(2, "little")
    with pytest.raises(ValueError, match="piece offset out of range"):
        piece_offset_to_bytes(65536)
    with pytest.raises(ValueError, match="piece index out of range"):
        piece_index_to_bytes(-1)


def test_segment_index_helpers() -> None:
    assert segment_first_piece_index(3) == 768 and segment_last_piece_index(3) == 1023
    assert list(segment_piece_indexes(1))[:2] == [256, 257] and len(segment_piece_indexes(1)) == 256
    with pytest.raises(ValueError, match="segment index out of range"):
        segment_first_piece_index(2**64 // 256)


def test_history_size() -> None:
    size = HistorySize.from_segment_index(0)
    assert size.value == 1 and size.segment_index() == 0 and size.in_pieces() == 256
    assert HistorySize(10).sector_expiration_check(4) == HistorySize(14)
    assert HistorySize(2**64 - 1).sector_expiration_check(1) is None
    assert HistorySize(5).to_bytes() == (5).to_bytes(8, "little")
    with pytest.raises(ValueError, match="non-zero"):
        HistorySize(0)
    with pytest.raises(ValueError, match="out of range"):
        HistorySize(2**64)
