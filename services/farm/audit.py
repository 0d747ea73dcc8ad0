"""Auditing a whole plot in one slot: one s-bucket read per sector, hashed in batches.

Per slot every plotted sector is audited (spec 04 §2): its sector slot challenge names one
s-bucket, whose chunks are read from ``plot.bin`` and hashed with keyed BLAKE3. For a plot of
thousands of sectors the per-sector Python cost must stay at a few microseconds, so everything
that can be is done on arrays for all sectors at once:

* :class:`AuditTable` keeps, per sector slot of the plot, the sector id, the s-bucket sizes
  (the ``SectorMetadata`` field, one ``(sectors, 65536)`` uint16 matrix) and coarse prefix sums
  every 256 s-buckets, so an s-bucket's offset costs at most 255 additions (numba);
* the s-bucket reads are ``os.preadv`` calls straight into one reusable buffer per thread,
  spread over the caller's executor (positional reads release the GIL, so a thread pool keeps
  several reads in flight on NVMe); each batch is hashed in one numba call
  (:func:`services.protocol.auditing.audit_values_keyed`, also GIL-free);
* winners (distance ``<= solution_range / 2``) are grouped back per sector into
  :class:`~services.protocol.auditing.SectorAuditResult` (candidates best first, ties by chunk
  offset), sectors ordered by their best distance, exactly what the protocol's ``audit_plot``
  returns for the same sectors.

Sector states change while audits run (a sector being replotted stops being audited): every
row has a generation number, :meth:`AuditTable.audit` returns the generation each result was
read under, and results of rows that changed meanwhile are dropped.
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from numba import njit

from services.farm.files import read_into_at
from services.protocol.auditing import AuditCandidate, SectorAuditResult, audit_values_keyed
from services.protocol.constants import RECORD_NUM_S_BUCKETS, SCALAR_FULL_BYTES
from services.protocol.sector import sector_contents_map_size
from services.protocol.validation import U64_MAX

COARSE_STEP = 256
COARSE_GROUPS = RECORD_NUM_S_BUCKETS // COARSE_STEP
_THREAD_BUFFERS = threading.local()


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
        plot_fd: int,
        global_challenge: bytes,
        solution_range: int,
        executor: Executor | None = None,
        batches: int | None = None,
    ) -> list[AuditedSector]:
        """Audit every active sector; winners only, best distance first."""
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
        file_offsets = rows * self.sector_size + self.contents_map_size + SCALAR_FULL_BYTES * chunk_offsets
        g = np.uint64(int.from_bytes(global_challenge[:8], "little"))
        half_range = np.uint64(solution_range // 2)

        workers = getattr(executor, "_max_workers", 1) if executor is not None else 1
        count = max(1, min(rows.size, batches or 4 * workers))
        bounds = np.linspace(0, rows.size, count + 1).astype(np.int64)
        jobs = [
            (plot_fd, file_offsets[a:b], chunk_counts[a:b], keys[a:b], g, half_range, int(a))
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


def _thread_buffer(size: int) -> np.ndarray:
    buffer = getattr(_THREAD_BUFFERS, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(max(size, 1 << 20), dtype=np.uint8)
        _THREAD_BUFFERS.buffer = buffer
    return buffer[:size]


def _audit_batch_star(job: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _audit_batch(*job)


def _audit_batch(
    fd: int,
    file_offsets: np.ndarray,
    chunk_counts: np.ndarray,
    keys: np.ndarray,
    g: np.uint64,
    half_range: np.uint64,
    first_position: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and hash the s-buckets of a run of sectors; winners as (position, chunk offset in
    the s-bucket, distance)."""
    total = int(chunk_counts.sum())
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint64))
    if total == 0:
        return empty
    buffer = _thread_buffer(total * SCALAR_FULL_BYTES)
    view = memoryview(buffer)
    cursor = 0
    for offset, count in zip(file_offsets.tolist(), chunk_counts.tolist()):
        size = count * SCALAR_FULL_BYTES
        if size:
            try:
                read_into_at(fd, view[cursor : cursor + size], offset)
            except EOFError:
                raise OSError(f"plot file ends inside an audited s-bucket at byte {offset}") from None
        cursor += size
    local = np.repeat(np.arange(chunk_counts.size, dtype=np.int64), chunk_counts)
    values = audit_values_keyed(buffer.reshape(-1, SCALAR_FULL_BYTES), local, keys)
    with np.errstate(over="ignore"):
        distances = np.minimum(values - g, g - values)
    winners = np.flatnonzero(distances <= half_range)
    if winners.size == 0:
        return empty
    starts = np.cumsum(chunk_counts) - chunk_counts
    owner = local[winners]
    return owner + first_position, winners - starts[owner], distances[winners]
