"""The plot-server daemon: takes sector jobs from the cluster's work queue, plots them (GPU when
present, else ``--record-encoding-concurrency`` CPU threads), keeps the finished sector under
BASE_PATH and serves it to the job's plot-client over TCP (``--listen-port``).

Why a pull loop: a plot-server takes a job only when it has room, so the cluster balances
itself and a slow plot disk slows plotting down instead of filling RAM (the official cluster's
known failure). Room means fewer than ``sectors_in_flight`` sectors being plotted *and* fewer
than ``max_finished_sectors`` finished sectors waiting for their plot-client's download.

A job's life here (protocol in ``services.plot_server.messages``): claim it from its plot-client
(refused: dropped), heartbeat it on the queue for as long as it is held, plot it with progress
notifications (a cancel or a "stop" reply aborts it between records), offer it with
``SectorJobReady`` (re-offered every ``READY_RESEND_S`` until the plot-client answers), and ack
it only on the plot-client's ``SectorJobDone(written)``. A crash leaves the job un-acked: the
queue redelivers it to another plot-server after its ack wait, and the plot-client accepts
that newer holder only. SIGTERM gives held jobs back at once (nak) so others can take them.

Before it pulls a job it runs the GPU self-test on its encoding backend (``services.gpu.
prepare_worker``, as the proof-server does: the K=20 known answer, a proof verification, VRAM
for ``GPU_CONCURRENCY``). A process that fails it stays up and registered but never binds the
queue's consumer, so its jobs stay queued for other plot-servers; it logs ``refusing work:
<reason>`` and says so in its membership record (``self_test``, ``accepting_work: 0``) and in
``subspace_farmer_gpu_self_test_passed``.

Membership record (``autonomys-farmer status``): the GPU inventory and self-test fields of
:class:`services.gpu.WorkerReadiness` (``backend gpu_model gpus vram_bytes tables_per_second
hourly_cost self_test accepting_work``), room (``sectors_in_flight`` ...), ``sectors_plotted``,
``seconds_per_sector`` (mean plotting time), ``plotting_busy_s`` (wall time with a sector being
plotted) and ``sector_bytes`` (the last sector's size), from which the status computes TiB per
hour and cost per TiB. Metrics: the official ``subspace_farmer_plotter_*{kind}`` set (see
:mod:`services.metrics.plotter`), the piece getter's, the TCP data plane's (sectors served,
pieces fetched), the bus's and the GPU's.
"""

from __future__ import annotations

import asyncio
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor


from services.bus.client import Bus
from services.bus.errors import BusError, NoResponders, RemoteError, RequestTimeout
from services.bus.jobs import ClaimedJob, WorkQueue, Worker
from services.bus.membership import Member, Membership, Registration
from services.daemon import Daemon, DaemonError
from services.gpu import WorkerReadiness, prepare_worker
from services.metrics.plotter import CPU_KIND, CUDA_KIND
from services.plot_server.config import PlotServerConfig
from services.p2p import BulkItem, Missing, PeerServer
from services.plot_server.finished import FinishedSectorError, FinishedSectors
from services.plot_server.messages import (
    DONE_UNWANTED,
    DONE_WRITTEN,
    SECTOR_JOB_QUEUE,
    STAGE_CLAIMED,
    STAGE_READY,
    DoneReply,
    FetchSectorRange,
    PlotSectorJob,
    SectorJobCancel,
    SectorJobClaim,
    SectorJobDone,
    SectorJobProgress,
    SectorJobReady,
)
from services.plot_server.pipeline import PlottingAborted, PlottingFailed, SectorPipeline, memory_per_sector

ROLE = "plot-server"
CLIENT_REQUEST_TIMEOUT_S = 10.0
PROGRESS_INTERVAL_S = 5.0
READY_RESEND_S = 10.0
READY_GIVE_UP_S = 3600.0  # a plot-client silent this long does not get its sector from here
CLIENT_UNREACHABLE_RETRY_S = 15.0
FAILED_RETRY_DELAY_S = 10.0
PULL_TIMEOUT_S = 5.0
MIN_CHUNK, MAX_CHUNK = 64 * 1024, 16 * 1024 * 1024  # FetchSectorRange chunk sizes served


