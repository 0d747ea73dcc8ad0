"""Sectors: identity, piece selection, expiry, and their exact byte layouts (spec 03).

A farmer's plot is a sequence of equally sized sectors.  Everything about a sector that has to
agree bit for bit with the reference lives here as pure functions over bytes / numpy arrays:

* parameters from the node (:class:`FarmerProtocolInfo`, spec 03 section 1, SCALE per spec 05 s4);
* :func:`derive_sector_id`, :func:`derive_piece_index` (which history piece goes to which offset),
  :func:`derive_expiration_history_size` and :func:`derive_evaluation_seed` (the PoS seed);
* the on-disk sector layout (:func:`sector_size` and region offsets), the
  :class:`SectorContentsMap` (which record has which chunk in which s-bucket),
  :class:`SectorMetadata` (``Blake3Checksummed``), :class:`RecordMetadata` and
  :class:`PlottedSector`;
* the plot-file layout for many sectors (``plot.bin`` / ``metadata.bin``, spec 03 section 9) as
  offset arithmetic and header encode/decode.

No I/O: the daemons read and write files and pass bytes (or memoryviews of mmaps) in.

Main API: ``derive_sector_id``, ``derive_piece_index(es)``, ``derive_evaluation_seed``,
``derive_expiration_history_size`` / ``is_sector_expired`` / ``should_replot_sector``,
``sector_size`` and region helpers, ``SectorContentsMap`` (``from_sector`` verifies the checksum,
``s_bucket_records(s)``, ``record_chunk_slots(p)``), ``SectorMetadata``
(``to_checksummed_bytes`` / ``from_checksummed_bytes``, ``s_bucket_byte_range``),
``RecordMetadata``, ``PlottedSector``, ``plot_sector_offset`` / ``plot_file_size`` /
``metadata_entry_offset`` / ``metadata_file_size`` / ``encode|decode_plot_metadata_header`` /
``decode_metadata_entry_or_dummy``.  Errors: ``SectorError`` (a ValueError) or ``ScaleError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.protocol.constants import (
    COMMITMENT_SIZE,
    NUM_PIECES,
    PIECE_SIZE,
    PUBLIC_KEY_SIZE,
    RECORD_NUM_CHUNKS,
    RECORD_NUM_S_BUCKETS,
    RECORD_SIZE,
    SCALAR_FULL_BYTES,
    WITNESS_SIZE,
)
from services.protocol.hashes import (
    HASH_SIZE,
    blake3_hash,
    blake3_hash_list,
    blake3_hash_list_with_key,
    blake3_hash_with_key,
)
from services.protocol.pieces import HistorySize
from services.protocol.scale import (
    ScaleError,
    ScaleReader,
    decode_all,
    encode_checksummed,
    encode_u8,
    encode_u16,
    encode_u64,
    encode_vec,
)
from services.protocol.validation import U16_MAX, U64_MAX, check_bytes, check_uint

SECTOR_ID_SIZE = 32

# One bit per s-bucket, LSB-first inside each byte (bitvec Lsb0 over u8).
RECORD_BITFIELD_SIZE = RECORD_NUM_S_BUCKETS // 8  # 8192
RECORD_METADATA_SIZE = COMMITMENT_SIZE + WITNESS_SIZE + HASH_SIZE  # 128
SECTOR_METADATA_ENCODED_SIZE = 2 + 2 + 2 * RECORD_NUM_S_BUCKETS + 8  # 131_084
SECTOR_METADATA_CHECKSUMMED_SIZE = SECTOR_METADATA_ENCODED_SIZE + HASH_SIZE  # 131_116

# Plot files (spec 03 section 9).
PLOT_FILE_ALIGNMENT = 4096
PLOT_METADATA_HEADER_SIZE = 3
PLOT_METADATA_HEADER_VERSION = 0
PLOT_METADATA_RESERVED_SIZE = 1024 * 1024  # sector metadata entries start at 1 MiB


class SectorError(ValueError):
    """Malformed or inconsistent sector data (bad size, checksum mismatch, bad bitfield...)."""


def _check_history_size(history_size: int) -> int:
    return HistorySize(int(history_size)).value


def _check_pieces_in_sector(pieces_in_sector: int) -> int:
    n = check_uint(pieces_in_sector, U16_MAX, "pieces in sector")
    if n == 0:
        raise ValueError("pieces in sector must be at least 1")
    return n


# --------------------------------------------------------------------------------------------
# Protocol parameters (spec 03 section 1; SCALE form spec 05 section 4)


@dataclass(frozen=True)
class FarmerProtocolInfo:
    """Sector-related protocol parameters the node hands to farmers."""

    history_size: int
    max_pieces_in_sector: int
    recent_segments: int
    recent_history_fraction: tuple[int, int]
    min_sector_lifetime: int

    def __post_init__(self) -> None:
        _check_history_size(self.history_size)
        check_uint(self.max_pieces_in_sector, U16_MAX, "max pieces in sector")
        _check_history_size(self.recent_segments)
        if len(self.recent_history_fraction) != 2:
            raise ValueError(f"recent history fraction must be a pair, got {self.recent_history_fraction!r}")
        for part in self.recent_history_fraction:
            _check_history_size(part)
        _check_history_size(self.min_sector_lifetime)

    @classmethod
    def mainnet(cls, history_size: int) -> FarmerProtocolInfo:
        return cls(history_size, 1000, 5, (1, 10), 4)

    @classmethod
    def test_runtime(cls, history_size: int) -> FarmerProtocolInfo:
        return cls(history_size, 32, 5, (1, 10), 4)

    def to_scale(self) -> bytes:
        return b"".join(
            (
                encode_u64(self.history_size),
                encode_u16(self.max_pieces_in_sector),
                encode_u64(self.recent_segments),
                encode_u64(self.recent_history_fraction[0]),
                encode_u64(self.recent_history_fraction[1]),
                encode_u64(self.min_sector_lifetime),
            )
        )

    @classmethod
    def decode(cls, reader: ScaleReader) -> FarmerProtocolInfo:
        history_size = reader.u64("history size")
        max_pieces = reader.u16("max pieces in sector")
        recent_segments = reader.u64("recent segments")
        fraction = (reader.u64("recent history fraction numerator"), reader.u64("recent history fraction denominator"))
        min_lifetime = reader.u64("min sector lifetime")
        try:
            return cls(history_size, max_pieces, recent_segments, fraction, min_lifetime)
        except ValueError as error:
            raise reader.error(str(error)) from None

    @classmethod
    def from_scale(cls, data: bytes | bytearray | memoryview) -> FarmerProtocolInfo:
        return decode_all(data, cls.decode, "FarmerProtocolInfo")

    def to_json(self) -> dict:
        return {
            "historySize": self.history_size,
            "maxPiecesInSector": self.max_pieces_in_sector,
            "recentSegments": self.recent_segments,
            "recentHistoryFraction": list(self.recent_history_fraction),
            "minSectorLifetime": self.min_sector_lifetime,
        }

    @classmethod
    def from_json(cls, value: object) -> FarmerProtocolInfo:
        if not isinstance(value, dict):
            raise ValueError(f"protocolInfo must be a JSON object, got {type(value).__name__}")
        try:
            fraction = value["recentHistoryFraction"]
            if not isinstance(fraction, list) or len(fraction) != 2:
                raise ValueError(f"recentHistoryFraction must be a 2-element array, got {fraction!r}")
            return cls(
                value["historySize"],
                value["maxPiecesInSector"],
                value["recentSegments"],
                (fraction[0], fraction[1]),
                value["minSectorLifetime"],
            )
        except KeyError as missing:
            raise ValueError(f"protocolInfo lacks field {missing}") from None


# --------------------------------------------------------------------------------------------
# Sector id, piece selection, expiry, evaluation seed (spec 03 sections 2-5)


def derive_sector_id(public_key: bytes, sector_index: int, history_size: int) -> bytes:
    """``keyed_blake3(key=blake3(public_key), u16_le(sector_index) ‖ u64_le(history_size))``."""
    public_key = check_bytes(public_key, PUBLIC_KEY_SIZE, "public key")
    return derive_sector_id_from_key_hash(blake3_hash(public_key), sector_index, history_size)


def derive_sector_id_from_key_hash(public_key_hash: bytes, sector_index: int, history_size: int) -> bytes:
    """Like :func:`derive_sector_id` given ``blake3(public_key)`` already."""
    key = check_bytes(public_key_hash, HASH_SIZE, "public key hash")
    index = check_uint(sector_index, U16_MAX, "sector index")
    size = _check_history_size(history_size)
    return blake3_hash_list_with_key(key, [index.to_bytes(2, "little"), size.to_bytes(8, "little")])


def derive_piece_index(
    sector_id: bytes,
    piece_offset: int,
    history_size: int,
    max_pieces_in_sector: int,
    recent_segments: int,
    recent_history_fraction: tuple[int, int],
) -> int:
    """History piece stored at ``piece_offset`` of the sector (spec 03 section 3)."""
    sector_id = check_bytes(sector_id, SECTOR_ID_SIZE, "sector id")
    offset = check_uint(piece_offset, U16_MAX, "piece offset")
    size = _check_history_size(history_size)
    max_pieces = check_uint(max_pieces_in_sector, U16_MAX, "max pieces in sector")
    recent = _check_history_size(recent_segments)
    frac_num = _check_history_size(recent_history_fraction[0])
    frac_den = _check_history_size(recent_history_fraction[1])

    recent_segments_in_pieces = recent * NUM_PIECES
    min_history_size_in_pieces = recent_segments_in_pieces * (frac_den * NUM_PIECES) // (frac_num * NUM_PIECES)
    key = offset.to_bytes(2, "little") + bytes(30)
    input_hash = int.from_bytes(blake3_hash_with_key(key, sector_id), "little")
    history_size_in_pieces = size * NUM_PIECES
    num_interleaved_pieces = max(1, max_pieces * (frac_num * NUM_PIECES) // (frac_den * NUM_PIECES) * 2)

    if (
        history_size_in_pieces > min_history_size_in_pieces
        and offset < num_interleaved_pieces
        and offset % 2 == 1
    ):
        return input_hash % recent_segments_in_pieces + (history_size_in_pieces - recent_segments_in_pieces)
    return input_hash % history_size_in_pieces


def derive_piece_indexes(
    sector_id: bytes, pieces_in_sector: int, history_size: int, protocol_info: FarmerProtocolInfo
) -> list[int]:
    """Piece index for every offset ``0 .. pieces_in_sector`` (duplicates kept)."""
    n = _check_pieces_in_sector(pieces_in_sector)
    if n > protocol_info.max_pieces_in_sector:
        raise ValueError(
            f"pieces in sector {n} exceeds the protocol's max_pieces_in_sector "
            f"{protocol_info.max_pieces_in_sector}"
        )
    return [
        derive_piece_index(
            sector_id,
            offset,
            history_size,
            protocol_info.max_pieces_in_sector,
            protocol_info.recent_segments,
            protocol_info.recent_history_fraction,
        )
        for offset in range(n)
    ]


def expiration_check_history_size(history_size: int, min_sector_lifetime: int) -> int | None:
    """``history_size + min_sector_lifetime`` (None on u64 overflow)."""
    check = HistorySize(int(history_size)).sector_expiration_check(min_sector_lifetime)
    return None if check is None else check.value


def expiration_check_segment_index(history_size: int, min_sector_lifetime: int) -> int | None:
    """Segment whose commitment decides the sector's expiry (``check_history_size - 1``)."""
    check = expiration_check_history_size(history_size, min_sector_lifetime)
    return None if check is None else check - 1


