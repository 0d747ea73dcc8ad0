"""The plot-client's plotting component: keeps every farm's sector slots plotted by the
cluster's plot-servers (docs/ARCHITECTURE.md "Sector jobs"; protocol in
``services.plot_server.messages``).

What it does, per farm, with at most ``--plotting-concurrency`` sectors in flight:

* **chooses** sectors (``plotting_plan``): dummy / half-written slots, expired sectors, missing
  slots, sectors about to expire (spec 03 §4, re-checked on every archived-segment broadcast
  with the check segments' headers fetched from the controller);
* **queues** a job per (farm, sector index, history size) on the ``plot-sector`` work queue,
  journalled first (``plotting_jobs``) so a restart recovers it instead of plotting the sector
  again;
* **answers** its plot-servers: one holder per job (a claim from a second plot-server is
  accepted only once the first has been silent longer than the queue's ack wait, and the first
  is then told to stop), progress (logged; "stop" for jobs it no longer has), ready sectors;
* **downloads** a ready sector over TCP into the farm's slot (resumable, checksum verified,
  ``plotting_download``), commits sector then metadata through the farm library, and only then
  tells the holder ``SectorJobDone(written)``, on which the plot-server acks the job. One result
  is accepted per job; a slot is written once per job.

Metrics: each farm's official ``subspace_farmer_farm_sector_*`` counters and times and its
``sectors_total{state}`` gauge follow its jobs, through the farm's
:class:`services.plot_client.stats.FarmingStats` (``stats``, by farm id).

Restart safety: journalled jobs are matched with the farm (a job whose sector the farm already
holds at that history size was written: the holder is told so when it offers it again); the
others are queued again under the same de-duplication id unless still in the queue; a slot the
farm found half-written on open is planned again like any dummy slot. Jobs whose deliveries ran
out or that vanished from the queue are queued again (logged).
"""

from __future__ import annotations

import asyncio
import time
from typing import Iterable, Mapping

import structlog

from services.bus.client import Bus
from services.bus.errors import BusError, NoResponders, RemoteError, RequestTimeout
from services.bus.jobs import WorkQueue
from services.controller.messages import ArchivedSegmentHeaderBroadcast, SegmentHeadersRequest
from services.farm import Farm, FarmError, SectorState
from services.node.rpc_types import MAX_SEGMENT_HEADERS_PER_REQUEST
from services.p2p import PeerClient
from services.plot_client.plotting_download import DownloadError, download_sector
from services.plot_client.plotting_jobs import CLAIMED, DOWNLOADING, QUEUED, WRITTEN, JobJournal, JobRecord
from services.plot_client.plotting_plan import ExpiryTracker, PlotDecision, Slot, SlotKind, choose_sectors
from services.plot_client.stats import FarmingStats
from services.plot_server.messages import (
    DONE_FAILED,
    DONE_WRITTEN,
    SECTOR_JOB_QUEUE,
    ClaimReply,
    PlotSectorJob,
    ProgressReply,
    ReadyReply,
    SectorJobCancel,
    SectorJobClaim,
    SectorJobDone,
    SectorJobProgress,
    SectorJobReady,
)
from services.protocol.sector import FarmerProtocolInfo, PlottedSector, sector_size

log = structlog.get_logger("plot-client.plotting")

SCHEDULE_INTERVAL_S = 10.0
WATCH_INTERVAL_S = 30.0
STALE_JOB_S = 3 * SECTOR_JOB_QUEUE.ack_wait + 60.0  # no word about a queued / claimed job this long: look for it
# A live holder speaks every 5-10 s (progress, ready offers); one silent for half the ack wait is
# taken to be dead when the queue redelivers its job (which takes the whole ack wait).
HOLDER_SILENT_S = SECTOR_JOB_QUEUE.ack_wait / 2
WRITTEN_GRACE_S = 600.0  # a written job is remembered this long to answer its holder
REISSUE_DELAY_S = 30.0
DONE_TIMEOUT_S = 10.0
DOWNLOADS_AT_ONCE = 2

