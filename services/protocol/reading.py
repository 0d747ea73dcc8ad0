"""Reading records and pieces back out of a plotted sector (spec 03 s6-7, spec 04 s3).

A record's 32 768 stored chunks are scattered over the sector's s-buckets.  Locating them needs
the sector contents map (which record has a chunk in which s-bucket) and the s-bucket sizes from
the sector metadata.  Encoded chunks are un-masked with the hash of the proof of space of their
s-bucket (tables of the record's own seed), which yields 32 768 of the 65 536 evaluations of the
record polynomial; erasure recovery gives back the source chunks, i.e. the record.

Two steps, so proving can happen away from the disk: :func:`read_record_data` gathers one
record's stored chunks, its encoded-chunk bitfield and its record metadata out of the sector
(bytes in, no PoS work: what a plot-client does on its own disk and ships to a proof-server as
:class:`RecordData`); :func:`unmask_record` rebuilds the record's PoS proofs and un-masks the
encoded chunks (:class:`ExtendedRecordShards`, what erasure recovery needs).

Used by farmers to serve pieces (:func:`read_piece`) and by proving.  Pure: takes the sector as
bytes or a memoryview (an mmap works).

Main API: ``read_record_data(sector, sector_metadata, piece_offset, contents_map=None) ->
RecordData`` (``to_bytes`` / ``from_bytes`` for messages), ``unmask_record(record_data,
sector_id, proofs_for_seed) -> ExtendedRecordShards``, ``recover_record_polynomial`` (the record
polynomial's coefficients without evaluating it), ``read_piece(sector, sector_metadata,
sector_id, piece_offset, erasure_coding, proofs_for_seed, contents_map=None) -> Piece`` (checks
the stored piece checksum), ``read_record``, ``record_chunk_locations``.
Errors: ``ReadingError`` / ``SectorError``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numba import njit

from services.protocol import field
from services.protocol.constants import (
    RECORD_NUM_CHUNKS,
    RECORD_NUM_S_BUCKETS,
    RECORD_SIZE,
    SCALAR_FULL_BYTES,
)
from services.protocol.hashes import blake3_hash
from services.protocol.pieces import Piece
from services.protocol.s_bucket_proofs import ProofsForSeed, check_s_bucket_proofs, proof_mask_hashes
from services.protocol.parallel import Workers
from services.protocol.sector import (
    RECORD_BITFIELD_SIZE,
    RECORD_METADATA_SIZE,
    RecordMetadata,
    SectorContentsMap,
    SectorError,
    SectorMetadata,
    derive_evaluation_seed,
    read_record_metadata,
    record_chunk_slots,
    s_bucket_offsets,
    sector_contents_map_size,
    sector_size,
)


class ReadingError(ValueError):
    """A record or piece cannot be read back (corrupt sector, checksum mismatch...)."""


@njit(cache=True, nogil=True)
def _chunks_before(bits, encoded_counts, piece_offset, num_chunks, out):
    """``out[s]`` = number of records ``q < piece_offset`` that have a chunk in s-bucket ``s``."""
    num_buckets = out.shape[0]
    for q in range(piece_offset):
        unencoded_slots = num_chunks - encoded_counts[q]
        unencoded_seen = 0
        for s in range(num_buckets):
            if (bits[q, s >> 3] >> (s & 7)) & 1:
                out[s] += 1
            elif unencoded_seen < unencoded_slots:
                out[s] += 1
                unencoded_seen += 1
            # a record without a bit beyond its unencoded quota has no chunk there


@dataclass(frozen=True, eq=False)
class RecordChunkLocations:
    """Where one record's chunks are: for every s-bucket, the byte offset in the sector (or -1)."""

    piece_offset: int
    byte_offsets: np.ndarray  # (65536,) int64, -1 where the record has no chunk
    encoded: np.ndarray  # (65536,) bool


