"""Turning audit winners into submitted solutions within the slot's deadline (spec 04 §2-3).

Every winning sector of every farm becomes a :class:`ProvingJob`. Jobs wait in one heap for the
whole plot-client, newest slot first and, within a slot, best distance first (the reference's
sector order): when proving cannot keep up, fresh candidates (which still have their whole
farming timeout ahead) win over old ones, and a job whose slot deadline has passed is dropped
unstarted. For each job the sector's contents map resolves the candidates to records; unencoded
ones are dropped (they cannot be proven); then each candidate is proven, by a proof-server when
one answers in time (``remote``) or locally on a bounded thread pool, and submitted through
``submit`` unless its deadline passed meanwhile.

As in the reference farmer: a failed proof marks the sector for replotting (dummy metadata) and
ends that sector's job; a solution proven after the deadline is not submitted and ends the
job. At most :data:`SOLUTIONS_PER_SLOT` solutions are submitted per slot: the node buffers
that many per slot and ignores the rest (spec 05 §3).
"""

from __future__ import annotations

import asyncio
import heapq
import os
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol

import structlog

from services.farm import AuditedSector, Farm
from services.plot_client.stats import FarmingStats, ProvingResult
from services.protocol.parallel import Workers
from services.protocol.proving import ProvingCandidate, ProvingError, prove, resolve_candidates
from services.protocol.sector import SectorContentsMap, SectorError, SectorMetadata
from services.protocol.solution import Solution

SOLUTIONS_PER_SLOT = 10  # the node's per-slot solution channel: 9 buffered + 1 (spec 05 §3)
MAX_PENDING_JOBS = 1024
INITIAL_LOCAL_PROVING_ESTIMATE_S = 2.0

log = structlog.get_logger("plot-client.proving")


@dataclass
class SlotContext:
    """One slot as the farmer saw it; ``deadline`` is unix time (shared with proof-servers)."""

    slot_number: int
    instance: str  # controller instance whose solution subject gets this slot's solutions
    global_challenge: bytes
    voting_solution_range: int
    deadline: float
    submitted: int = 0  # solutions sent for this slot, all farms together


@dataclass
class FarmContext:
    farm: Farm
    stats: FarmingStats


@dataclass(order=True)
class ProvingJob:
    sort_key: tuple
    farm: FarmContext = field(compare=False)
    slot: SlotContext = field(compare=False)
    audited: AuditedSector = field(compare=False)


class RemoteUnavailable(Exception):
    """No proof-server answered in time: prove locally."""


class RemoteProver(Protocol):
    async def prove(self, farm: Farm, metadata: SectorMetadata, contents_map: SectorContentsMap,
                    candidate: ProvingCandidate, reward_address: bytes, slot: SlotContext,
                    timeout: float) -> Solution:
        """Prove on a proof-server within ``timeout`` s; RemoteUnavailable otherwise,
        ProvingError when the record's data is bad."""


