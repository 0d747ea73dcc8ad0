"""A plot-server whose start-up self-test fails pulls no sector job and says why: the real daemon
process, given a wrong known answer (``--self-test-known-answer``, as a faulty GPU would
compute), logs ``refusing work: ...``, registers ``accepting_work: 0`` with the reason and its
inventory, shows ``subspace_farmer_gpu_self_test_passed 0``, and never binds the work queue's
consumer: a job queued before it started is still there, undelivered, after its run loop has
refreshed its membership record. SIGTERM still stops it with status 0. On CPU (the same check
runs there)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plot_cluster import free_port, start_plot_server  # noqa: E402

from services.bus.client import Bus  # noqa: E402
from services.bus.jobs import WorkQueue  # noqa: E402
from services.bus.membership import Membership  # noqa: E402
from services.gpu import KNOWN_ANSWER  # noqa: E402
from services.plot_server.messages import SECTOR_JOB_QUEUE, PlotSectorJob  # noqa: E402
from services.protocol.sector import FarmerProtocolInfo  # noqa: E402

pytestmark = pytest.mark.integration

KEY = "plot-server.ps-bad"


def wrong_answer(path: Path) -> Path:
    """The reference's answer with the proof hash of challenge 4 replaced."""
    answer = msgspec.structs.replace(KNOWN_ANSWER, proof_hashes={**KNOWN_ANSWER.proof_hashes, 4: ("00" * 32,)})
    path.write_bytes(msgspec.json.encode(answer))
    return path


async def refreshed_record(membership: Membership, after: float, timeout: float = 60.0):  # noqa: ANN201
    """The plot-server's record once it was put again after ``after`` (its run loop is going)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        member = (await membership.members()).get(KEY)
        if member is not None and member.updated_at > after:
            return member
        await asyncio.sleep(0.2)
    raise AssertionError(f"{KEY} record not refreshed within {timeout} s")


async def test_failed_self_test_pulls_no_sector_job(tmp_path, nats_server):
    bus = await Bus.connect([nats_server.url], name="plot-self-test-check")
    queue = await WorkQueue.open(bus, PlotSectorJob, SECTOR_JOB_QUEUE)
    job = PlotSectorJob.build("01J0SELFTESTFARM0000000000", bytes(range(32)), 0, FarmerProtocolInfo.test_runtime(1), 1,
                              "test-client")
    published = await queue.publish(job)
    port = free_port()
    process = start_plot_server(nats_server.url, tmp_path / "base", tmp_path, "ps-bad", "--backend", "cpu",
                                "--hourly-cost", "0.75", "--prometheus-listen-on", f"127.0.0.1:{port}",
                                "--self-test-known-answer", str(wrong_answer(tmp_path / "ka.json")))
    try:
        line = json.loads(process.wait_for("refusing work:", 300))
        assert line["level"] == "error"
        assert line["event"].startswith("refusing work: known-answer check failed on the cpu backend: challenge 4:")
        process.wait_for("plot-server started without taking work", 60)
        membership = await Membership.open(bus)
        registered = (await membership.members())[KEY]
        member = await refreshed_record(membership, registered.updated_at)
        capacity = member.capacity
        assert capacity["accepting_work"] == 0 and capacity["hourly_cost"] == 0.75 and capacity["backend"] == "cpu"
        assert str(capacity["self_test"]).startswith("failed: known-answer check failed")
        assert capacity["gpus"] == 0 and "gpu_model" in capacity and capacity["sectors_plotted"] == 0
        assert member.endpoints == []  # no sector is served from here
        info = await bus.js.consumer_info(queue.stream, queue.consumer)
        assert (info.num_pending, info.num_ack_pending, info.num_waiting) == (1, 0, 0), info  # nobody pulls
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 'subspace_farmer_gpu_self_test_passed{backend="cpu"} 0.0' in text
        assert "subspace_farmer_hourly_cost 0.75" in text
        assert "subspace_farmer_plotter_sector_plotting_counter_Sectors_total{" in text
        assert 'subspace_farmer_plotter_sector_plotting_counter_Sectors_total{kind="cpu-' in text
        assert "} 0.0" in [ln for ln in text.splitlines() if ln.startswith(
            "subspace_farmer_plotter_sector_plotting_counter_Sectors_total{")][0]
        assert process.proc.poll() is None  # it stays up, visible to the operator
        claimed = await (await queue.worker()).next(timeout=10)  # the job was never delivered to it
        assert claimed is not None and claimed.sequence == published.sequence and claimed.attempt == 1
        await claimed.ack()
    except BaseException:
        print(process.tail())
        raise
    finally:
        await bus.close()
        status = process.terminate()
    assert status == 0
