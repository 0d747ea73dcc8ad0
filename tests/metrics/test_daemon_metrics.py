"""The dev node and the controller, as real processes against a real nats-server, serve their
metrics on every --prometheus-listen-on address: typed counters ported from their old stats
dicts, the bus instrumentation, component info; and they log JSON lines under a pipe."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from dev_node_process import REPO_ROOT, TEMPLATE_FLAGS, DevNodeProcess, archived_template, clone_data_dir  # noqa: E402

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def samples(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        out[("__type__", (("name", family.name),))] = family.type
    return out


def wait_for(condition, what: str, timeout: float = 120.0, proc: subprocess.Popen | None = None):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
            if value:
                return value
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_dev_node_and_controller_metrics(tmp_path, tmp_path_factory, nats_server):
    template = archived_template(tmp_path_factory.getbasetemp(), *TEMPLATE_FLAGS)
    node_ports, controller_port = [free_port(), free_port()], free_port()
    node = DevNodeProcess(clone_data_dir(template, tmp_path / "node"), *TEMPLATE_FLAGS, "--slot-duration-ms", "200",
                          *(f"--prometheus-listen-on=127.0.0.1:{p}" for p in node_ports))
    controller_log = tmp_path / "controller.log"
    controller = None
    try:
        node.wait_ready()
        with open(controller_log, "wb") as log:
            controller = subprocess.Popen(
                [sys.executable, "-m", "services", "cluster", "--nats-server", nats_server.url, "--prometheus-listen-on",
                 f"127.0.0.1:{controller_port}", "controller", "--tmp", "--node-rpc-url", node.url, "--instance",
                 "metrics-ctl"], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        got = wait_for(lambda: (s := samples(controller_port)).get(("subspace_farmer_controller_slots_total", ())) and
                       s[("subspace_farmer_controller_slots_total", ())] >= 3 and s, "3 slots at the controller",
                       proc=controller)
        assert got[("__type__", (("name", "subspace_farmer_controller_slots"),))] == "counter"
        assert got[("subspace_farmer_controller_node_connected", ())] == 1
        assert got[("subspace_farmer_controller_last_slot", ())] > 0
        assert got[("subspace_farmer_bus_published_total", (("message", "SlotInfoBroadcast"),))] >= 3
        assert got[("subspace_farmer_bus_connected", ())] == 1
        info = [k for k in got if k[0] == "subspace_farmer_component_info"]
        assert dict(info[0][1])["component"] == "controller" and dict(info[0][1])["name"] == "metrics-ctl"
        for port in node_ports:
            node_samples = samples(port)
            assert node_samples[("subspace_farmer_dev_node_slots_total", ())] >= 3
            assert node_samples[("__type__", (("name", "subspace_farmer_dev_node_slots"),))] == "counter"
            assert node_samples[("subspace_farmer_dev_node_ready", ())] == 1
            assert ("subspace_farmer_dev_node_chain_height", ()) in node_samples
        controller.send_signal(signal.SIGTERM)
        assert controller.wait(60) == 0
    finally:
        if controller is not None and controller.poll() is None:
            controller.kill()
            controller.wait()
        assert node.terminate() == 0
    records = [json.loads(line) for line in controller_log.read_text().splitlines() if line.startswith("{")]
    started = next(r for r in records if r["event"] == "controller started")
    assert started["component"] == "controller" and started["instance"] == "metrics-ctl"
    assert any(r["event"] == "prometheus metrics listening" and r["addresses"] == [f"127.0.0.1:{controller_port}"]
               for r in records)