_SLOT_KIND = {SectorState.MISSING: SlotKind.MISSING, SectorState.NEEDS_REPLOT: SlotKind.NEEDS_REPLOT,
              SectorState.PLOTTED: SlotKind.PLOTTED, SectorState.WRITING: SlotKind.WRITING}


class FarmPlotting:
    """One farm's plotting state: its jobs in flight (by sector index), journal and expiries."""

    def __init__(self, farm: Farm, min_sector_lifetime: int, stats: FarmingStats | None = None) -> None:
        self.farm = farm
        self.stats = stats if stats is not None else FarmingStats(farm.farm_id)
        self.journal = JobJournal(farm.directory)
        self.tracker = ExpiryTracker(min_sector_lifetime)
        self.records: dict[int, JobRecord] = {}
        self.refused = False  # the chain does not allow this farm's sector size (logged once)
        self._sector_ids: dict[int, tuple[int, bytes]] = {}  # index -> (history size, sector id)

    def in_flight(self) -> int:
        return sum(1 for r in self.records.values() if r.state != WRITTEN)

    def slots(self) -> list[Slot]:
        farm = self.farm
        states = farm.states.copy()
        history_sizes = farm.history_sizes.copy()
        slots = []
        for index, state in enumerate(states.tolist()):
            kind = _SLOT_KIND[SectorState(state)]
            if kind is SlotKind.PLOTTED:
                history_size = int(history_sizes[index])
                cached = self._sector_ids.get(index)
                if cached is None or cached[0] != history_size:
                    cached = self._sector_ids[index] = (history_size, farm.sector_id(index, history_size))
                slots.append(Slot(index, kind, history_size, cached[1]))
            else:
                slots.append(Slot(index, kind))
        return slots

    def save(self) -> None:
        self.journal.save(list(self.records.values()))


