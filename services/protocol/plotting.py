"""Plotting: encode a sector's records in place, in parallel, abortably (spec 03 s6-8).

Each record of a sector is erasure-extended to 65 536 chunks (one per s-bucket), masked with
the BLAKE3 hash of the proof of space found for that s-bucket in the PoS tables of the record's
own seed, and 32 768 of the chunks are kept (encoded first, then unencoded fill).

Memory: a :class:`SectorBuffer` is the one allocation of a sector being plotted: its records'
stored chunks (record-major, ``n`` MiB), their encoded-chunk bitfields and record metadata.
Records are encoded straight into it, so a piece's bytes can be dropped as soon as its record
is encoded. :mod:`services.protocol.sector_writer` then streams the finished sector in the
reference layout (s-bucket-major) from it, in bounded windows, with its checksum: no second
copy of the sector is ever made.

Parallelism: :func:`encode_records` runs one record per task on the caller's executor (the PoS,
erasure and selection kernels release the GIL, so threads scale), keeps a bounded number of
pieces in flight, checks an abort signal between records and reports each encoded record. A
daemon may instead call :meth:`SectorBuffer.encode_record` itself from its executor as pieces
arrive: records are independent and write disjoint rows.

Backends: a :class:`RecordEncoder` writes one record's stored chunks and bitfield into the
buffer's rows. :class:`CpuRecordEncoder` does it with an ``ErasureCoding(16)`` and a
``ProofsForSeed`` provider (:mod:`services.protocol.s_bucket_proofs`): K=20 tables on the CPU
(numba) or the GPU (cupy), or the shim table for tests.

Main API: ``SectorBuffer(public_key, sector_index, protocol_info, pieces_in_sector)``
(``.piece_indexes``, ``.encode_record(offset, piece, encoder)``), ``encode_records(buffer,
pieces, encoder, executor=None, abort=None, on_record=None)``, ``CpuRecordEncoder``,
``plot_sector(...) -> PlottingResult`` (whole sector as bytes: tests, tools),
``sector_piece_indexes``. Errors: ``PlottingError``, ``PlottingAborted``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numba import njit

from services.protocol import field
from services.protocol.constants import (
    PIECE_SIZE,
    RECORD_NUM_CHUNKS,
    RECORD_SIZE,
    SCALAR_FULL_BYTES,
)
from services.protocol.hashes import blake3_hash
from services.protocol.s_bucket_proofs import (  # the providers an encoder takes, importable from here too
    ProofsForSeed,
    SBucketProofs,
    check_s_bucket_proofs,
    chia_proofs_for_seed,
    shim_proofs_for_seed,
)
from services.protocol.sector import (
    RECORD_BITFIELD_SIZE,
    RECORD_METADATA_SIZE,
    FarmerProtocolInfo,
    PlottedSector,
    SectorMetadata,
    derive_evaluation_seed,
    derive_piece_indexes,
    derive_sector_id,
    sector_size,
)


__all__ = [
    "AbortSignal", "CpuRecordEncoder", "EncodedRecord", "PlottingAborted", "PlottingError", "PlottingResult",
    "ProofsForSeed", "RecordEncoder", "SBucketProofs", "SectorBuffer", "chia_proofs_for_seed", "encode_records",
    "plot_sector", "record_array", "sector_piece_indexes", "shim_proofs_for_seed",
]


class PlottingError(ValueError):
    """A sector cannot be plotted from the given input (missing/malformed piece, bad scalar)."""


class PlottingAborted(Exception):
    """Plotting stopped because the abort signal was set (a cancelled or superseded job)."""


class AbortSignal(Protocol):
    def is_set(self) -> bool: ...  # threading.Event has it


# --------------------------------------------------------------------------------------------
# Record encoding


class RecordEncoder(Protocol):
    def encode_into(self, record: np.ndarray, pos_seed: bytes, chunks: np.ndarray, bitfield: np.ndarray) -> int:
        """Encode one record given as ``(32768, 32)`` uint8 big-endian scalars: write its 32 768
        stored chunks into ``chunks`` ``(32768, 32)`` and its encoded-chunk bitfield (LSB-first)
        into ``bitfield`` ``(8192,)``; return the number of encoded chunks. Must be thread-safe."""
        ...


@njit(cache=True, nogil=True)
def _select_chunks(source, parity, found, mask_hashes, chunks, bitfield):
    """Spec 03 s6 steps 2-4 for one record, written straight into its sector rows.

    The extended record is ``ext[2i] = source[i]``, ``ext[2i+1] = parity[i]``. Encoded chunks
    (``ext[s] ^ hash[s]`` where a proof exists and the result is not all zero) are kept for the
    first 32 768 such s-buckets, in ascending order, then the unencoded ``ext[s]`` of the first
    s-buckets without a bit fill the rest. Returns the number of encoded chunks."""
    capacity = chunks.shape[0]
    bitfield[:] = 0
    encoded = 0
    for s in range(found.shape[0]):
        if encoded == capacity:
            break
        if not found[s]:
            continue
        row = source[s >> 1] if (s & 1) == 0 else parity[s >> 1]
        nonzero = False
        for b in range(SCALAR_FULL_BYTES):
            value = row[b] ^ mask_hashes[s, b]
            chunks[encoded, b] = value
            if value != 0:
                nonzero = True
        if nonzero:  # an all-zero encoded value counts as "no proof"
            bitfield[s >> 3] = bitfield[s >> 3] | np.uint8(1 << (s & 7))
            encoded += 1
    filled = encoded
    for s in range(found.shape[0]):
        if filled == capacity:
            break
        if (bitfield[s >> 3] >> (s & 7)) & 1:
            continue
        row = source[s >> 1] if (s & 1) == 0 else parity[s >> 1]
        for b in range(SCALAR_FULL_BYTES):
            chunks[filled, b] = row[b]
        filled += 1
    return encoded


@dataclass(frozen=True, eq=False)
class EncodedRecord:
    """One encoded record on its own (tests, tools): stored chunks and encoded-bucket mask."""

    chunks: np.ndarray  # (32768, 32) uint8: encoded chunks (ascending s) then unencoded ones
    encoded_mask: np.ndarray  # (65536,) bool


def record_array(record: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A record as a ``(32768, 32)`` uint8 array (view when possible)."""
    if isinstance(record, np.ndarray):
        arr = np.ascontiguousarray(record, dtype=np.uint8)
    else:
        arr = np.frombuffer(record, dtype=np.uint8)
    if arr.size != RECORD_SIZE:
        raise PlottingError(f"a record must be {RECORD_SIZE} bytes, got {arr.size}")
    return arr.reshape(RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES)