class LocalProver:
    """Proves on this machine (PoS tables, record recovery, KZG witness) on its own threads."""

    def __init__(self, kzg, erasure_coding, proofs_for_seed, threads: int) -> None:  # noqa: ANN001
        self.kzg = kzg
        self.erasure_coding = erasure_coding
        self.proofs_for_seed = proofs_for_seed
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="proving")
        cores = os.cpu_count() or 1
        self._parts_pool = ThreadPoolExecutor(cores, thread_name_prefix="proving-parts")
        self.workers = Workers(self._parts_pool, cores)  # NTTs and the witness MSM split over cores
        self.slots = asyncio.Semaphore(threads)
        self.estimate_s = INITIAL_LOCAL_PROVING_ESTIMATE_S  # moving average of local proving time

    def prove_blocking(self, farm: Farm, metadata: SectorMetadata, contents_map: SectorContentsMap,
                       candidate: ProvingCandidate, reward_address: bytes) -> Solution:
        view = farm.sector_view(metadata.sector_index)
        try:
            return prove(view, metadata, farm.public_key, reward_address, candidate, self.kzg,
                         self.erasure_coding, self.proofs_for_seed, contents_map, self.workers)
        finally:
            view.release()

    async def prove(self, farm: Farm, metadata: SectorMetadata, contents_map: SectorContentsMap,
                    candidate: ProvingCandidate, reward_address: bytes, deadline: float) -> Solution | None:
        """The solution, or None when the deadline passed before a thread was free."""
        async with self.slots:
            if time.time() >= deadline:
                return None
            start = time.monotonic()
            loop = asyncio.get_running_loop()
            solution = await loop.run_in_executor(
                self.executor, self.prove_blocking, farm, metadata, contents_map, candidate, reward_address
            )
            self.estimate_s = 0.7 * self.estimate_s + 0.3 * (time.monotonic() - start)
            return solution

    def close(self) -> None:
        """Wait for proofs running on the threads (they read the farms), drop queued ones."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._parts_pool.shutdown(wait=True)


Submit = Callable[[SlotContext, Solution], Awaitable[None]]


class ProvingScheduler:
    """The heap of proving jobs and the tasks that work through it (module docstring)."""

    def __init__(self, local: LocalProver, submit: Submit, reward_address: bytes, workers: int,
                 remote: RemoteProver | None = None) -> None:
        self.local = local
        self.remote = remote
        self.submit_solution = submit
        self.reward_address = reward_address
        self.workers = workers
        self._heap: list[ProvingJob] = []
        self._ready = asyncio.Event()
        self._sequence = itertools.count()
        self.expired_jobs = 0
        self.dropped_jobs = 0
        self.active = 0  # jobs being worked on

    def submit(self, farm: FarmContext, slot: SlotContext, audited: AuditedSector) -> None:
        key = (-slot.slot_number, audited.result.best_distance, next(self._sequence))
        heapq.heappush(self._heap, ProvingJob(key, farm, slot, audited))
        if len(self._heap) > MAX_PENDING_JOBS:  # keep the newest and best
            self.dropped_jobs += len(self._heap) - MAX_PENDING_JOBS
            self._heap = heapq.nsmallest(MAX_PENDING_JOBS, self._heap)
            heapq.heapify(self._heap)
        self._ready.set()

    @property
    def pending(self) -> int:
        return len(self._heap)

    async def run(self) -> None:
        await asyncio.gather(*(self._work() for _ in range(self.workers)))

    async def _next_job(self) -> ProvingJob:
        while True:
            while not self._heap:
                self._ready.clear()
                await self._ready.wait()
            job = heapq.heappop(self._heap)
            if time.time() < job.slot.deadline:
                return job
            self.expired_jobs += 1
            log.debug("proving job expired before it started", slot=job.slot.slot_number,
                      farm=job.farm.stats.farm_id, sector_index=job.audited.result.sector_index)

    async def _work(self) -> None:
        while True:
            job = await self._next_job()
            self.active += 1
            try:
                await self._process(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one job's failure must not stop farming
                log.error("proving job failed", slot=job.slot.slot_number, farm=job.farm.stats.farm_id,
                          sector_index=job.audited.result.sector_index, error=repr(exc))
            finally:
                self.active -= 1

    async def _process(self, job: ProvingJob) -> None:
        farm, stats, slot = job.farm.farm, job.farm.stats, job.slot
        result, generation = job.audited.result, job.audited.generation
        index = result.sector_index
        metadata = farm.sector_metadata(index)
        if metadata is None or not farm.is_current(index, generation):
            return  # replotting began since the audit
        start = time.monotonic()
        try:
            contents_map = await asyncio.to_thread(farm.read_contents_map, index)
            candidates = resolve_candidates(contents_map, result.s_bucket, result.candidates)
        except (SectorError, ProvingError) as exc:
            self._failed(job, time.monotonic() - start, exc)
            return
        for candidate in candidates:
            if slot.submitted >= SOLUTIONS_PER_SLOT or time.time() >= slot.deadline:
                return
            try:
                solution, by_proof_server = await self._prove(farm, metadata, contents_map, candidate, slot)
            except ProvingError as exc:
                self._failed(job, time.monotonic() - start, exc)
                return
            elapsed = time.monotonic() - start
            if solution is None or time.time() >= slot.deadline:
                if solution is not None:
                    stats.count_solution_found(by_proof_server)
                stats.observe_proving(ProvingResult.TIMEOUT, elapsed)
                log.warning("Proving for solution skipped due to farming time limit", slot=slot.slot_number,
                            farm=stats.farm_id, sector_index=index)
                return
            stats.count_solution_found(by_proof_server)
            if not farm.is_current(index, generation):
                return  # the sector was rewritten while proving: the proof is of old data
            slot.submitted += 1
            await self.submit_solution(slot, solution)
            stats.observe_proving(ProvingResult.SUCCESS, elapsed)
            start = time.monotonic()

    async def _prove(self, farm: Farm, metadata: SectorMetadata, contents_map: SectorContentsMap,
                     candidate: ProvingCandidate, slot: SlotContext) -> tuple[Solution | None, bool]:
        if self.remote is not None:
            # leave enough of the slot to prove locally if no proof-server answers
            timeout = slot.deadline - time.time() - self.local.estimate_s
            if timeout > 0:
                try:
                    solution = await self.remote.prove(farm, metadata, contents_map, candidate,
                                                       self.reward_address, slot, timeout)
                    return solution, True
                except RemoteUnavailable as exc:
                    log.debug("no proof-server in time; proving locally", slot=slot.slot_number, reason=str(exc))
        solution = await self.local.prove(farm, metadata, contents_map, candidate, self.reward_address,
                                          slot.deadline)
        return solution, False

    def _failed(self, job: ProvingJob, elapsed: float, error: Exception) -> None:
        farm, stats = job.farm.farm, job.farm.stats
        index = job.audited.result.sector_index
        stats.observe_proving(ProvingResult.FAILED, elapsed)
        if farm.mark_for_replot(index, job.audited.generation):
            stats.count_marked_for_replot()
            log.error("Failed to prove, scheduling sector for replotting", slot=job.slot.slot_number,
                      farm=stats.farm_id, sector_index=index, error=str(error))
