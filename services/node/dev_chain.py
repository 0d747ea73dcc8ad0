"""The dev node's persistent chain state: archived history and authored blocks.

Everything lives in the data directory so a restarted dev node continues where it stopped:

* ``chain.json``         genesis hash and the parameters the chain was created with (a restart
                         with a different ``--history-seed`` is refused);
* ``archiver.state``     the archiver's exact state (checksummed SCALE, written atomically);
* ``segment-headers.jsonl`` one spec-05 JSON ``SegmentHeader`` per archived segment;
* ``segments/NNNNNNNN.pieces``  the 256 pieces of each archived segment, back to back;
* ``blocks.jsonl``       append-only log of every block the node authored (spec 05 JSON
                         solution + reward signature), for auditing.

Archiving is CPU-heavy (tens of seconds per segment): :meth:`DevChain.archive_next_segment` is
blocking and meant to run in a worker process (``dev_archive_worker``), split over the
``workers`` the chain was given; other methods are cheap and thread-safe.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable

from services.node import dev_history
from services.protocol.archiver import ArchivedSegment, Archiver
from services.protocol.constants import NUM_PIECES, PIECE_SIZE
from services.protocol.parallel import Workers
from services.protocol.pieces import Piece
from services.protocol.segments import SegmentHeader

CHAIN_FILE = "chain.json"
ARCHIVER_STATE_FILE = "archiver.state"
SEGMENT_HEADERS_FILE = "segment-headers.jsonl"
SEGMENTS_DIR = "segments"
BLOCKS_FILE = "blocks.jsonl"


class ChainStateError(ValueError):
    """The data directory holds state that does not fit this dev node's configuration."""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _append_line(path: Path, obj: object) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_jsonl(path: Path) -> list:
    if not path.exists():
        return []
    items = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                items.append(json.loads(line))
            except ValueError:
                # A torn last line after a crash is dropped; anything earlier is corruption.
                if f.readline():
                    raise ChainStateError(f"{path}: line {line_no} is not valid JSON") from None
    return items


