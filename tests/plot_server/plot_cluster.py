"""Real processes for the plotting tests: a dev node (cloned from the session's archived
template), a controller, and cluster daemons (``python -m services cluster ... <role>``) logging
JSON lines into a file, waited on by log line or event, stopped with SIGTERM or killed with
SIGKILL.

Import as ``plot_cluster`` (tests/plot_server is put on sys.path by the tests using it)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
if str(HERE.parent / "node") not in sys.path:
    sys.path.insert(0, str(HERE.parent / "node"))

from dev_node_process import TEMPLATE_FLAGS, DevNodeProcess, archived_template, call, clone_data_dir  # noqa: E402,F401

CONTROLLER_INSTANCE = "ctl-plot"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RoleProcess:
    def __init__(self, name: str, nats_url: str, role_args: list[str], log_path: Path,
                 cluster_args: tuple[str, ...] = ()) -> None:
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


def start_dev_node(template: Path, data_dir: Path, *flags: str) -> DevNodeProcess:
    return DevNodeProcess(clone_data_dir(template, data_dir), *TEMPLATE_FLAGS, *flags)


def start_controller(nats_url: str, node_url: str, log_dir: Path, wait: float = 120.0) -> RoleProcess:
    """A controller, returned once it serves the cluster ("controller started")."""
    controller = RoleProcess("controller", nats_url, ["controller", "--tmp", "--node-rpc-url", node_url,
                                                      "--instance", CONTROLLER_INSTANCE], log_dir / "controller.log")
    controller.wait_for("controller started", wait)
    return controller


def start_plot_server(nats_url: str, base: Path, log_dir: Path, name: str = "plot-server", *extra: str) -> RoleProcess:
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = ["plot-server", "--listen-host", "127.0.0.1", "--listen-port", str(port), "--instance", name,
            "--record-encoding-concurrency", "2", *extra, str(base)]
    return RoleProcess(name, nats_url, args, log_dir / f"{name}.log")


def stop_all(processes: list, timeout: float = 60.0) -> dict[str, int]:
    """SIGTERM everything (reverse start order); exit statuses by name."""
    statuses = {}
    for process in reversed(processes):
        if isinstance(process, RoleProcess):
            statuses[process.name] = process.terminate(timeout)
        else:
            statuses["dev-node"] = process.terminate(timeout)
    return statuses