class PlottingComponent:
    """Start with :meth:`start`, run :meth:`run` as a task of the plot-client, :meth:`stop`."""

    def __init__(self, bus: Bus, farms: Iterable[Farm], protocol_info: FarmerProtocolInfo, *, instance: str,
                 plotting_concurrency: int, cluster_secret=None, downloads: int = DOWNLOADS_AT_ONCE,  # noqa: ANN001
                 stats: Mapping[str, FarmingStats] | None = None) -> None:
        self.bus = bus
        self.instance = instance
        self.concurrency = plotting_concurrency
        self.protocol_info = protocol_info
        self.latest_segment_index = protocol_info.history_size - 1
        stats = stats or {}
        self.farms = [FarmPlotting(farm, protocol_info.min_sector_lifetime, stats.get(farm.farm_id)) for farm in farms]
        self.jobs: dict[str, tuple[FarmPlotting, JobRecord]] = {}
        self.peer = PeerClient(cluster_secret, name=f"plot-client-{instance}")
        self.queue: WorkQueue[PlotSectorJob] | None = None
        self.headers: dict[int, bytes] = {}  # segment index -> commitment
        self._downloads = asyncio.Semaphore(downloads)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._services: list = []
        self._segments = None
        self._exhausted = None
        self.stats = {"queued": 0, "requeued": 0, "claims_accepted": 0, "claims_refused": 0, "superseded": 0,
                      "written": 0, "download_failures": 0, "download_resumes": 0, "recovered": 0}

    # ---- lifecycle

    async def start(self) -> None:
        self.queue = await WorkQueue.open(self.bus, PlotSectorJob, SECTOR_JOB_QUEUE)
        for fp in self.farms:
            await asyncio.to_thread(self._recover, fp)
        bus, instance = self.bus, self.instance
        self._services = [
            await bus.serve(SectorJobClaim, self._on_claim, instance=instance, queue_group=instance),
            await bus.serve(SectorJobProgress, self._on_progress, instance=instance, queue_group=instance),
            await bus.serve(SectorJobReady, self._on_ready, instance=instance, queue_group=instance),
        ]
        self._segments = await bus.subscribe(ArchivedSegmentHeaderBroadcast)
        self._exhausted = await self.queue.watch_exhausted()
        for fp in self.farms:
            for record in list(fp.records.values()):
                if record.state == QUEUED:
                    await self._requeue_if_gone(fp, record, at_start=True)

    async def run(self) -> None:
        self._spawn(self._follow_segments())
        self._spawn(self._follow_exhausted())
        self._spawn(self._watch_jobs())
        while True:
            try:
                await self._schedule()
            except (BusError, FarmError, OSError) as exc:
                log.warning("plotting schedule failed; retrying", error=str(exc))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), SCHEDULE_INTERVAL_S)
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> None:
        for svc in self._services:
            await svc.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._segments is not None:
            await self._segments.unsubscribe()
        if self._exhausted is not None:
            await self._exhausted.stop()
        await self.peer.close()
        for fp in self.farms:
            await asyncio.to_thread(fp.save)
        log.info("plotting stats", **self.stats)

    def _spawn(self, coro) -> asyncio.Task:  # noqa: ANN001
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(finished: asyncio.Task) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("plotting task failed", error=repr(finished.exception()))

        task.add_done_callback(done)
        return task

    def wake(self) -> None:
        self._wake.set()

    # ---- recovery

    def _recover(self, fp: FarmPlotting) -> None:
        farm = fp.farm
        for record in fp.journal.load():
            index, history_size = record.sector_index, record.history_size
            if record.job.farm_id != farm.farm_id or not 0 <= index < farm.target_sector_count:
                continue
            if (farm.states[index] == SectorState.PLOTTED and int(farm.history_sizes[index]) == history_size):
                record.state = WRITTEN  # written before the crash; only the holder's ack was pending
            fp.records[index] = record
            self.jobs[record.job.job_id] = (fp, record)
            self.stats["recovered"] += 1
            log.info("sector job recovered", farm=farm.farm_id, sector=index, job_id=record.job.job_id,
                     state=record.state)
        fp.save()

    # ---- scheduling

    async def _schedule(self) -> None:
        for fp in self.farms:
            await self._forget_old_written(fp)
            room = self.concurrency - fp.in_flight()
            if room <= 0:
                continue
            if fp.farm.pieces_in_sector > self.protocol_info.max_pieces_in_sector:
                if not fp.refused:
                    fp.refused = True
                    log.error("farm sectors are larger than the chain allows; not plotting it", farm=fp.farm.farm_id,
                              pieces_in_sector=fp.farm.pieces_in_sector,
                              max_pieces_in_sector=self.protocol_info.max_pieces_in_sector)
                continue
            slots = await asyncio.to_thread(fp.slots)
            await self._fetch_headers(fp.tracker.needed_segments(slots, self.latest_segment_index))
            expirations = {s.index: fp.tracker.expiration(s, self.headers.get) for s in slots if s.kind is SlotKind.PLOTTED}
            decisions = choose_sectors(slots, expirations, self.latest_segment_index, fp.records.keys(), room)
            for decision in decisions:
                await self._issue(fp, decision, expirations.get(decision.sector_index))

    async def _fetch_headers(self, needed: set[int]) -> None:
        wanted = sorted(i for i in needed if i not in self.headers)
        for start in range(0, len(wanted), MAX_SEGMENT_HEADERS_PER_REQUEST):
            batch = wanted[start:start + MAX_SEGMENT_HEADERS_PER_REQUEST]
            result = await self.bus.request(SegmentHeadersRequest(segment_indices=batch), timeout=30.0)
            for index, header in zip(batch, result.decoded()):
                if header is not None:
                    self.headers[index] = header.segment_commitment

    async def _issue(self, fp: FarmPlotting, decision: PlotDecision, expiration: int | None) -> None:
        farm = fp.farm
        job = PlotSectorJob.build(farm.farm_id, farm.public_key, decision.sector_index, self.protocol_info,
                                  farm.pieces_in_sector, self.instance, replotting=decision.replotting)
        record = JobRecord(job=job)
        fp.records[decision.sector_index] = record
        self.jobs[job.job_id] = (fp, record)
        await asyncio.to_thread(fp.save)  # journal first: a crash right after still knows the job
        await self._publish(fp, record)
        self.stats["queued"] += 1
        log.info("sector job queued", farm=farm.farm_id, sector=decision.sector_index, reason=decision.reason.value,
                 history_size=self.protocol_info.history_size, expiration_history_size=expiration,
                 job_id=job.job_id)

    async def _publish(self, fp: FarmPlotting, record: JobRecord) -> None:
        published = await self.queue.publish(record.job, msg_id=record.msg_id())
        record.sequence = published.sequence
        record.heard()
        await asyncio.to_thread(fp.save)

    async def _forget_old_written(self, fp: FarmPlotting) -> None:
        now = time.monotonic()
        for record in list(fp.records.values()):
            if record.state == WRITTEN and now - record.last_heard > WRITTEN_GRACE_S:
                await self._forget(fp, record)

    async def _forget(self, fp: FarmPlotting, record: JobRecord) -> None:
        if fp.records.get(record.sector_index) is record:
            del fp.records[record.sector_index]
        self.jobs.pop(record.job.job_id, None)
        await asyncio.to_thread(fp.save)

    # ---- archived segments

    async def _follow_segments(self) -> None:
        async for msg in self._segments:
            try:
                header = msg.decoded()
            except ValueError as exc:
                log.warning("malformed archived segment header from the cluster", error=str(exc))
                continue
            self.headers[header.segment_index] = header.segment_commitment
            if header.segment_index > self.latest_segment_index:
                self.latest_segment_index = header.segment_index
                info = self.protocol_info
                self.protocol_info = FarmerProtocolInfo(header.segment_index + 1, info.max_pieces_in_sector,
                                                        info.recent_segments, info.recent_history_fraction,
                                                        info.min_sector_lifetime)
                self.wake()

    # ---- lost jobs

    async def _follow_exhausted(self) -> None:
        async for dead in self._exhausted:
            if dead.job is None or dead.job.client != self.instance:
                continue
            entry = self.jobs.get(dead.job.job_id)
            await self.queue.delete(dead.sequence)
            if entry is None or entry[1].state not in (QUEUED, CLAIMED):
                continue
            fp, record = entry
            log.warning("sector job ran out of deliveries; queueing it again", job_id=record.job.job_id,
                        deliveries=dead.deliveries, delay_s=REISSUE_DELAY_S)
            await asyncio.sleep(REISSUE_DELAY_S)
            if self.jobs.get(record.job.job_id, (None, None))[1] is record and record.state in (QUEUED, CLAIMED):
                await self._requeue(fp, record)

    async def _watch_jobs(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            now = time.monotonic()
            for fp, record in list(self.jobs.values()):
                if record.state in (QUEUED, CLAIMED) and now - record.last_heard > STALE_JOB_S:
                    await self._requeue_if_gone(fp, record)

    async def _requeue_if_gone(self, fp: FarmPlotting, record: JobRecord, at_start: bool = False) -> None:
        if record.sequence and await self.queue.get(record.sequence) is not None:
            record.heard()  # still queued or held: nothing lost
            return
        if at_start and not record.sequence:
            await self._publish(fp, record)  # journalled but never published
            return
        log.warning("sector job no longer in the queue; queueing it again", job_id=record.job.job_id,
                    sector=record.sector_index, at_start=at_start)
        await self._requeue(fp, record)

    async def _requeue(self, fp: FarmPlotting, record: JobRecord) -> None:
        record.reissues += 1
        record.state, record.holder = QUEUED, None
        await self._publish(fp, record)
        self.stats["requeued"] += 1

    # ---- plot-server requests

    def _holder_lost(self, record: JobRecord) -> bool:
        return record.holder is None or time.monotonic() - record.last_heard > HOLDER_SILENT_S

    async def _on_claim(self, msg: SectorJobClaim) -> ClaimReply:
        entry = self.jobs.get(msg.job_id)
        if entry is None:
            self.stats["claims_refused"] += 1
            return ClaimReply(accepted=False, reason="unknown job (not wanted by this plot-client)")
        fp, record = entry
        if record.state == WRITTEN:
            return ClaimReply(accepted=False, reason="sector already written")
        if record.state == DOWNLOADING:
            self.stats["claims_refused"] += 1
            return ClaimReply(accepted=False, reason=f"its sector is being downloaded from {record.holder}")
        if record.holder not in (None, msg.server):
            if not self._holder_lost(record):
                self.stats["claims_refused"] += 1
                return ClaimReply(accepted=False, reason=f"held by {record.holder}, which is still working on it")
            await self._supersede(record, msg.server)
        record.holder, record.state, record.stage = msg.server, CLAIMED, "claimed"
        record.heard()
        record.claimed_at = time.monotonic()
        fp.stats.count_sector_plotting()
        self.stats["claims_accepted"] += 1
        log.info("sector job claimed", job_id=msg.job_id, plot_server=msg.server, attempt=msg.attempt)
        return ClaimReply(accepted=True)

    async def _supersede(self, record: JobRecord, new_holder: str) -> None:
        old = record.holder
        self.stats["superseded"] += 1
        log.warning("sector job moves to another plot-server (the previous one went silent)", job_id=record.job.job_id,
                    previous=old, now=new_holder)
        try:
            await self.bus.publish(SectorJobCancel(job_id=record.job.job_id, reason=f"superseded by {new_holder}"), old)
        except BusError:
            pass

    async def _on_progress(self, msg: SectorJobProgress) -> ProgressReply:
        entry = self.jobs.get(msg.job_id)
        if entry is None:
            return ProgressReply(keep_going=False, reason="unknown job (not wanted by this plot-client)")
        _, record = entry
        if record.state == WRITTEN:
            return ProgressReply(keep_going=False, reason="sector already written")
        if record.holder is None:  # after a restart: whoever works on it holds it
            record.holder, record.state = msg.server, CLAIMED
        if record.holder != msg.server:
            return ProgressReply(keep_going=False, reason=f"superseded by {record.holder}")
        if msg.stage != record.stage:
            log.info("sector job progress", job_id=msg.job_id, plot_server=msg.server, stage=msg.stage,
                     done=msg.done, total=msg.total)
        record.stage, record.done, record.total = msg.stage, msg.done, msg.total
        record.heard()
        return ProgressReply(keep_going=True)

    async def _on_ready(self, msg: SectorJobReady) -> ReadyReply:
        entry = self.jobs.get(msg.job_id)
        if entry is None:
            return ReadyReply(accepted=False, reason="unknown job (not wanted by this plot-client)")
        fp, record = entry
        if record.state == WRITTEN:
            return ReadyReply(accepted=False, reason="sector already written")
        if record.holder != msg.server:
            if record.state == DOWNLOADING or not self._holder_lost(record):
                return ReadyReply(accepted=False, reason=f"superseded by {record.holder}")
            if record.holder is not None:
                await self._supersede(record, msg.server)
            record.holder = msg.server
        record.heard()
        if record.state == DOWNLOADING:
            return ReadyReply(accepted=True)
        expected = sector_size(record.job.pieces_in_sector)
        if msg.sector_size != expected:
            return ReadyReply(accepted=False, reason=f"sector of {msg.sector_size} bytes, expected {expected}")
        record.state, record.stage = DOWNLOADING, "ready"
        fp.stats.observe_sector_ready(msg.downloading_seconds, msg.encoding_seconds)
        self._spawn(self._download(fp, record, msg))
        return ReadyReply(accepted=True)

    # ---- download and write

    async def _download(self, fp: FarmPlotting, record: JobRecord, ready: SectorJobReady) -> None:
        farm, job = fp.farm, record.job
        index = job.sector_index
        logger = log.bind(farm=farm.farm_id, sector=index, job_id=job.job_id, plot_server=ready.server)
        started = time.monotonic()
        async with self._downloads:
            try:
                plotted = self._check_plotted(record, ready)
            except ValueError as exc:
                await self._download_failed(record, ready, f"bad sector description: {exc}", logger)
                return
            writer = await asyncio.to_thread(farm.begin_sector_write, index)
            committed = False
            try:
                resumes = await download_sector(self.peer, ready.endpoint, job.job_id, ready.sector_size, ready.checksum,
                                                lambda offset, view: asyncio.to_thread(writer.write, offset, view))
                await asyncio.to_thread(writer.commit, plotted.sector_metadata)
                committed = True
            except (DownloadError, FarmError, OSError) as exc:
                await self._download_failed(record, ready, str(exc), logger)
                return
            finally:
                if not committed:
                    await asyncio.to_thread(writer.abort)
        self.stats["written"] += 1
        self.stats["download_resumes"] += resumes
        record.state = WRITTEN
        record.heard()
        now = time.monotonic()  # plotting time from the claim (else, after a restart, the plot-server's + writing)
        fp.stats.observe_sector_plotted(now - started, now - (record.claimed_at or started - ready.seconds))
        fp.stats.observe_sectors(time.time(), farm.target_sector_count, len(farm.plotted_sectors()))
        fp.tracker.forget(index)
        await asyncio.to_thread(fp.save)
        logger.info("sector written", replotting=job.replotting, history_size=record.history_size,
                    download_s=round(time.monotonic() - started, 2), plotting_s=round(ready.seconds, 2), resumes=resumes)
        self.wake()
        await self._tell_holder(record, ready.server, DONE_WRITTEN, "")
        await self._forget(fp, record)

    def _check_plotted(self, record: JobRecord, ready: SectorJobReady) -> PlottedSector:
        plotted = ready.decoded_plotted_sector()
        job = record.job
        metadata = plotted.sector_metadata
        expected_id = self._farm_of(record).sector_id(job.sector_index, record.history_size)
        if plotted.sector_index != job.sector_index or metadata.sector_index != job.sector_index:
            raise ValueError(f"for sector {plotted.sector_index}, expected {job.sector_index}")
        if metadata.history_size != record.history_size or plotted.sector_id != expected_id:
            raise ValueError("plotted at another history size or for another key")
        if metadata.pieces_in_sector != job.pieces_in_sector:
            raise ValueError(f"{metadata.pieces_in_sector} pieces, expected {job.pieces_in_sector}")
        return plotted

    def _farm_of(self, record: JobRecord) -> Farm:
        return self.jobs[record.job.job_id][0].farm

    async def _download_failed(self, record: JobRecord, ready: SectorJobReady, reason: str, logger) -> None:  # noqa: ANN001
        self.stats["download_failures"] += 1
        fp = self.jobs[record.job.job_id][0]
        fp.stats.count_sector_plotting_error()
        logger.warning("sector download failed; it will be plotted again", error=reason)
        record.state, record.holder = QUEUED, None
        record.heard()
        if not await self._tell_holder(record, ready.server, DONE_FAILED, reason):
            await self._requeue_if_gone(fp, record)  # its copy may have been refused while downloading

    async def _tell_holder(self, record: JobRecord, server: str, outcome: str, reason: str) -> bool:
        try:
            await self.bus.request(SectorJobDone(job_id=record.job.job_id, outcome=outcome, reason=reason), server,
                                   timeout=DONE_TIMEOUT_S, retries=2)
            return True
        except (NoResponders, RequestTimeout, RemoteError) as exc:
            # the holder is gone: its job is redelivered and refused ("already written") or replotted
            log.info("plot-server did not hear the outcome", job_id=record.job.job_id, plot_server=server,
                     outcome=outcome, error=str(exc))
            return False
