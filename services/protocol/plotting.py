"""Plotting: encode records with proofs of space and assemble a sector's bytes (spec 03 s6-8).

Each record of a sector is erasure-extended to 65 536 chunks (one per s-bucket), masked with
the BLAKE3 hash of the proof of space found for that s-bucket in the PoS tables of the record's
own seed, and 32 768 of the chunks are kept (encoded first, then unencoded fill).  The sector
is written s-bucket-major so that an audit reads one contiguous s-bucket.

The two heavy steps are pluggable so a GPU backend can replace them:

* a :class:`RecordEncoder` turns ``(record chunks, pos seed)`` into an :class:`EncodedRecord`;
  :class:`CpuRecordEncoder` does it with an ``ErasureCoding`` instance and a ``ProofsForSeed``
  callable (``seed -> SBucketProofs``: which of the 65 536 s-buckets have a proof, and the
  proofs);
* :func:`assemble_sector` (numba) lays the encoded records out in sector order.

Pure: pieces come in as bytes, the sector comes out as bytes plus its metadata.

Main API: ``sector_piece_indexes`` (what to download), ``plot_sector(public_key, sector_index,
protocol_info, pieces_in_sector, pieces_by_index, encoder) -> PlottingResult(sector, metadata,
plotted_sector)``, ``CpuRecordEncoder(erasure_coding, proofs_for_seed)``, and the
``ProofsForSeed`` providers ``chia_proofs_for_seed(backend)`` (real K=20) and
``shim_proofs_for_seed`` (tests/dev).  Errors: ``PlottingError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Protocol

import numpy as np
from numba import njit

from services.protocol.constants import (
    PIECE_SIZE,
    POS_PROOF_SIZE,
    RECORD_NUM_CHUNKS,
    RECORD_NUM_S_BUCKETS,
    RECORD_SIZE,
    SCALAR_FULL_BYTES,
)
from services.protocol.auditing import blake3_hash_rows
from services.protocol.hashes import blake3_hash
from services.protocol.sector import (
    RECORD_METADATA_SIZE,
    FarmerProtocolInfo,
    PlottedSector,
    RecordMetadata,
    SectorContentsMap,
    SectorMetadata,
    derive_evaluation_seed,
    derive_piece_indexes,
    derive_sector_id,
    record_chunk_slots,
    sector_contents_map_size,
    sector_size,
)


class PlottingError(ValueError):
    """A sector cannot be plotted from the given input (missing/malformed piece, bad scalar)."""


class SBucketProofs(NamedTuple):
    """Proofs of space of one seed for every s-bucket (challenge index 0..65535).

    ``found[s]`` tells whether ``find_proof(s)`` exists; ``proofs[s]`` holds it (160 bytes, zero
    where not found).
    """

    found: np.ndarray  # (65536,) bool
    proofs: np.ndarray  # (65536, 160) uint8

    def proof(self, s_bucket: int) -> bytes | None:
        return self.proofs[s_bucket].tobytes() if self.found[s_bucket] else None

    def mask_hashes(self) -> np.ndarray:
        """``(65536, 32)`` uint8: BLAKE3 of each found proof (zero rows where none)."""
        return proof_mask_hashes(self.found, self.proofs)


ProofsForSeed = Callable[[bytes], SBucketProofs]


def proof_mask_hashes(found: np.ndarray, proofs: np.ndarray) -> np.ndarray:
    found = np.asarray(found, dtype=bool)
    if found.shape != (RECORD_NUM_S_BUCKETS,) or proofs.shape != (RECORD_NUM_S_BUCKETS, POS_PROOF_SIZE):
        raise ValueError(
            f"s-bucket proofs must be shaped ({RECORD_NUM_S_BUCKETS},) and ({RECORD_NUM_S_BUCKETS}, {POS_PROOF_SIZE}), "
            f"got {found.shape} and {proofs.shape}"
        )
    hashes = np.zeros((RECORD_NUM_S_BUCKETS, 32), dtype=np.uint8)
    hashes[found] = blake3_hash_rows(np.asarray(proofs, dtype=np.uint8)[found])
    return hashes


def check_s_bucket_proofs(proofs: SBucketProofs) -> SBucketProofs:
    found = np.asarray(proofs.found, dtype=bool)
    raw = np.asarray(proofs.proofs, dtype=np.uint8)
    if found.shape != (RECORD_NUM_S_BUCKETS,) or raw.shape != (RECORD_NUM_S_BUCKETS, POS_PROOF_SIZE):
        raise PlottingError(
            f"PoS backend returned arrays shaped {found.shape} / {raw.shape}, expected "
            f"({RECORD_NUM_S_BUCKETS},) / ({RECORD_NUM_S_BUCKETS}, {POS_PROOF_SIZE})"
        )
    return SBucketProofs(found, raw)


def proofs_from_tables(tables) -> SBucketProofs:  # noqa: ANN001 - pos.Tables or pos.shim.ShimTables
    """First proof of every s-bucket from a PoS ``Tables`` object."""
    proofs, found = tables.find_proofs_for_all_s_buckets()
    return check_s_bucket_proofs(SBucketProofs(found, proofs))


def chia_proofs_for_seed(backend: str | None = None) -> ProofsForSeed:
    """``ProofsForSeed`` building the real K=20 Chia tables (the protocol's PoS)."""
    from services.protocol.pos import create_tables  # heavy numba import, only when used

    def proofs_for_seed(seed: bytes) -> SBucketProofs:
        return proofs_from_tables(create_tables(seed, 20, backend))

    return proofs_for_seed


def shim_proofs_for_seed(seed: bytes) -> SBucketProofs:
    """``ProofsForSeed`` with the insecure shim table (spec 02 s9; tests and dev chains only)."""
    from services.protocol.pos import create_shim_tables

    return proofs_from_tables(create_shim_tables(seed))


# --------------------------------------------------------------------------------------------
# Record encoding


@dataclass(frozen=True, eq=False)
class EncodedRecord:
    """A plotted record: its 32 768 stored chunks and which s-buckets hold encoded chunks."""

    chunks: np.ndarray  # (32768, 32) uint8: encoded chunks (ascending s) then unencoded ones
    encoded_mask: np.ndarray  # (65536,) bool

    def __post_init__(self) -> None:
        if self.chunks.shape != (RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES) or self.chunks.dtype != np.uint8:
            raise ValueError(f"encoded record chunks must be ({RECORD_NUM_CHUNKS}, 32) uint8, got {self.chunks.shape}")
        if self.encoded_mask.shape != (RECORD_NUM_S_BUCKETS,):
            raise ValueError(f"encoded mask must have {RECORD_NUM_S_BUCKETS} entries, got {self.encoded_mask.shape}")


class RecordEncoder(Protocol):
    def encode(self, record: np.ndarray, pos_seed: bytes) -> EncodedRecord:
        """Encode one record given as ``(32768, 32)`` uint8 big-endian scalars."""
        ...


def record_array(record: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A record as a ``(32768, 32)`` uint8 array (view when possible)."""
    if isinstance(record, np.ndarray):
        arr = np.ascontiguousarray(record, dtype=np.uint8)
    else:
        arr = np.frombuffer(record, dtype=np.uint8)
    if arr.size != RECORD_SIZE:
        raise PlottingError(f"a record must be {RECORD_SIZE} bytes, got {arr.size}")
    return arr.reshape(RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES)


def interleave_extended(source: np.ndarray, parity: np.ndarray) -> np.ndarray:
    """``ext[2i] = source[i]``, ``ext[2i+1] = parity[i]``."""
    extended = np.empty((2 * source.shape[0], SCALAR_FULL_BYTES), dtype=np.uint8)
    extended[0::2] = source
    extended[1::2] = parity
    return extended


def select_encoded_chunks(extended: np.ndarray, found: np.ndarray, mask_hashes: np.ndarray) -> EncodedRecord:
    """Mask, choose and order the chunks of one extended record (spec 03 s6 steps 2-4)."""
    found = np.asarray(found, dtype=bool)
    masked = extended ^ mask_hashes
    # an encoded chunk that happens to be all zero counts as "no proof"
    has_encoded = found & masked.any(axis=1)
    encoded_s = np.flatnonzero(has_encoded)[:RECORD_NUM_CHUNKS]
    encoded_mask = np.zeros(RECORD_NUM_S_BUCKETS, dtype=bool)
    encoded_mask[encoded_s] = True
    unencoded_s = np.flatnonzero(~encoded_mask)[: RECORD_NUM_CHUNKS - encoded_s.size]
    chunks = np.concatenate([masked[encoded_s], extended[unencoded_s]])
    return EncodedRecord(np.ascontiguousarray(chunks), encoded_mask)


class CpuRecordEncoder:
    """Record encoding with an ``ErasureCoding(16)`` instance and a PoS proofs provider."""

    def __init__(self, erasure_coding, proofs_for_seed: ProofsForSeed) -> None:  # noqa: ANN001
        self.erasure_coding = erasure_coding
        self.proofs_for_seed = proofs_for_seed

    def extend(self, record: np.ndarray) -> np.ndarray:
        """The 65 536 interleaved extended chunks of a record (raises on non-canonical chunks)."""
        try:
            parity = self.erasure_coding.extend_array(record)
        except ValueError as error:
            raise PlottingError(f"record cannot be erasure coded: {error}") from None
        return interleave_extended(record, parity)

    def encode(self, record: np.ndarray, pos_seed: bytes) -> EncodedRecord:
        extended = self.extend(record_array(record))
        proofs = check_s_bucket_proofs(self.proofs_for_seed(pos_seed))
        return select_encoded_chunks(extended, proofs.found, proofs.mask_hashes())


# --------------------------------------------------------------------------------------------
# Sector assembly


@njit(cache=True, nogil=True)
def _write_s_buckets(slots, stored, out):
    """Copy every record's chunk for each s-bucket, s-major then piece offset ascending.

    ``slots`` (n, 65536) int32 (-1 = no chunk), ``stored`` (n, 32768, 32) uint8, ``out``
    (n * 32768, 32) uint8; returns the per-bucket counts.
    """
    n = slots.shape[0]
    num_buckets = slots.shape[1]
    sizes = np.zeros(num_buckets, dtype=np.int64)
    cursor = 0
    for s in range(num_buckets):
        for p in range(n):
            slot = slots[p, s]
            if slot >= 0:
                for b in range(32):
                    out[cursor, b] = stored[p, slot, b]
                cursor += 1
                sizes[s] += 1
    return sizes


def assemble_sector(
    encoded_records: list[EncodedRecord], record_metadata: list[RecordMetadata]
) -> tuple[bytes, np.ndarray]:
    """Whole sector bytes (spec 03 s7) and its ``s_bucket_sizes`` (uint16)."""
    n = len(encoded_records)
    if n == 0 or n != len(record_metadata):
        raise PlottingError(f"need one metadata per encoded record and at least one record, got {n} / {len(record_metadata)}")
    contents_map = SectorContentsMap.from_record_bitfields([r.encoded_mask for r in encoded_records])
    slots = np.empty((n, RECORD_NUM_S_BUCKETS), dtype=np.int32)
    for p, record in enumerate(encoded_records):
        slots[p] = record_chunk_slots(record.encoded_mask)[0]
    stored = np.stack([r.chunks for r in encoded_records])
    total = sector_size(n)
    sector = np.empty(total, dtype=np.uint8)
    map_size = sector_contents_map_size(n)
    sector[:map_size] = np.frombuffer(contents_map.to_bytes(), dtype=np.uint8)
    chunks_end = map_size + n * RECORD_SIZE
    sizes = _write_s_buckets(slots, stored, sector[map_size:chunks_end].reshape(-1, SCALAR_FULL_BYTES))
    meta_end = chunks_end + n * RECORD_METADATA_SIZE
    sector[chunks_end:meta_end] = np.frombuffer(b"".join(m.to_bytes() for m in record_metadata), dtype=np.uint8)
    sector[meta_end:] = np.frombuffer(blake3_hash(sector[:meta_end].data), dtype=np.uint8)
    return sector.tobytes(), sizes.astype(np.uint16)


@dataclass(frozen=True, eq=False)
class PlottingResult:
    sector: bytes
    metadata: SectorMetadata
    plotted_sector: PlottedSector


def plot_sector(
    public_key: bytes,
    sector_index: int,
    protocol_info: FarmerProtocolInfo,
    pieces_in_sector: int,
    pieces: Mapping[int, bytes],
    encoder: RecordEncoder,
    on_record: Callable[[int], None] | None = None,
) -> PlottingResult:
    """Plot one sector at ``protocol_info.history_size``.

    ``pieces`` maps every piece index the sector needs (:func:`sector_piece_indexes`) to its
    1 048 672 piece bytes (already validated against its segment, spec 03 s10).
    ``on_record(piece_offset)`` is called after each record is encoded (progress).
    """
    sector_id = derive_sector_id(public_key, sector_index, protocol_info.history_size)
    piece_indexes = derive_piece_indexes(sector_id, pieces_in_sector, protocol_info.history_size, protocol_info)
    encoded: list[EncodedRecord] = []
    metadata: list[RecordMetadata] = []
    for offset, piece_index in enumerate(piece_indexes):
        piece = pieces.get(piece_index)
        if piece is None:
            raise PlottingError(f"piece {piece_index} (piece offset {offset}) was not provided")
        piece = bytes(piece)
        if len(piece) != PIECE_SIZE:
            raise PlottingError(f"piece {piece_index} must be {PIECE_SIZE} bytes, got {len(piece)}")
        record = record_array(memoryview(piece)[:RECORD_SIZE])
        try:
            encoded.append(encoder.encode(record, derive_evaluation_seed(sector_id, offset)))
        except ValueError as error:
            raise PlottingError(f"piece {piece_index} (piece offset {offset}): {error}") from None
        metadata.append(RecordMetadata.from_piece(piece))
        if on_record is not None:
            on_record(offset)
    sector, sizes = assemble_sector(encoded, metadata)
    sector_metadata = SectorMetadata(sector_index, pieces_in_sector, sizes, protocol_info.history_size)
    plotted = PlottedSector(sector_id, sector_index, sector_metadata, tuple(piece_indexes))
    return PlottingResult(sector, sector_metadata, plotted)


def sector_piece_indexes(
    public_key: bytes, sector_index: int, protocol_info: FarmerProtocolInfo, pieces_in_sector: int
) -> list[int]:
    """Piece indexes (per offset, duplicates kept) a sector plotted now needs."""
    sector_id = derive_sector_id(public_key, sector_index, protocol_info.history_size)
    return derive_piece_indexes(sector_id, pieces_in_sector, protocol_info.history_size, protocol_info)