def record_chunk_locations(
    contents_map: SectorContentsMap, s_bucket_sizes: np.ndarray, piece_offset: int
) -> RecordChunkLocations:
    """Byte offset in the sector of each chunk of record ``piece_offset``."""
    n = contents_map.pieces_in_sector
    if not 0 <= piece_offset < n:
        raise ReadingError(f"piece offset {piece_offset} outside sector of {n} pieces")
    slots, encoded = contents_map.record_chunk_slots(piece_offset)
    before = np.zeros(RECORD_NUM_S_BUCKETS, dtype=np.int64)
    _chunks_before(contents_map.bits, contents_map.encoded_counts(), piece_offset, RECORD_NUM_CHUNKS, before)
    offsets = s_bucket_offsets(s_bucket_sizes)
    has_chunk = slots >= 0
    if np.any(before[has_chunk] >= np.asarray(s_bucket_sizes, dtype=np.int64)[has_chunk]):
        raise ReadingError("sector metadata s-bucket sizes disagree with the sector contents map")
    byte_offsets = np.full(RECORD_NUM_S_BUCKETS, -1, dtype=np.int64)
    byte_offsets[has_chunk] = sector_contents_map_size(n) + SCALAR_FULL_BYTES * (offsets[has_chunk] + before[has_chunk])
    return RecordChunkLocations(piece_offset, byte_offsets, encoded & has_chunk)


def _sector_array(sector: bytes | bytearray | memoryview | np.ndarray, pieces_in_sector: int) -> np.ndarray:
    expected = sector_size(pieces_in_sector)
    if len(sector) != expected:
        raise SectorError(f"sector must be {expected} bytes for {pieces_in_sector} pieces, got {len(sector)}")
    if isinstance(sector, np.ndarray):
        return sector.reshape(-1).view(np.uint8)
    return np.frombuffer(sector, dtype=np.uint8)


@dataclass(frozen=True, eq=False)
class RecordData:
    """One record as stored in a sector, without PoS work: enough to prove any of its chunks.

    ``chunks`` ``(32768, 32)`` uint8 in the record's stored order (encoded chunks by ascending
    s-bucket, then unencoded ones), ``bitfield`` ``(8192,)`` uint8 its encoded-chunk bits
    (LSB-first, from the sector contents map), ``metadata`` its commitment, witness and piece
    checksum. ``to_bytes()``: ``bitfield ‖ chunks ‖ metadata`` (1 056 896 bytes).
    """

    piece_offset: int
    bitfield: np.ndarray
    chunks: np.ndarray
    metadata: RecordMetadata

    SIZE = RECORD_BITFIELD_SIZE + RECORD_SIZE + RECORD_METADATA_SIZE

    def __post_init__(self) -> None:
        if self.bitfield.shape != (RECORD_BITFIELD_SIZE,) or self.bitfield.dtype != np.uint8:
            raise ReadingError(f"record bitfield must be ({RECORD_BITFIELD_SIZE},) uint8, got {self.bitfield.dtype} {self.bitfield.shape}")
        if self.chunks.shape != (RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES) or self.chunks.dtype != np.uint8:
            raise ReadingError(f"record chunks must be ({RECORD_NUM_CHUNKS}, 32) uint8, got {self.chunks.dtype} {self.chunks.shape}")

    def encoded_mask(self) -> np.ndarray:
        """``(65536,)`` bool: True where the record's chunk is stored encoded."""
        return np.unpackbits(self.bitfield, bitorder="little").astype(bool)

    def to_bytes(self) -> bytes:
        return self.bitfield.tobytes() + self.chunks.tobytes() + self.metadata.to_bytes()

    @classmethod
    def from_bytes(cls, piece_offset: int, data: bytes | bytearray | memoryview) -> RecordData:
        view = memoryview(data).cast("B")
        if view.nbytes != cls.SIZE:
            raise ReadingError(f"record data must be {cls.SIZE} bytes, got {view.nbytes}")
        bitfield = np.frombuffer(view[:RECORD_BITFIELD_SIZE], dtype=np.uint8)
        chunks = np.frombuffer(view[RECORD_BITFIELD_SIZE : RECORD_BITFIELD_SIZE + RECORD_SIZE], dtype=np.uint8)
        try:
            metadata = RecordMetadata.from_bytes(view[RECORD_BITFIELD_SIZE + RECORD_SIZE :])
        except ValueError as error:
            raise ReadingError(str(error)) from None
        return cls(piece_offset, bitfield, chunks.reshape(RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES), metadata)


