"""Pieces, records and the index arithmetic around them (spec 01 sections 3-4).

A piece is the unit farmers store and exchange: a 1 MiB record (32 768 big-endian scalars)
followed by the record's KZG commitment and its witness against the segment commitment.  The
index helpers encode the segment / position / source-parity interleaving rules that plotting,
piece caches and the archiver all have to agree on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.protocol.constants import (
    COMMITMENT_SIZE,
    NUM_PIECES,
    NUM_RAW_RECORDS,
    PIECE_SIZE,
    RAW_RECORD_SIZE,
    RECORD_NUM_CHUNKS,
    RECORD_SIZE,
    SCALAR_FULL_BYTES,
    SCALAR_SAFE_BYTES,
    WITNESS_SIZE,
)
from services.protocol.scale import ScaleReader, decode_all, encode_bytes
from services.protocol.validation import U16_MAX, U64_MAX, check_uint, hex_to_bytes


# Erasure coding rate (1, 2): one source piece for every two pieces.
_RATE_NUMERATOR = 1
_RATE_DENOMINATOR = 2


# --------------------------------------------------------------------------------------------
# Piece


class Piece:
    """Exactly ``PIECE_SIZE`` bytes: ``record ‖ commitment(48) ‖ witness(48)``.

    ``record`` is a zero-copy read-only ``memoryview``; ``commitment`` and ``witness`` are bytes.
    """

    __slots__ = ("_data",)

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) != PIECE_SIZE:
            raise ValueError(f"a piece must be {PIECE_SIZE} bytes, got {len(data)}")
        self._data = bytes(data)

    @classmethod
    def from_parts(
        cls, record: bytes | bytearray | memoryview, commitment: bytes, witness: bytes
    ) -> Piece:
        if len(record) != RECORD_SIZE:
            raise ValueError(f"a record must be {RECORD_SIZE} bytes, got {len(record)}")
        if len(commitment) != COMMITMENT_SIZE:
            raise ValueError(f"a record commitment must be {COMMITMENT_SIZE} bytes, got {len(commitment)}")
        if len(witness) != WITNESS_SIZE:
            raise ValueError(f"a record witness must be {WITNESS_SIZE} bytes, got {len(witness)}")
        return cls(b"".join((record, commitment, witness)))

    @property
    def record(self) -> memoryview:
        return memoryview(self._data)[:RECORD_SIZE]

    @property
    def commitment(self) -> bytes:
        return self._data[RECORD_SIZE : RECORD_SIZE + COMMITMENT_SIZE]

    @property
    def witness(self) -> bytes:
        return self._data[RECORD_SIZE + COMMITMENT_SIZE :]

    def __bytes__(self) -> bytes:
        return self._data

    def __len__(self) -> int:
        return PIECE_SIZE

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Piece):
            return self._data == other._data
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._data)

    def __repr__(self) -> str:
        return f"Piece(commitment={self.commitment.hex()[:16]}…)"

    # SCALE: a byte vector (compact length prefix) of exactly PIECE_SIZE bytes.
    def to_scale(self) -> bytes:
        return encode_bytes(self._data)

    @classmethod
    def decode(cls, reader: ScaleReader) -> Piece:
        return cls(reader.bytes("piece", expected_length=PIECE_SIZE))

    @classmethod
    def from_scale(cls, data: bytes | bytearray | memoryview) -> Piece:
        return decode_all(data, cls.decode, "Piece")

    # JSON (serde human readable): lowercase hex, no 0x prefix.
    def to_json(self) -> str:
        return self._data.hex()

    @classmethod
    def from_json(cls, value: object) -> Piece:
        return cls(hex_to_bytes(value, PIECE_SIZE, "piece"))


# --------------------------------------------------------------------------------------------
# Records


def source_record_from_raw(raw_record: bytes | bytearray | memoryview) -> bytes:
    """Raw record (32 768 chunks of 31 bytes) -> record: every chunk becomes ``0x00 ‖ chunk``."""
    if len(raw_record) != RAW_RECORD_SIZE:
        raise ValueError(f"a raw record must be {RAW_RECORD_SIZE} bytes, got {len(raw_record)}")
    raw = np.frombuffer(raw_record, dtype=np.uint8).reshape(RECORD_NUM_CHUNKS, SCALAR_SAFE_BYTES)
    record = np.zeros((RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES), dtype=np.uint8)
    record[:, 1:] = raw
    return record.tobytes()


def raw_record_from_source(record: bytes | bytearray | memoryview) -> bytes:
    """Inverse of :func:`source_record_from_raw`; every chunk must start with ``0x00``."""
    if len(record) != RECORD_SIZE:
        raise ValueError(f"a record must be {RECORD_SIZE} bytes, got {len(record)}")
    chunks = np.frombuffer(record, dtype=np.uint8).reshape(RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES)
    bad = np.flatnonzero(chunks[:, 0])
    if bad.size:
        raise ValueError(f"record chunk {int(bad[0])} is not a safe scalar (first byte {int(chunks[bad[0], 0]):#04x})")
    return chunks[:, 1:].tobytes()


def record_chunks(record: bytes | bytearray | memoryview) -> list[bytes]:
    """The 32 768 big-endian 32-byte scalars of a record as a list (the ``Kzg.poly`` input)."""
    if len(record) != RECORD_SIZE:
        raise ValueError(f"a record must be {RECORD_SIZE} bytes, got {len(record)}")
    data = bytes(record)
    return [data[i : i + SCALAR_FULL_BYTES] for i in range(0, RECORD_SIZE, SCALAR_FULL_BYTES)]


# --------------------------------------------------------------------------------------------
# PieceIndex (u64)


def piece_index_to_bytes(piece_index: int) -> bytes:
    return check_uint(piece_index, U64_MAX, "piece index").to_bytes(8, "little")


def piece_index_from_bytes(data: bytes) -> int:
    if len(data) != 8:
        raise ValueError(f"a piece index is 8 bytes (u64 LE), got {len(data)}")
    return int.from_bytes(data, "little")


def piece_segment_index(piece_index: int) -> int:
    """Segment a piece belongs to."""
    return check_uint(piece_index, U64_MAX, "piece index") // NUM_PIECES


def piece_position(piece_index: int) -> int:
    """Position of a piece inside its segment (0..255)."""
    return check_uint(piece_index, U64_MAX, "piece index") % NUM_PIECES


def is_source_piece(piece_index: int) -> bool:
    """Source and parity pieces are interleaved, source first (even indices are source)."""
    return check_uint(piece_index, U64_MAX, "piece index") % _RATE_DENOMINATOR == 0


def source_position(piece_index: int) -> int:
    """Index (0..127) of a source piece among its segment's source records."""
    if not is_source_piece(piece_index):
        raise ValueError(f"piece index {piece_index} is a parity piece; it has no source position")
    position = piece_position(piece_index)
    return position // _RATE_DENOMINATOR * _RATE_NUMERATOR + position % _RATE_DENOMINATOR