def derive_expiration_history_size(
    sector_id: bytes, history_size: int, expiration_check_segment_commitment: bytes, min_sector_lifetime: int
) -> int | None:
    """History size at which the sector expires (spec 03 section 4); None on overflow."""
    sector_id = check_bytes(sector_id, SECTOR_ID_SIZE, "sector id")
    commitment = check_bytes(expiration_check_segment_commitment, COMMITMENT_SIZE, "segment commitment")
    size = _check_history_size(history_size)
    lifetime = check_uint(min_sector_lifetime, U64_MAX, "min sector lifetime")
    check_history_size = expiration_check_history_size(size, lifetime)
    if check_history_size is None:
        return None
    input_hash = int.from_bytes(blake3_hash_list([sector_id, commitment]), "little")
    if 4 * size > U64_MAX or lifetime + 4 * size > U64_MAX:
        return None
    last_possible_expiration = lifetime + 4 * size
    modulus = last_possible_expiration - check_history_size
    if modulus <= 0:
        return None
    expiration = check_history_size + input_hash % modulus
    return expiration if expiration <= U64_MAX else None


def is_sector_expired(expiration_history_size: int, current_history_size: int) -> bool:
    """Verifier rule: a sector is expired once ``expiration_history_size <= current_history_size``."""
    return expiration_history_size <= current_history_size