class CpuRecordEncoder:
    """Record encoding with an ``ErasureCoding(16)`` instance and a PoS proofs provider (whose
    tables may come from the GPU: ``chia_proofs_for_seed("gpu")``). Thread-safe: one record per
    thread, each call on the calling thread only."""

    def __init__(self, erasure_coding, proofs_for_seed: ProofsForSeed) -> None:  # noqa: ANN001
        self.erasure_coding = erasure_coding
        self.proofs_for_seed = proofs_for_seed

    def parity(self, record: np.ndarray) -> np.ndarray:
        """The 32 768 parity chunks ``ext[2i+1]`` of a record (raises on non-canonical chunks)."""
        try:
            limbs = field.bytes_to_limbs(record)
        except ValueError as error:
            raise PlottingError(f"record cannot be erasure coded: {error}") from None
        return field.limbs_to_bytes(self.erasure_coding.extend_limbs(limbs))

    def encode_into(self, record: np.ndarray, pos_seed: bytes, chunks: np.ndarray, bitfield: np.ndarray) -> int:
        record = record_array(record)
        parity = self.parity(record)
        proofs = check_s_bucket_proofs(self.proofs_for_seed(pos_seed))
        return int(_select_chunks(record, parity, proofs.found, proofs.mask_hashes(), chunks, bitfield))

    def encode(self, record: np.ndarray, pos_seed: bytes) -> EncodedRecord:
        """One record into new arrays (tests, tools)."""
        chunks = np.empty((RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES), dtype=np.uint8)
        bitfield = np.empty(RECORD_BITFIELD_SIZE, dtype=np.uint8)
        self.encode_into(record, pos_seed, chunks, bitfield)
        return EncodedRecord(chunks, np.unpackbits(bitfield, bitorder="little").astype(bool))