def read_record_data(
    sector: bytes | bytearray | memoryview | np.ndarray,
    sector_metadata: SectorMetadata,
    piece_offset: int,
    contents_map: SectorContentsMap | None = None,
) -> RecordData:
    """Gather record ``piece_offset``'s 32 768 stored chunks, bitfield and metadata (no PoS).

    Builds (and checks the checksum of) the contents map when none is given; raises
    ``ReadingError`` / ``SectorError`` for a malformed or inconsistent sector."""
    n = sector_metadata.pieces_in_sector
    data = _sector_array(sector, n)
    if contents_map is None:
        contents_map = SectorContentsMap.from_sector(data, n)
    locations = record_chunk_locations(contents_map, sector_metadata.s_bucket_sizes, piece_offset)
    slots, _ = record_chunk_slots(contents_map.record_encoded_mask(piece_offset))
    present = slots >= 0
    chunks = np.empty((RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES), dtype=np.uint8)
    starts = locations.byte_offsets[present]
    chunks[slots[present]] = data[starts[:, None] + np.arange(SCALAR_FULL_BYTES)[None, :]]
    metadata = read_record_metadata(data, n, piece_offset)
    return RecordData(piece_offset, contents_map.bits[piece_offset].copy(), chunks, metadata)


@dataclass(frozen=True, eq=False)
class ExtendedRecordShards:
    """Un-masked known values of a record's 65 536 extended chunks."""

    values: np.ndarray  # (65536, 32) uint8, zero where unknown
    present: np.ndarray  # (65536,) bool
    encoded: np.ndarray  # (65536,) bool: value was stored encoded (has a proof)
    proofs_found: np.ndarray  # (65536,) bool
    proofs: np.ndarray  # (65536, 160) uint8


def unmask_record(record: RecordData, sector_id: bytes, proofs_for_seed: ProofsForSeed) -> ExtendedRecordShards:
    """Place a record's stored chunks at their s-buckets and un-mask the encoded ones with the
    proofs of the record's own PoS tables (one table build)."""
    try:
        slots, encoded = record_chunk_slots(record.encoded_mask())
    except ValueError as error:
        raise ReadingError(f"record {record.piece_offset}: {error}") from None
    present = slots >= 0
    values = np.zeros((RECORD_NUM_S_BUCKETS, SCALAR_FULL_BYTES), dtype=np.uint8)
    values[present] = record.chunks[slots[present]]
    proofs = check_s_bucket_proofs(proofs_for_seed(derive_evaluation_seed(sector_id, record.piece_offset)))
    missing_proof = encoded & ~proofs.found
    if missing_proof.any():
        s = int(np.flatnonzero(missing_proof)[0])
        raise ReadingError(
            f"record {record.piece_offset}: s-bucket {s} is marked encoded but its PoS table has no proof "
            "(sector plotted with other tables or corrupt contents map)"
        )
    values ^= proof_mask_hashes(encoded, proofs.proofs)
    return ExtendedRecordShards(values, present, encoded, proofs.found, proofs.proofs)


def read_record_shards(
    sector: bytes | bytearray | memoryview | np.ndarray,
    sector_metadata: SectorMetadata,
    sector_id: bytes,
    piece_offset: int,
    proofs_for_seed: ProofsForSeed,
    contents_map: SectorContentsMap | None = None,
) -> ExtendedRecordShards:
    """Gather and un-mask the 32 768 stored chunks of one record."""
    record = read_record_data(sector, sector_metadata, piece_offset, contents_map)
    return unmask_record(record, sector_id, proofs_for_seed)


