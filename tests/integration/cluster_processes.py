"""Real cluster daemons for end-to-end tests: ``python -m services cluster ... <role>`` processes
logging JSON lines into a file, waited on by log line, stopped with SIGTERM.

Import as ``cluster_processes`` (tests/integration is on sys.path for its tests)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def official_chain_flags() -> tuple[str, ...]:
    """Dev-node flags of the chain the official farm was plotted on (vectors/official_farm/README.md):
    the mainnet trusted setup and unsafe RPC (add a long ``--block-authoring-delay`` to farm it)."""
    from shared_paths import require_mainnet_kzg

    return ("--kzg-params", str(require_mainnet_kzg()), "--rpc-methods", "unsafe")


def wait_for_our_block(url: str, public_key: str, timeout: float) -> dict:
    """The first block the dev node at ``url`` authored from ``public_key``'s solutions."""
    from dev_node_process import call

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        blocks = asyncio.run(call(url, "dev_blocks"))
        ours = [b for b in blocks if b["solution"]["publicKey"] == public_key]
        if ours:
            return ours[0]
        time.sleep(1.0)
    raise AssertionError(f"no block from the farm within {timeout} s; {asyncio.run(call(url, 'dev_status'))}")


class ClusterProcess:
    def __init__(self, name: str, nats_url: str, role_args: list[str], log_path: Path,
                 cluster_args: tuple[str, ...] = ()) -> None:
        """``cluster_args``: flags of ``cluster`` itself (before the role), after the NATS server."""
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        cmd = [sys.executable, "-m", "services", "cluster", "--log-format", "json", "--nats-server", nats_url,
               *cluster_args, *role_args]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return f"--- {self.name} ({self.log_path}) ---\n" + "\n".join(self.text().splitlines()[-lines:])

    def events(self, name: str, **fields: object) -> list[dict]:
        """The JSON log records whose ``event`` is ``name`` (and whose ``fields`` match)."""
        found = []
        for line in self.text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name and all(
                    record.get(k) == v for k, v in fields.items()):
                found.append(record)
        return found

    def wait_for_event(self, name: str, timeout: float, count: int = 1, **fields: object) -> dict:
        """The ``count``-th ``name`` event (matching ``fields``); fails if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name, **fields)
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} before {name!r}:\n{self.tail()}")
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: no {name!r} {fields} (x{count}) within {timeout} s:\n{self.tail()}")

    def lines_with(self, needle: str) -> list[str]:
        return [line for line in self.text().splitlines() if needle in line]

    def wait_for(self, needle: str, timeout: float, count: int = 1) -> str:
        """The ``count``-th log line containing ``needle``; fails if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.lines_with(needle)
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} before {needle!r}:\n{self.tail()}")
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: no {needle!r} (x{count}) within {timeout} s:\n{self.tail()}")

    def children(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; the exit status (kills and fails loudly on a hang)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} ignored SIGTERM for {timeout} s:\n{self.tail()}")
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode
