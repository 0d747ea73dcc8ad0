"""services.bus.jobs against a real nats-server: de-duplication by job id, heartbeats keep a long
job with its worker, redelivery to another worker after a worker process is SIGKILLed, bounded
redeliveries (retry, drop, the exhausted-job advisory) and the documented names."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from services.bus import Bus
from services.bus.jobs import Job, WorkQueue, WorkQueueSettings, consumer_name, stream_name, subject_name
from shared_paths import REPO_ROOT

pytestmark = pytest.mark.integration


class EchoJob(Job):
    queue = "test-echo"
    value: int


@pytest.fixture
async def bus(nats_server):
    connected = await Bus.connect([nats_server.url], name="jobs-test")
    yield connected
    await connected.close()


async def test_names_and_deduplication(bus):
    queue = await WorkQueue.open(bus, EchoJob)
    assert (queue.stream, queue.subject, queue.consumer) == (
        "autonomys-jobs-test-echo", "autonomys.jobs.test-echo", "test-echo-workers")
    assert (stream_name("plot-sector"), subject_name("plot-sector"), consumer_name("plot-sector")) == (
        "autonomys-jobs-plot-sector", "autonomys.jobs.plot-sector", "plot-sector-workers")
    first = await queue.publish(EchoJob(job_id="farm-a.7.3", value=1))
    again = await queue.publish(EchoJob(job_id="farm-a.7.3", value=2))
    other = await queue.publish(EchoJob(job_id="farm-a.8.3", value=3))
    assert not first.duplicate and again.duplicate and again.sequence == first.sequence
    assert not other.duplicate and other.sequence == first.sequence + 1
    assert await queue.depth() == (2, 0)
    # opening again (another process) keeps the queued jobs
    reopened = await WorkQueue.open(bus, EchoJob)
    worker = await reopened.worker()
    got = [await worker.next(timeout=2), await worker.next(timeout=2)]
    assert [(c.job.job_id, c.job.value, c.attempt) for c in got] == [("farm-a.7.3", 1, 1), ("farm-a.8.3", 3, 1)]
    for claimed in got:
        await claimed.ack()
    assert await worker.next(timeout=0.5) is None
    assert await queue.depth() == (0, 0)
    info = await bus.js.stream_info(queue.stream)
    assert info.state.messages == 0  # work-queue retention: acked jobs leave the stream


async def test_heartbeats_keep_a_long_job(bus, nats_server):
    settings = WorkQueueSettings(ack_wait=1.0, max_deliver=3)
    queue = await WorkQueue.open(bus, EchoJob, settings)
    other_bus = await Bus.connect([nats_server.url], name="other-worker")
    try:
        other = await (await WorkQueue.open(other_bus, EchoJob, settings)).worker()
        holder = await queue.worker()
        await queue.publish(EchoJob(job_id="long", value=9))
        claimed = await holder.next(timeout=2)
        assert claimed is not None and claimed.attempt == 1
        async with claimed.keep_alive(interval=0.25):
            # three ack_waits pass; the other worker polls all along and never gets the job
            for _ in range(3):
                assert await other.next(timeout=1.0) is None
        await claimed.ack()
        assert await other.next(timeout=1.5) is None
        assert await queue.depth() == (0, 0)
    finally:
        await other_bus.close()


WORKER_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from services.bus import Bus
    from services.bus.jobs import Job, WorkQueue, WorkQueueSettings

    class EchoJob(Job):
        queue = "test-echo"
        value: int

    async def main():
        bus = await Bus.connect([sys.argv[1]], name="doomed-worker")
        queue = await WorkQueue.open(bus, EchoJob, WorkQueueSettings(ack_wait=1.0, max_deliver=int(sys.argv[2])))
        worker = await queue.worker()
        while (claimed := await worker.next(timeout=5)) is None:
            pass
        async with claimed.keep_alive(interval=0.2):
            print("claimed", claimed.job.job_id, claimed.attempt, flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
""")


