"""Archiver: blocks -> segments -> 256 KZG-committed pieces (spec 01 section 9).

The dev node feeds every confirmed block into an :class:`Archiver`; whenever a segment's worth
of history (``RECORDED_HISTORY_SEGMENT_SIZE`` = 130 023 424 bytes) has accumulated, it emits an
:class:`ArchivedSegment`: the segment header (chained to the previous one by hash) and the 256
pieces farmers plot.

* :class:`SegmentPacker` is the pure block-packing half (reference ``produce_segment``: item
  encoding, cut rules, ``last_archived_block`` bookkeeping), so segment contents match a
  reference node fed the same blocks; it is cheap and separately testable.
* :func:`archive_segment_bytes` turns the 130 MB segment stream into pieces (spec 01 section
  9.2).  The 32 768 chunk columns are erasure-extended as one numpy batch; the 128 parity record
  commitments are derived from the 128 source commitments by the same linear map applied in G1
  (``extend_commitments``; identical bytes to committing each parity record) instead of 128 more
  2^15-point commitments.
* :func:`is_piece_valid` (spec 01 section 9.3), and :func:`reconstruct_segment` /
  :func:`reconstruct_piece` (reference ``PiecesReconstructor``) from any 128 of the 256 pieces.

``kzg`` / ``erasure_coding`` arguments are :class:`services.protocol.kzg.Kzg` and
:class:`services.protocol.erasure.ErasureCoding` instances (erasure scale >= 8).

Threads: the archiver owns no thread pool. Every function that does a segment's worth of work
(and :class:`Archiver`) takes an optional ``workers`` (:class:`services.protocol.parallel.Workers`,
the caller's executor and how many parts to split into): the 128 record commitments, the
commitment extension, the 256 witnesses and the column-wise erasure coding are split over it
(arkworks' MSM and the numba kernels release the GIL). Without it everything runs on the
calling thread; the output is the same either way.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
from py_arkworks_bls12381 import G1Point, Scalar

from services.protocol.constants import (
    COMMITMENT_SIZE,
    NUM_PIECES,
    NUM_RAW_RECORDS,
    RECORD_NUM_CHUNKS,
    RECORDED_HISTORY_SEGMENT_SIZE,
    SCALAR_FULL_BYTES,
    SCALAR_SAFE_BYTES,
)
from services.protocol.hashes import HASH_SIZE, blake3_254_hash_to_scalar
from services.protocol.parallel import Workers, map_all, worker_count
from services.protocol.pieces import Piece
from services.protocol.scale import (
    ScaleReader,
    compact_length,
    decode_all,
    encode_bytes,
    encode_checksummed,
    encode_compact,
    encode_u32,
    encode_u64,
    encode_vec,
)
from services.protocol.segments import ArchivedBlockProgress, LastArchivedBlock, SegmentHeader
from services.protocol.validation import U32_MAX

# SegmentItem variant indexes (spec 01 section 9.1).
ITEM_PADDING = 0
ITEM_BLOCK = 1
ITEM_BLOCK_START = 2
ITEM_BLOCK_CONTINUATION = 3
ITEM_PARENT_SEGMENT_HEADER = 4
_NUM_ITEM_KINDS = 5

# Reference special case: "archived 0 bytes of block 0", i.e. nothing archived yet.
INITIAL_LAST_ARCHIVED_BLOCK = LastArchivedBlock(0, ArchivedBlockProgress.partial(0))

_STATE_VERSION = 0

Bytesish = Union[bytes, memoryview]


class ArchiverError(ValueError):
    """Invalid archiver input or state (bad block, mismatched restore data, bad pieces)."""


# ============================================================================================
# Segment items and the segment byte stream


@dataclass(frozen=True)
class SegmentItem:
    """One item of the segment stream: block bytes of some kind, or the parent segment header."""

    kind: int
    payload: Bytesish | SegmentHeader

    def encoded_size(self) -> int:
        if isinstance(self.payload, SegmentHeader):
            return 1 + len(self.payload.to_scale())
        return 1 + compact_length(len(self.payload)) + len(self.payload)

    def encode(self) -> bytes:
        if isinstance(self.payload, SegmentHeader):
            return bytes([self.kind]) + self.payload.to_scale()
        return bytes([self.kind]) + encode_bytes(self.payload)

    @classmethod
    def decode(cls, reader: ScaleReader) -> SegmentItem:
        kind = reader.enum_index("SegmentItem", _NUM_ITEM_KINDS)
        if kind == ITEM_PADDING:
            return cls(kind, b"")
        if kind == ITEM_PARENT_SEGMENT_HEADER:
            return cls(kind, SegmentHeader.decode(reader))
        return cls(kind, reader.bytes("segment item bytes"))


def encode_segment(items: Sequence[SegmentItem]) -> bytearray:
    """``Segment::V0`` bytes (``0x00`` then the items back to back), zero padded to full size."""
    segment = bytearray(RECORDED_HISTORY_SEGMENT_SIZE)
    offset = 1  # segment[0] = 0x00, the V0 variant index
    for item in items:
        if offset + item.encoded_size() > RECORDED_HISTORY_SEGMENT_SIZE:
            raise ArchiverError(f"segment items overflow the {RECORDED_HISTORY_SEGMENT_SIZE}-byte segment")
        segment[offset] = item.kind
        offset += 1
        if isinstance(item.payload, SegmentHeader):
            data: Bytesish = item.payload.to_scale()
        else:
            prefix = encode_compact(len(item.payload))
            segment[offset : offset + len(prefix)] = prefix
            offset += len(prefix)
            data = item.payload
        segment[offset : offset + len(data)] = data
        offset += len(data)
    return segment


def decode_segment(data: bytes | bytearray | memoryview) -> list[SegmentItem]:
    """Items of a segment stream; ``Padding`` items (the zero padding) are dropped."""
    data = bytes(data)
    # Each zero byte is a one-byte Padding item; skip trailing padding in one step instead of
    # decoding up to ~130 M of them one by one.
    end = len(data.rstrip(b"\x00"))
    reader = ScaleReader(data, "Segment")
    reader.enum_index("Segment", 1)
    items = []
    while reader.offset < end:
        item = SegmentItem.decode(reader)
        if item.kind != ITEM_PADDING:
            items.append(item)
    reader.skip(reader.remaining, "padding")
    return items


# ============================================================================================
# Block packing


def _with_progress(block: LastArchivedBlock, partial_bytes: int | None) -> LastArchivedBlock:
    return LastArchivedBlock(block.number, ArchivedBlockProgress(partial_bytes))


class SegmentPacker:
    """Buffers segment items and cuts them into full segments (reference ``produce_segment``).

    The owner calls :meth:`produce_segment` until it returns None and, after committing to each
    produced segment, :meth:`push_parent_header` with that segment's header.
    """

    def __init__(self) -> None:
        self.buffer: deque[SegmentItem] = deque()
        self.last_archived_block = INITIAL_LAST_ARCHIVED_BLOCK
        self.next_block_number = 0
        # Encoded size of ``buffer``, kept so that adding a block costs O(1) until a segment is
        # full (re-scanning the buffer per block would be quadratic for small blocks).
        self._buffered_size = 0

    def set_buffer(self, items: Iterable[SegmentItem]) -> None:
        """Replace the buffered items (restoring saved state)."""
        self.buffer = deque(items)
        self._buffered_size = sum(item.encoded_size() for item in self.buffer)

    def _append(self, item: SegmentItem) -> None:
        self.buffer.append(item)
        self._buffered_size += item.encoded_size()

    def add_block(self, block: bytes | bytearray | memoryview, block_number: int | None = None) -> None:
        """Queue one encoded block; ``block_number`` (if given) must be the next one (0 = genesis)."""
        if block_number is not None and block_number != self.next_block_number:
            raise ArchiverError(f"expected block number {self.next_block_number}, got {block_number}")
        if self.next_block_number > U32_MAX:
            raise ArchiverError("block number would overflow u32")
        if len(block) > U32_MAX:
            raise ArchiverError(f"block of {len(block)} bytes is larger than u32::MAX")
        self._append(SegmentItem(ITEM_BLOCK, bytes(block)))
        self.next_block_number += 1

    def push_parent_header(self, header: SegmentHeader) -> None:
        """The next segment starts with ``ParentSegmentHeader(header)``."""
        item = SegmentItem(ITEM_PARENT_SEGMENT_HEADER, header)
        self.buffer.appendleft(item)
        self._buffered_size += item.encoded_size()

    def buffered_size(self) -> int:
        """Encoded size of the buffered items."""
        return self._buffered_size

    def produce_segment(self) -> list[SegmentItem] | None:
        """Items of the next full segment, or None (buffer untouched) if there is not enough."""
        size_limit = RECORDED_HISTORY_SEGMENT_SIZE
        if 1 + self._buffered_size < size_limit - 2:
            return None  # the loop below would run out of items and put them all back
        items: list[SegmentItem] = []
        last = self.last_archived_block
        segment_size = 1  # the Segment::V0 byte
        # Stop 2 bytes early: the smallest item takes 2 bytes to encode.
        while segment_size < size_limit - 2:
            if not self.buffer:
                self.buffer.extendleft(reversed(items))
                return None
            item = self.buffer.popleft()
            item_size = item.encoded_size()
            segment_size += item_size
            if segment_size >= size_limit and not isinstance(item.payload, SegmentHeader):
                spill_over = segment_size - size_limit
                # Compact-length growth can make the overflow larger than the item's bytes: the
                # whole item then moves to the next segment.
                if spill_over > len(item.payload):
                    self.buffer.appendleft(item)
                    segment_size -= item_size
                    break
            if item.kind == ITEM_BLOCK:
                # The very first block of history keeps number 0.
                number = last.number if last == INITIAL_LAST_ARCHIVED_BLOCK else last.number + 1
                last = LastArchivedBlock(number, ArchivedBlockProgress.complete())
            elif item.kind == ITEM_BLOCK_CONTINUATION:
                archived = last.archived_progress.partial_bytes
                if archived is None:
                    raise ArchiverError("block continuation without a partially archived block")
                last = _with_progress(last, archived + len(item.payload))  # type: ignore[arg-type]
            items.append(item)

        spill_over = max(0, segment_size - size_limit)
        if spill_over:
            item = items.pop()
            payload = memoryview(item.payload)  # type: ignore[arg-type]
            split_point = len(payload) - spill_over
            self.buffer.appendleft(SegmentItem(ITEM_BLOCK_CONTINUATION, payload[split_point:]))
            if item.kind == ITEM_BLOCK:
                last = _with_progress(last, split_point)
                items.append(SegmentItem(ITEM_BLOCK_START, payload[:split_point]))
            else:  # a block continuation: the loop above counted all of it as archived
                last = _with_progress(last, last.archived_progress.partial_bytes - spill_over)  # type: ignore[operator]
                items.append(SegmentItem(ITEM_BLOCK_CONTINUATION, payload[:split_point]))
        else:
            last = _with_progress(last, None)
        self.last_archived_block = last
        self._buffered_size = sum(item.encoded_size() for item in self.buffer)
        return items


# ============================================================================================
# Splitting over the caller's workers


def _map_columns(workers: Workers | None, function: Callable[[np.ndarray], np.ndarray], columns: np.ndarray) -> np.ndarray:
    """``function`` of consecutive row blocks of ``columns`` (one block per part), concatenated."""
    parts = [p for p in np.array_split(np.arange(columns.shape[0]), worker_count(workers)) if len(p)]
    return np.concatenate(map_all(workers, lambda idx: function(columns[idx[0] : idx[-1] + 1]), parts))


def _extend_columns(erasure_coding, source: np.ndarray, workers: Workers | None) -> np.ndarray:  # noqa: ANN001
    """Parity of every (n, 32) column of a (batch, n, 32) array, split over ``workers``."""
    return _map_columns(workers, erasure_coding.extend_array, source)


# ============================================================================================
# Commitments


_extension_matrix_lock = threading.Lock()
_extension_matrix: list[list[Scalar]] | None = None


def _parity_coefficients(erasure_coding) -> list[list[Scalar]]:  # noqa: ANN001
    """``M[i][k]``: parity ``i`` = sum_k M[i][k] * source ``k`` (extension is linear)."""
    global _extension_matrix
    with _extension_matrix_lock:
        if _extension_matrix is None:
            identity = np.zeros((NUM_RAW_RECORDS, NUM_RAW_RECORDS, SCALAR_FULL_BYTES), dtype=np.uint8)
            identity[np.arange(NUM_RAW_RECORDS), np.arange(NUM_RAW_RECORDS), -1] = 1
            columns = erasure_coding.extend_array(identity)  # columns[k][i] = M[i][k]
            matrix = np.ascontiguousarray(columns.transpose(1, 0, 2))
            _extension_matrix = [
                [Scalar.from_be_bytes(matrix[i, k].tobytes()) for k in range(NUM_RAW_RECORDS)]
                for i in range(NUM_RAW_RECORDS)
            ]
        return _extension_matrix


def extend_commitments(erasure_coding, source_commitments: Sequence[bytes], workers: Workers | None = None) -> list[bytes]:  # noqa: ANN001
    """Interleaved 256 record commitments from the 128 source ones (reference
    ``extend_commitments``): parity commitment ``i`` is the parity map applied in G1."""
    if len(source_commitments) != NUM_RAW_RECORDS:
        raise ArchiverError(f"need {NUM_RAW_RECORDS} source commitments, got {len(source_commitments)}")
    points = []
    for k, commitment in enumerate(source_commitments):
        try:
            points.append(G1Point.from_compressed_bytes(bytes(commitment)))
        except (ValueError, TypeError):
            raise ArchiverError(f"source record commitment {k} is not a valid G1 point") from None
    matrix = _parity_coefficients(erasure_coding)
    parity = map_all(workers, lambda row: G1Point.multiexp_unchecked(points, row).to_compressed_bytes(), matrix)
    interleaved: list[bytes] = []
    for source, par in zip(source_commitments, parity):
        interleaved += [bytes(source), par]
    return interleaved


def _record_commitment(kzg, record: np.ndarray) -> bytes:  # noqa: ANN001
    return kzg.commit(kzg.poly(record))


def _segment_polynomial(kzg, record_commitments: Sequence[bytes]):  # noqa: ANN001, ANN202
    hashes = [blake3_254_hash_to_scalar(c) for c in record_commitments]
    return kzg.poly(hashes)


def _pieces_from_records(kzg, records: np.ndarray, commitments: Sequence[bytes], positions: Sequence[int],  # noqa: ANN001, ANN202
                         workers: Workers | None):
    """Segment commitment and the pieces at ``positions`` (witness against it)."""
    polynomial = _segment_polynomial(kzg, commitments)
    segment_commitment = kzg.commit(polynomial)
    witnesses = map_all(workers, lambda j: kzg.create_witness(polynomial, NUM_PIECES, j), positions)
    pieces = [
        Piece(b"".join((records[j].tobytes(), commitments[j], witness)))
        for j, witness in zip(positions, witnesses)
    ]
    return segment_commitment, pieces


# ============================================================================================
# Segment -> pieces


def archive_segment_bytes(kzg, erasure_coding, segment: bytes | bytearray | memoryview,  # noqa: ANN001
                          workers: Workers | None = None) -> tuple[list[Piece], bytes]:
    """The 256 pieces (interleaved source/parity) and the segment commitment of a segment stream
    (split over ``workers`` when given)."""
    if len(segment) != RECORDED_HISTORY_SEGMENT_SIZE:
        raise ArchiverError(f"a segment is {RECORDED_HISTORY_SEGMENT_SIZE} bytes, got {len(segment)}")
    raw = np.frombuffer(segment, dtype=np.uint8).reshape(NUM_RAW_RECORDS, RECORD_NUM_CHUNKS, SCALAR_SAFE_BYTES)
    # records[j] is the record of piece j: chunk c of source record i becomes 0x00 ‖ chunk.
    records = np.zeros((NUM_PIECES, RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES), dtype=np.uint8)
    records[0::2, :, 1:] = raw
    del raw
    columns = np.ascontiguousarray(records[0::2].transpose(1, 0, 2))  # (chunk, source record, 32)
    parity = _extend_columns(erasure_coding, columns, workers)
    del columns
    records[1::2] = parity.transpose(1, 0, 2)
    del parity
    source_commitments = map_all(workers, lambda i: _record_commitment(kzg, records[2 * i]), range(NUM_RAW_RECORDS))
    commitments = extend_commitments(erasure_coding, source_commitments, workers)
    segment_commitment, pieces = _pieces_from_records(kzg, records, commitments, range(NUM_PIECES), workers)
    return pieces, segment_commitment


# ============================================================================================
# Archiver


@dataclass(frozen=True)
class ArchivedSegment:
    header: SegmentHeader
    pieces: list[Piece]


class Archiver:
    """Turns a stream of blocks into archived segments (reference ``Archiver``); ``workers``
    (optional) is the caller's executor that archiving a segment is split over."""

    def __init__(self, kzg, erasure_coding, workers: Workers | None = None) -> None:  # noqa: ANN001
        self._kzg = kzg
        self._erasure_coding = erasure_coding
        self._workers = workers
        self._packer = SegmentPacker()
        self._segment_index = 0
        self._prev_segment_header_hash = bytes(HASH_SIZE)

    # ---- restart support

    @classmethod
    def with_initial_state(cls, kzg, erasure_coding, segment_header: SegmentHeader, encoded_block: bytes,  # noqa: ANN001
                           workers: Workers | None = None) -> Archiver:
        """Resume after ``segment_header`` (the last archived segment), as the reference does.

        ``encoded_block`` is block ``segment_header.last_archived_block.number``; if that block
        was only partly archived, its remaining bytes are queued as a continuation.  Blocks that
        came after it must be added again.
        """
        archiver = cls(kzg, erasure_coding, workers)
        last = segment_header.last_archived_block
        archiver._segment_index = segment_header.segment_index + 1
        archiver._prev_segment_header_hash = segment_header.hash()
        packer = archiver._packer
        packer.last_archived_block = last
        packer.next_block_number = last.number + 1
        packer.set_buffer([SegmentItem(ITEM_PARENT_SEGMENT_HEADER, segment_header)])
        archived_bytes = last.archived_progress.partial_bytes
        if archived_bytes is not None:
            if len(encoded_block) < archived_bytes:
                raise ArchiverError(
                    f"block {last.number} is {len(encoded_block)} bytes, smaller than the "
                    f"{archived_bytes} bytes already archived"
                )
            if len(encoded_block) == archived_bytes:
                raise ArchiverError(
                    f"block {last.number} is {len(encoded_block)} bytes, exactly its archived part: "
                    "it cannot be partially archived"
                )
            packer.set_buffer([*packer.buffer, SegmentItem(ITEM_BLOCK_CONTINUATION, bytes(encoded_block[archived_bytes:]))])
        return archiver

    def to_state(self) -> bytes:
        """Everything needed to continue exactly here, including buffered blocks (checksummed SCALE)."""
        body = b"".join(
            (
                bytes([_STATE_VERSION]),
                encode_u64(self._segment_index),
                self._prev_segment_header_hash,
                self._packer.last_archived_block.to_scale(),
                encode_u32(self._packer.next_block_number),
                encode_vec(list(self._packer.buffer), SegmentItem.encode),
            )
        )
        return encode_checksummed(body)

    @classmethod
    def from_state(cls, kzg, erasure_coding, state: bytes | bytearray | memoryview,  # noqa: ANN001
                   workers: Workers | None = None) -> Archiver:
        """Inverse of :meth:`to_state`; raises ScaleError for corrupt state."""

        def decode(reader: ScaleReader) -> Archiver:
            version = reader.u8("archiver state version")
            if version != _STATE_VERSION:
                raise reader.error(f"unsupported archiver state version {version}")
            archiver = cls(kzg, erasure_coding, workers)
            archiver._segment_index = reader.u64("segment index")
            archiver._prev_segment_header_hash = reader.read(HASH_SIZE, "previous segment header hash")
            archiver._packer.last_archived_block = LastArchivedBlock.decode(reader)
            archiver._packer.next_block_number = reader.u32("next block number")
            archiver._packer.set_buffer(reader.vec(SegmentItem.decode, "buffered segment items"))
            return archiver

        return decode_all(state, lambda reader: reader.checksummed(decode, "archiver state"), "archiver state")

    # ---- introspection

    @property
    def segment_index(self) -> int:
        """Index the next archived segment will get."""
        return self._segment_index

    @property
    def next_block_number(self) -> int:
        return self._packer.next_block_number

    @property
    def prev_segment_header_hash(self) -> bytes:
        return self._prev_segment_header_hash

    def last_archived_block_number(self) -> int | None:
        """Number of the last block that went into a segment (None before any)."""
        last = self._packer.last_archived_block
        return None if last == INITIAL_LAST_ARCHIVED_BLOCK else last.number

    def buffered_size(self) -> int:
        """Encoded bytes waiting for the next segment."""
        return self._packer.buffered_size()

    # ---- archiving

    def add_block(self, block: bytes | bytearray | memoryview, block_number: int | None = None) -> list[ArchivedSegment]:
        """Append one encoded block; returns the segments it completed (usually none).

        ``block_number``, when given, must be the next block number (0 = genesis).
        """
        self._packer.add_block(block, block_number)
        segments = []
        while (items := self._packer.produce_segment()) is not None:
            segments.append(self._archive(items))
        return segments

    def _archive(self, items: list[SegmentItem]) -> ArchivedSegment:
        segment = encode_segment(items)
        del items
        pieces, segment_commitment = archive_segment_bytes(self._kzg, self._erasure_coding, segment, self._workers)
        header = SegmentHeader(
            segment_index=self._segment_index,
            segment_commitment=segment_commitment,
            prev_segment_header_hash=self._prev_segment_header_hash,
            last_archived_block=self._packer.last_archived_block,
        )
        self._segment_index += 1
        self._prev_segment_header_hash = header.hash()
        self._packer.push_parent_header(header)
        return ArchivedSegment(header, pieces)


