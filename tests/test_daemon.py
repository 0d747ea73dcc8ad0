"""services.daemon on real processes: a failed fatal task makes the daemon stop and exit 1 with
one line naming it; SIGTERM exits 0; metrics are served on every --prometheus-listen-on address
while it runs; a busy metrics port is a one-line exit 1 before start()."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration

DAEMON_SCRIPT = textwrap.dedent('''
    import asyncio, json, sys
    import msgspec
    from services.daemon import Daemon, run_daemon
    from services.logs import configure_logging

    class Config(msgspec.Struct):
        instance: str
        prometheus_listen_on: tuple = ()

    class Demo(Daemon):
        name = "demo"

        def __init__(self, config, mode):
            super().__init__()
            self.config, self.mode = config, mode
            self.ticks = self.metrics.controller.slots

        async def start(self):
            self.log.info("demo started")

        async def run(self):
            self.spawn(self.loop(), fatal=True)
            await self.stop_event.wait()

        async def loop(self):
            while True:
                self.ticks.inc()
                if self.mode == "fail" and self.ticks._value.get() >= 3:
                    raise RuntimeError("disk on fire")
                await asyncio.sleep(0.05)

        async def stop(self):
            await self.cancel_tasks()
            self.log.info("demo stopped cleanly")

    configure_logging("info", "json")
    mode, listens = sys.argv[1], tuple(sys.argv[2:])
    sys.exit(run_daemon(Demo(Config(instance="demo-1", prometheus_listen_on=listens), mode)))
''')


def start(tmp_path: Path, mode: str, *listens: str) -> subprocess.Popen:
    script = tmp_path / "demo_daemon.py"
    script.write_text(DAEMON_SCRIPT)
    return subprocess.Popen([sys.executable, str(script), mode, *listens], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_fatal_task_failure_exits_non_zero(tmp_path):
    proc = start(tmp_path, "fail")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert err.strip().splitlines()[-1] == "error: demo: Demo.loop failed: disk on fire"
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    failed = next(line for line in lines if line["event"] == "demo task failed")
    assert failed["level"] == "error" and failed["fatal"] is True and "disk on fire" in failed["error"]
    assert failed["component"] == "demo" and failed["instance"] == "demo-1"
    assert any(line["event"] == "demo stopped cleanly" for line in lines)  # stop() still ran
    assert "Traceback" not in err


def test_sigterm_exits_zero_and_metrics_are_served_on_every_address(tmp_path):
    ports = [free_port(), free_port()]
    proc = start(tmp_path, "run", *(f"127.0.0.1:{port}" for port in ports))
    try:
        texts = []
        for port in ports:
            deadline = time.monotonic() + 60
            while True:
                try:
                    texts.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                    time.sleep(0.1)
        for text in texts:
            assert 'subspace_farmer_component_info{component="demo",name="demo-1",version=' in text
            assert "subspace_farmer_controller_slots_total" in text
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert '"event": "stopped"' in err


def test_busy_metrics_port_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start(tmp_path, "run", f"127.0.0.1:{port}")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == (f"error: cannot serve Prometheus metrics on 127.0.0.1:{port} "
                                            "(--prometheus-listen-on): address already in use")
    assert "demo started" not in err and "Traceback" not in err
