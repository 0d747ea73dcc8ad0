"""Start a real dev node process for tests (``python -m services dev-node``) and talk to it.

Archiving the first segment is the slow part of a dev node start (KZG commitments of 256
records), so :func:`archived_template` archives once per test session into a template data
directory and :func:`clone_data_dir` hard-links it for each node (segment files are never
modified in place; every other state file is replaced atomically).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import websockets

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 600.0
# Chain flags every test dev node shares with the archived template (chain.json must match).
TEMPLATE_FLAGS = ("--pieces-in-sector", "1")


class DevNodeProcess:
    def __init__(self, data_dir: Path, *flags: str, log_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        url_file = self.data_dir / "rpc-url"
        if url_file.exists():
            url_file.unlink()
        self.log_path = log_path or self.data_dir / "dev-node.log"
        self._log = open(self.log_path, "ab")
        cmd = [
            sys.executable, "-m", "services", "dev-node",
            "--data-dir", str(self.data_dir),
            "--rpc-listen-on", "127.0.0.1:0",
            *flags,
        ]
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = ""

    def wait_url(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        url_file = self.data_dir / "rpc-url"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dev node exited with {self.proc.returncode}:\n{self.log_tail()}")
            if url_file.exists() and url_file.read_text().strip():
                self.url = url_file.read_text().strip()
                return self.url
            time.sleep(0.05)
        raise TimeoutError(f"dev node did not listen within {timeout} s:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> str:
        """Wait until the RPC listens and the pre-archived history is in place."""
        self.wait_url()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dev node exited with {self.proc.returncode}:\n{self.log_tail()}")
            status = asyncio.run(call(self.url, "dev_status"))
            if status["ready"] and status["lastSlot"] is not None:
                return self.url
            time.sleep(0.2)
        raise TimeoutError(f"dev node not ready within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status (kills and fails loudly on a hang)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"dev node ignored SIGTERM for {timeout} s:\n{self.log_tail()}")
        self._log.close()
        return self.proc.returncode


async def call(url: str, method: str, params: list | None = None, *, raw: bool = False) -> object:
    """One JSON-RPC call on a fresh connection; returns the result (or the whole reply if raw)."""
    async with websockets.connect(url, max_size=64 << 20) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}))
        reply = json.loads(await ws.recv())
    if raw:
        return reply
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def clone_data_dir(template: Path, target: Path) -> Path:
    """Hard-link copy of a dev node data dir (fresh blocks.jsonl and rpc-url)."""
    shutil.copytree(template, target, copy_function=os.link)
    for name in ("blocks.jsonl", "rpc-url", "dev-node.log"):
        path = target / name
        if path.exists():
            path.unlink()
    return target


def archived_template(base: Path, *flags: str) -> Path:
    """A data dir with the pre-archived history in place (archived by a real dev node run).

    ``AUTONOMYS_TEST_DEV_NODE_TEMPLATE=DIR`` keeps the template across test sessions (local
    iteration); by default it lives in the session's temporary directory.
    """
    override = os.environ.get("AUTONOMYS_TEST_DEV_NODE_TEMPLATE")
    template = Path(override) / "-".join(["dev-node-template", *flags]) if override else base / "dev-node-template"
    if (template / "segment-headers.jsonl").exists():
        return template
    node = DevNodeProcess(template, *flags)
    try:
        node.wait_ready()
    finally:
        status = node.terminate()
    if status != 0:
        raise RuntimeError(f"template dev node exited with {status}")
    return template