def sector_expires_at(expiration_history_size: int) -> int:
    """Segment index at which the reference farmer considers the sector expired."""
    return expiration_history_size - 1


def should_replot_sector(expiration_history_size: int, latest_segment_index: int) -> bool:
    """Reference farmer rule on archived segment ``latest_segment_index``: replot when the sector
    is about to expire (``expires_at <= L + 1``), which includes already expired ones."""
    return sector_expires_at(expiration_history_size) <= latest_segment_index + 1


def derive_evaluation_seed(sector_id: bytes, piece_offset: int) -> bytes:
    """PoS seed of the record at ``piece_offset``: ``blake3(sector_id ‖ u16_le(piece_offset))``."""
    sector_id = check_bytes(sector_id, SECTOR_ID_SIZE, "sector id")
    offset = check_uint(piece_offset, U16_MAX, "piece offset")
    return blake3_hash_list([sector_id, offset.to_bytes(2, "little")])


# --------------------------------------------------------------------------------------------
# Sector byte layout (spec 03 section 7)


def sector_contents_map_size(pieces_in_sector: int) -> int:
    return _check_pieces_in_sector(pieces_in_sector) * RECORD_BITFIELD_SIZE + HASH_SIZE


def sector_record_chunks_size(pieces_in_sector: int) -> int:
    return _check_pieces_in_sector(pieces_in_sector) * RECORD_SIZE


