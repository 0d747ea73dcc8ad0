"""One sector, from its job to a finished file: fetch its pieces, encode its records on the
encoding threads (or the GPU), write the sector under BASE_PATH.

Why a pipeline: fetching (network) and encoding (CPU/GPU) overlap: pieces come from the
``PieceGetter`` (``--priority-cache`` first, then the owner shard over TCP, full caches, the
controller) in batches into two reused batch buffers, and each record is encoded straight into
the sector's one preallocated ``SectorBuffer`` (reused from sector to sector) while the next
batch downloads. The finished layout is streamed to ``BASE_PATH/<job_id>.sector`` in 4 MiB
windows (``SectorWriter``), never assembled in memory, so a sector in flight holds about
1.03 GB per 1,000 pieces (:func:`memory_per_sector`) plus the encoding threads' PoS tables.
Encoding stops between records when the job's abort flag is set.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from collections import Counter, defaultdict
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import structlog

from services.bus.client import Bus
from services.cache.getter import PieceGetter
from services.cache.priority import PriorityCache
from services.p2p import PeerClient
from services.plot_server.finished import FinishedSectors
from services.plot_server.messages import STAGE_DOWNLOADING, STAGE_ENCODING, STAGE_WRITING, PlotSectorJob
from services.protocol.constants import PIECE_SIZE, RECORD_NUM_CHUNKS, RECORD_SIZE, SCALAR_FULL_BYTES
from services.protocol.erasure import ErasureCoding
from services.protocol.plotting import (
    CpuRecordEncoder,
    PlottingAborted,
    PlottingError,
    SectorBuffer,
    chia_proofs_for_seed,
)
from services.protocol.sector import PlottedSector
from services.protocol.sector_writer import SectorWriter

log = structlog.get_logger("plot-server.pipeline")

PIECE_BATCH = 32  # pieces fetched per request; two batches of buffers per sector in flight
PIECE_FETCH_ATTEMPTS = 5
PRIORITY_CACHE_DIR = "priority-cache"
ENCODING_THREAD_SCRATCH = 300 * 1024 * 1024  # measured: K=20 tables of one record (CPU backend)

Progress = Callable[[str, int, int], None]


class PlottingFailed(Exception):
    """The sector could not be plotted (pieces unavailable, bad piece): retry elsewhere."""


@dataclass(frozen=True)
class PlotResult:
    size: int
    checksum: bytes
    plotted_sector: bytes  # SCALE PlottedSector
    seconds: float
    piece_sources: dict[str, int]  # pieces per source (priority, tcp://shard, controller, ...)
    downloading_seconds: float = 0.0  # waiting for pieces (fetches overlap the previous batch's encoding)
    encoding_seconds: float = 0.0  # from the first batch of pieces in hand to the last record encoded
    writing_seconds: float = 0.0  # streaming the finished layout to BASE_PATH


def memory_per_sector(pieces_in_sector: int, encoding_threads: int) -> int:
    """Bytes one sector in flight holds: its records (1 MiB each), bitfields and metadata, and
    two batches of piece buffers; the encoding threads' scratch (``ENCODING_THREAD_SCRATCH``
    each, shared by all sectors) comes on top."""
    del encoding_threads  # the scratch is per thread, not per sector
    buffer = pieces_in_sector * (RECORD_SIZE + 8192 + 128)
    return buffer + 2 * min(PIECE_BATCH, pieces_in_sector) * PIECE_SIZE


@dataclass
class _Timing:
    fetching: float = 0.0  # seconds spent waiting for piece batches
    first_batch: float = 0.0  # monotonic time the first batch was in hand


class PieceResult:
    """What a piece source returns (the shape of ``services.cache.getter.GetResult``):
    ``pieces`` (index -> buffer) and ``missing`` indices."""

    def __init__(self, pieces: dict[int, memoryview], missing: list[int]) -> None:
        self.pieces = pieces
        self.missing = missing


def _limited(proofs_for_seed, at_once: int):  # noqa: ANN001, ANN202
    """``proofs_for_seed`` run by at most ``at_once`` threads at a time."""
    gate = threading.BoundedSemaphore(at_once)

    def limited(seed: bytes):  # noqa: ANN202
        with gate:
            return proofs_for_seed(seed)

    return limited


class SectorPipeline:
    """Plots sectors for the plot-server: ``pieces`` is a piece source (``get_pieces(indices,
    into)``, the ``PieceGetter`` interface), ``proofs_for_seed`` the PoS backend."""

    def __init__(self, pieces, proofs_for_seed, executor: Executor, threads: int, store: FinishedSectors,  # noqa: ANN001
                 backend: str, *, fetch_attempts: int = PIECE_FETCH_ATTEMPTS, fetch_backoff: float = 15.0,
                 batch: int = PIECE_BATCH, spare_buffers: int = 1) -> None:
        self.pieces = pieces
        self.encoder = CpuRecordEncoder(ErasureCoding(16), proofs_for_seed)
        self.executor = executor
        self.threads = threads
        self.store = store
        self.backend = backend
        self.fetch_attempts = fetch_attempts
        self.fetch_backoff = fetch_backoff
        self.batch = batch
        self.spare_buffers = spare_buffers
        self._spare: list[np.ndarray] = []
        self._config = None
        self._client: PeerClient | None = None
        self._priority: PriorityCache | None = None

    @classmethod
    def from_config(cls, config, store: FinishedSectors, executor: Executor) -> "SectorPipeline":  # noqa: ANN001
        """The pipeline a plot-server's flags describe (pieces come once :meth:`start` connects)."""
        from services.protocol.pos.api import resolve_backend

        backend = resolve_backend(None if config.backend == "auto" else config.backend)
        proofs_for_seed = chia_proofs_for_seed(backend)
        if backend == "gpu":  # GPU_CONCURRENCY table sets on the device at once (its memory)
            proofs_for_seed = _limited(proofs_for_seed, config.gpu_concurrency or 1)
        pipeline = cls(None, proofs_for_seed, executor, config.record_encoding_concurrency, store, backend,
                       spare_buffers=config.sectors_in_flight)
        pipeline._config = config
        return pipeline

    async def start(self, bus: Bus, metrics=None) -> None:  # noqa: ANN001 - services.metrics.DaemonMetrics
        """Connect the piece getter: ``--priority-cache`` (BASE_PATH/priority-cache) first, then the
        shards of ``--cache-group``, the full-piece caches and the controller. With ``metrics``,
        piece fetches feed ``subspace_farmer_piece_getter_*`` and the TCP client ``..._tcp_*{kind="piece"}``."""
        config = self._config
        self._client = PeerClient(config.cluster_secret, name=f"plot-server-{config.instance}")
        if metrics is not None:
            metrics.tcp.watch("piece", self._client)
        if config.priority_cache:
            self._priority = await asyncio.to_thread(PriorityCache, Path(config.base_path) / PRIORITY_CACHE_DIR)
        self.pieces = await PieceGetter.connect(bus, self._client, cache_group=config.cache_group,
                                                priority=self._priority,
                                                metrics=None if metrics is None else metrics.piece_getter())

    async def stop(self) -> None:
        if self.pieces is not None and hasattr(self.pieces, "close"):
            await self.pieces.close()
        if self._client is not None:
            await self._client.close()
        if self._priority is not None:
            await asyncio.to_thread(self._priority.close)

    async def _fetch_batch(self, indices: list[int], into: dict[int, memoryview], abort: threading.Event,
                           sources: Counter) -> None:
        """Fill ``into`` for ``indices``, retrying what is missing with exponential backoff
        (spec 03 §10: 15 s initial, at most 10 min) up to ``fetch_attempts`` times."""
        missing = list(indices)
        for attempt in range(self.fetch_attempts):
            if attempt:
                delay = min(600.0, self.fetch_backoff * 2 ** (attempt - 1))
                log.warning("pieces missing; fetching them again", missing=len(missing), first=missing[:4],
                            attempt=attempt + 1, delay_s=delay)
                await asyncio.sleep(delay)
            if abort.is_set():
                raise PlottingAborted()
            result = await self.pieces.get_pieces(missing, {i: into[i] for i in missing})
            sources.update(getattr(result, "sources", {}))
            missing = [i for i in missing if i not in result.pieces]
            if not missing:
                return
        raise PlottingFailed(f"{len(missing)} pieces unavailable after {self.fetch_attempts} attempts, "
                             f"e.g. piece {missing[0]}")

    def _records(self, n: int) -> np.ndarray:
        """A sector's records buffer: a spare one of that size, else a new allocation."""
        for k, spare in enumerate(self._spare):
            if spare.shape[0] == n:
                return self._spare.pop(k)
        return np.empty((n, RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES), dtype=np.uint8)

    def _give_back(self, records: np.ndarray) -> None:
        """Keep up to ``spare_buffers`` buffers (their pages stay mapped: no page faults next time)."""
        self._spare.insert(0, records)
        del self._spare[self.spare_buffers:]

    async def plot(self, job: PlotSectorJob, abort: threading.Event, progress: Progress) -> PlotResult:
        """Plot ``job``'s sector into a finished file; raises PlottingAborted / PlottingFailed."""
        started = time.monotonic()
        info = job.decoded_protocol_info()
        n = job.pieces_in_sector
        if not 0 < n <= info.max_pieces_in_sector:
            raise PlottingFailed(f"{n} pieces in sector is outside 1..{info.max_pieces_in_sector} (max_pieces_in_sector)")
        records = self._records(n)
        sources: Counter = Counter()
        timing = _Timing()
        try:
            sector = SectorBuffer(job.public_key, job.sector_index, info, n, records=records)
            await self._encode(sector, abort, progress, sources, timing)
            encoded = time.monotonic()
            progress(STAGE_WRITING, n, n)
            plotted, checksum, size = await asyncio.to_thread(self._write, job.job_id, sector)
        finally:
            self._give_back(records)
        finished = time.monotonic()
        return PlotResult(size, checksum, plotted.to_scale(), finished - started, dict(sources),
                          downloading_seconds=timing.fetching,
                          encoding_seconds=encoded - (timing.first_batch or encoded),
                          writing_seconds=finished - encoded)

    async def _encode(self, sector: SectorBuffer, abort: threading.Event, progress: Progress, sources: Counter,
                      timing: "_Timing") -> None:
        """Fetch the pieces batch by batch and encode each record into ``sector``."""
        n = sector.pieces_in_sector
        offsets: dict[int, list[int]] = defaultdict(list)
        for offset, piece_index in enumerate(sector.piece_indexes):
            offsets[piece_index].append(offset)
        distinct = list(offsets)
        loop = asyncio.get_running_loop()
        # two batches of piece buffers: one being fetched while the other is encoded
        free: asyncio.Queue[memoryview] = asyncio.Queue()
        for _ in range(2):
            free.put_nowait(memoryview(bytearray(min(self.batch, len(distinct)) * PIECE_SIZE)))
        failed = threading.Event()  # a record failed: the others of the sector stop too
        done = 0

        def encode(offset: int, piece: memoryview) -> None:
            if abort.is_set() or failed.is_set():
                raise PlottingAborted(f"sector {sector.sector_index}: stopped before record {offset}")
            sector.encode_record(offset, piece, self.encoder)

        async def encode_batch(buffer: memoryview, slots: dict[int, memoryview]) -> None:
            nonlocal done
            tasks = [loop.run_in_executor(self.executor, encode, offset, slots[index])
                     for index in slots for offset in offsets[index]]
            try:
                for task in asyncio.as_completed(tasks):
                    await task
                    done += 1
                    progress(STAGE_ENCODING, done, n)
            except BaseException:
                failed.set()
                raise
            finally:
                # the buffer is reused only once no thread reads it any more
                await asyncio.gather(*tasks, return_exceptions=True)
                free.put_nowait(buffer)

        progress(STAGE_DOWNLOADING, 0, n)
        encoding: list[asyncio.Task] = []
        try:
            for start in range(0, len(distinct), self.batch):
                part = distinct[start:start + self.batch]
                buffer = await free.get()
                slots = {index: buffer[k * PIECE_SIZE:(k + 1) * PIECE_SIZE] for k, index in enumerate(part)}
                fetch_started = time.monotonic()
                await self._fetch_batch(part, slots, abort, sources)
                timing.fetching += time.monotonic() - fetch_started
                timing.first_batch = timing.first_batch or time.monotonic()
                if encoding and encoding[-1].done():
                    encoding[-1].result()  # surface an encoding failure before fetching more
                encoding.append(asyncio.ensure_future(encode_batch(buffer, slots)))
            await asyncio.gather(*encoding)
        except PlottingError as exc:
            raise PlottingFailed(str(exc)) from None
        finally:
            failed.set()  # no-op once all records are done; stops queued records otherwise
            await asyncio.gather(*encoding, return_exceptions=True)
        if abort.is_set():
            raise PlottingAborted(f"sector {sector.sector_index}: aborted")

    def _write(self, job_id: str, sector: SectorBuffer) -> tuple[PlottedSector, bytes, int]:
        """Stream the finished layout to ``BASE_PATH/<job_id>.sector`` (thread)."""
        writer = SectorWriter(sector)
        file = self.store.writer(job_id, writer.size)
        try:
            checksum = writer.write_to(file.write)
            file.finish()
        except BaseException:
            file.abort()
            raise
        return writer.plotted_sector, checksum, writer.size