# --------------------------------------------------------------------------------------------
# The sector being plotted


class SectorBuffer:
    """One sector being plotted: identity, piece indexes and its single preallocated buffer.

    ``records`` ``(n, 32768, 32)`` uint8 holds each record's stored chunks (``n`` MiB; the caller
    may pass its own ``records`` array to reuse one allocation across sectors), ``bitfields``
    ``(n, 8192)`` the encoded-chunk bits, ``record_metadata`` ``(n, 128)`` the per-record
    ``commitment ‖ witness ‖ blake3(piece)``. Rows of different piece offsets are independent.
    """

    def __init__(
        self,
        public_key: bytes,
        sector_index: int,
        protocol_info: FarmerProtocolInfo,
        pieces_in_sector: int,
        records: np.ndarray | None = None,
    ) -> None:
        self.public_key = bytes(public_key)
        self.sector_index = sector_index
        self.protocol_info = protocol_info
        self.history_size = protocol_info.history_size
        self.sector_id = derive_sector_id(public_key, sector_index, self.history_size)
        self.piece_indexes = tuple(derive_piece_indexes(self.sector_id, pieces_in_sector, self.history_size, protocol_info))
        n = self.pieces_in_sector = len(self.piece_indexes)
        shape = (n, RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES)
        if records is None:
            records = np.empty(shape, dtype=np.uint8)  # pages are touched as records are encoded
        elif not isinstance(records, np.ndarray) or records.dtype != np.uint8 or records.shape != shape or not records.flags.c_contiguous:
            raise ValueError(f"records buffer must be a C-contiguous uint8 array of shape {shape}")
        self.records = records
        self.bitfields = np.zeros((n, RECORD_BITFIELD_SIZE), dtype=np.uint8)
        self.record_metadata = np.zeros((n, RECORD_METADATA_SIZE), dtype=np.uint8)
        self.encoded_counts = np.zeros(n, dtype=np.int64)
        self._done = np.zeros(n, dtype=bool)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes of the finished sector (spec 03 s7)."""
        return sector_size(self.pieces_in_sector)

    @property
    def encoded_records(self) -> int:
        with self._lock:
            return int(self._done.sum())

    def missing_offsets(self) -> list[int]:
        with self._lock:
            return [int(p) for p in np.flatnonzero(~self._done)]

    @property
    def complete(self) -> bool:
        with self._lock:
            return bool(self._done.all())

    def encode_record(self, piece_offset: int, piece: bytes | bytearray | memoryview, encoder: RecordEncoder) -> None:
        """Encode the piece of ``piece_offset`` (1 048 672 bytes, validated against its segment,
        spec 03 s10) into its rows; the piece is not referenced afterwards."""
        n = self.pieces_in_sector
        if not isinstance(piece_offset, int) or not 0 <= piece_offset < n:
            raise PlottingError(f"piece offset {piece_offset!r} outside sector of {n} pieces")
        piece_index = self.piece_indexes[piece_offset]
        view = memoryview(piece).cast("B")
        if view.nbytes != PIECE_SIZE:
            raise PlottingError(f"piece {piece_index} (piece offset {piece_offset}) must be {PIECE_SIZE} bytes, got {view.nbytes}")
        record = np.frombuffer(view[:RECORD_SIZE], dtype=np.uint8).reshape(RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES)
        seed = derive_evaluation_seed(self.sector_id, piece_offset)
        try:
            count = encoder.encode_into(record, seed, self.records[piece_offset], self.bitfields[piece_offset])
        except ValueError as error:
            raise PlottingError(f"piece {piece_index} (piece offset {piece_offset}): {error}") from None
        metadata = self.record_metadata[piece_offset]
        metadata[: PIECE_SIZE - RECORD_SIZE] = np.frombuffer(view[RECORD_SIZE:], dtype=np.uint8)  # commitment ‖ witness
        metadata[PIECE_SIZE - RECORD_SIZE :] = np.frombuffer(blake3_hash(view), dtype=np.uint8)
        with self._lock:
            self.encoded_counts[piece_offset] = count
            self._done[piece_offset] = True

    def sector_metadata(self, s_bucket_sizes: np.ndarray) -> SectorMetadata:
        return SectorMetadata(self.sector_index, self.pieces_in_sector, s_bucket_sizes, self.history_size)

    def plotted_sector(self, s_bucket_sizes: np.ndarray) -> PlottedSector:
        return PlottedSector(self.sector_id, self.sector_index, self.sector_metadata(s_bucket_sizes), self.piece_indexes)


PieceSource = Iterable[tuple[int, bytes | bytearray | memoryview]]


def encode_records(
    sector: SectorBuffer,
    pieces: PieceSource,
    encoder: RecordEncoder,
    executor: Executor | None = None,
    abort: AbortSignal | None = None,
    on_record: Callable[[int], None] | None = None,
    max_in_flight: int = 4,
) -> None:
    """Encode ``(piece_offset, piece)`` pairs into ``sector``, one record per executor task.

    ``pieces`` is consumed lazily: at most ``max_in_flight`` pieces are held at once (a piece is
    dropped once its record is encoded), so pieces may be fetched as encoding proceeds.
    ``abort.is_set()`` is checked before each record starts (in the task too, so queued records
    stop); when set, running records finish and ``PlottingAborted`` is raised. ``on_record
    (piece_offset)`` runs on the calling thread after each record. Without ``executor`` records
    are encoded one after another on the calling thread. The first failure cancels the rest and
    is raised (``PlottingError`` naming the piece).
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")

    def aborted() -> bool:
        return abort is not None and abort.is_set()

    def encode(offset: int, piece) -> int:  # noqa: ANN001
        if aborted():
            raise PlottingAborted(f"sector {sector.sector_index}: aborted before record {offset}")
        sector.encode_record(offset, piece, encoder)
        return offset

    source = iter(pieces)
    if executor is None:
        for offset, piece in source:
            encode(offset, piece)
            del piece
            if on_record is not None:
                on_record(offset)
        return

    running: set[Future] = set()
    try:
        exhausted = False
        while True:
            while not exhausted and len(running) < max_in_flight and not aborted():
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                running.add(executor.submit(encode, *item))
                del item
            if not running:
                break
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                offset = future.result()  # raises the task's error
                if on_record is not None:
                    on_record(offset)
        if aborted():
            raise PlottingAborted(f"sector {sector.sector_index}: aborted")
    finally:
        for future in running:
            future.cancel()
        wait(running)


