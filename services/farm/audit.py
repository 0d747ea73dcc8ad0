"""Auditing a whole plot in one slot: one s-bucket read per sector, hashed in batches.

Per slot every plotted sector is audited (spec 04 §2): its sector slot challenge names one
s-bucket, whose chunks are read from ``plot.bin`` and hashed with keyed BLAKE3. For a plot of
thousands of sectors the per-sector Python cost must stay at a few microseconds, so everything
that can be is done on arrays for all sectors at once:

* :class:`AuditTable` keeps, per sector slot of the plot, the sector id, the s-bucket sizes
  (the ``SectorMetadata`` field, one ``(sectors, 65536)`` uint16 matrix) and coarse prefix sums
  every 256 s-buckets, so an s-bucket's offset costs at most 255 additions (numba);
* the s-buckets are hashed where they lie, in an mmap of ``plot.bin``, by one GIL-free numba
  call per batch of sectors (:func:`services.protocol.auditing.audit_chunk_ranges`): no copy
  and no Python per chunk; batches run on the caller's executor, and before hashing a batch the
  kernel is asked for all of its s-buckets at once (``POSIX_FADV_WILLNEED``), so a plot that is
  not in the page cache is read with many requests in flight, not one page fault at a time;
* winners (distance ``<= solution_range / 2``) are grouped back per sector into
  :class:`~services.protocol.auditing.SectorAuditResult` (candidates best first, ties by chunk
  offset), sectors ordered by their best distance, exactly what the protocol's ``audit_plot``
  returns for the same sectors.

Sector states change while audits run (a sector being replotted stops being audited): every
row has a generation number, :meth:`AuditTable.audit` returns the generation each result was
read under, and results of rows that changed meanwhile are dropped.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from numba import njit

from services.protocol.auditing import AuditCandidate, SectorAuditResult, audit_chunk_ranges
from services.protocol.constants import RECORD_NUM_S_BUCKETS, SCALAR_FULL_BYTES
from services.protocol.sector import sector_contents_map_size
from services.protocol.validation import U64_MAX

COARSE_STEP = 256
COARSE_GROUPS = RECORD_NUM_S_BUCKETS // COARSE_STEP


@njit(cache=True, nogil=True)
def _locate_s_buckets(sizes, coarse, rows, s_buckets, chunk_offsets, chunk_counts):
    """Chunk offset (inside the chunks region) and chunk count of s-bucket ``s_buckets[j]`` of
    sector row ``rows[j]``."""
    for j in range(rows.shape[0]):
        i = rows[j]
        s = s_buckets[j]
        group = s >> 8
        total = np.int64(coarse[i, group])
        for b in range(group << 8, s):
            total += sizes[i, b]
        chunk_offsets[j] = total
        chunk_counts[j] = sizes[i, s]


@dataclass(frozen=True)
class AuditedSector:
    """One sector's audit result with the row generation it was read under."""

    result: SectorAuditResult
    generation: int