def piece_index_from_source_position(source_pos: int, segment_index: int) -> int:
    """Piece index of source record ``source_pos`` of segment ``segment_index``."""
    check_uint(source_pos, NUM_RAW_RECORDS - 1, "source position")
    first = segment_first_piece_index(segment_index)
    return first + source_pos // _RATE_NUMERATOR * _RATE_DENOMINATOR + source_pos % _RATE_NUMERATOR


# --------------------------------------------------------------------------------------------
# PieceOffset (u16) and SegmentIndex (u64)


def piece_offset_to_bytes(piece_offset: int) -> bytes:
    return check_uint(piece_offset, U16_MAX, "piece offset").to_bytes(2, "little")


def segment_first_piece_index(segment_index: int) -> int:
    index = check_uint(segment_index, U64_MAX // NUM_PIECES, "segment index")
    return index * NUM_PIECES


def segment_last_piece_index(segment_index: int) -> int:
    return segment_first_piece_index(segment_index) + NUM_PIECES - 1


def segment_piece_indexes(segment_index: int) -> range:
    first = segment_first_piece_index(segment_index)
    return range(first, first + NUM_PIECES)


# --------------------------------------------------------------------------------------------
# HistorySize (non-zero u64: number of segments in history)


@dataclass(frozen=True, order=True)
class HistorySize:
    value: int

    def __post_init__(self) -> None:
        check_uint(self.value, U64_MAX, "history size")
        if self.value == 0:
            raise ValueError("history size must be non-zero")

    @classmethod
    def from_segment_index(cls, segment_index: int) -> HistorySize:
        """History that ends with segment ``segment_index`` (``segment_index + 1`` segments)."""
        return cls(check_uint(segment_index, U64_MAX - 1, "segment index") + 1)

    def in_pieces(self) -> int:
        pieces = self.value * NUM_PIECES
        if pieces > U64_MAX:
            raise ValueError(f"history size {self.value} overflows u64 when counted in pieces")
        return pieces

    def segment_index(self) -> int:
        """Index of the last segment in this history."""
        return self.value - 1

    def sector_expiration_check(self, min_sector_lifetime: int) -> HistorySize | None:
        """History size at which a sector plotted at this size is first checked for expiry.

        ``None`` on u64 overflow (the reference's ``checked_add``).
        """
        total = self.value + check_uint(min_sector_lifetime, U64_MAX, "min sector lifetime")
        return HistorySize(total) if total <= U64_MAX else None

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(8, "little")

    def __int__(self) -> int:
        return self.value