# ============================================================================================
# Piece validity


def is_piece_valid(kzg, piece: Piece, segment_commitment: bytes, position: int) -> bool:  # noqa: ANN001
    """Spec 01 section 9.3: the record matches its commitment, and the commitment is the
    ``position``-th value under the segment commitment."""
    if not isinstance(position, int) or not 0 <= position < NUM_PIECES:
        raise ValueError(f"piece position must be in 0..{NUM_PIECES - 1}, got {position!r}")
    if not isinstance(piece, Piece):
        raise ValueError(f"is_piece_valid needs a Piece, got {type(piece).__name__}")
    if len(segment_commitment) != COMMITMENT_SIZE:
        return False
    try:  # cheap rejection before the record commitment, as the reference does
        G1Point.from_compressed_bytes(piece.witness)
    except ValueError:
        return False
    record = np.frombuffer(piece.record, dtype=np.uint8).reshape(RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES)
    try:
        commitment = _record_commitment(kzg, record)
    except ValueError:  # a chunk is not a canonical scalar
        return False
    if commitment != piece.commitment:
        return False
    value = blake3_254_hash_to_scalar(piece.commitment)
    return bool(kzg.verify(bytes(segment_commitment), NUM_PIECES, position, value, piece.witness))


# ============================================================================================
# Reconstruction (reference PiecesReconstructor)


