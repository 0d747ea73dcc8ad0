"""The proof-server daemon: proves audit winners for every plot-client of the cluster.

``cluster ... proof-server`` (the manual starts it on the node machines, one per GPU with
``CUDA_VISIBLE_DEVICES``). It answers :class:`~services.proof_server.messages.ProveRequest` in
the queue group ``subspace.proof-server``, so several proof-servers share the requests. Each
request carries one record's data (not the sector), so the work here is all of proving: the
record's PoS tables (on the GPU when the PoS backend has one and ``--backend`` is ``auto`` or
``gpu``, else on the CPU), un-masking, recovery of the record polynomial and the chunk's KZG
witness.

Bounded: at most ``concurrency`` proofs run at once; a request that finds them all taken is
answered ``busy`` at once (the plot-client asks again, reaching another proof-server of the
queue group, or proves locally), never queued behind the others. A request whose deadline has
passed is answered ``expired`` without being worked on; a proof that ends past its deadline is
still returned (the plot-client decides), and counted.

Before it takes work it runs the GPU self-test (``services.gpu.prepare_worker``: the K=20
known answer on its backend, a proof verification, VRAM for its concurrency). A process that
fails it stays up but never joins the queue group (so no request reaches it), logs
``refusing work: <reason>`` and says so in its membership record (``self_test``,
``accepting_work: 0``) and in ``subspace_farmer_gpu_self_test_passed``.

Registered in the membership bucket as role ``proof-server`` with its inventory (GPU model,
VRAM), measured throughput, ``--hourly-cost``, concurrency and proof counters (refreshed every
5 s when they change). Metrics: ``subspace_farmer_proof_server_*`` (proofs by result: ``Success``,
``Timeout`` proven past the deadline, ``PastDeadline`` dropped unproven, ``Rejected`` answered
busy, ``Failed`` bad record data), the bus's and the GPU's.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor


from services.bus.client import Bus
from services.bus.membership import Member, Membership
from services.daemon import Daemon, DaemonError
from services.gpu import WorkerReadiness, prepare_worker
from services.proof_server.config import ProofServerConfig
from services.proof_server.messages import ProveRequest, ProveResult
from services.protocol.parallel import Workers
from services.protocol.proving import ProvingError, prove_record
from services.protocol.reading import ReadingError
from services.protocol.solution import Solution

SERVICE_CONCURRENCY = 256  # requests taken off the subscription at once (most answer "busy")
DEFAULT_GPU_CONCURRENCY = 2


def default_concurrency(backend: str, gpu_concurrency: int | None) -> int:
    if backend == "gpu":
        return gpu_concurrency or DEFAULT_GPU_CONCURRENCY
    return max(1, min(8, (os.cpu_count() or 1) // 2))


class ProofServerService(Daemon):
    name = "proof-server"

    def __init__(self, config: ProofServerConfig) -> None:
        super().__init__()
        self.config = config
        self.log = self.log.bind(instance=config.instance)
        self.bus: Bus | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._service = None
        self._registration = None
        self._active = 0
        self.backend = "cpu"
        self.concurrency = 1
        self.readiness: WorkerReadiness | None = None
        self.proof_metrics = self.metrics.proof_server()
        self.stats = {"proved": 0, "busy": 0, "expired": 0, "failed": 0, "past_deadline": 0, "proving_s_total": 0.0}

    async def start(self) -> None:
        from services.protocol.pos.api import resolve_backend

        cfg = self.config
        try:
            self.backend = resolve_backend(cfg.backend)
        except (RuntimeError, ValueError) as exc:
            raise DaemonError(str(exc)) from None
        self.concurrency = cfg.concurrency or default_concurrency(self.backend, cfg.gpu_concurrency)
        self.readiness = readiness = await prepare_worker(
            backend=self.backend, hourly_cost=cfg.hourly_cost, gpu_concurrency=self.concurrency, metrics=self.metrics,
            log=self.log, known_answer_file=cfg.self_test_known_answer)
        self.proof_metrics.tables_per_second.set(readiness.self_test.tables_per_second)
        self.bus = await Bus.connect(list(cfg.nats_servers), name=f"proof-server-{cfg.instance}",
                                     metrics=self.metrics.bus)
        if readiness.ok:
            self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="prove")
            cores = os.cpu_count() or 1
            self._parts_pool = ThreadPoolExecutor(cores, thread_name_prefix="prove-parts")
            # the PoS table build, the NTTs and the witness MSM of one proof split over the cores
            self.workers = Workers(self._parts_pool, cores)
            self.kzg, self.erasure, self.proofs_for_seed = await asyncio.to_thread(
                load_proving_backend, cfg.kzg_params, self.backend, self.workers
            )
            self._service = await self.bus.serve(ProveRequest, self._on_prove, max_concurrency=SERVICE_CONCURRENCY)
        membership = await Membership.open(self.bus)
        self._registration = await membership.register(
            Member(role="proof-server", instance=cfg.instance, capacity=self._capacity())
        )
        if readiness.ok:
            self.log.info("proof-server started", backend=self.backend, concurrency=self.concurrency,
                          cuda_visible_devices=cfg.cuda_visible_devices)
        else:  # up and registered, so the operator sees why, but never in the queue group
            self.log.error("proof-server started without taking work", reason=readiness.reason)

    def _capacity(self) -> dict[str, int | float | str]:
        assert self.readiness is not None
        stats = self.stats
        return {
            **self.readiness.capacity,
            "concurrency": self.concurrency,
            "proved": stats["proved"],
            "failed": stats["failed"],
            "busy": stats["busy"],
            "expired": stats["expired"] + stats["past_deadline"],
            "avg_proving_ms": round(1000 * stats["proving_s_total"] / stats["proved"], 1) if stats["proved"] else 0.0,
        }

    async def run(self) -> None:
        self.spawn(self._registration.follow(self._capacity), fatal=True)
        await self.stop_event.wait()

    async def stop(self) -> None:
        await self.cancel_tasks()
        if self._registration is not None:
            await self._registration.stop()  # best effort: failures are logged there
        if self.bus is not None:
            await self.bus.close()
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
            self._parts_pool.shutdown(wait=True)
        self.log.info("proof-server stats", **self.stats)

    async def _on_prove(self, request: ProveRequest) -> ProveResult:
        metrics = self.proof_metrics
        if time.time() >= request.deadline:
            self.stats["expired"] += 1
            metrics.proof("PastDeadline")
            return ProveResult(expired=True)
        if self._active >= self.concurrency:
            self.stats["busy"] += 1
            metrics.proof("Rejected")
            return ProveResult(busy=True)
        self._active += 1
        metrics.queue_depth.set(self._active)
        start = time.monotonic()
        try:
            loop = asyncio.get_running_loop()
            solution = await loop.run_in_executor(self._executor, self._prove, request)
        except (ProvingError, ReadingError, ValueError) as exc:
            self.stats["failed"] += 1
            metrics.proof("Failed")
            self.log.warning("record cannot be proven", sector_index=request.sector_index,
                             piece_offset=request.piece_offset, error=str(exc))
            return ProveResult(error=str(exc))
        finally:
            self._active -= 1
            metrics.queue_depth.set(self._active)
        if solution is None:
            self.stats["expired"] += 1
            metrics.proof("PastDeadline")
            return ProveResult(expired=True)
        elapsed = time.monotonic() - start
        self.stats["proved"] += 1
        self.stats["proving_s_total"] += elapsed
        metrics.proving_time.observe(elapsed)
        late = time.time() > request.deadline
        if late:
            self.stats["past_deadline"] += 1
        metrics.proof("Timeout" if late else "Success")
        self.log.info("proved", public_key=request.public_key.hex()[:16], sector_index=request.sector_index,
                      piece_offset=request.piece_offset, time_s=round(elapsed, 3), past_deadline=late)
        return ProveResult(solution=solution.to_scale())

    def _prove(self, request: ProveRequest) -> Solution | None:
        if time.time() >= request.deadline:  # waited for a thread past the deadline: drop it
            return None
        return prove_record(request.record_data(), request.public_key, request.reward_address, request.sector_index,
                            request.history_size, request.s_bucket, self.kzg, self.erasure, self.proofs_for_seed,
                            self.workers)


def load_proving_backend(kzg_params: str | None, backend: str,  # noqa: ANN201 - (Kzg, ErasureCoding, ProofsForSeed)
                         workers: Workers | None = None):
    from services.kzg_setup import KzgSetupError, load_kzg
    from services.protocol.erasure import ErasureCoding
    from services.protocol.s_bucket_proofs import chia_proofs_for_seed

    try:
        kzg = load_kzg(kzg_params)
    except KzgSetupError as exc:
        raise DaemonError(f"{exc} (--kzg-params PATH|mainnet|dev)") from None
    return kzg, ErasureCoding(16), chia_proofs_for_seed(backend, workers)