def sector_record_metadata_size(pieces_in_sector: int) -> int:
    return _check_pieces_in_sector(pieces_in_sector) * RECORD_METADATA_SIZE


def sector_size(pieces_in_sector: int) -> int:
    """Bytes of one plotted sector with ``pieces_in_sector`` records (1000 -> 1_056_896_064)."""
    n = _check_pieces_in_sector(pieces_in_sector)
    return (
        sector_contents_map_size(n) + sector_record_chunks_size(n) + sector_record_metadata_size(n) + HASH_SIZE
    )


def record_metadata_offset(pieces_in_sector: int, piece_offset: int) -> int:
    """Byte offset inside the sector of record ``piece_offset``'s metadata."""
    n = _check_pieces_in_sector(pieces_in_sector)
    offset = check_uint(piece_offset, n - 1, "piece offset")
    return sector_contents_map_size(n) + sector_record_chunks_size(n) + offset * RECORD_METADATA_SIZE


def s_bucket_offsets(s_bucket_sizes: np.ndarray) -> np.ndarray:
    """Chunk offset (not bytes) of every s-bucket inside the chunks region (prefix sums)."""
    sizes = np.asarray(s_bucket_sizes, dtype=np.int64)
    offsets = np.zeros(RECORD_NUM_S_BUCKETS, dtype=np.int64)
    np.cumsum(sizes[:-1], out=offsets[1:])
    return offsets


def verify_sector_checksum(sector: bytes | bytearray | memoryview, pieces_in_sector: int) -> None:
    """Raise :class:`SectorError` unless ``sector`` has the right size and final checksum."""
    expected = sector_size(pieces_in_sector)
    if len(sector) != expected:
        raise SectorError(f"sector must be {expected} bytes for {pieces_in_sector} pieces, got {len(sector)}")
    view = memoryview(sector)
    if blake3_hash(view[:-HASH_SIZE]) != bytes(view[-HASH_SIZE:]):
        raise SectorError("sector checksum mismatch")


@dataclass(frozen=True)
class RecordMetadata:
    """Per-record tail of a sector: ``commitment(48) ‖ witness(48) ‖ blake3(piece)(32)``."""

    commitment: bytes
    witness: bytes
    piece_checksum: bytes

    def __post_init__(self) -> None:
        check_bytes(self.commitment, COMMITMENT_SIZE, "record commitment")
        check_bytes(self.witness, WITNESS_SIZE, "record witness")
        check_bytes(self.piece_checksum, HASH_SIZE, "piece checksum")

    def to_bytes(self) -> bytes:
        return self.commitment + self.witness + self.piece_checksum

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> RecordMetadata:
        if len(data) != RECORD_METADATA_SIZE:
            raise SectorError(f"record metadata must be {RECORD_METADATA_SIZE} bytes, got {len(data)}")
        raw = bytes(data)
        return cls(
            raw[:COMMITMENT_SIZE],
            raw[COMMITMENT_SIZE : COMMITMENT_SIZE + WITNESS_SIZE],
            raw[COMMITMENT_SIZE + WITNESS_SIZE :],
        )

    @classmethod
    def from_piece(cls, piece: bytes | bytearray | memoryview) -> RecordMetadata:
        if len(piece) != PIECE_SIZE:
            raise ValueError(f"a piece must be {PIECE_SIZE} bytes, got {len(piece)}")
        raw = bytes(piece)
        # a piece ends with ``commitment ‖ witness``: the record metadata without the checksum
        return cls.from_bytes(raw[RECORD_SIZE:] + blake3_hash(raw))