def _reconstruct_records(kzg, erasure_coding, pieces: Sequence[Piece | None], workers: Workers | None):  # noqa: ANN001, ANN202
    if len(pieces) != NUM_PIECES:
        raise ArchiverError(f"reconstruction needs a list of {NUM_PIECES} optional pieces, got {len(pieces)}")
    present = np.array([p is not None for p in pieces], dtype=bool)
    if int(present.sum()) < NUM_RAW_RECORDS:
        raise ArchiverError(f"too few pieces to reconstruct: {int(present.sum())} present, need {NUM_RAW_RECORDS}")
    shards = np.zeros((RECORD_NUM_CHUNKS, NUM_PIECES, SCALAR_FULL_BYTES), dtype=np.uint8)
    for j, piece in enumerate(pieces):
        if piece is not None:
            shards[:, j] = np.frombuffer(piece.record, dtype=np.uint8).reshape(RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES)
    try:
        recovered = _map_columns(workers, lambda block: erasure_coding.recover_array(block, present), shards)
    except ValueError as exc:
        raise ArchiverError(f"data shards reconstruction failed: {exc}") from None
    del shards
    records = np.ascontiguousarray(recovered.transpose(1, 0, 2))
    del recovered

    def source_commitment(i: int) -> bytes:
        piece = pieces[2 * i]
        if piece is not None:
            try:
                G1Point.from_compressed_bytes(piece.commitment)
            except ValueError:
                raise ArchiverError(f"commitment of input piece {2 * i} is not a valid G1 point") from None
            return piece.commitment
        return _record_commitment(kzg, records[2 * i])

    commitments = extend_commitments(erasure_coding, map_all(workers, source_commitment, range(NUM_RAW_RECORDS)), workers)
    return records, commitments


