"""On-disk piece store: fixed slots in one data file plus a checksummed append-only index log.

Why this shape: a cache holds up to millions of 1 MiB pieces and must survive ``kill -9`` and
power loss without serving a wrong byte. Fixed-size slots in one preallocated (sparse) file make
every piece one ``pread`` / ``pwrite`` at ``slot * PIECE_SIZE``; the index is rebuilt on start
from a small log whose records each carry their own checksum, so a torn last write is detected
and dropped, never trusted.

Directory layout (``PieceStore(path)``)::

    store.json   {"format": 1, "slots": N}           written once (atomically), grown on demand
    pieces.dat   N * PIECE_SIZE bytes (sparse until written)
    index.log    32-byte header, then 72-byte records:
                 u8 kind (1 put, 2 remove) | 3 pad | u32 slot | u64 piece index | 32 B BLAKE3 and
                 16 B xxh3-128 of the piece | u64 xxh3-64 of the previous 64 bytes

Write path (``put_many``): pieces are written to free slots, the data file is ``fdatasync``\\ ed,
then the records are appended and the log is ``fdatasync``\\ ed; only then does ``put_many``
return, so an acknowledged piece survives any crash. A crash in between leaves a record-less
slot (free again on restart) or, when a slot was being reused, a record whose piece checksum no
longer matches the bytes, which the read path rejects.

Read path (``read_into`` / ``get``): every read recomputes the piece's xxh3-128 and compares it
with the index (the BLAKE3 is only computed on write and travels as the data-plane digest); a mismatch drops the piece from the index (``corrupt`` counter) and the caller
sees "missing", so corrupt data is never served and gets refetched. ``scrub()`` checks every
stored piece the same way (run at start, in the background, with progress).

Memory is bounded and proportional to the store: per slot 8 B piece index + 48 B digests + 8 B
access stamp + 4 B free-slot stack, plus a 4 B direct map per piece index of history
(``slot_of[piece_index]``), i.e. about 73 MiB for a 1 TiB store on a 1.5 TiB history.

Thread safety: all methods may be called from several threads (the asyncio services call them
through ``asyncio.to_thread``); index changes and log appends are serialised by one lock.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import xxhash
import blake3

from services.protocol.constants import PIECE_SIZE

FORMAT_VERSION = 1
META_FILE = "store.json"
DATA_FILE = "pieces.dat"
LOG_FILE = "index.log"
LOG_MAGIC = b"autonomys-pcache"  # 16 bytes
LOG_HEADER = LOG_MAGIC + struct.pack("<I", FORMAT_VERSION) + bytes(12)  # 32 bytes
DIGESTS_SIZE = 48  # BLAKE3 (32, the data plane's payload digest) then xxh3-128 (16, the read check)
_BODY = struct.Struct("<B3xIQ48s")  # 64 bytes
RECORD_SIZE = _BODY.size + 8
KIND_PUT = 1
KIND_REMOVE = 2
MAX_PIECE_INDEX = (1 << 31) - 1  # direct map limit: 2^31 pieces = 2 PiB of history
DEFAULT_DISK_FRACTION = 0.9


class StoreError(Exception):
    """The store directory cannot be used (one line for the operator)."""


class StoreFull(StoreError):
    """No free slot and nothing may be evicted."""


def piece_digests(data: bytes | bytearray | memoryview) -> bytes:
    """``BLAKE3(piece) ‖ xxh3_128(piece)`` (48 bytes), computed once when a piece is stored.

    Every read recomputes the xxh3 (~20 GB/s) and compares; the stored BLAKE3 is what the data
    plane sends as the payload digest (``services.p2p`` checks BLAKE3 at the receiver), so serving
    a piece costs no BLAKE3 on the server and a piece damaged on disk is still never sent."""
    return blake3.blake3(data).digest() + xxhash.xxh3_128_digest(data)


def read_check(data: bytes | bytearray | memoryview, digests: bytes) -> bool:
    """Bytes read back match the digests stored with them."""
    return xxhash.xxh3_128_digest(data) == digests[32:]


def log_record(kind: int, slot: int, piece_index: int, checksum: bytes) -> bytes:
    body = _BODY.pack(kind, slot, piece_index, checksum)
    return body + xxhash.xxh3_64_digest(body)


@dataclass
class OpenReport:
    """What :class:`PieceStore` found when it opened its directory."""

    records: int = 0
    bad_records: int = 0
    torn_bytes: int = 0
    pieces: int = 0
    compacted: bool = False


def read_log(path: Path, report: OpenReport) -> Iterator[tuple[int, int, int, bytes]]:
    """Valid ``(kind, slot, piece_index, checksum)`` records of an index log, in order; bad
    records (checksum, kind or index out of range) and a torn tail are counted in ``report``."""
    raw = path.read_bytes() if path.exists() else b""
    if raw and raw[: len(LOG_HEADER)] != LOG_HEADER:
        raise StoreError(f"{path} is not a piece index log (bad header)")
    body = memoryview(raw)[len(LOG_HEADER):]
    whole = len(body) // RECORD_SIZE * RECORD_SIZE
    report.torn_bytes = len(body) - whole
    report.records = whole // RECORD_SIZE
    for start in range(0, whole, RECORD_SIZE):
        record = body[start:start + RECORD_SIZE]
        if xxhash.xxh3_64_digest(record[:_BODY.size]) != record[_BODY.size:]:
            report.bad_records += 1
            continue
        kind, slot, index, checksum = _BODY.unpack(record[:_BODY.size])
        if index > MAX_PIECE_INDEX or kind not in (KIND_PUT, KIND_REMOVE):
            report.bad_records += 1
            continue
        yield kind, slot, index, checksum


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class ScrubReport:
    checked: int = 0
    corrupt: list[int] | None = None


def default_capacity(path: Path, existing_bytes: int = 0) -> int:
    """Slots for a store created without ``size=``: 90 % of the free space (plus what it uses)."""
    free = shutil.disk_usage(path).free + existing_bytes
    return max(1, int(free * DEFAULT_DISK_FRACTION) // PIECE_SIZE)


class _FreeSlots:
    """Stack of free slot numbers in one int32 array (a Python list would cost ~36 B a slot)."""

    def __init__(self, free: np.ndarray, capacity: int) -> None:
        self._stack = np.empty(capacity, dtype=np.int32)
        self._top = len(free)
        self._stack[: self._top] = free[::-1]  # pop() returns the lowest slot first

    def __len__(self) -> int:
        return self._top

    def pop(self) -> int:
        self._top -= 1
        return int(self._stack[self._top])

    def append(self, slot: int) -> None:
        self._stack[self._top] = slot
        self._top += 1

    def extend(self, slots: Iterable[int]) -> None:
        for slot in slots:
            self.append(slot)

    @property
    def nbytes(self) -> int:
        return self._stack.nbytes


class PieceStore:
    """Pieces on disk in one directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, capacity: int | None = None) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create piece store {self.path}: {exc.strerror}") from None
        self._lock = threading.RLock()
        self.capacity = self._open_meta(capacity)
        self._data_fd = self._open_data()
        self._slot_piece = np.full(self.capacity, -1, dtype=np.int64)
        self._slot_sum = np.zeros((self.capacity, DIGESTS_SIZE), dtype=np.uint8)
        self._slot_used = np.zeros(self.capacity, dtype=np.uint64)  # access stamp (LRU)
        self._slot_of = np.full(1024, -1, dtype=np.int32)
        self._clock = 0
        self._count = 0
        self.corrupt = 0  # pieces dropped because their bytes no longer matched
        self.reads = 0
        self.writes = 0
        self._log_records = 0
        self.report = self._replay_log()
        self._free = _FreeSlots(np.flatnonzero(self._slot_piece < 0), self.capacity)

    # ---- opening

    def _open_meta(self, capacity: int | None) -> int:
        meta_path = self.path / META_FILE
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
                stored = int(meta["slots"])
                if meta.get("format") != FORMAT_VERSION:
                    raise StoreError(f"piece store {self.path} has format {meta.get('format')}, expected {FORMAT_VERSION}")
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"piece store {self.path}: unreadable {META_FILE}: {exc}") from None
            if capacity is None or capacity == stored:
                return stored
            if capacity < stored:
                raise StoreError(
                    f"piece store {self.path} holds {stored} slots ({stored * PIECE_SIZE / 2**30:.1f} GiB); "
                    f"shrinking it to {capacity} is not supported: give size= of at least that, or use a new directory")
            atomic_write(meta_path, json.dumps({"format": FORMAT_VERSION, "slots": capacity}).encode())
            return capacity
        if capacity is None:
            capacity = default_capacity(self.path)
        if capacity < 1:
            raise StoreError(f"piece store {self.path}: size must hold at least one piece ({PIECE_SIZE} bytes)")
        atomic_write(meta_path, json.dumps({"format": FORMAT_VERSION, "slots": capacity}).encode())
        return capacity

    def _open_data(self) -> int:
        path = self.path / DATA_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if os.fstat(fd).st_size < self.capacity * PIECE_SIZE:
                os.ftruncate(fd, self.capacity * PIECE_SIZE)  # sparse: no space used until written
        except OSError as exc:
            raise StoreError(f"piece store {self.path}: cannot open {DATA_FILE}: {exc.strerror}") from None
        return fd

    def _replay_log(self) -> OpenReport:
        path = self.path / LOG_FILE
        report = OpenReport()
        for kind, slot, index, checksum in read_log(path, report):
            if slot >= self.capacity:
                report.bad_records += 1
            elif kind == KIND_PUT:
                self._map(slot, index, np.frombuffer(checksum, dtype=np.uint8))
            else:
                self._unmap_slot(slot)
        report.pieces = self._count
        self._log_records = report.records
        if report.bad_records or report.torn_bytes or not path.exists() or report.records > 2 * self._count + 4096:
            self._rewrite_log()
            report.compacted = True
        self._log = open(path, "ab", buffering=0)
        return report

    def _rewrite_log(self) -> None:
        slots = np.flatnonzero(self._slot_piece >= 0)
        parts = [LOG_HEADER]
        for slot in slots:
            parts.append(log_record(KIND_PUT, int(slot), int(self._slot_piece[slot]), self._slot_sum[slot].tobytes()))
        atomic_write(self.path / LOG_FILE, b"".join(parts))
        self._log_records = len(slots)

    # ---- index (lock held)

    def _ensure_map(self, piece_index: int) -> None:
        if piece_index >= len(self._slot_of):
            size = len(self._slot_of)
            while size <= piece_index:
                size *= 2
            grown = np.full(size, -1, dtype=np.int32)
            grown[: len(self._slot_of)] = self._slot_of
            self._slot_of = grown

    def _map(self, slot: int, piece_index: int, checksum: np.ndarray) -> None:
        self._unmap_slot(slot)
        self._ensure_map(piece_index)
        previous = int(self._slot_of[piece_index])
        if previous >= 0:  # the same piece in an older slot: that copy is superseded
            self._unmap_slot(previous)
        self._slot_piece[slot] = piece_index
        self._slot_sum[slot] = checksum
        self._slot_of[piece_index] = slot
        self._count += 1

    def _unmap_slot(self, slot: int) -> bool:
        index = int(self._slot_piece[slot])
        if index < 0:
            return False
        self._slot_piece[slot] = -1
        if index < len(self._slot_of) and self._slot_of[index] == slot:
            self._slot_of[index] = -1
        self._count -= 1
        return True

    def _slot(self, piece_index: int) -> int:
        if not 0 <= piece_index < len(self._slot_of):
            return -1
        return int(self._slot_of[piece_index])

    def _append(self, records: list[bytes]) -> None:
        self._log.write(b"".join(records))
        os.fdatasync(self._log.fileno())
        self._log_records += len(records)
        if self._log_records > 2 * self._count + 4096:
            self._log.close()
            self._rewrite_log()
            self._log = open(self.path / LOG_FILE, "ab", buffering=0)

    # ---- queries

    def __len__(self) -> int:
        return self._count

    @property
    def free_slots(self) -> int:
        return self.capacity - self._count

    def __contains__(self, piece_index: int) -> bool:
        with self._lock:
            return self._slot(int(piece_index)) >= 0

    def contains_many(self, piece_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Boolean array: which of ``piece_indices`` are held."""
        indices = np.asarray(piece_indices, dtype=np.int64).reshape(-1)
        with self._lock:
            inside = (indices >= 0) & (indices < len(self._slot_of))
            out = np.zeros(indices.shape[0], dtype=bool)
            out[inside] = self._slot_of[indices[inside]] >= 0
        return out

    def piece_indices(self) -> np.ndarray:
        """Sorted piece indices held."""
        with self._lock:
            return np.sort(self._slot_piece[self._slot_piece >= 0])

    # ---- reads

    def read_into(self, piece_index: int, buffer: memoryview | bytearray) -> bool:
        """Read a piece into ``buffer`` (PIECE_SIZE bytes) after checking it; False if the piece
        is not held or its bytes are corrupt (then it is dropped from the index)."""
        return self._read_checked(piece_index, buffer) is not None

    def read_piece(self, piece_index: int, nowait: bool = False) -> tuple[bytearray, bytes] | None:
        """``(fresh buffer with the piece, its BLAKE3)`` after checking it, or None. With
        ``nowait`` only from the page cache: ``BlockingIOError`` if the read would wait for the
        disk (the data plane then reads it on a worker thread instead of on its event loop)."""
        buffer = bytearray(PIECE_SIZE)
        digest = self._read_checked(piece_index, buffer, nowait)
        return None if digest is None else (buffer, digest)

    def _read_checked(self, piece_index: int, buffer: memoryview | bytearray, nowait: bool = False) -> bytes | None:
        view = memoryview(buffer).cast("B")
        if len(view) != PIECE_SIZE:
            raise ValueError(f"read buffer must be {PIECE_SIZE} bytes, got {len(view)}")
        with self._lock:
            slot = self._slot(int(piece_index))
            if slot < 0:
                return None
            expected = self._slot_sum[slot].tobytes()
            self._clock += 1
            self._slot_used[slot] = self._clock
        try:
            got = os.preadv(self._data_fd, [view], slot * PIECE_SIZE, os.RWF_NOWAIT if nowait else 0)
        except BlockingIOError:
            raise
        except OSError:
            got = -1
        if nowait and 0 <= got < PIECE_SIZE:
            raise BlockingIOError("piece not (all) in the page cache")
        self.reads += 1
        if got == PIECE_SIZE and read_check(view, expected):
            return expected[:32]
        with self._lock:  # concurrently replaced is "missing"; the same mapping is corruption
            if self._slot(int(piece_index)) == slot and self._slot_sum[slot].tobytes() == expected:
                self._unmap_slot(slot)
                self._free.append(slot)
                self.corrupt += 1
                self._append([log_record(KIND_REMOVE, slot, int(piece_index), expected)])
        return None

    def get(self, piece_index: int) -> bytes | None:
        buffer = bytearray(PIECE_SIZE)
        return bytes(buffer) if self.read_into(piece_index, buffer) else None

    def checksum(self, piece_index: int) -> bytes | None:
        """Stored digests (BLAKE3 ‖ xxh3-128) of a held piece."""
        with self._lock:
            slot = self._slot(int(piece_index))
            return None if slot < 0 else self._slot_sum[slot].tobytes()

    # ---- writes

    def put_many(self, items: Iterable[tuple[int, bytes | bytearray | memoryview]], *,
                 evict_lru: bool = False) -> list[int]:
        """Store pieces durably; returns the indices stored (already-held ones are skipped).

        Without free slots the least recently read piece is replaced when ``evict_lru``;
        otherwise :class:`StoreFull` is raised before anything is written."""
        batch: list[tuple[int, memoryview]] = []
        seen: set[int] = set()
        for piece_index, data in items:
            piece_index = int(piece_index)
            view = memoryview(data).cast("B")
            if len(view) != PIECE_SIZE:
                raise ValueError(f"piece {piece_index} is {len(view)} bytes, expected {PIECE_SIZE}")
            if not 0 <= piece_index <= MAX_PIECE_INDEX:
                raise ValueError(f"piece index {piece_index} is outside 0..{MAX_PIECE_INDEX}")
            if piece_index not in seen:
                seen.add(piece_index)
                batch.append((piece_index, view))
        with self._lock:
            batch = [(i, v) for i, v in batch if self._slot(i) < 0]
            if not batch:
                return []
            needed = len(batch) - len(self._free)
            if needed > 0:
                if not evict_lru:
                    raise StoreFull(f"piece store {self.path} is full ({self.capacity} pieces)")
                self._evict_lru(min(needed, self._count))
            batch = batch[: len(self._free)]
            slots = [self._free.pop() for _ in batch]
            sums = [piece_digests(view) for _, view in batch]
            try:
                for slot, (_, view) in zip(slots, batch):
                    if os.pwrite(self._data_fd, view, slot * PIECE_SIZE) != PIECE_SIZE:
                        raise OSError("short write")
                os.fdatasync(self._data_fd)
                self._append([log_record(KIND_PUT, s, i, c) for s, (i, _), c in zip(slots, batch, sums)])
            except OSError as exc:
                self._free.extend(slots)
                raise StoreError(f"piece store {self.path}: write failed: {exc}") from None
            for slot, (piece_index, _), checksum in zip(slots, batch, sums):
                self._map(slot, piece_index, np.frombuffer(checksum, dtype=np.uint8))
                self._clock += 1
                self._slot_used[slot] = self._clock
            self.writes += len(batch)
            return [i for i, _ in batch]

    def _evict_lru(self, count: int) -> None:
        used = np.flatnonzero(self._slot_piece >= 0)
        victims = used[np.argsort(self._slot_used[used], kind="stable")[:count]]
        self._remove_slots([int(s) for s in victims])

    def _remove_slots(self, slots: list[int]) -> None:
        records = [log_record(KIND_REMOVE, s, int(self._slot_piece[s]), self._slot_sum[s].tobytes()) for s in slots]
        for slot in slots:
            if self._unmap_slot(slot):
                self._free.append(slot)
        if records:
            self._append(records)

    def remove_many(self, piece_indices: Iterable[int]) -> int:
        """Forget pieces (their slots become free); returns how many were held."""
        with self._lock:
            slots = [s for s in (self._slot(int(i)) for i in piece_indices) if s >= 0]
            self._remove_slots(sorted(set(slots)))
            return len(slots)

    # ---- maintenance

    def scrub(self, progress: Callable[[int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> ScrubReport:
        """Check every held piece's bytes (corrupt ones are dropped, see ``read_into``)."""
        report = ScrubReport(corrupt=[])
        indices = self.piece_indices()
        buffer = bytearray(PIECE_SIZE)
        for n, piece_index in enumerate(indices):
            if should_stop is not None and should_stop():
                break
            if piece_index in self and not self.read_into(int(piece_index), buffer):
                if piece_index not in self:
                    report.corrupt.append(int(piece_index))
            report.checked += 1
            if progress is not None and (n % 256 == 255 or n == len(indices) - 1):
                progress(n + 1, len(indices))
        return report

    def close(self) -> None:
        with self._lock:
            if self._data_fd >= 0:
                os.close(self._data_fd)
                self._data_fd = -1
            if not self._log.closed:
                self._log.close()

    def __enter__(self) -> "PieceStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def memory_bytes(self) -> int:
        """Bytes of the in-memory index (for the resident-memory report)."""
        return (self._slot_piece.nbytes + self._slot_sum.nbytes + self._slot_used.nbytes
                + self._slot_of.nbytes + self._free.nbytes)
