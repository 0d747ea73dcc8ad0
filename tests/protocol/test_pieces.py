"""Piece layout and encodings, record helpers and index arithmetic (spec 01 sections 3-4).

The serde JSON of a reference piece (``json_forms_ref.json``, abridged: length, blake3 of the
text, its head and tail) and the piece index / position / segment of every piece the reference
vectors place; the rest are round trips and rejections of malformed input.
"""

from __future__ import annotations

import json
import os

import pytest
from blake3 import blake3
from reference_vectors import load_json, vector_bytes

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


def _reference_piece() -> tuple[int, bytes]:
    history = load_json("sector_history_ref.json")
    index = history["sectors"][0]["piece_indexes"][0]
    return index, vector_bytes(history["pieces_bin"])[:PIECE_SIZE]


def test_piece_json_text_of_a_reference_piece() -> None:
    (form,) = [f for f in load_json("json_forms_ref.json")["forms"] if f["type"] == "Piece (abridged)"]
    index, data = _reference_piece()
    assert form["value"] == f"piece {index} (blake3 {blake3(data).hexdigest()})"
    abridged = dict(part.split("=", 1) for part in form["json"].split(" ", 3))
    text = json.dumps(Piece(data).to_json())
    assert len(text) == int(abridged["len"])
    assert blake3(text.encode()).hexdigest() == abridged["blake3"]
    assert abridged["head"] == text[:80] and abridged["tail"] == text[-80:]
    assert Piece.from_json(json.loads(text)) == Piece(data)


def test_piece_layout_of_a_reference_piece() -> None:
    """Commitment and witness sit where the reference plotter's record metadata has them."""
    _, data = _reference_piece()
    piece = Piece(data)
    history = load_json("sector_history_ref.json")
    record_metadata = bytes.fromhex(history["sectors"][0]["regions"]["record_metadata"]["hex"])[:128]
    assert piece.commitment + piece.witness == record_metadata[:96]
    assert bytes(piece.record) + piece.commitment + piece.witness == data


def test_piece_indexes_positions_and_segments_of_the_vectors() -> None:
    archiver = load_json("archiver_ref.json")
    for segment in archiver["segments"]:
        index = segment["header"]["segment_index"]
        assert segment_first_piece_index(index) == segment["first_piece_index"]
        assert segment_last_piece_index(index) == segment["first_piece_index"] + 255
    history = load_json("sector_history_ref.json")
    for segment in history["segments"]:
        for used in segment["pieces_used"]:
            assert piece_segment_index(used["piece_index"]) == segment["segment_index"]
            assert piece_position(used["piece_index"]) == used["position"]
            assert used["piece_index"] in segment_piece_indexes(segment["segment_index"])


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
    assert encoded.endswith(bytes(piece))
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


def test_piece_index_round_trips_and_bad_input() -> None:
    for segment in (0, 1, 77):
        for sp in (0, 1, 64, 127):
            index = piece_index_from_source_position(sp, segment)
            assert is_source_piece(index) and source_position(index) == sp and piece_segment_index(index) == segment
            assert not is_source_piece(index + 1)
    with pytest.raises(ValueError, match="parity piece"):
        source_position(3)
    with pytest.raises(ValueError, match="source position out of range: 128"):
        piece_index_from_source_position(128, 0)
    assert piece_index_from_bytes(piece_index_to_bytes(2**64 - 1)) == 2**64 - 1
    with pytest.raises(ValueError, match="piece offset out of range"):
        piece_offset_to_bytes(65536)
    with pytest.raises(ValueError, match="piece index out of range"):
        piece_index_to_bytes(-1)


def test_segment_index_bounds() -> None:
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
