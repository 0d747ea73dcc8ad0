"""The operator's `nats` CLI (natscli v0.5.0, installed by .ci/run) shows the cluster: the
membership bucket and its records (`nats kv ...`), the bucket's stream and the watchers'
consumers (`nats stream ls -a`, `nats consumer info`), the plotting work queue's stream and
consumer (a queued sector job), and cluster traffic (`nats sub
'subspace.>'`, decoded with the --translate one-liner of docs/OPERATIONS.md).

Without the binary the test skips with the reason; under CI (CI=true) a missing binary fails."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.bus import Bus
from services.bus.jobs import WorkQueue, consumer_name, stream_name
from services.bus.membership import DEFAULT_BUCKET, Member, Membership
from services.controller.messages import CacheIdentify, FarmerIdentify
from services.plot_server.messages import PLOT_SECTOR_QUEUE, SECTOR_JOB_QUEUE, PlotSectorJob
from services.protocol.sector import FarmerProtocolInfo

pytestmark = pytest.mark.integration

# docs/OPERATIONS.md "Watching the bus": msgpack payloads printed as JSON (bytes as hex)
TRANSLATE = (f"{sys.executable} -c 'import sys,json,msgspec; "
             "print(json.dumps(msgspec.msgpack.decode(sys.stdin.buffer.read()), default=bytes.hex))'")


def nats_binary() -> str:
    candidates = [shutil.which("nats"), str(Path.home() / "go" / "bin" / "nats")]
    gopath = os.environ.get("GOPATH")
    if gopath:
        candidates.append(str(Path(gopath) / "bin" / "nats"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = "the nats CLI is not installed (go install github.com/nats-io/natscli/nats@v0.5.0; .ci/run does it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def nats(binary: str, url: str, *args: str) -> str:
    proc = subprocess.run([binary, "--server", url, "--no-context", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


async def test_nats_cli_shows_the_cluster(nats_server):
    binary = nats_binary()
    url = nats_server.url
    bus = await Bus.connect([url], name="nats-cli-test")
    try:
        membership = await Membership.open(bus)
        controller = await membership.register(Member(role="controller", instance="node1-controller",
                                                      endpoints=["ws://10.30.1.2:9944"],
                                                      capacity={"service_instances": 32}, version="0.1.0"))
        proof = await membership.register(Member(role="proof-server", instance="node1-proof-server", capacity={
            "backend": "gpu", "gpu_model": "NVIDIA GeForce RTX 4090", "gpus": 1, "vram_bytes": 25757220864,
            "tables_per_second": 9.4, "self_test": "passed", "accepting_work": 1, "hourly_cost": 0.35,
            "concurrency": 2, "proved": 14, "failed": 0, "busy": 0, "expired": 0, "avg_proving_ms": 412.3},
            version="0.1.0"))  # the record of docs/OPERATIONS.md
        watcher = await membership.watch()
        run = lambda *args: asyncio.to_thread(nats, binary, url, *args)  # noqa: E731

        assert DEFAULT_BUCKET in (await run("kv", "ls", "--names")).split()
        assert sorted((await run("kv", "ls", DEFAULT_BUCKET)).split()) == [
            "controller.node1-controller", "proof-server.node1-proof-server"]
        record = json.loads(await run("kv", "get", DEFAULT_BUCKET, "proof-server.node1-proof-server", "--raw"))
        assert record["capacity"]["gpu_model"] == "NVIDIA GeForce RTX 4090" and record["capacity"]["hourly_cost"] == 0.35
        info = await run("kv", "info", DEFAULT_BUCKET)
        assert "Maximum Age: 1m0s" in info and f"JetStream Stream: KV_{DEFAULT_BUCKET}" in info

        assert f"KV_{DEFAULT_BUCKET}" in (await run("stream", "ls", "--all", "--names")).split()
        consumers = (await run("consumer", "ls", f"KV_{DEFAULT_BUCKET}", "--names")).split()
        assert len(consumers) == 1  # the watcher above
        consumer = json.loads(await run("consumer", "info", f"KV_{DEFAULT_BUCKET}", consumers[0], "--json"))
        assert consumer["stream_name"] == f"KV_{DEFAULT_BUCKET}"

        # the plotting work queue (docs/OPERATIONS.md): one job waiting for a plot-server
        queue = await WorkQueue.open(bus, PlotSectorJob, SECTOR_JOB_QUEUE)
        await queue.publish(PlotSectorJob.build("farm-1", bytes(32), 7, FarmerProtocolInfo(1, 2, 5, (1, 10), 4), 4,
                                                "node1-plot-client"))
        jobs_stream, workers = stream_name(PLOT_SECTOR_QUEUE), consumer_name(PLOT_SECTOR_QUEUE)
        assert (jobs_stream, workers) == ("autonomys-jobs-plot-sector", "plot-sector-workers")  # as documented
        assert jobs_stream in (await run("stream", "ls", "--names")).split()
        queued = json.loads(await run("consumer", "info", jobs_stream, workers, "--json"))
        assert queued["num_pending"] == 1 and queued["num_ack_pending"] == 0, queued

        sub = await asyncio.create_subprocess_exec(binary, "--server", url, "--no-context", "sub", "subspace.>",
                                                   "--translate", TRANSLATE,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert sub.stdout is not None
        first = await asyncio.wait_for(sub.stdout.readline(), 30)
        assert b"Subscribing on subspace.>" in first, first
        wanted = ('Received on "subspace.controller.farmer-identify"',
                  'Received on "subspace.controller.default.cache-identify"', "Nats-Msg-Id: cache-identify-1")

        def printed(text: str) -> bool:  # both messages, and the de-dup id's message body after its header
            return all(w in text for w in wanted) and "{}" in text[text.index(wanted[2]):]

        rest = ""
        deadline = asyncio.get_running_loop().time() + 60
        # the CLI prints "Subscribing" before its SUB has reached the server (a busy machine
        # shows it): broadcast until both messages were printed
        while not printed(rest) and asyncio.get_running_loop().time() < deadline:
            await bus.broadcast(FarmerIdentify())
            await bus.broadcast(CacheIdentify(), instance="default", dedup_id="cache-identify-1")
            try:
                while not printed(rest):
                    rest += (await asyncio.wait_for(sub.stdout.read(65536), 1.0)).decode()
            except asyncio.TimeoutError:
                pass
        sub.terminate()
        await sub.wait()
        assert printed(rest), rest

        await watcher.stop()
        await controller.stop()
        await proof.stop()
        assert (await run("kv", "ls", DEFAULT_BUCKET)).strip() == "No keys found in bucket"  # clean stops leave at once
    finally:
        await bus.close()
