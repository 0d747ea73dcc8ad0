"""Sidecar journal of sector writes in progress (``sector_writes.journal``).

A sector is rewritten in place in ``plot.bin`` and its metadata lives elsewhere
(``metadata.bin``), so no single write makes a new sector appear atomically. The farm therefore
records "sector i is being written" here (durably) before touching the sector, and removes the
record only after the new metadata is on disk. On the next start every sector still named here
was interrupted: unless its metadata and sector checksum prove the write completed, it becomes a
sector to replot. The reference farmer ignores this file, and a sector being rewritten already
carries the reference's own "dummy" metadata (history size 1, no s-buckets), which makes the
reference farmer treat it as expired too.

Format: JSON ``{"version": 1, "writing": [sector_index, ...]}``, replaced atomically; the file
is removed when nothing is being written.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from services.farm.files import atomic_write, fsync_directory
from services.farm.layout import JOURNAL_FILE, FarmError

JOURNAL_VERSION = 1


class SectorWriteJournal:
    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / JOURNAL_FILE
        self._lock = threading.Lock()
        self._writing: set[int] = set()

    def load(self) -> set[int]:
        """Sector indexes a previous run left half-written (also kept as the current set)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return set()
        try:
            value = json.loads(data)
            if value.get("version") != JOURNAL_VERSION:
                raise ValueError(f"unsupported version {value.get('version')!r}")
            indexes = {int(i) for i in value["writing"]}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FarmError(f"{self.path} is damaged ({exc}); remove it only if no sector write was interrupted") from None
        with self._lock:
            self._writing = set(indexes)
        return indexes

    @property
    def writing(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._writing)

    def begin(self, sector_index: int) -> None:
        with self._lock:
            if sector_index in self._writing:
                raise FarmError(f"sector {sector_index} is already being written")
            self._writing.add(sector_index)
            self._store()

    def end(self, sector_index: int) -> None:
        with self._lock:
            self._writing.discard(sector_index)
            self._store()

    def clear(self) -> None:
        with self._lock:
            self._writing.clear()
            self._store()

    def _store(self) -> None:
        if self._writing:
            body = json.dumps({"version": JOURNAL_VERSION, "writing": sorted(self._writing)}).encode()
            atomic_write(self.path, body)
        elif self.path.exists():
            self.path.unlink()
            fsync_directory(self.path.parent)
