"""services.bus.server: the real nats-server binary with generated and shipped configs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services.bus import Bus
from services.bus.server import (
    DEFAULT_MAX_PAYLOAD,
    NatsServer,
    NatsServerConfig,
    NatsServerError,
    find_nats_server_binary,
    free_port,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NATS_DIR = REPO / "nats"


def test_binary_is_found():
    binary = find_nats_server_binary()
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("nats-server: v2.")


def test_generated_single_node(nats_server):
    varz = nats_server.varz()
    assert varz["max_payload"] == DEFAULT_MAX_PAYLOAD == 3 * 1024 * 1024
    assert varz["port"] == nats_server.port and nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    jsz = nats_server.jsz()
    assert jsz["config"]["store_dir"].startswith(str(nats_server.workdir))


def test_stop_ends_process_and_removes_temporary_store():
    server = NatsServer().start()
    proc, workdir = server.process, server.workdir
    assert workdir is not None and workdir.is_dir()
    server.stop()
    assert proc.poll() is not None and not workdir.exists()
    server.stop()  # idempotent


async def test_async_context_manager():
    async with NatsServer(NatsServerConfig(max_payload=4 * 1024 * 1024)) as server:
        bus = await Bus.connect([server.url])
        assert bus.max_payload == 4 * 1024 * 1024
        await bus.close()
    assert not server.running


@pytest.mark.parametrize("conf", ["single-node.conf", "cluster-n1.conf", "cluster-n2.conf", "cluster-n3.conf"])
def test_shipped_configs_are_valid(conf):
    text = (NATS_DIR / conf).read_text()
    assert "max_payload: 3MB" in text and "jetstream" in text
    out = subprocess.run([find_nats_server_binary(), "-t", "-c", str(NATS_DIR / conf)], capture_output=True, text=True)
    assert out.returncode == 0 and "is valid" in out.stdout + out.stderr


def test_cluster_configs_route_to_the_other_two():
    for n in (1, 2, 3):
        text = (NATS_DIR / f"cluster-n{n}.conf").read_text()
        routes = {f"nats://192.168.0.{m}:4248" for m in (1, 2, 3) if m != n}
        assert all(r in text for r in routes) and f"192.168.0.{n}:4248" not in text
        assert f"server_name: n{n}-cluster" in text


async def test_single_node_conf_runs_with_overrides(tmp_path):
    # ports and store dir overridden so the test needs neither 4222/8222 nor /var/lib/nats
    server = NatsServer(config_file=NATS_DIR / "single-node.conf", port=0, http_port=free_port(),
                        store_dir=tmp_path / "js")
    try:
        server.start()
        bus = await Bus.connect([server.url])
        assert bus.max_payload == 3 * 1024 * 1024
        await bus.close()
        assert server.jsz()["config"]["store_dir"].startswith(str(tmp_path / "js"))
        assert server.varz()["server_name"] == "autonomys-single"
    finally:
        server.stop()


def test_bad_config_reports_server_log(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("listen: 127.0.0.1:1\nno_such_option {{{\n")
    with pytest.raises(NatsServerError, match="exited with status 1: nats-server: Parse error"):
        NatsServer(config_file=conf, port=0).start()
    with pytest.raises(NatsServerError, match="does not exist"):
        NatsServer(config_file=tmp_path / "missing.conf")


def test_render_rejects_bad_values():
    with pytest.raises(ValueError, match="concrete ports"):
        NatsServerConfig().render()
    with pytest.raises(ValueError, match="max_payload must be positive"):
        NatsServerConfig(port=1, http_port=2, max_payload=0).render()
    text = NatsServerConfig(port=1, http_port=2, jetstream=False).render()
    assert "jetstream" not in text and "max_payload: 3145728" in text
    assert "store_dir" not in NatsServerConfig(port=1, http_port=2).render()  # server default dir


def test_command_line_entry_point():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.bus.server", "--port", "0", "--http-port", "0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("nats-server ready: nats://127.0.0.1:"), line + proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
