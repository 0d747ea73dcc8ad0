"""A complete copy of archived history on disk: the directory ``autonomys-export-piece`` writes
(``full-cache-tmp/``) and the full-piece cache serves from.

Why its own layout (not :class:`~services.cache.store.PieceStore` slots): the exporter produces
whole segments in order and the manual has the operator point the full-piece cache at that very
directory, so the export format *is* the store: one file per segment, the piece at
``position * PIECE_SIZE``. What the exporter and the cache learn about the pieces lives in two
logs beside them::

    export.json              {"format": 1, "kind": "autonomys-history-export"}
    segment-headers.jsonl    spec-05 JSON SegmentHeader per exported segment, in order
    segments/NNNNNNNNNN.pieces   256 pieces back to back (written to a temp name, then renamed)
    archiver.state           exporter's archiver state after the last complete segment (resume)
    verified.log             index-log records (``services.cache.store`` format): piece index
                             + BLAKE3 and xxh3-128 of bytes that passed the segment-commitment check,
                             or a "remove" record for a piece found bad

On open, the verified records are replayed (no piece data is read); pieces without a record are
"unverified" and are not served until the owner checks them (:meth:`unverified`,
:meth:`mark_verified`). Every read recomputes the checksum, so a piece damaged on disk after it
was verified is dropped (``corrupt`` counter) and never served; :meth:`write_piece` repairs it.
Memory: 49 bytes per piece of history.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from services.cache.store import (
    KIND_PUT,
    KIND_REMOVE,
    OpenReport,
    StoreError,
    atomic_write,
    log_record,
    DIGESTS_SIZE,
    piece_digests,
    read_check,
    read_log,
    LOG_HEADER,
)
from services.protocol.constants import NUM_PIECES, PIECE_SIZE
from services.protocol.segments import SegmentHeader

EXPORT_FILE = "export.json"
HEADERS_FILE = "segment-headers.jsonl"
SEGMENTS_DIR = "segments"
ARCHIVER_STATE_FILE = "archiver.state"
VERIFIED_LOG = "verified.log"
EXPORT_KIND = "autonomys-history-export"
SEGMENT_BYTES = NUM_PIECES * PIECE_SIZE
UNVERIFIED, VERIFIED, BAD = 0, 1, 2


def segment_file_name(segment_index: int) -> str:
    return f"{segment_index:010d}.pieces"


def read_headers(path: Path) -> list[SegmentHeader]:
    """Headers of ``segment-headers.jsonl`` (a torn last line is ignored)."""
    headers: list[SegmentHeader] = []
    if not path.exists():
        return headers
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            header = SegmentHeader.from_json(json.loads(line))
        except ValueError:
            if n == len(lines) - 1:
                break
            raise StoreError(f"{path}: line {n + 1} is not a segment header") from None
        if header.segment_index != len(headers):
            raise StoreError(f"{path}: line {n + 1} holds segment {header.segment_index}, expected {len(headers)}")
        headers.append(header)
    return headers


def write_headers(path: Path, headers: Sequence[SegmentHeader]) -> None:
    atomic_write(path, "".join(json.dumps(h.to_json(), separators=(",", ":")) + "\n" for h in headers).encode())


class HistoryStore:
    """Segments of history in an export directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        meta = self.path / EXPORT_FILE
        if not meta.exists():
            if not create:
                raise StoreError(f"{self.path} is not a history export ({EXPORT_FILE} missing; "
                                 "run autonomys-export-piece to create one)")
            (self.path / SEGMENTS_DIR).mkdir(parents=True, exist_ok=True)
            atomic_write(meta, json.dumps({"format": 1, "kind": EXPORT_KIND}).encode())
        else:
            try:
                kind = json.loads(meta.read_text()).get("kind")
            except ValueError:
                kind = None
            if kind != EXPORT_KIND:
                raise StoreError(f"{meta} does not describe a history export")
            (self.path / SEGMENTS_DIR).mkdir(exist_ok=True)
        headers_path = self.path / HEADERS_FILE
        self.headers = read_headers(headers_path)
        raw = headers_path.read_bytes() if headers_path.exists() else b""
        if raw.count(b"\n") != len(self.headers) or (raw and not raw.endswith(b"\n")):
            write_headers(headers_path, self.headers)  # drop a torn last line before appending
        self.segments = self._complete_segments()
        self._state = np.zeros(self.segments * NUM_PIECES, dtype=np.uint8)
        self._sums = np.zeros((self.segments * NUM_PIECES, DIGESTS_SIZE), dtype=np.uint8)
        self.corrupt = 0
        self.report = OpenReport()
        log_path = self.path / VERIFIED_LOG
        for kind, _, index, checksum in read_log(log_path, self.report):
            if index >= len(self._state):
                continue  # a segment that is gone (truncated export): forget
            if kind == KIND_PUT:
                self._state[index] = VERIFIED
                self._sums[index] = np.frombuffer(checksum, dtype=np.uint8)
            elif kind == KIND_REMOVE:
                self._state[index] = BAD
        if not log_path.exists() or self.report.bad_records or self.report.torn_bytes:
            self._rewrite_log()
        self._log = open(log_path, "ab", buffering=0)
        self._fds: dict[int, int] = {}

    def _complete_segments(self) -> int:
        """Segments with a header and a full-size piece file, from 0 without gaps."""
        count = 0
        for header in self.headers:
            file = self.path / SEGMENTS_DIR / segment_file_name(header.segment_index)
            if not file.exists() or file.stat().st_size != SEGMENT_BYTES:
                break
            count += 1
        return count

    def _rewrite_log(self) -> None:
        parts = [LOG_HEADER]
        for index in np.flatnonzero(self._state == VERIFIED):
            parts.append(log_record(KIND_PUT, 0, int(index), self._sums[index].tobytes()))
        for index in np.flatnonzero(self._state == BAD):
            parts.append(log_record(KIND_REMOVE, 0, int(index), bytes(DIGESTS_SIZE)))
        atomic_write(self.path / VERIFIED_LOG, b"".join(parts))

    # ---- queries

    @property
    def pieces(self) -> int:
        """Pieces of history on disk (verified or not)."""
        return self.segments * NUM_PIECES

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = np.bincount(self._state, minlength=3)
        return {"verified": int(states[VERIFIED]), "unverified": int(states[UNVERIFIED]), "bad": int(states[BAD])}

    def __len__(self) -> int:
        return self.counts()["verified"]

    def contains_many(self, piece_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        indices = np.asarray(piece_indices, dtype=np.int64).reshape(-1)
        with self._lock:
            inside = (indices >= 0) & (indices < len(self._state))
            out = np.zeros(indices.shape[0], dtype=bool)
            out[inside] = self._state[indices[inside]] == VERIFIED
        return out

    def __contains__(self, piece_index: int) -> bool:
        return bool(self.contains_many([piece_index])[0])

    def unverified(self) -> np.ndarray:
        with self._lock:
            return np.flatnonzero(self._state == UNVERIFIED)

    def bad(self) -> np.ndarray:
        with self._lock:
            return np.flatnonzero(self._state == BAD)

    # ---- reads

    def _fd(self, segment_index: int) -> int:
        fd = self._fds.get(segment_index)
        if fd is None:
            fd = os.open(self.path / SEGMENTS_DIR / segment_file_name(segment_index), os.O_RDWR)
            self._fds[segment_index] = fd
        return fd

    def read_raw(self, piece_index: int, buffer: memoryview | bytearray, nowait: bool = False) -> bool:
        """Piece bytes from disk whatever their state (for checking unverified pieces); with
        ``nowait`` only from the page cache (``BlockingIOError`` otherwise)."""
        view = memoryview(buffer).cast("B")
        segment_index, position = divmod(int(piece_index), NUM_PIECES)
        if not 0 <= segment_index < self.segments:
            return False
        with self._lock:
            fd = self._fd(segment_index)
        got = os.preadv(fd, [view], position * PIECE_SIZE, os.RWF_NOWAIT if nowait else 0)
        if nowait and got < PIECE_SIZE:
            raise BlockingIOError("piece not (all) in the page cache")
        return got == PIECE_SIZE

    def read_into(self, piece_index: int, buffer: memoryview | bytearray) -> bool:
        """A verified piece into ``buffer`` after re-checking its checksum (False if not held)."""
        return self._read_checked(piece_index, buffer) is not None

    def read_piece(self, piece_index: int, nowait: bool = False) -> tuple[bytearray, bytes] | None:
        """``(fresh buffer with the piece, its BLAKE3)`` after checking it, or None (``nowait``:
        see :meth:`PieceStore.read_piece <services.cache.store.PieceStore.read_piece>`)."""
        buffer = bytearray(PIECE_SIZE)
        digest = self._read_checked(piece_index, buffer, nowait)
        return None if digest is None else (buffer, digest)

    def _read_checked(self, piece_index: int, buffer: memoryview | bytearray, nowait: bool = False) -> bytes | None:
        index = int(piece_index)
        with self._lock:
            if not 0 <= index < len(self._state) or self._state[index] != VERIFIED:
                return None
            expected = self._sums[index].tobytes()
        if self.read_raw(index, buffer, nowait) and read_check(memoryview(buffer).cast("B"), expected):
            return expected[:32]
        with self._lock:
            if self._state[index] == VERIFIED and self._sums[index].tobytes() == expected:
                self.mark_verified([(index, None)])
                self.corrupt += 1
        return None

    def get(self, piece_index: int) -> bytes | None:
        buffer = bytearray(PIECE_SIZE)
        return bytes(buffer) if self.read_into(piece_index, buffer) else None

    # ---- writes

    def _mark(self, index: int, state: int, checksum: bytes = bytes(DIGESTS_SIZE)) -> bytes:
        self._state[index] = state
        if state == VERIFIED:
            self._sums[index] = np.frombuffer(checksum, dtype=np.uint8)
        return log_record(KIND_PUT if state == VERIFIED else KIND_REMOVE, 0, index, checksum)

    def mark_verified(self, results: Iterable[tuple[int, bytes | None]]) -> None:
        """Record checks: ``(piece_index, piece_digests(bytes that passed))`` or
        ``(piece_index, None)`` for a piece that failed."""
        with self._lock:
            records = [self._mark(int(i), VERIFIED if c is not None else BAD, c or bytes(DIGESTS_SIZE)) for i, c in results]
            if records:
                self._log.write(b"".join(records))
                os.fdatasync(self._log.fileno())

    def write_piece(self, piece_index: int, data: bytes | memoryview) -> None:
        """Replace one piece in place (repair) and record it verified (checked by the caller)."""
        segment_index, position = divmod(int(piece_index), NUM_PIECES)
        if not 0 <= segment_index < self.segments:
            raise StoreError(f"piece {piece_index} is outside the {self.segments} exported segments")
        with self._lock:
            fd = self._fd(segment_index)
            os.pwrite(fd, data, position * PIECE_SIZE)
            os.fdatasync(fd)
            self.mark_verified([(int(piece_index), piece_digests(data))])

    def add_segment(self, header: SegmentHeader, pieces: Sequence[bytes | memoryview],
                    verified: bool = False) -> None:
        """Append the next segment (its 256 pieces), durably: pieces file, then header line."""
        if header.segment_index != self.segments:
            raise StoreError(f"segment {header.segment_index} does not follow the {self.segments} exported")
        if len(pieces) != NUM_PIECES or any(len(p) != PIECE_SIZE for p in pieces):
            raise StoreError(f"segment {header.segment_index}: expected {NUM_PIECES} pieces of {PIECE_SIZE} bytes")
        final = self.path / SEGMENTS_DIR / segment_file_name(header.segment_index)
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for piece in pieces:
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        with self._lock:
            if len(self.headers) > header.segment_index:  # stale lines from an interrupted run
                self.truncate_headers(header.segment_index)
            with open(self.path / HEADERS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(header.to_json(), separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.headers.append(header)
            self.segments += 1
            self._state = np.concatenate([self._state, np.zeros(NUM_PIECES, dtype=np.uint8)])
            self._sums = np.concatenate([self._sums, np.zeros((NUM_PIECES, DIGESTS_SIZE), dtype=np.uint8)])
        if verified:
            first = header.segment_index * NUM_PIECES
            self.mark_verified((first + k, piece_digests(p)) for k, p in enumerate(pieces))

    def truncate_headers(self, count: int) -> None:
        """Forget headers past ``count`` (exporter resume after a crash between files)."""
        with self._lock:
            if count < len(self.headers):
                self.headers = self.headers[:count]
                write_headers(self.path / HEADERS_FILE, self.headers)
                self.segments = min(self.segments, count)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            if not self._log.closed:
                self._log.close()

    def __enter__(self) -> "HistoryStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