class DevChain:
    """Archived history + authored blocks of one dev chain in ``data_dir``."""

    def __init__(self, data_dir: str | Path, history_seed: str, kzg, erasure_coding, chain_params: dict,  # noqa: ANN001
                 workers: Workers | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.history_seed = history_seed
        self.genesis_hash = dev_history.genesis_hash(history_seed)
        self._kzg = kzg
        self._erasure = erasure_coding
        self._workers = workers
        self._lock = threading.Lock()
        (self.data_dir / SEGMENTS_DIR).mkdir(parents=True, exist_ok=True)
        self._check_chain_file(chain_params)
        self.segment_headers: list[SegmentHeader] = [
            SegmentHeader.from_json(item) for item in _read_jsonl(self.data_dir / SEGMENT_HEADERS_FILE)
        ]
        for i, header in enumerate(self.segment_headers):
            if header.segment_index != i:
                raise ChainStateError(f"{SEGMENT_HEADERS_FILE}: entry {i} has segment index {header.segment_index}")
        self.blocks: list[dict] = _read_jsonl(self.data_dir / BLOCKS_FILE)
        self._archiver = self._load_archiver()

    def _check_chain_file(self, chain_params: dict) -> None:
        path = self.data_dir / CHAIN_FILE
        expected = {"genesisHash": self.genesis_hash.hex(), "historySeed": self.history_seed, **chain_params}
        if path.exists():
            stored = json.loads(path.read_text())
            if stored.get("genesisHash") != expected["genesisHash"]:
                raise ChainStateError(
                    f"data dir {self.data_dir} holds chain {stored.get('genesisHash')} (seed "
                    f"{stored.get('historySeed')!r}), not the chain of seed {self.history_seed!r}"
                )
            for key, value in chain_params.items():
                if key in stored and stored[key] != value:
                    raise ChainStateError(
                        f"data dir {self.data_dir} was created with {key}={stored[key]!r}, now {value!r}"
                    )
        else:
            _atomic_write(path, json.dumps(expected, indent=2).encode())

    def _load_archiver(self) -> Archiver:
        path = self.data_dir / ARCHIVER_STATE_FILE
        if path.exists():
            archiver = Archiver.from_state(self._kzg, self._erasure, path.read_bytes(), self._workers)
            stored = len(self.segment_headers)
            if stored == archiver.segment_index + 1:
                # Stopped between recording a header and saving the archiver state: history is
                # deterministic, so forget that header and archive the segment again.
                self.segment_headers.pop()
                lines = [json.dumps(h.to_json(), separators=(",", ":")) + "\n" for h in self.segment_headers]
                _atomic_write(self.data_dir / SEGMENT_HEADERS_FILE, "".join(lines).encode())
            elif stored != archiver.segment_index:
                raise ChainStateError(
                    f"archiver state is at segment {archiver.segment_index} but {stored} segment headers are stored"
                )
            return archiver
        if len(self.segment_headers) == 1:
            self.segment_headers.clear()  # stopped before the first state save: start over
            (self.data_dir / SEGMENT_HEADERS_FILE).unlink()
        elif self.segment_headers:
            raise ChainStateError(f"{ARCHIVER_STATE_FILE} is missing while segment headers exist")
        return Archiver(self._kzg, self._erasure, self._workers)

    # ---- history

    @property
    def segments_archived(self) -> int:
        return len(self.segment_headers)

    @property
    def history_size(self) -> int:
        """``last archived segment index + 1`` (spec 05 §2); 1 before anything is archived."""
        return max(1, len(self.segment_headers))

    def segment_header(self, index: int) -> SegmentHeader | None:
        return self.segment_headers[index] if 0 <= index < len(self.segment_headers) else None

    def segment_commitment(self, index: int) -> bytes | None:
        header = self.segment_header(index)
        return None if header is None else header.segment_commitment

    def archive_next_segment(self, progress: Callable[[str], None] | None = None) -> ArchivedSegment:
        """Feed synthetic history blocks until the next segment is archived (blocking, slow)."""
        with self._lock:
            target = self._archiver.segment_index
            while True:
                number = self._archiver.next_block_number
                segments = self._archiver.add_block(dev_history.history_block(self.history_seed, number), number)
                if segments:
                    break
                if progress is not None and number % 32 == 0:
                    progress(f"segment {target}: {self._archiver.buffered_size() >> 20} MiB of history buffered")
            for segment in segments:
                self._store_segment(segment)
            return segments[-1]

    def _store_segment(self, segment: ArchivedSegment) -> None:
        index = segment.header.segment_index
        path = self.data_dir / SEGMENTS_DIR / f"{index:08d}.pieces"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for piece in segment.pieces:
                f.write(bytes(piece))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # Header first, state last: a stop in between is repaired on load (see _load_archiver).
        _append_line(self.data_dir / SEGMENT_HEADERS_FILE, segment.header.to_json())
        self.segment_headers.append(segment.header)
        _atomic_write(self.data_dir / ARCHIVER_STATE_FILE, self._archiver.to_state())

    def record_archived_segment(self, header: SegmentHeader) -> None:
        """Adopt a segment archived by another process (the archive worker) into this view."""
        with self._lock:
            if header.segment_index != len(self.segment_headers):
                raise ChainStateError(
                    f"archived segment {header.segment_index} does not follow the {len(self.segment_headers)} known"
                )
            self.segment_headers.append(header)

    def read_piece(self, piece_index: int) -> Piece | None:
        """Any archived piece (from its segment file), or None if not archived."""
        segment_index, position = divmod(piece_index, NUM_PIECES)
        if segment_index >= len(self.segment_headers):
            return None
        path = self.data_dir / SEGMENTS_DIR / f"{segment_index:08d}.pieces"
        with open(path, "rb") as f:
            f.seek(position * PIECE_SIZE)
            data = f.read(PIECE_SIZE)
        if len(data) != PIECE_SIZE:
            raise ChainStateError(f"{path} is truncated (piece {position} missing)")
        return Piece(data)

    # ---- blocks

    @property
    def height(self) -> int:
        return len(self.blocks)

    @property
    def best_hash(self) -> bytes:
        return bytes.fromhex(self.blocks[-1]["hash"]) if self.blocks else self.genesis_hash

    def append_block(self, record: dict) -> None:
        with self._lock:
            _append_line(self.data_dir / BLOCKS_FILE, record)
            self.blocks.append(record)
