"""``autonomys-farmer status`` against a real nats-server with registered members: ``--json``
prints one snapshot, a pipe gets the screen printed once, an unreachable server one line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from services.bus.client import Bus
from services.bus.membership import Member, Membership

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _status(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services", "status", *argv, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_status_json_snapshot_and_plain_print(nats_server):
    bus = await Bus.connect([nats_server.url])
    try:
        membership = await Membership.open(bus)
        cache = await membership.register(Member(role="sharded-cache", instance="box-1",
                                                 endpoints=["tcp://10.0.0.5:9955"], version="0.1.0",
                                                 capacity={"slots": 1000, "pieces": 250, "missing": 750,
                                                           "fill_percent": 25.0}))
        gpu = await membership.register(Member(role="plot-server", instance="box-1-gpu0", capacity={
            "backend": "gpu", "gpu_model": "NVIDIA H200", "gpus": 1, "vram_bytes": 141 << 30,
            "tables_per_second": 40.0, "hourly_cost": 2.5, "self_test": "passed", "accepting_work": 1}))
        try:
            code, out, err = await _status("--nats-server", nats_server.url, "--json")
            assert code == 0, err
            snapshot = json.loads(out)
            assert [(c["role"], c["instance"]) for c in snapshot["components"]] == [
                ("plot-server", "box-1-gpu0"), ("sharded-cache", "box-1")]
            assert snapshot["components"][1]["endpoints"] == ["tcp://10.0.0.5:9955"]
            assert snapshot["components"][1]["health"] == "warn"
            assert snapshot["caches"] == [{"role": "sharded-cache", "instance": "box-1", "group": "", "slots": 1000,
                                           "owned": 1000, "pieces": 250, "missing": 750, "fill_percent": 25.0}]
            (row,) = snapshot["gpus"]
            assert row["gpu_model"] == "NVIDIA H200" and row["cost_basis"] == "self-test" and row["cost_per_tib"] > 0
            assert snapshot["problems"][0].startswith("no controller registered")
            code, out, err = await _status("--nats-servers", nats_server.url)  # stdout is a pipe: printed once
            assert code == 0, err
            assert "✗ no controller registered" in out and "box-1-gpu0" in out and "250/1,000" in out
        finally:
            await cache.stop()
            await gpu.stop()
    finally:
        await bus.close()


async def test_status_unreachable_server_is_one_line():
    code, out, err = await _status("--nats-server", "nats://127.0.0.1:1", "--timeout", "3")
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error: ")
    assert "nats://127.0.0.1:1" in err
