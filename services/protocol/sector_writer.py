"""The finished sector's bytes in the reference layout, streamed from a plotting buffer (spec 03 s7).

Why: a sector is ``n`` MiB of chunks stored s-bucket-major (for each s-bucket, the chunk of
every record that has one), but records are encoded record-major into a
:class:`services.protocol.plotting.SectorBuffer`. Re-laying the whole sector out in memory
would double its footprint (2 GiB for a 1 000-piece sector); instead :class:`SectorWriter`
produces the layout window by window (a few MiB at a time, gathered by a numba kernel from the
record rows) and hashes it on the way, so the sector can be written to a file or a socket with
one bounded window of extra memory, and any byte range can be produced again later (resumed
downloads) without keeping the layout.

Layout: contents map (the bitfields, then their BLAKE3) ‖ s-bucket chunks ‖ record metadata ‖
BLAKE3 of everything before. Per record the chunk of s-bucket ``s`` is its encoded chunk
``rank(s)`` when bit ``s`` is set, else (while its unencoded quota ``32768 - E`` lasts) its
unencoded chunk ``E + (number of unset buckets before s)``; running cursors per record give both.

Main API: ``SectorWriter(sector_buffer, window_size=4 MiB)`` with ``.size``, ``.metadata``
(``SectorMetadata``: s-bucket sizes), ``.plotted_sector``, ``.windows()`` (the whole sector as
consecutive memoryviews; the checksum is known once they are consumed), ``.write_to(sink)``
(``sink(memoryview)`` for every window, returns the checksum), ``.checksum()``,
``.read_into(offset, out)`` (any range), ``.to_bytes()`` (tests, small sectors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from blake3 import blake3
from numba import njit

from services.protocol.constants import RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS, SCALAR_FULL_BYTES
from services.protocol.hashes import HASH_SIZE, blake3_hash
from services.protocol.sector import PlottedSector, SectorMetadata, s_bucket_offsets

DEFAULT_WINDOW_SIZE = 4 * 1024 * 1024


class SectorWriterError(ValueError):
    """The sector buffer is incomplete, or a read is out of range."""


@njit(cache=True, nogil=True)
def _s_bucket_sizes(bitfields, encoded_counts, sizes):
    """``sizes[s]`` += 1 for every record with a chunk (encoded or unencoded) in bucket ``s``."""
    for p in range(bitfields.shape[0]):
        quota = RECORD_NUM_CHUNKS - encoded_counts[p]
        unencoded = 0
        for s in range(sizes.shape[0]):
            if (bitfields[p, s >> 3] >> (s & 7)) & 1:
                sizes[s] += 1
            elif unencoded < quota:
                sizes[s] += 1
                unencoded += 1


@njit(cache=True, nogil=True)
def _cursors_at(bitfields, encoded_counts, s_start, encoded_cursor, unencoded_cursor):
    """Per-record cursors at the start of bucket ``s_start``: encoded chunks before it and
    unencoded chunks before it (capped at the record's unencoded quota)."""
    for p in range(bitfields.shape[0]):
        before = 0
        for byte in range(s_start >> 3):
            value = bitfields[p, byte]
            while value:
                value &= value - 1
                before += 1
        for s in range((s_start >> 3) << 3, s_start):
            before += (bitfields[p, s >> 3] >> (s & 7)) & 1
        encoded_cursor[p] = before
        unencoded_cursor[p] = min(s_start - before, RECORD_NUM_CHUNKS - encoded_counts[p])


@njit(cache=True, nogil=True)
def _gather_s_buckets(records, bitfields, encoded_counts, encoded_cursor, unencoded_cursor, s_start, s_stop, out):
    """Chunks of buckets ``[s_start, s_stop)`` in sector order into ``out`` rows; advances the
    cursors; returns the number of rows written."""
    rows = 0
    for s in range(s_start, s_stop):
        byte = s >> 3
        bit = s & 7
        for p in range(records.shape[0]):
            if (bitfields[p, byte] >> bit) & 1:
                slot = encoded_cursor[p]
                encoded_cursor[p] += 1
            elif unencoded_cursor[p] < RECORD_NUM_CHUNKS - encoded_counts[p]:
                slot = encoded_counts[p] + unencoded_cursor[p]
                unencoded_cursor[p] += 1
            else:
                continue
            for b in range(SCALAR_FULL_BYTES):
                out[rows, b] = records[p, slot, b]
            rows += 1
    return rows


class SectorWriter:
    """The finished layout of a complete :class:`SectorBuffer` (no copy of the sector is kept)."""

    def __init__(self, sector, window_size: int = DEFAULT_WINDOW_SIZE) -> None:  # noqa: ANN001 - plotting.SectorBuffer
        missing = sector.missing_offsets()
        if missing:
            raise SectorWriterError(f"sector {sector.sector_index}: records {missing[:8]} are not encoded yet")
        n = sector.pieces_in_sector
        max_bucket_bytes = n * SCALAR_FULL_BYTES
        if window_size < max_bucket_bytes:
            raise SectorWriterError(f"window size {window_size} is smaller than one s-bucket ({max_bucket_bytes} bytes)")
        self._sector = sector
        self._window_size = window_size
        self._counts = np.ascontiguousarray(sector.encoded_counts, dtype=np.int64)
        sizes = np.zeros(RECORD_NUM_S_BUCKETS, dtype=np.int64)
        _s_bucket_sizes(sector.bitfields, self._counts, sizes)
        self._bucket_offsets = np.concatenate([s_bucket_offsets(sizes), [int(sizes.sum())]])  # in chunks
        self.metadata = sector.sector_metadata(sizes.astype(np.uint16))
        self.plotted_sector: PlottedSector = sector.plotted_sector(self.metadata.s_bucket_sizes)
        self._map_checksum = blake3_hash(sector.bitfields.data)
        self._chunks_start = sector.bitfields.nbytes + HASH_SIZE
        self._metadata_start = self._chunks_start + int(self._bucket_offsets[-1]) * SCALAR_FULL_BYTES
        self._checksum_start = self._metadata_start + sector.record_metadata.nbytes
        self.size = self._checksum_start + HASH_SIZE
        assert self.size == sector.size
        self._checksum: bytes | None = None

    @property
    def sector_metadata(self) -> SectorMetadata:
        return self.metadata

    def _bucket_windows(self, s_start: int) -> Iterator[memoryview]:
        """Chunk-region windows from the start of bucket ``s_start`` to the end of the region."""
        sector = self._sector
        n = sector.pieces_in_sector
        encoded_cursor = np.empty(n, dtype=np.int64)
        unencoded_cursor = np.empty(n, dtype=np.int64)
        _cursors_at(sector.bitfields, self._counts, s_start, encoded_cursor, unencoded_cursor)
        window = np.empty((self._window_size // SCALAR_FULL_BYTES, SCALAR_FULL_BYTES), dtype=np.uint8)
        offsets = self._bucket_offsets
        s = s_start
        while s < RECORD_NUM_S_BUCKETS:
            # as many whole buckets as fit in the window
            s_stop = int(np.searchsorted(offsets, offsets[s] + window.shape[0], side="right")) - 1
            s_stop = min(max(s_stop, s + 1), RECORD_NUM_S_BUCKETS)
            rows = _gather_s_buckets(sector.records, sector.bitfields, self._counts, encoded_cursor, unencoded_cursor, s, s_stop, window)
            yield memoryview(window[:rows]).cast("B")
            s = s_stop

    def windows(self) -> Iterator[memoryview]:
        """The whole sector as consecutive views (each valid until the next is requested); the
        checksum (last 32 bytes) is computed on the way and cached."""
        hasher = blake3()
        for view in self._body_windows(0, with_contents_map=True):
            hasher.update(view)
            yield view
        checksum = hasher.digest()
        self._checksum = checksum
        yield memoryview(checksum)

    def _body_windows(self, s_start: int, with_contents_map: bool) -> Iterator[memoryview]:
        sector = self._sector
        if with_contents_map:
            yield memoryview(sector.bitfields).cast("B")
            yield memoryview(self._map_checksum)
        yield from self._bucket_windows(s_start)
        yield memoryview(sector.record_metadata).cast("B")

    def write_to(self, sink: Callable[[memoryview], object]) -> bytes:
        """Call ``sink(view)`` for every window in order (``file.write`` or ``socket.sendall``
        fit); returns the sector checksum (the last window)."""
        for view in self.windows():
            sink(view)
        assert self._checksum is not None
        return self._checksum

    def checksum(self) -> bytes:
        """BLAKE3 of the sector before its last 32 bytes (one pass over the layout if not yet known)."""
        if self._checksum is None:
            for _ in self.windows():
                pass
        assert self._checksum is not None
        return self._checksum

    def read_into(self, offset: int, out: memoryview | bytearray | np.ndarray) -> int:
        """Fill ``out`` with the sector bytes at ``[offset, offset + len(out))`` (clipped at the
        end); returns the number of bytes written. Reading the checksum needs ``checksum()``."""
        target = memoryview(out).cast("B")
        if not 0 <= offset <= self.size:
            raise SectorWriterError(f"offset {offset} outside sector of {self.size} bytes")
        length = min(target.nbytes, self.size - offset)
        if length == 0:
            return 0
        end = offset + length
        position = 0  # sector offset of the current window
        if offset >= self._chunks_start and offset < self._metadata_start:
            chunk = (offset - self._chunks_start) // SCALAR_FULL_BYTES
            s_start = int(np.searchsorted(self._bucket_offsets, chunk, side="right")) - 1
            windows = self._body_windows(s_start, with_contents_map=False)
            position = self._chunks_start + int(self._bucket_offsets[s_start]) * SCALAR_FULL_BYTES
        elif offset >= self._metadata_start:
            windows = iter([memoryview(self._sector.record_metadata).cast("B")])
            position = self._metadata_start
        else:
            windows = self._body_windows(0, with_contents_map=True)
        if end > self._checksum_start:
            windows = _chain(windows, memoryview(self.checksum()))
        written = 0
        for view in windows:
            window_end = position + view.nbytes
            if window_end > offset + written and position < end:
                start = offset + written - position
                stop = min(view.nbytes, end - position)
                target[written : written + stop - start] = view[start:stop]
                written += stop - start
            position = window_end
            if offset + written >= end:
                break
        return written

    def to_bytes(self) -> bytes:
        """The whole sector as one bytes object (tests, small sectors)."""
        out = bytearray()
        self.write_to(out.extend)
        return bytes(out)


def _chain(windows: Iterator[memoryview], last: memoryview) -> Iterator[memoryview]:
    yield from windows
    yield last
