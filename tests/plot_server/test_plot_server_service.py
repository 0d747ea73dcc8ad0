"""The plot-server daemon as its plot-clients see it: real nats-server, dev node and controller
processes, a real plot-server process, and this test answering the job's plot-client side of
the protocol (services.plot_server.messages) over NATS and downloading over TCP.

* a job is claimed, reported, offered, downloaded (bytes identical to the protocol core's
  ``plot_sector`` of the same pieces) and acked only after ``SectorJobDone(written)``;
* backpressure: with ``--max-finished-sectors 1`` a second job stays queued while the first
  finished sector waits for its download; a refused claim drops the job;
* a cancel stops a job and its finished sector is deleted.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plot_cluster import TEMPLATE_FLAGS, archived_template, start_controller, start_dev_node, start_plot_server, stop_all  # noqa: E402

from services.bus import Bus  # noqa: E402
from services.bus.jobs import WorkQueue  # noqa: E402
from services.controller.messages import FarmerAppInfoRequest, PieceRequest  # noqa: E402
from services.p2p import PeerClient  # noqa: E402
from services.plot_client.plotting_download import download_sector  # noqa: E402
from services.plot_server.messages import (  # noqa: E402
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
from services.protocol.erasure import ErasureCoding  # noqa: E402
from services.protocol.plotting import CpuRecordEncoder, chia_proofs_for_seed, plot_sector, sector_piece_indexes  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENT = "test-client"
FARM = "01J0PLOTSERVERTEST00000000"
PUBLIC_KEY = bytes(range(1, 33))


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """nats-server, dev node and controller shared by this module's tests."""
    from services.bus.server import NatsServer

    base = tmp_path_factory.mktemp("plot-server-chain")
    template = archived_template(tmp_path_factory.getbasetemp(), *TEMPLATE_FLAGS)
    nats = NatsServer().start()
    node = start_dev_node(template, base / "node", "--slot-duration-ms", "2000")
    processes = [node]
    try:
        node_url = node.wait_ready()
        processes.append(start_controller(nats.url, node_url, base))
        yield nats, base, processes
    finally:
        stop_all(processes)
        nats.stop()