# --------------------------------------------------------------------------------------------
# Convenience: a whole sector as bytes


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
    executor: Executor | None = None,
) -> PlottingResult:
    """Plot one sector at ``protocol_info.history_size`` and return its bytes (tests, tools; a
    daemon streams the sector with :mod:`services.protocol.sector_writer` instead).

    ``pieces`` maps every piece index the sector needs (:func:`sector_piece_indexes`) to its
    1 048 672 piece bytes (already validated against its segment, spec 03 s10).
    """
    from services.protocol.sector_writer import SectorWriter

    sector = SectorBuffer(public_key, sector_index, protocol_info, pieces_in_sector)

    def offsets_and_pieces():
        for offset, piece_index in enumerate(sector.piece_indexes):
            piece = pieces.get(piece_index)
            if piece is None:
                raise PlottingError(f"piece {piece_index} (piece offset {offset}) was not provided")
            yield offset, piece

    encode_records(sector, offsets_and_pieces(), encoder, executor, on_record=on_record)
    writer = SectorWriter(sector)
    return PlottingResult(writer.to_bytes(), writer.metadata, writer.plotted_sector)


def sector_piece_indexes(
    public_key: bytes, sector_index: int, protocol_info: FarmerProtocolInfo, pieces_in_sector: int
) -> list[int]:
    """Piece indexes (per offset, duplicates kept) a sector plotted now needs."""
    sector_id = derive_sector_id(public_key, sector_index, protocol_info.history_size)
    return derive_piece_indexes(sector_id, pieces_in_sector, protocol_info.history_size, protocol_info)
