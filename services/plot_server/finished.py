"""Finished sectors waiting under the plot-server's BASE_PATH until their plot-client has them.

Why on disk and not in RAM: a plot-server plots faster than a slow plot disk writes, and the
official cluster's known failure is to pile finished sectors up in memory. Here a finished
sector goes to ``BASE_PATH/<job_id>.sector`` as it is produced (window by window), the plot-
client downloads any byte range of it (resumable), and the count of sectors waiting is what
the job loop's backpressure looks at.

Files: ``<job_id>.partial`` while being written (fsynced and renamed to ``<job_id>.sector`` when
complete), so a crash never leaves something that looks finished. ``clear()`` at start removes
what a previous run left: its jobs were not acked, so they are redelivered (here or elsewhere)
and plotted again from scratch.

Blocking file I/O: call from a thread.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from services.bus.message import check_token

PARTIAL_SUFFIX = ".partial"
FINISHED_SUFFIX = ".sector"
LOCK_FILE = ".plot-server.lock"


class FinishedSectorError(Exception):
    """A finished sector is unknown, incomplete, or a range lies outside it."""


class SectorFileWriter:
    """Appends a sector's bytes to its ``.partial`` file; ``finish()`` makes it readable."""

    def __init__(self, store: "FinishedSectors", job_id: str, size: int) -> None:
        self.store = store
        self.job_id = job_id
        self.size = size
        self.written = 0
        self.path = store.base / (job_id + PARTIAL_SUFFIX)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, data) -> None:  # noqa: ANN001 - any buffer
        view = memoryview(data).cast("B")
        if self.written + view.nbytes > self.size:
            raise FinishedSectorError(f"sector {self.job_id}: {self.written + view.nbytes} bytes exceed its {self.size}")
        while view.nbytes:
            count = os.write(self._fd, view)
            view = view[count:]
            self.written += count

    def finish(self) -> None:
        if self.written != self.size:
            raise FinishedSectorError(f"sector {self.job_id}: {self.written} of {self.size} bytes written")
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.replace(self.path, self.store.base / (self.job_id + FINISHED_SUFFIX))
        self.store._finished(self.job_id, self.size)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.path.unlink(missing_ok=True)


class FinishedSectors:
    """The finished sectors of one plot-server (one BASE_PATH per process)."""

    def __init__(self, base: str | Path) -> None:
        self.base = Path(base)
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._lock_fd = -1

    def lock(self) -> None:
        """Take BASE_PATH for this process (an exclusive ``flock``): two plot-servers on one
        BASE_PATH would delete each other's sectors. Raises FinishedSectorError when taken."""
        fd = os.open(self.base / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FinishedSectorError(f"BASE_PATH {self.base} is in use by another plot-server") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def clear(self) -> list[str]:
        """Remove what a previous run left (returns the file names removed)."""
        removed = []
        for path in self.base.iterdir():
            if path.is_file() and path.suffix in (PARTIAL_SUFFIX, FINISHED_SUFFIX):
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def writer(self, job_id: str, size: int) -> SectorFileWriter:
        check_token(job_id)  # job ids are file names here: no separators
        if "/" in job_id or job_id.startswith("."):
            raise FinishedSectorError(f"job id {job_id!r} cannot name a file")
        return SectorFileWriter(self, job_id, size)

    def _finished(self, job_id: str, size: int) -> None:
        with self._lock:
            self._sizes[job_id] = size

    def size(self, job_id: str) -> int | None:
        with self._lock:
            return self._sizes.get(job_id)

    @property
    def waiting(self) -> int:
        """Finished sectors not yet taken by their plot-client."""
        with self._lock:
            return len(self._sizes)

    @property
    def waiting_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def read(self, job_id: str, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)`` of a finished sector."""
        size = self.size(job_id)
        if size is None:
            raise FinishedSectorError(f"no finished sector for job {job_id}")
        if offset < 0 or length < 0 or offset + length > size:
            raise FinishedSectorError(f"range {offset}+{length} outside sector {job_id} of {size} bytes")
        with open(self.base / (job_id + FINISHED_SUFFIX), "rb", buffering=0) as file:
            data = os.pread(file.fileno(), length, offset)
        if len(data) != length:
            raise FinishedSectorError(f"sector file of {job_id} is shorter than {offset + length} bytes")
        return data

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._sizes.pop(job_id, None)
        (self.base / (job_id + FINISHED_SUFFIX)).unlink(missing_ok=True)
        (self.base / (job_id + PARTIAL_SUFFIX)).unlink(missing_ok=True)