def read_record_metadata(
    sector: bytes | bytearray | memoryview, pieces_in_sector: int, piece_offset: int
) -> RecordMetadata:
    """Record metadata of ``piece_offset`` out of a whole sector's bytes."""
    start = record_metadata_offset(pieces_in_sector, piece_offset)
    if len(sector) < start + RECORD_METADATA_SIZE:
        raise SectorError(
            f"sector truncated: {len(sector)} bytes, record metadata of offset {piece_offset} "
            f"needs {start + RECORD_METADATA_SIZE}"
        )
    return RecordMetadata.from_bytes(memoryview(sector)[start : start + RECORD_METADATA_SIZE])


# --------------------------------------------------------------------------------------------
# Sector contents map (one 65 536-bit bitfield per record + checksum)

# popcount of every byte value, for prefix bit counts over packed bitfields
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


class SectorContentsMap:
    """Which s-buckets hold an *encoded* chunk of each record (spec 03 sections 6-7).

    ``bits`` is a ``(pieces_in_sector, 8192)`` uint8 array of LSB-first packed bitfields.
    A record also owns *unencoded* chunks in the first ``32768 - E`` s-buckets without a bit
    (``E`` = its number of set bits), so every record has exactly 32 768 chunks.
    """

    __slots__ = ("bits", "_encoded_counts")

    def __init__(self, bits: np.ndarray) -> None:
        bits = np.ascontiguousarray(bits, dtype=np.uint8)
        if bits.ndim != 2 or bits.shape[1] != RECORD_BITFIELD_SIZE or bits.shape[0] == 0:
            raise SectorError(f"contents map bits must have shape (n, {RECORD_BITFIELD_SIZE}), got {bits.shape}")
        _check_pieces_in_sector(bits.shape[0])
        counts = _POPCOUNT[bits].sum(axis=1)
        too_many = np.flatnonzero(counts > RECORD_NUM_CHUNKS)
        if too_many.size:
            p = int(too_many[0])
            raise SectorError(
                f"record {p} bitfield has {int(counts[p])} encoded chunks, more than {RECORD_NUM_CHUNKS}"
            )
        self.bits = bits
        self._encoded_counts = counts

    @classmethod
    def from_record_bitfields(cls, bitfields: list[np.ndarray]) -> SectorContentsMap:
        """From per-record boolean arrays of 65 536 entries (True = encoded chunk)."""
        rows = []
        for p, bitfield in enumerate(bitfields):
            bitfield = np.asarray(bitfield, dtype=bool)
            if bitfield.shape != (RECORD_NUM_S_BUCKETS,):
                raise ValueError(f"record {p} bitfield must have {RECORD_NUM_S_BUCKETS} entries, got {bitfield.shape}")
            rows.append(np.packbits(bitfield, bitorder="little"))
        if not rows:
            raise ValueError("a sector contents map needs at least one record")
        return cls(np.stack(rows))

    @property
    def pieces_in_sector(self) -> int:
        return self.bits.shape[0]

    def encoded_count(self, piece_offset: int) -> int:
        """Number of encoded chunks ``E`` of a record."""
        return int(self._encoded_counts[check_uint(piece_offset, self.pieces_in_sector - 1, "piece offset")])

    def encoded_counts(self) -> np.ndarray:
        return self._encoded_counts.copy()

    def to_bytes(self) -> bytes:
        body = self.bits.tobytes()
        return body + blake3_hash(body)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, pieces_in_sector: int) -> SectorContentsMap:
        """Decode and verify the checksum (raises :class:`SectorError`)."""
        n = _check_pieces_in_sector(pieces_in_sector)
        expected = sector_contents_map_size(n)
        if len(data) != expected:
            raise SectorError(f"sector contents map must be {expected} bytes for {n} pieces, got {len(data)}")
        view = memoryview(data)
        body = view[: n * RECORD_BITFIELD_SIZE]
        if blake3_hash(body) != bytes(view[n * RECORD_BITFIELD_SIZE :]):
            raise SectorError("sector contents map checksum mismatch")
        bits = np.frombuffer(body, dtype=np.uint8).reshape(n, RECORD_BITFIELD_SIZE)
        return cls(bits.copy())

    @classmethod
    def from_sector(cls, sector: bytes | bytearray | memoryview, pieces_in_sector: int) -> SectorContentsMap:
        size = sector_contents_map_size(pieces_in_sector)
        if len(sector) < size:
            raise SectorError(f"sector truncated: {len(sector)} bytes, contents map alone needs {size}")
        return cls.from_bytes(memoryview(sector)[:size], pieces_in_sector)

    def record_encoded_mask(self, piece_offset: int) -> np.ndarray:
        """Boolean array of 65 536: True where the record's chunk is encoded."""
        p = check_uint(piece_offset, self.pieces_in_sector - 1, "piece offset")
        return np.unpackbits(self.bits[p], bitorder="little").astype(bool)

    def record_chunk_slots(self, piece_offset: int) -> tuple[np.ndarray, np.ndarray]:
        """For one record: ``(slots, encoded)`` over the 65 536 s-buckets.

        ``slots[s]`` is the index (0..32767) of the record's chunk for bucket ``s`` among its
        stored chunks, or -1 when the record has no chunk in ``s``; ``encoded[s]`` tells whether
        that chunk is encoded (XOR-masked).
        """
        return record_chunk_slots(self.record_encoded_mask(piece_offset))

    def record_has_chunk_mask(self, piece_offset: int) -> np.ndarray:
        slots, _ = self.record_chunk_slots(piece_offset)
        return slots >= 0

    def s_bucket_records(self, s_bucket: int) -> list[tuple[int, bool]]:
        """Records with a chunk in ``s_bucket`` in ascending piece offset: ``(offset, encoded)``."""
        s = check_uint(s_bucket, RECORD_NUM_S_BUCKETS - 1, "s-bucket")
        byte_index, bit = divmod(s, 8)
        encoded = ((self.bits[:, byte_index] >> bit) & 1).astype(bool)
        set_before = _POPCOUNT[self.bits[:, :byte_index]].sum(axis=1)
        set_before += _POPCOUNT[self.bits[:, byte_index] & ((1 << bit) - 1)]
        unencoded_before = s - set_before
        unencoded_slots = RECORD_NUM_CHUNKS - self._encoded_counts
        has_unencoded = ~encoded & (unencoded_before < unencoded_slots)
        has = encoded | has_unencoded
        return [(int(p), bool(encoded[p])) for p in np.flatnonzero(has)]

    def s_bucket_sizes(self) -> np.ndarray:
        """Records per s-bucket (uint16 array of 65 536), as stored in sector metadata."""
        sizes = np.zeros(RECORD_NUM_S_BUCKETS, dtype=np.int64)
        for p in range(self.pieces_in_sector):
            sizes += self.record_has_chunk_mask(p)
        return sizes.astype(np.uint16)