@contextmanager
def _recovering():
    """Turn a failed recovery (non-canonical chunk, too few or inconsistent shards) into ReadingError."""
    try:
        yield
    except ValueError as error:
        raise ReadingError(f"record chunks cannot be recovered: {error}") from None


def recover_extended_record(erasure_coding, shards: ExtendedRecordShards) -> np.ndarray:  # noqa: ANN001
    """All 65 536 extended chunks ``(65536, 32)`` from the known ones (raises ReadingError)."""
    with _recovering():
        return erasure_coding.recover_array(shards.values, shards.present)


def recover_record_polynomial(
    erasure_coding, shards: ExtendedRecordShards, workers: Workers | None = None  # noqa: ANN001
) -> np.ndarray:
    """The record polynomial's 32 768 monomial coefficients as canonical ``(32768, 4)`` uint64
    limbs (what ``Kzg.poly`` of the record's source chunks gives), straight from the known
    chunks: no evaluation on the domain, no inverse DFT. Raises ReadingError."""
    with _recovering():
        return erasure_coding.recover_poly_limbs(field.bytes_to_limbs(shards.values), shards.present, workers)


def recover_record(erasure_coding, shards: ExtendedRecordShards) -> np.ndarray:  # noqa: ANN001
    """The record's 32 768 source chunks ``(32768, 32)`` uint8 from the known chunks (raises
    ReadingError); evaluates the recovered polynomial on the source positions only."""
    with _recovering():
        limbs = field.bytes_to_limbs(shards.values)
        return field.limbs_to_bytes(erasure_coding.recover_source_limbs(limbs, shards.present))


def read_record_extended(
    sector: bytes | bytearray | memoryview | np.ndarray,
    sector_metadata: SectorMetadata,
    sector_id: bytes,
    piece_offset: int,
    erasure_coding,  # noqa: ANN001
    proofs_for_seed: ProofsForSeed,
    contents_map: SectorContentsMap | None = None,
) -> tuple[np.ndarray, ExtendedRecordShards]:
    """The full extended record (65 536 chunks) and the shards it was recovered from."""
    shards = read_record_shards(sector, sector_metadata, sector_id, piece_offset, proofs_for_seed, contents_map)
    return recover_extended_record(erasure_coding, shards), shards


def read_record(
    sector: bytes | bytearray | memoryview | np.ndarray,
    sector_metadata: SectorMetadata,
    sector_id: bytes,
    piece_offset: int,
    erasure_coding,  # noqa: ANN001
    proofs_for_seed: ProofsForSeed,
    contents_map: SectorContentsMap | None = None,
) -> bytes:
    """The record (1 MiB: 32 768 source chunks) at ``piece_offset``."""
    shards = read_record_shards(sector, sector_metadata, sector_id, piece_offset, proofs_for_seed, contents_map)
    record = recover_record(erasure_coding, shards).tobytes()
    assert len(record) == RECORD_SIZE
    return record


def read_piece(
    sector: bytes | bytearray | memoryview | np.ndarray,
    sector_metadata: SectorMetadata,
    sector_id: bytes,
    piece_offset: int,
    erasure_coding,  # noqa: ANN001
    proofs_for_seed: ProofsForSeed,
    contents_map: SectorContentsMap | None = None,
) -> Piece:
    """The piece stored at ``piece_offset``, checked against its stored BLAKE3 checksum."""
    record = read_record(sector, sector_metadata, sector_id, piece_offset, erasure_coding, proofs_for_seed, contents_map)
    metadata: RecordMetadata = read_record_metadata(sector, sector_metadata.pieces_in_sector, piece_offset)
    piece = Piece.from_parts(record, metadata.commitment, metadata.witness)
    if blake3_hash(bytes(piece)) != metadata.piece_checksum:
        raise ReadingError(f"piece at offset {piece_offset} does not match its stored checksum")
    return piece