def reconstruct_segment(kzg, erasure_coding, pieces: Sequence[Piece | None],  # noqa: ANN001
                        workers: Workers | None = None) -> list[Piece]:
    """All 256 pieces of a segment from at least 128 of them (None marks a missing piece)."""
    records, commitments = _reconstruct_records(kzg, erasure_coding, pieces, workers)
    return _pieces_from_records(kzg, records, commitments, range(NUM_PIECES), workers)[1]


def reconstruct_piece(kzg, erasure_coding, pieces: Sequence[Piece | None], position: int,  # noqa: ANN001
                      workers: Workers | None = None) -> Piece:
    """The piece at ``position`` from at least 128 pieces of its segment."""
    if not isinstance(position, int) or not 0 <= position < NUM_PIECES:
        raise ArchiverError(f"piece position must be in 0..{NUM_PIECES - 1}, got {position!r}")
    records, commitments = _reconstruct_records(kzg, erasure_coding, pieces, workers)
    return _pieces_from_records(kzg, records, commitments, [position], workers)[1][0]


__all__ = [
    "ArchivedSegment",
    "Archiver",
    "ArchiverError",
    "SegmentItem",
    "SegmentPacker",
    "archive_segment_bytes",
    "decode_segment",
    "encode_segment",
    "extend_commitments",
    "is_piece_valid",
    "reconstruct_piece",
    "reconstruct_segment",
    "ITEM_BLOCK",
    "ITEM_BLOCK_CONTINUATION",
    "ITEM_BLOCK_START",
    "ITEM_PADDING",
    "ITEM_PARENT_SEGMENT_HEADER",
    "INITIAL_LAST_ARCHIVED_BLOCK",
]
