"""Real quickstart processes for tests: start one, read its terminal until a line, find what it
left running."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes (other than us) that mention ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def start_quickstart(data: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services", "quickstart", "--data-dir", str(data), "--progress-interval", "1", *extra],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def read_until(proc: subprocess.Popen, predicate, what: str) -> list[str]:  # noqa: ANN001
    """stdout lines up to the first one ``predicate`` accepts (fails if the process ends first)."""
    lines: list[str] = []
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"quickstart ended before {what}:\n{''.join(lines)}\n{proc.stderr.read()}")
        lines.append(line)
        if predicate(line):
            return lines