class HeldJob:
    """A job this plot-server holds, from its claim to its ack."""

    def __init__(self, claimed: ClaimedJob[PlotSectorJob]) -> None:
        self.claimed = claimed
        self.job = claimed.job
        self.abort = threading.Event()
        self.abort_reason = ""
        self.stage = STAGE_CLAIMED
        self.done = 0
        self.total = 0
        self.outcome: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self.started = time.monotonic()
        self.plotting = True  # counts against sectors_in_flight from its pull until its sector is finished

    def cancel(self, reason: str) -> None:
        if not self.abort.is_set():
            self.abort_reason = reason
            self.abort.set()
        if not self.outcome.done():
            self.outcome.set_result((DONE_UNWANTED, reason))


class PlotServerService(Daemon):
    name = ROLE

    def __init__(self, config: PlotServerConfig) -> None:
        super().__init__()
        self.config = config
        self.instance = config.instance
        self.log = self.log.bind(instance=config.instance)
        self.bus: Bus | None = None
        self.store = FinishedSectors(config.base_path)
        self.queue: WorkQueue[PlotSectorJob] | None = None
        self.worker: Worker[PlotSectorJob] | None = None
        self.pipeline: SectorPipeline | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.registration: Registration | None = None
        self.server: PeerServer | None = None
        self.endpoint = ""
        self.held: dict[str, HeldJob] = {}
        self._room = asyncio.Event()
        self.readiness: WorkerReadiness | None = None
        self.plotter = None  # services.metrics.plotter.PlotterView, once the backend is known
        self.busy = BusyClock()
        self.sector_bytes = 0
        self.stats = {"claimed": 0, "refused": 0, "plotted": 0, "acked": 0, "aborted": 0, "failed": 0,
                      "given_back": 0, "plotting_s_total": 0.0}

    # ---- lifecycle

    async def start(self) -> None:
        cfg = self.config
        try:
            self.store.lock()
        except (FinishedSectorError, OSError) as exc:
            raise DaemonError(str(exc)) from None
        removed = await asyncio.to_thread(self.store.clear)
        if removed:
            self.log.warning("removed sectors a previous run left unfinished (their jobs are redelivered)",
                             files=len(removed))
        self.executor = ThreadPoolExecutor(cfg.record_encoding_concurrency, thread_name_prefix="encode")
        try:
            self.pipeline = SectorPipeline.from_config(cfg, self.store, self.executor)
        except (RuntimeError, ValueError) as exc:  # e.g. --backend gpu without a usable device
            raise DaemonError(f"plot-server backend: {exc}") from None
        backend = self.pipeline.backend
        self.plotter = self.metrics.plotter(CUDA_KIND if backend == "gpu" else CPU_KIND)
        self.plotter.capacity_total.set(cfg.sectors_in_flight)
        self.readiness = await prepare_worker(
            backend=backend, hourly_cost=cfg.hourly_cost, gpu_concurrency=cfg.gpu_concurrency, metrics=self.metrics,
            log=self.log, known_answer_file=cfg.self_test_known_answer)
        self.bus = await Bus.connect(list(cfg.nats_servers), name=f"{ROLE}-{self.instance}", metrics=self.metrics.bus)
        membership = await Membership.open(self.bus)
        if not self.readiness.ok:  # up and registered, so the operator sees why, but never pulling jobs
            self.registration = await membership.register(
                Member(role=ROLE, instance=self.instance, capacity=self._capacity()))
            self.log.error("plot-server started without taking work", reason=self.readiness.reason)
            return
        await self.pipeline.start(self.bus, self.metrics)
        self.server = PeerServer(cfg.cluster_secret, name=f"{ROLE}-{self.instance}")
        self.server.route(FetchSectorRange, self._serve_range)
        await self.server.start(cfg.listen_host, cfg.listen_port)
        self.metrics.tcp.watch("sector", self.server)
        self.endpoint = self.server.endpoint(cfg.advertise_host)
        self.queue = await WorkQueue.open(self.bus, PlotSectorJob, SECTOR_JOB_QUEUE)
        self.worker = await self.queue.worker()
        await self.bus.serve(SectorJobDone, self._on_done, instance=self.instance, queue_group=self.instance)
        await self.bus.serve(SectorJobCancel, self._on_cancel, instance=self.instance, queue_group=self.instance)
        self.registration = await membership.register(
            Member(role=ROLE, instance=self.instance, endpoints=[self.endpoint], capacity=self._capacity()))
        self.log.info("plot-server ready", backend=backend, endpoint=self.endpoint,
                      record_encoding_concurrency=cfg.record_encoding_concurrency,
                      sectors_in_flight=cfg.sectors_in_flight, max_finished_sectors=cfg.max_finished_sectors,
                      queue=self.queue.stream, consumer=self.queue.consumer)

    async def run(self) -> None:
        self.spawn(self.registration.follow(self._capacity, 2.0))
        if self.worker is None:  # the self-test failed: refuse work until stopped
            await self.stop_event.wait()
            return
        while not self.stop_event.is_set():
            if not self._has_room():
                self._room.clear()
                await self._room.wait()
                continue
            try:
                claimed = await self.worker.next(timeout=PULL_TIMEOUT_S)
            except BusError as exc:
                self.log.warning("cannot pull sector jobs; opening the queue again", error=str(exc))
                await asyncio.sleep(1)
                try:  # the stream or consumer may have been deleted / recreated meanwhile
                    self.queue = await WorkQueue.open(self.bus, PlotSectorJob, SECTOR_JOB_QUEUE)
                    self.worker = await self.queue.worker()
                except Exception as reopen:  # noqa: BLE001 - still disconnected: try again later
                    self.log.debug("queue not reachable yet", error=str(reopen))
                continue
            if claimed is None:
                continue
            if claimed.job.job_id in self.held:  # a second copy of a job held here already
                await claimed.drop("a copy of this job is already held by this plot-server")
                self.plotter.job("abandoned")
                continue
            if claimed.attempt > 1:
                self.plotter.job("redelivered")
            held = HeldJob(claimed)
            self.held[held.job.job_id] = held
            self._room_changed()  # gauges and the busy clock follow
            self.spawn(self._hold(held))

    async def stop(self) -> None:
        held = list(self.held.values())
        for job in held:
            job.abort_reason = "plot-server stopping"
            job.abort.set()
        await self.cancel_tasks()
        for job in held:  # give them back now rather than after the ack wait
            try:
                if await job.claimed.retry("plot-server stopping"):
                    self.stats["given_back"] += 1
            except Exception:  # noqa: BLE001 - redelivered after the ack wait anyway
                pass
        self.held.clear()
        if self.registration is not None:
            await self.registration.stop()
        if self.server is not None:
            await self.server.stop()
        if self.pipeline is not None:
            await self.pipeline.stop()
        if self.bus is not None:
            await self.bus.close()
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
        self.store.unlock()

    # ---- room (backpressure)

    @property
    def plotting(self) -> int:
        """Jobs pulled whose sector is not finished yet (claiming, fetching, encoding, writing)."""
        return sum(1 for held in self.held.values() if held.plotting)

    def _has_room(self) -> bool:
        cfg = self.config
        return self.plotting < cfg.sectors_in_flight and self.store.waiting + self.plotting < cfg.max_finished_sectors

    def _room_changed(self) -> None:
        self._room.set()
        plotting = self.plotting
        self.busy.set_busy(plotting > 0)
        self.plotter.capacity_used.set(plotting)
        self.plotter.sectors_held.set(self.store.waiting)

    def _capacity(self) -> dict[str, int | float | str]:
        cfg = self.config
        stats = self.stats
        assert self.readiness is not None
        return {
            **self.readiness.capacity,
            "sectors_in_flight": self.plotting,
            "max_sectors_in_flight": cfg.sectors_in_flight,
            "finished_waiting": self.store.waiting,
            "max_finished_sectors": cfg.max_finished_sectors,
            "record_encoding_concurrency": cfg.record_encoding_concurrency,
            "peak_rss_bytes": peak_rss_bytes(),
            "memory_per_1000_piece_sector_bytes": memory_per_sector(1000, cfg.record_encoding_concurrency),
            "sectors_plotted": stats["plotted"],
            "seconds_per_sector": round(stats["plotting_s_total"] / stats["plotted"], 2) if stats["plotted"] else 0.0,
            "plotting_busy_s": round(self.busy.seconds, 1),
            "sector_bytes": self.sector_bytes,
        }

    async def _client_request(self, held: HeldJob, msg):  # noqa: ANN001, ANN201
        return await self.bus.request(msg, held.job.client, timeout=CLIENT_REQUEST_TIMEOUT_S, retries=0)

    async def _hold(self, held: HeldJob) -> None:
        job, claimed = held.job, held.claimed
        log = self.log.bind(job_id=job.job_id, farm=job.farm_id, sector=job.sector_index, attempt=claimed.attempt)
        try:
            async with claimed.keep_alive():
                try:
                    reply = await self._client_request(
                        held, SectorJobClaim(job_id=job.job_id, server=self.instance, attempt=claimed.attempt))
                except (NoResponders, RequestTimeout, RemoteError) as exc:
                    await claimed.retry(f"plot-client {job.client} did not answer the claim: {exc}",
                                        delay=CLIENT_UNREACHABLE_RETRY_S)
                    return
                if not reply.accepted:
                    self.stats["refused"] += 1
                    self.plotter.job("abandoned")
                    await claimed.drop(f"plot-client refused the claim: {reply.reason}")
                    return
                self.stats["claimed"] += 1
                log.info("plotting sector", replotting=job.replotting, pieces_in_sector=job.pieces_in_sector)
                ready = await self._plot(held, log)
                if ready is None:
                    return
                await self._offer(held, ready, log)
        finally:
            held.plotting = False
            self.held.pop(job.job_id, None)
            self.store.remove(job.job_id)
            self._room_changed()

    async def _plot(self, held: HeldJob, log) -> SectorJobReady | None:  # noqa: ANN001
        job, claimed = held.job, held.claimed
        progress_task = asyncio.ensure_future(self._progress_loop(held))
        plotter = self.plotter
        for counter in (plotter.sector_plotting, plotter.sector_downloading, plotter.sector_encoding):
            counter.inc()
        try:
            result = await self.pipeline.plot(job, held.abort, lambda stage, done, total: self._on_progress(
                held, stage, done, total))
        except PlottingAborted:
            self.stats["aborted"] += 1
            plotter.job("abandoned")
            log.info("sector job stopped", reason=held.abort_reason)
            await claimed.drop(f"stopped: {held.abort_reason}")
            return None
        except (PlottingFailed, OSError) as exc:  # OSError: BASE_PATH full or failing
            self.stats["failed"] += 1
            plotter.sector_plotting_error.inc()
            plotter.job("failed")
            log.warning("plotting failed", error=str(exc) or type(exc).__name__)
            await claimed.retry(f"plotting failed: {exc}", delay=FAILED_RETRY_DELAY_S)
            return None
        finally:
            held.plotting = False
            progress_task.cancel()
            await asyncio.gather(progress_task, return_exceptions=True)
            self._room_changed()
        self.stats["plotted"] += 1
        self.stats["plotting_s_total"] += result.seconds
        self.sector_bytes = result.size
        plotter.sector_downloading_time.observe(result.downloading_seconds)
        plotter.sector_downloaded.inc()
        plotter.sector_encoding_time.observe(result.encoding_seconds)
        plotter.sector_encoded.inc()
        plotter.sector_plotting_time.observe(result.seconds)
        plotter.sector_plotted.inc()
        log.info("sector plotted", seconds=round(result.seconds, 2), downloading_s=round(result.downloading_seconds, 2),
                 encoding_s=round(result.encoding_seconds, 2), writing_s=round(result.writing_seconds, 2),
                 peak_rss_mib=peak_rss_bytes() >> 20, piece_sources=result.piece_sources)
        held.stage = STAGE_READY
        return SectorJobReady(job_id=job.job_id, server=self.instance, endpoint=self.endpoint,
                              sector_size=result.size, checksum=result.checksum,
                              plotted_sector=result.plotted_sector, seconds=result.seconds,
                              downloading_seconds=result.downloading_seconds, encoding_seconds=result.encoding_seconds)

    async def _offer(self, held: HeldJob, ready: SectorJobReady, log) -> None:  # noqa: ANN001
        claimed = held.claimed
        offered = time.monotonic()
        deadline = offered + READY_GIVE_UP_S
        while not held.outcome.done():
            if time.monotonic() > deadline:
                await claimed.retry(f"plot-client {held.job.client} did not take the sector for {READY_GIVE_UP_S:.0f} s")
                return
            try:
                reply = await self._client_request(held, ready)
                if not reply.accepted:
                    held.cancel(f"plot-client refused the sector: {reply.reason}")
                    break
            except (NoResponders, RequestTimeout, RemoteError) as exc:
                log.info("plot-client not reachable; offering the sector again later", error=str(exc))
            try:
                await asyncio.wait_for(asyncio.shield(held.outcome), READY_RESEND_S)
            except asyncio.TimeoutError:
                pass
        outcome, reason = held.outcome.result()
        if outcome == DONE_WRITTEN:
            try:
                await claimed.ack()
            except Exception as exc:  # noqa: BLE001 - e.g. a copy of the job was dropped meanwhile
                log.warning("could not ack a delivered sector's job", error=str(exc) or type(exc).__name__)
            self.stats["acked"] += 1
            self.plotter.upload_time.observe(time.monotonic() - offered)
            self.plotter.job("done")
            log.info("sector delivered", seconds=round(time.monotonic() - held.started, 2))
        elif outcome == DONE_UNWANTED:
            self.plotter.job("abandoned")
            await claimed.drop(f"not wanted any more: {reason}")
        else:
            self.plotter.job("failed")
            await claimed.retry(f"plot-client could not take the sector: {reason}", delay=FAILED_RETRY_DELAY_S)

    def _on_progress(self, held: HeldJob, stage: str, done: int, total: int) -> None:
        """From the pipeline (event loop thread)."""
        changed = stage != held.stage
        held.stage, held.done, held.total = stage, done, total
        if changed:
            self.spawn(self._send_progress(held))

    async def _progress_loop(self, held: HeldJob) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            await self._send_progress(held)

    async def _send_progress(self, held: HeldJob) -> None:
        msg = SectorJobProgress(job_id=held.job.job_id, server=self.instance, stage=held.stage, done=held.done,
                                total=held.total)
        try:
            reply = await self._client_request(held, msg)
        except (NoResponders, RequestTimeout, RemoteError):
            return  # the plot-client may be restarting: carry on
        if not reply.keep_going:
            held.cancel(reply.reason or "the plot-client stopped the job")

    # ---- served

    def _on_done(self, msg: SectorJobDone) -> DoneReply:
        held = self.held.get(msg.job_id)
        if held is None:
            return DoneReply(ok=False, reason=f"job {msg.job_id} is not held by {self.instance}")
        if not held.outcome.done():
            held.outcome.set_result((msg.outcome, msg.reason))
        return DoneReply(ok=True)

    async def _serve_range(self, request: FetchSectorRange):  # noqa: ANN201 - async generator of BulkItem
        """A finished sector's bytes, read from BASE_PATH chunk by chunk as the client takes them."""
        size = self.store.size(request.job_id)
        if size is None:
            yield Missing(request.expected_keys())
            return
        end = request.offset + request.length
        if request.offset < 0 or request.length < 0 or end > size:
            raise FinishedSectorError(f"range {request.offset}+{request.length} outside sector of {size} bytes")
        chunk = request.chunk_size
        if not MIN_CHUNK <= chunk <= MAX_CHUNK:
            raise ValueError(f"chunk size {chunk} outside {MIN_CHUNK}..{MAX_CHUNK}")
        offset = request.offset
        while offset < end:
            length = min(chunk, end - offset)
            yield BulkItem(offset, await asyncio.to_thread(self.store.read, request.job_id, offset, length))
            offset += length

    def _on_cancel(self, msg: SectorJobCancel) -> None:
        held = self.held.get(msg.job_id)
        if held is not None:
            self.log.info("sector job cancelled by its plot-client", job_id=msg.job_id, reason=msg.reason)
            held.cancel(msg.reason or "cancelled")


class BusyClock:
    """Wall seconds during which at least one sector was being plotted (the measured throughput's
    denominator: idle time waiting for jobs does not make a GPU look slower)."""

    def __init__(self) -> None:
        self._total = 0.0
        self._since: float | None = None

    def set_busy(self, busy: bool) -> None:
        now = time.monotonic()
        if busy and self._since is None:
            self._since = now
        elif not busy and self._since is not None:
            self._total += now - self._since
            self._since = None

    @property
    def seconds(self) -> float:
        return self._total + (time.monotonic() - self._since if self._since is not None else 0.0)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
