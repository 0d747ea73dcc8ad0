"""``autonomys-farmer status`` against a real nats-server with a registered member."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from services.bus.client import Bus
from services.bus.membership import Member, Membership
from services.utils.status import format_members

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _status(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services", "status", *argv, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_status_lists_registered_members(nats_server):
    bus = await Bus.connect([nats_server.url])
    try:
        membership = await Membership.open(bus)
        registration = await membership.register(Member(role="sharded-cache", instance="box-1",
                                                        endpoints=["tcp://10.0.0.5:9955"],
                                                        capacity={"pieces": 1000}, version="0.1.0"))
        try:
            code, out, err = await _status("--nats-server", nats_server.url, "--json")
            assert code == 0, err
            members = json.loads(out)
            assert [(m["role"], m["instance"]) for m in members] == [("sharded-cache", "box-1")]
            assert members[0]["endpoints"] == ["tcp://10.0.0.5:9955"]
            code, out, err = await _status("--nats-servers", nats_server.url)
            assert code == 0, err
            assert "sharded-cache" in out and "box-1" in out and "capacity=pieces=1000" in out
        finally:
            await registration.stop()
    finally:
        await bus.close()


async def test_status_unreachable_server_is_one_line():
    code, out, err = await _status("--nats-server", "nats://127.0.0.1:1", "--timeout", "3")
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error: ")
    assert "nats://127.0.0.1:1" in err


def test_format_members_empty_and_age():
    assert format_members([]) == "no live members"
    line = format_members([{"role": "controller", "instance": "n1", "updated_at": 100.0}], now=105.0)
    assert "controller" in line and "seen=5s ago" in line