def record_chunk_slots(encoded_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stored-chunk index per s-bucket for a record with the given encoded-bit mask.

    Encoded chunks come first (ascending s), then unencoded ones from the first ``32768 - E``
    s-buckets without a bit (spec 03 section 6 step 4).  Returns ``(slots, encoded)`` with
    ``slots[s] = -1`` where the record has no chunk.
    """
    encoded = np.asarray(encoded_mask, dtype=bool)
    if encoded.shape != (RECORD_NUM_S_BUCKETS,):
        raise ValueError(f"encoded mask must have {RECORD_NUM_S_BUCKETS} entries, got {encoded.shape}")
    num_encoded = int(encoded.sum())
    if num_encoded > RECORD_NUM_CHUNKS:
        raise SectorError(f"record has {num_encoded} encoded chunks, more than {RECORD_NUM_CHUNKS}")
    slots = np.full(RECORD_NUM_S_BUCKETS, -1, dtype=np.int64)
    encoded_rank = np.cumsum(encoded) - 1
    slots[encoded] = encoded_rank[encoded]
    unencoded = ~encoded
    unencoded_rank = np.cumsum(unencoded) - 1
    kept_unencoded = unencoded & (unencoded_rank < RECORD_NUM_CHUNKS - num_encoded)
    slots[kept_unencoded] = num_encoded + unencoded_rank[kept_unencoded]
    return slots, encoded


# --------------------------------------------------------------------------------------------
# Sector metadata (spec 03 section 8)


@dataclass(frozen=True, eq=False)
class SectorMetadata:
    """What a farmer keeps per sector to audit it without reading the sector itself."""

    sector_index: int
    pieces_in_sector: int
    s_bucket_sizes: np.ndarray = field(repr=False)
    history_size: int

    def __post_init__(self) -> None:
        check_uint(self.sector_index, U16_MAX, "sector index")
        _check_pieces_in_sector(self.pieces_in_sector)
        _check_history_size(self.history_size)
        sizes = np.asarray(self.s_bucket_sizes)
        if sizes.shape != (RECORD_NUM_S_BUCKETS,):
            raise ValueError(f"s_bucket_sizes must have {RECORD_NUM_S_BUCKETS} entries, got {sizes.shape}")
        if sizes.size and (int(sizes.min()) < 0 or int(sizes.max()) > self.pieces_in_sector):
            raise ValueError(f"s_bucket_sizes entries must be within 0..={self.pieces_in_sector}")
        sizes = sizes.astype(np.uint16)
        sizes.flags.writeable = False
        object.__setattr__(self, "s_bucket_sizes", sizes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SectorMetadata):
            return NotImplemented
        return self.to_scale() == other.to_scale()

    def __hash__(self) -> int:
        return hash(self.to_scale())

    @classmethod
    def dummy(cls, sector_index: int, pieces_in_sector: int) -> SectorMetadata:
        """Stand-in for an undecodable metadata entry: history size 1, no chunks (expires at once)."""
        return cls(sector_index, pieces_in_sector, np.zeros(RECORD_NUM_S_BUCKETS, dtype=np.uint16), 1)

    def sector_id(self, public_key: bytes) -> bytes:
        return derive_sector_id(public_key, self.sector_index, self.history_size)

    def s_bucket_offsets(self) -> np.ndarray:
        """Chunk offset of every s-bucket (prefix sums; computed once, read-only)."""
        cached = self.__dict__.get("_s_bucket_offsets")
        if cached is None:
            cached = s_bucket_offsets(self.s_bucket_sizes)
            cached.flags.writeable = False
            object.__setattr__(self, "_s_bucket_offsets", cached)
        return cached

    def s_bucket_byte_range(self, s_bucket: int) -> tuple[int, int]:
        """``(offset, size)`` in bytes, inside the sector, of the chunks of ``s_bucket``."""
        s = check_uint(s_bucket, RECORD_NUM_S_BUCKETS - 1, "s-bucket")
        chunks_before = int(self.s_bucket_offsets()[s])
        offset = sector_contents_map_size(self.pieces_in_sector) + SCALAR_FULL_BYTES * chunks_before
        return offset, SCALAR_FULL_BYTES * int(self.s_bucket_sizes[s])

    def to_scale(self) -> bytes:
        return b"".join(
            (
                encode_u16(self.sector_index),
                encode_u16(self.pieces_in_sector),
                self.s_bucket_sizes.astype("<u2").tobytes(),
                encode_u64(self.history_size),
            )
        )

    def to_checksummed_bytes(self) -> bytes:
        """``SectorMetadataChecksummed``: SCALE then BLAKE3 of it (131 116 bytes)."""
        return encode_checksummed(self.to_scale())

    @classmethod
    def decode(cls, reader: ScaleReader) -> SectorMetadata:
        sector_index = reader.u16("sector index")
        pieces_in_sector = reader.u16("pieces in sector")
        sizes = np.frombuffer(reader.read(2 * RECORD_NUM_S_BUCKETS, "s-bucket sizes"), dtype="<u2")
        history_size = reader.u64("history size")
        try:
            return cls(sector_index, pieces_in_sector, sizes.astype(np.uint16), history_size)
        except ValueError as error:
            raise reader.error(str(error)) from None

    @classmethod
    def decode_checksummed(cls, reader: ScaleReader) -> SectorMetadata:
        """``SectorMetadataChecksummed`` from a reader: the checksum is checked before decoding."""
        start = reader.offset
        body = reader.read(SECTOR_METADATA_ENCODED_SIZE, "sector metadata")
        checksum_offset = reader.offset
        if reader.read(HASH_SIZE, "sector metadata checksum") != blake3_hash(body):
            raise reader.error("sector metadata checksum mismatch", checksum_offset)
        try:
            return decode_all(body, cls.decode, "SectorMetadata")
        except ScaleError as error:
            raise reader.error(f"{error}", start) from None

    @classmethod
    def from_scale(cls, data: bytes | bytearray | memoryview) -> SectorMetadata:
        return decode_all(data, cls.decode, "SectorMetadata")

    @classmethod
    def from_checksummed_bytes(cls, data: bytes | bytearray | memoryview) -> SectorMetadata:
        """Decode ``SectorMetadataChecksummed``; a checksum mismatch raises ScaleError."""
        if len(data) != SECTOR_METADATA_CHECKSUMMED_SIZE:
            raise ScaleError(
                f"SectorMetadataChecksummed must be {SECTOR_METADATA_CHECKSUMMED_SIZE} bytes, got {len(data)}"
            )
        return decode_all(data, cls.decode_checksummed, "SectorMetadataChecksummed")


@dataclass(frozen=True)
class PlottedSector:
    """Result of plotting, as cluster messages carry it (spec 03 section 8)."""

    sector_id: bytes
    sector_index: int
    sector_metadata: SectorMetadata
    piece_indexes: tuple[int, ...]

    def __post_init__(self) -> None:
        check_bytes(self.sector_id, SECTOR_ID_SIZE, "sector id")
        check_uint(self.sector_index, U16_MAX, "sector index")
        object.__setattr__(self, "piece_indexes", tuple(check_uint(i, U64_MAX, "piece index") for i in self.piece_indexes))

    def to_scale(self) -> bytes:
        return b"".join(
            (
                self.sector_id,
                encode_u16(self.sector_index),
                self.sector_metadata.to_checksummed_bytes(),
                encode_vec(list(self.piece_indexes), encode_u64),
            )
        )

    @classmethod
    def decode(cls, reader: ScaleReader) -> PlottedSector:
        sector_id = reader.read(SECTOR_ID_SIZE, "sector id")
        sector_index = reader.u16("sector index")
        metadata = SectorMetadata.decode_checksummed(reader)
        piece_indexes = reader.vec(lambda r: r.u64("piece index"), "piece indexes")
        return cls(sector_id, sector_index, metadata, tuple(piece_indexes))

    @classmethod
    def from_scale(cls, data: bytes | bytearray | memoryview) -> PlottedSector:
        return decode_all(data, cls.decode, "PlottedSector")


# --------------------------------------------------------------------------------------------
# Plot files: plot.bin and metadata.bin (spec 03 section 9)


def _round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


def plot_sector_offset(sector_index: int, pieces_in_sector: int) -> int:
    """Byte offset of sector ``sector_index`` inside ``plot.bin``."""
    return check_uint(sector_index, U16_MAX, "sector index") * sector_size(pieces_in_sector)


def plot_file_size(target_sector_count: int, pieces_in_sector: int) -> int:
    """Preallocated size of ``plot.bin`` (rounded up to 4096)."""
    count = check_uint(target_sector_count, U16_MAX + 1, "target sector count")
    return _round_up(count * sector_size(pieces_in_sector), PLOT_FILE_ALIGNMENT)


def metadata_entry_offset(sector_index: int) -> int:
    """Byte offset of sector ``sector_index``'s ``SectorMetadataChecksummed`` in ``metadata.bin``."""
    index = check_uint(sector_index, U16_MAX, "sector index")
    return PLOT_METADATA_RESERVED_SIZE + index * SECTOR_METADATA_CHECKSUMMED_SIZE


def metadata_file_size(target_sector_count: int) -> int:
    count = check_uint(target_sector_count, U16_MAX + 1, "target sector count")
    return _round_up(PLOT_METADATA_RESERVED_SIZE + count * SECTOR_METADATA_CHECKSUMMED_SIZE, PLOT_FILE_ALIGNMENT)


def encode_plot_metadata_header(plotted_sector_count: int) -> bytes:
    """``PlotMetadataHeader {version: u8 = 0, plotted_sector_count: u16}`` (3 bytes)."""
    return encode_u8(PLOT_METADATA_HEADER_VERSION) + encode_u16(plotted_sector_count)


def decode_plot_metadata_header(data: bytes | bytearray | memoryview) -> int:
    """Plotted sector count from the first 3 bytes of ``metadata.bin``."""
    if len(data) < PLOT_METADATA_HEADER_SIZE:
        raise ScaleError(f"plot metadata header needs {PLOT_METADATA_HEADER_SIZE} bytes, got {len(data)}")
    reader = ScaleReader(memoryview(data)[:PLOT_METADATA_HEADER_SIZE], "PlotMetadataHeader")
    version = reader.u8("version")
    if version != PLOT_METADATA_HEADER_VERSION:
        raise ScaleError(f"PlotMetadataHeader: unsupported version {version} (expected {PLOT_METADATA_HEADER_VERSION})")
    return reader.u16("plotted sector count")


def decode_metadata_entry_or_dummy(
    data: bytes | bytearray | memoryview, sector_index: int, pieces_in_sector: int
) -> tuple[SectorMetadata, bool]:
    """Decode a ``metadata.bin`` entry; on failure return ``(dummy, False)`` as the reference does."""
    try:
        return SectorMetadata.from_checksummed_bytes(data), True
    except ValueError:
        return SectorMetadata.dummy(sector_index, pieces_in_sector), False
