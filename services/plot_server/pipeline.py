"""One sector, from its job to a finished file: fetch its pieces, encode its records on the
encoding threads (or the GPU), write the sector under BASE_PATH.

Why a pipeline: fetching (network), encoding (CPU/GPU) and writing (disk) overlap: pieces are
fetched in batches while earlier records encode, with a bounded number of pieces held, so the
memory of a sector in flight is its sector buffer plus a few pieces per encoding thread
(:func:`memory_per_sector`). Encoding stops between records when the job's abort flag is set.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import structlog

from services.bus.client import Bus
from services.bus.errors import BusError
from services.controller.messages import PiecesRequest
from services.plot_server.finished import FinishedSectors
from services.plot_server.messages import STAGE_DOWNLOADING, STAGE_ENCODING, STAGE_WRITING, PlotSectorJob
from services.protocol.constants import PIECE_SIZE
from services.protocol.erasure import ErasureCoding
from services.protocol.plotting import (
    CpuRecordEncoder,
    PlottingError,
    RecordMetadata,
    assemble_sector,
    chia_proofs_for_seed,
    record_array,
)
from services.protocol.constants import RECORD_SIZE
from services.protocol.sector import PlottedSector, SectorMetadata, derive_evaluation_seed, derive_sector_id
from services.protocol.plotting import sector_piece_indexes

log = structlog.get_logger("plot-server.pipeline")

PIECE_BATCH = 32  # pieces asked for per request
PIECES_PER_THREAD = 2  # pieces held per encoding thread (bounded memory)
PIECE_FETCH_ATTEMPTS = 5
ENCODING_THREAD_SCRATCH = 300 * 1024 * 1024  # measured: K=20 tables of one record (CPU backend)

Progress = Callable[[str, int, int], None]


class PlottingAborted(Exception):
    """The job was cancelled or superseded while plotting."""


class PlottingFailed(Exception):
    """The sector could not be plotted (pieces unavailable, bad piece): retry elsewhere."""


@dataclass(frozen=True)
class PlotResult:
    size: int
    checksum: bytes
    plotted_sector: bytes  # SCALE PlottedSector
    seconds: float


def memory_per_sector(pieces_in_sector: int, encoding_threads: int) -> int:
    """Bytes one sector in flight holds: its records (1 MiB each), bitfields and metadata, plus
    the pieces waiting for an encoding thread; the encoding threads' scratch comes on top
    (``ENCODING_THREAD_SCRATCH`` each, shared by all sectors)."""
    buffer = pieces_in_sector * (RECORD_SIZE + 8192 + 128)
    return buffer + encoding_threads * PIECES_PER_THREAD * PIECE_SIZE


class ControllerPieces:
    """Pieces from the controller's ``subspace.controller.pieces`` stream."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def fetch(self, indices: list[int]) -> AsyncIterator[tuple[int, bytes]]:
        missing = list(indices)
        for attempt in range(PIECE_FETCH_ATTEMPTS):
            if attempt:
                await asyncio.sleep(min(30.0, 2.0**attempt))
            got = set()
            try:
                async for item in self.bus.stream_request(PiecesRequest(piece_indices=missing), timeout=60.0):
                    if item.piece_index in missing and item.piece_index not in got:
                        got.add(item.piece_index)
                        yield item.piece_index, item.piece
            except BusError as exc:
                log.warning("piece request failed", error=str(exc), attempt=attempt + 1)
            missing = [i for i in missing if i not in got]
            if not missing:
                return
        raise PlottingFailed(f"{len(missing)} pieces unavailable, e.g. piece {missing[0]}")


class SectorPipeline:
    def __init__(self, pieces, proofs_for_seed, executor: Executor, threads: int, store: FinishedSectors,  # noqa: ANN001
                 backend: str) -> None:
        self.pieces = pieces
        self.encoder = CpuRecordEncoder(ErasureCoding(16), proofs_for_seed)
        self.executor = executor
        self.threads = threads
        self.store = store
        self.backend = backend

    @classmethod
    def from_config(cls, config, bus: Bus, store: FinishedSectors, executor: Executor) -> "SectorPipeline":  # noqa: ANN001
        from services.protocol.pos.api import resolve_backend

        backend = resolve_backend(None if config.backend == "auto" else config.backend)
        return cls(ControllerPieces(bus), chia_proofs_for_seed(backend), executor, config.record_encoding_concurrency,
                   store, backend)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def plot(self, job: PlotSectorJob, abort: threading.Event, progress: Progress) -> PlotResult:
        started = time.monotonic()
        info = job.decoded_protocol_info()
        n = job.pieces_in_sector
        indexes = sector_piece_indexes(job.public_key, job.sector_index, info, n)
        sector_id = derive_sector_id(job.public_key, job.sector_index, info.history_size)
        offsets: dict[int, list[int]] = defaultdict(list)
        for offset, piece_index in enumerate(indexes):
            offsets[piece_index].append(offset)
        loop = asyncio.get_running_loop()
        encoded: list = [None] * n
        metadata: list = [None] * n
        limit = asyncio.Semaphore(self.threads * PIECES_PER_THREAD)
        running: set[asyncio.Future] = set()
        fetched = 0
        done = 0

        def encode(offset: int, piece: bytes) -> None:
            if abort.is_set():
                raise PlottingAborted()
            record = record_array(memoryview(piece)[:RECORD_SIZE])
            encoded[offset] = self.encoder.encode(record, derive_evaluation_seed(sector_id, offset))
            metadata[offset] = RecordMetadata.from_piece(piece)

        def finished(future: asyncio.Future) -> None:
            nonlocal done
            limit.release()
            if not future.cancelled() and future.exception() is None:
                done += 1
                progress(STAGE_ENCODING, done, n)

        progress(STAGE_DOWNLOADING, 0, n)
        distinct = sorted(offsets)
        try:
            for start in range(0, len(distinct), PIECE_BATCH):
                async for piece_index, piece in self.pieces.fetch(distinct[start:start + PIECE_BATCH]):
                    if len(piece) != PIECE_SIZE:
                        raise PlottingFailed(f"piece {piece_index} has {len(piece)} bytes, not {PIECE_SIZE}")
                    fetched += 1
                    for offset in offsets[piece_index]:
                        if abort.is_set():
                            raise PlottingAborted()
                        await limit.acquire()
                        future = loop.run_in_executor(self.executor, encode, offset, piece)
                        future.add_done_callback(finished)
                        running.add(future)
                    running = {f for f in running if not f.done()}
                    for failed in [f for f in running if f.done() and f.exception()]:
                        failed.result()
            await asyncio.gather(*running)
        except PlottingError as exc:
            raise PlottingFailed(str(exc)) from None
        finally:
            for future in running:
                future.cancel()
        if abort.is_set():
            raise PlottingAborted()
        progress(STAGE_WRITING, n, n)
        sector, sizes = await asyncio.to_thread(assemble_sector, encoded, metadata)
        del encoded
        sector_metadata = SectorMetadata(job.sector_index, n, sizes, info.history_size)
        plotted = PlottedSector(sector_id, job.sector_index, sector_metadata, tuple(indexes))

        def write() -> None:
            writer = self.store.writer(job.job_id, len(sector))
            try:
                writer.write(sector)
                writer.finish()
            except BaseException:
                writer.abort()
                raise

        await asyncio.to_thread(write)
        return PlotResult(len(sector), sector[-32:], plotted.to_scale(), time.monotonic() - started)
