"""Real cache-cluster processes for tests: the controller and cache roles started as
``python -m services cluster ...`` from this checkout, plus waits on the membership registry.

``export_from_dev_chain`` turns a dev node's data directory (its archived segments and headers)
into an ``autonomys-export-piece`` style directory without re-archiving: tests that need a
full-piece cache with history use it (the exporter itself is tested in tests/utils).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]


class RoleProcess:
    def __init__(self, name: str, argv: list[str], log_path: Path, prefix: tuple[str, ...] = (),
                 env: dict | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "services", *argv], cwd=REPO_ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT, env=full_env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL (no cleanup at all)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} ignored SIGTERM for {timeout} s:\n{self.tail()}")
        self._log.close()
        return self.proc.returncode


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def cluster_argv(nats_url: str, role: str, *args: str) -> list[str]:
    return ["cluster", "--nats-server", nats_url, role, *args]


def start_controller(nats_url: str, node_url: str, log_path: Path, instance: str = "ctl-cache-test",
                     prefix: tuple[str, ...] = ()) -> RoleProcess:
    return RoleProcess("controller", cluster_argv(nats_url, "controller", "--tmp", "--node-rpc-url", node_url,
                                                  "--instance", instance), log_path, prefix)


def start_cache(role: str, nats_url: str, path_spec: str, instance: str, log_path: Path, *extra: str,
                listen: str | None = None, prefix: tuple[str, ...] = (), env: dict | None = None) -> RoleProcess:
    listen = listen or f"127.0.0.1:{free_port()}"
    return RoleProcess(instance, cluster_argv(nats_url, role, path_spec, "--instance", instance, "--listen-on", listen,
                                              "--kzg-params", "dev", "--stall-timeout", "3", *extra),
                       log_path, prefix, env)


async def wait_member(bus, key: str, condition: Callable, timeout: float, what: str = "",  # noqa: ANN001
                      procs: tuple[RoleProcess, ...] = ()):  # noqa: ANN201
    """The membership record ``key`` once ``condition(member)`` holds (polls the registry)."""
    from services.bus.membership import Membership

    membership = await Membership.open(bus)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited with {proc.proc.returncode}:\n{proc.tail()}")
        members = await membership.members()
        last = members.get(key)
        if last is not None and condition(last):
            return last
        await asyncio.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)
    raise AssertionError(f"{key} not {what or 'ready'} within {timeout} s (last record {last}):\n{tails}")


def filled(member) -> bool:  # noqa: ANN001
    cap = member.capacity
    return cap.get("owned", 0) > 0 and cap.get("missing", 1) == 0


def export_from_dev_chain(node_dir: Path, export_dir: Path) -> int:
    """An export directory holding the dev chain's archived segments (pieces unverified)."""
    from services.cache.history_store import HistoryStore
    from services.protocol.constants import NUM_PIECES, PIECE_SIZE
    from services.protocol.segments import SegmentHeader

    headers = [SegmentHeader.from_json(json.loads(line))
               for line in (node_dir / "segment-headers.jsonl").read_text().splitlines() if line.strip()]
    with HistoryStore(export_dir) as store:
        for header in headers[store.segments:]:
            data = (node_dir / "segments" / f"{header.segment_index:08d}.pieces").read_bytes()
            pieces = [data[k * PIECE_SIZE:(k + 1) * PIECE_SIZE] for k in range(NUM_PIECES)]
            store.add_segment(header, pieces)
        return store.segments