def start_doomed_worker(url: str, max_deliver: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, url, str(max_deliver)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)


async def claimed_line(proc: subprocess.Popen) -> str:
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    assert line.startswith("claimed"), f"worker said {line!r}"
    return line.strip()


async def test_redelivery_to_another_worker_after_sigkill(bus, nats_server):
    settings = WorkQueueSettings(ack_wait=1.0, max_deliver=3)
    queue = await WorkQueue.open(bus, EchoJob, settings)
    survivor = await queue.worker()
    proc = start_doomed_worker(nats_server.url, settings.max_deliver)
    try:
        await queue.publish(EchoJob(job_id="crashy", value=5))
        assert await claimed_line(proc) == "claimed crashy 1"
        # while the doomed worker heartbeats, the job stays with it
        assert await survivor.next(timeout=1.5) is None
        proc.kill()
        proc.wait()
        claimed = None
        for _ in range(10):
            claimed = await survivor.next(timeout=1.0)
            if claimed is not None:
                break
        assert claimed is not None, "the job was not redelivered after its worker died"
        assert (claimed.job.job_id, claimed.job.value, claimed.attempt) == ("crashy", 5, 2)
        await claimed.ack()
        assert await queue.depth() == (0, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


async def test_bounded_retries_and_exhausted_jobs(bus, nats_server):
    settings = WorkQueueSettings(ack_wait=1.0, max_deliver=2)
    queue = await WorkQueue.open(bus, EchoJob, settings)
    worker = await queue.worker()

    # a failing job is retried once, then dropped on its last attempt (removed from the stream)
    await queue.publish(EchoJob(job_id="failing", value=1))
    first = await worker.next(timeout=2)
    assert first.attempt == 1 and not first.is_last_attempt
    assert await first.retry("pieces unavailable", delay=0.1) is True
    second = await worker.next(timeout=3)
    assert (second.job.job_id, second.attempt, second.is_last_attempt) == ("failing", 2, True)
    assert await second.retry("pieces unavailable again") is False
    assert await worker.next(timeout=0.5) is None
    info = await bus.js.stream_info(queue.stream)
    assert info.state.messages == 0

    # a job whose last holder dies stays in the stream; the advisory reports it to the owner
    exhausted = await queue.watch_exhausted()
    advisory = asyncio.ensure_future(exhausted.__anext__())
    await queue.publish(EchoJob(job_id="cursed", value=2))
    proc = start_doomed_worker(nats_server.url, settings.max_deliver)
    try:
        assert await claimed_line(proc) == "claimed cursed 1"
        proc.kill()
        proc.wait()
        last = None
        for _ in range(10):
            last = await worker.next(timeout=1.0)
            if last is not None:
                break
        assert last is not None and last.attempt == 2
        # this holder also "dies" (never acks); a worker keeps polling, the server gives up on it
        for _ in range(15):
            assert await worker.next(timeout=1.0) is None
            if advisory.done():
                break
        dead = await asyncio.wait_for(advisory, 1)
        assert dead.job is not None and dead.job.job_id == "cursed" and dead.deliveries == 2
        assert await queue.delete(dead.sequence) is True
        assert await queue.delete(dead.sequence) is False
        assert (await bus.js.stream_info(queue.stream)).state.messages == 0
    finally:
        advisory.cancel()
        await exhausted.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


async def test_undecodable_payload_is_dropped(bus):
    queue = await WorkQueue.open(bus, EchoJob)
    await bus.js.publish(queue.subject, b"\xc1not msgpack")
    await queue.publish(EchoJob(job_id="fine", value=3))
    worker = await queue.worker()
    assert await worker.next(timeout=2) is None  # the bad one, dropped
    good = await worker.next(timeout=2)
    assert good.job.job_id == "fine"
    await good.ack()
    assert (await bus.js.stream_info(queue.stream)).state.messages == 0