class AuditTable:
    """What auditing needs of every sector slot of one plot (see module docstring)."""

    def __init__(self, capacity: int, pieces_in_sector: int, sector_size: int) -> None:
        self.capacity = capacity
        self.pieces_in_sector = pieces_in_sector
        self.sector_size = sector_size
        self.contents_map_size = sector_contents_map_size(pieces_in_sector)
        self.sizes = np.zeros((capacity, RECORD_NUM_S_BUCKETS), dtype=np.uint16)
        self.coarse = np.zeros((capacity, COARSE_GROUPS), dtype=np.uint32)
        self.sector_ids = np.zeros((capacity, 32), dtype=np.uint8)
        self.active = np.zeros(capacity, dtype=bool)
        self.generations = np.zeros(capacity, dtype=np.uint64)
        self._lock = threading.Lock()
        self._rows = np.zeros(0, dtype=np.int64)

    # ---- state

    def activate(self, row: int, sector_id: bytes, s_bucket_sizes: np.ndarray) -> None:
        """Audit ``row`` from now on, with this sector id and s-bucket sizes."""
        sizes = np.asarray(s_bucket_sizes, dtype=np.uint16)
        with self._lock:
            self.active[row] = False
            self.generations[row] += 1
            self.sizes[row] = sizes
            totals = np.cumsum(sizes.reshape(COARSE_GROUPS, COARSE_STEP).sum(axis=1, dtype=np.int64))
            self.coarse[row, 0] = 0
            self.coarse[row, 1:] = totals[:-1]
            self.sector_ids[row] = np.frombuffer(sector_id, dtype=np.uint8)
            self.active[row] = True
            self._rows = np.flatnonzero(self.active)

    def deactivate(self, row: int) -> None:
        with self._lock:
            self.active[row] = False
            self.generations[row] += 1
            self.sizes[row] = 0
            self.coarse[row] = 0
            self._rows = np.flatnonzero(self.active)

    def generation(self, row: int) -> int:
        with self._lock:
            return int(self.generations[row])

    def active_rows(self) -> np.ndarray:
        with self._lock:
            return self._rows

    # ---- auditing

    def audit(
        self,
        plot_words: np.ndarray,
        global_challenge: bytes,
        solution_range: int,
        executor: Executor | None = None,
        batches: int | None = None,
        prefetch_fd: int | None = None,
    ) -> list[AuditedSector]:
        """Audit every active sector; winners only, best distance first.

        ``plot_words``: the plot file as little-endian u32 words (an mmap: the kernel reads the
        page cache in place). ``prefetch_fd``: the plot's descriptor, to ask the kernel for every
        audited s-bucket of a batch at once (``POSIX_FADV_WILLNEED``) before hashing it, so a
        plot that is not in memory is read with many requests in flight.
        """
        if len(global_challenge) != 32:
            raise ValueError(f"global challenge must be 32 bytes, got {len(global_challenge)}")
        if not 0 <= solution_range <= U64_MAX:
            raise ValueError(f"solution range must be a u64, got {solution_range}")
        with self._lock:
            rows = self._rows
            generations = self.generations[rows].copy()
        if rows.size == 0:
            return []
        challenge = np.frombuffer(global_challenge, dtype=np.uint8)
        keys = self.sector_ids[rows] ^ challenge
        s_buckets = keys[:, 0].astype(np.int64) | (keys[:, 1].astype(np.int64) << 8)
        chunk_offsets = np.empty(rows.size, dtype=np.int64)
        chunk_counts = np.empty(rows.size, dtype=np.int64)
        _locate_s_buckets(self.sizes, self.coarse, rows, s_buckets, chunk_offsets, chunk_counts)
        byte_offsets = rows * self.sector_size + self.contents_map_size + SCALAR_FULL_BYTES * chunk_offsets

        workers = getattr(executor, "_max_workers", 1) if executor is not None else 1
        count = max(1, min(rows.size, batches or 4 * workers))
        bounds = np.linspace(0, rows.size, count + 1).astype(np.int64)
        jobs = [
            (plot_words, byte_offsets[a:b], chunk_counts[a:b], keys[a:b], global_challenge, solution_range,
             int(a), prefetch_fd)
            for a, b in zip(bounds[:-1], bounds[1:]) if b > a
        ]  # fmt: skip
        if executor is None or len(jobs) == 1:
            found = [_audit_batch(*job) for job in jobs]
        else:
            found = list(executor.map(_audit_batch_star, jobs))
        positions = np.concatenate([f[0] for f in found])
        if positions.size == 0:
            return []
        in_bucket = np.concatenate([f[1] for f in found])
        distances = np.concatenate([f[2] for f in found])

        with self._lock:  # drop sectors whose row changed while we read it
            unchanged = self.generations[rows] == generations
        order = np.lexsort((in_bucket, distances, positions))  # by sector, then distance, then offset
        positions, in_bucket, distances = positions[order], in_bucket[order], distances[order]
        starts = np.flatnonzero(np.r_[True, positions[1:] != positions[:-1]])
        ends = np.r_[starts[1:], positions.size]
        results = []
        for start, end in zip(starts.tolist(), ends.tolist()):
            position = int(positions[start])
            if not unchanged[position]:
                continue
            row = int(rows[position])
            candidates = tuple(
                AuditCandidate(int(o), int(d)) for o, d in zip(in_bucket[start:end].tolist(), distances[start:end].tolist())
            )
            result = SectorAuditResult(row, self.sector_ids[row].tobytes(), int(s_buckets[position]), candidates)
            results.append(AuditedSector(result, int(generations[position])))
        results.sort(key=lambda audited: audited.result.best_distance)
        return results


def _audit_batch_star(job: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _audit_batch(*job)


def _audit_batch(
    plot_words: np.ndarray,
    byte_offsets: np.ndarray,
    chunk_counts: np.ndarray,
    keys: np.ndarray,
    global_challenge: bytes,
    solution_range: int,
    first_position: int,
    prefetch_fd: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Audit the s-buckets of a run of sectors; winners as (position, chunk offset in the
    s-bucket, distance)."""
    if prefetch_fd is not None:
        for offset, count in zip(byte_offsets.tolist(), chunk_counts.tolist()):
            if count:
                os.posix_fadvise(prefetch_fd, offset, count * SCALAR_FULL_BYTES, os.POSIX_FADV_WILLNEED)
    ranges, in_bucket, distances = audit_chunk_ranges(
        plot_words, byte_offsets // 4, chunk_counts, keys, global_challenge, solution_range
    )
    return ranges + first_position, in_bucket, distances