class JobOwner:
    """The plot-client side of the sector-job protocol, played by the test."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.claims: asyncio.Queue[SectorJobClaim] = asyncio.Queue()
        self.progress: list[SectorJobProgress] = []
        self.readies: asyncio.Queue[SectorJobReady] = asyncio.Queue()
        self.refuse: set[str] = set()
        self.stop: set[str] = set()
        self.ready_offers: dict[str, int] = {}

    async def serve(self) -> None:
        await self.bus.serve(SectorJobClaim, self.on_claim, instance=CLIENT, queue_group=CLIENT)
        await self.bus.serve(SectorJobProgress, self.on_progress, instance=CLIENT, queue_group=CLIENT)
        await self.bus.serve(SectorJobReady, self.on_ready, instance=CLIENT, queue_group=CLIENT)

    def on_claim(self, msg: SectorJobClaim) -> ClaimReply:
        self.claims.put_nowait(msg)
        if msg.job_id in self.refuse:
            return ClaimReply(accepted=False, reason="test refuses it")
        return ClaimReply(accepted=True)

    def on_progress(self, msg: SectorJobProgress) -> ProgressReply:
        self.progress.append(msg)
        return ProgressReply(keep_going=msg.job_id not in self.stop, reason="test stops it")

    def on_ready(self, msg: SectorJobReady) -> ReadyReply:
        self.ready_offers[msg.job_id] = self.ready_offers.get(msg.job_id, 0) + 1
        self.readies.put_nowait(msg)
        return ReadyReply(accepted=True)


async def open_owner(nats_url: str):
    bus = await Bus.connect([nats_url], name="test-owner")
    queue = await WorkQueue.open(bus, PlotSectorJob, SECTOR_JOB_QUEUE)
    await bus.js.purge_stream(queue.stream)
    owner = JobOwner(bus)
    await owner.serve()
    info = (await bus.request(FarmerAppInfoRequest(), timeout=30)).unwrap().protocol_info
    return bus, queue, owner, info


def make_job(info, sector_index: int, pieces_in_sector: int = 1) -> PlotSectorJob:
    return PlotSectorJob.build(FARM, PUBLIC_KEY, sector_index, info, pieces_in_sector, CLIENT)


async def reference_sector(bus: Bus, job: PlotSectorJob) -> bytes:
    """The protocol core's plot of the same sector from the controller's pieces."""
    info = job.decoded_protocol_info()
    indexes = sector_piece_indexes(job.public_key, job.sector_index, info, job.pieces_in_sector)
    pieces = {i: (await bus.request(PieceRequest(piece_index=i), timeout=60)).piece for i in set(indexes)}
    encoder = CpuRecordEncoder(ErasureCoding(16), chia_proofs_for_seed("cpu"))
    result = await asyncio.to_thread(plot_sector, job.public_key, job.sector_index, info, job.pieces_in_sector,
                                     pieces, encoder)
    return result.sector


async def download(ready: SectorJobReady) -> bytes:
    buffer = bytearray(ready.sector_size)

    async def write(offset: int, view: memoryview) -> None:
        buffer[offset:offset + len(view)] = view

    async with PeerClient() as client:
        await download_sector(client, ready.endpoint, ready.job_id, ready.sector_size, ready.checksum, write)
    return bytes(buffer)


async def expect(getter, server, timeout: float):  # noqa: ANN001, ANN201
    """``await getter`` (a queue's get()), failing early with the log if the plot-server exits."""
    task = asyncio.ensure_future(getter)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while not task.done():
            if server.proc.poll() is not None:
                raise AssertionError(f"plot-server exited with {server.proc.returncode}:\n{server.tail()}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"nothing within {timeout} s:\n{server.tail()}")
            await asyncio.wait({task}, timeout=0.5)
        return task.result()
    finally:
        task.cancel()


async def wait_until(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_plot_download_and_ack_after_done(chain, tmp_path):
    nats, _, _ = chain
    server = start_plot_server(nats.url, tmp_path / "base", tmp_path, "ps-one")
    bus = None
    try:
        bus, queue, owner, info = await open_owner(nats.url)
        job = make_job(info, 3)
        await queue.publish(job)
        claim = await expect(owner.claims.get(), server, 120)
        assert (claim.job_id, claim.server, claim.attempt) == (job.job_id, "ps-one", 1)
        ready = await expect(owner.readies.get(), server, 300)
        assert ready.server == "ps-one" and ready.endpoint.startswith("tcp://127.0.0.1:")
        stages = [p.stage for p in owner.progress if p.job_id == job.job_id]
        assert "encoding" in stages, stages
        plotted = ready.decoded_plotted_sector()
        assert (plotted.sector_index, plotted.sector_metadata.history_size) == (3, info.history_size)
        sector = await download(ready)
        assert sector == await reference_sector(bus, job)
        assert sector[-32:] == ready.checksum
        # held (un-acked) until the plot-client says it wrote the sector
        assert await queue.depth() == (0, 1)
        reply = await bus.request(SectorJobDone(job_id=job.job_id, outcome=DONE_WRITTEN), "ps-one", timeout=10)
        assert reply.ok
        await wait_until(lambda: _depth_is(queue, (0, 0)), 30, "the job to be acked")
        server.wait_for("sector delivered", 30)
        await wait_until(lambda: _no_files(tmp_path / "base"), 30, "the finished sector to be deleted")
    finally:
        if bus is not None:
            await bus.close()
        assert server.terminate() == 0


async def test_backpressure_refusal_and_cancel(chain, tmp_path):
    nats, _, _ = chain
    server = start_plot_server(nats.url, tmp_path / "base", tmp_path, "ps-two", "--max-finished-sectors", "1")
    bus = None
    try:
        bus, queue, owner, info = await open_owner(nats.url)
        first, second, third = make_job(info, 10), make_job(info, 11), make_job(info, 12)
        await queue.publish(first)
        await queue.publish(second)
        ready = await expect(owner.readies.get(), server, 300)
        assert ready.job_id == first.job_id
        # the finished sector waits: the second job stays in the queue through two more offers
        while owner.ready_offers[first.job_id] < 3:
            await expect(owner.readies.get(), server, 60)
            assert await queue.depth() == (1, 1)
            assert owner.claims.qsize() == 1  # only the first job's claim so far
        # the plot-client takes the first sector now; room again: the second job is pulled, and
        # the test refuses it, so it is dropped
        owner.refuse.add(second.job_id)
        await download(ready)
        await bus.request(SectorJobDone(job_id=first.job_id, outcome=DONE_WRITTEN), "ps-two", timeout=10)
        assert (await owner.claims.get()).job_id == first.job_id
        refused = await expect(owner.claims.get(), server, 60)
        assert refused.job_id == second.job_id
        await wait_until(lambda: _depth_is(queue, (0, 0)), 30, "the refused job to be dropped")
        # a cancelled job stops, its sector is not offered, its file is removed
        await queue.publish(third)
        claim = await expect(owner.claims.get(), server, 60)
        assert claim.job_id == third.job_id
        await bus.publish(SectorJobCancel(job_id=third.job_id, reason="test cancels it"), "ps-two")
        await wait_until(lambda: _depth_is(queue, (0, 0)), 60, "the cancelled job to be dropped")
        assert owner.readies.empty() or all(r.job_id != third.job_id for r in list(owner.readies._queue))
        await wait_until(lambda: _no_files(tmp_path / "base"), 30, "no sector file left")
        assert server.lines_with("sector job cancelled by its plot-client")
    finally:
        if bus is not None:
            await bus.close()
        assert server.terminate() == 0


async def _depth_is(queue: WorkQueue, expected: tuple[int, int]) -> bool:
    return await queue.depth() == expected


async def _no_files(base: Path) -> bool:
    return not [p for p in base.iterdir() if p.suffix in (".sector", ".partial")]


async def test_sigterm_gives_held_jobs_back_at_once(chain, tmp_path):
    nats, _, _ = chain
    server = start_plot_server(nats.url, tmp_path / "base", tmp_path, "ps-three")
    bus = None
    try:
        bus, queue, owner, info = await open_owner(nats.url)
        job = make_job(info, 20)
        await queue.publish(job)
        claim = await expect(owner.claims.get(), server, 120)
        assert claim.job_id == job.job_id and await queue.depth() == (0, 1)
        assert server.terminate() == 0
        assert server.lines_with("jobs.retry") and "plot-server stopping" in server.lines_with("jobs.retry")[0]
        # back in the queue at once, not after its 30 s ack wait
        worker = await queue.worker()
        again = await worker.next(timeout=5)
        assert again is not None and again.job.job_id == job.job_id and again.attempt == 2
        await again.ack()
    finally:
        if bus is not None:
            await bus.close()
        server.terminate()
