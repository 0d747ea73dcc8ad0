"""Shards on different addresses: two network namespaces made by the test, joined by a veth
pair (10.231.<n>.1 and .2, addresses only inside those namespaces). Namespace A runs nats-server,
the dev node, the controller, a full-piece cache and shard A; namespace B runs shard B and the
downloader. Every data-plane listener is off loopback, so it needs the cluster secret: a peer
without it, or with a wrong one, is refused; the benchmark in B downloads every piece of its
sectors from the shards across the namespaces. Namespaces are removed in ``finally``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cache"))
from cache_processes import REPO_ROOT, RoleProcess, export_from_dev_chain  # noqa: E402
from dev_node_process import TEMPLATE_FLAGS, archived_template, clone_data_dir  # noqa: E402

from services.bus.server import NatsServerConfig, find_nats_server_binary  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TIMEOUT = 300.0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _netns_available() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "needs root and iproute2 (ip netns)"
    probe = f"cache-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace: {exc.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


def _in(ns: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, *argv], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def _members(ns: str, nats_url: str) -> dict:
    out = _in(ns, "-m", "services", "status", "--nats-server", nats_url, "--json")
    if out.returncode != 0:
        return {}
    return {f"{m['role']}.{m['instance']}": m for m in json.loads(out.stdout)["components"]}


def _wait(condition, what: str, procs: list[RoleProcess]) -> object:  # noqa: ANN001
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
        value = condition()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"not {what} within {TIMEOUT} s:\n" + "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs))


def test_shards_in_two_network_namespaces(tmp_path: Path, tmp_path_factory) -> None:
    reason = _netns_available()
    if reason:
        pytest.skip(reason)
    template = archived_template(tmp_path_factory.getbasetemp(), *TEMPLATE_FLAGS)
    tag = os.getpid() % 250
    ns_a, ns_b = f"cache-a-{os.getpid()}", f"cache-b-{os.getpid()}"
    addr_a, addr_b = f"10.231.{tag}.1", f"10.231.{tag}.2"
    secret = tmp_path / "cluster-secret"
    secret.write_text("netns-test-secret-0123456789abcdef\n")
    secret.chmod(0o600)
    procs: list[RoleProcess] = []
    in_a, in_b = ("ip", "netns", "exec", ns_a), ("ip", "netns", "exec", ns_b)
    try:
        _ip("netns", "add", ns_a)
        _ip("netns", "add", ns_b)
        _ip("link", "add", "veth-ca", "netns", ns_a, "type", "veth", "peer", "name", "veth-cb", "netns", ns_b)
        for ns, dev, addr in ((ns_a, "veth-ca", addr_a), (ns_b, "veth-cb", addr_b)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

        nats = NatsServerConfig(host=addr_a, port=14222, http_port=18222, jetstream=True,
                                store_dir=str(tmp_path / "js"), server_name="netns")
        (tmp_path / "nats.conf").write_text(nats.render())
        nats_log = open(tmp_path / "nats.log", "ab")
        nats_proc = subprocess.Popen([*in_a, find_nats_server_binary(), "-c", str(tmp_path / "nats.conf")],
                                     stdout=nats_log, stderr=subprocess.STDOUT)
        nats_url = f"nats://{addr_a}:14222"
        node_dir = clone_data_dir(template, tmp_path / "node")
        node = RoleProcess("dev-node", ["dev-node", "--data-dir", str(node_dir), "--rpc-listen-on", f"{addr_a}:19944",
                                        "--rpc-methods", "unsafe", *TEMPLATE_FLAGS], tmp_path / "node.log", in_a)
        procs.append(node)
        _wait(lambda: (node_dir / "rpc-url").exists(), "listening", procs)
        cluster = ["cluster", "--nats-server", nats_url, "--cluster-secret-file", str(secret)]
        procs.append(RoleProcess("controller", [*cluster, "controller", "--tmp", "--node-rpc-url",
                                                f"ws://{addr_a}:19944", "--instance", "ctl-netns"],
                                 tmp_path / "controller.log", in_a))
        export_from_dev_chain(node_dir, tmp_path / "export")
        procs.append(RoleProcess("full", [*cluster, "full-piece-sharded-cache", f"path={tmp_path / 'export'}",
                                          "--instance", "full-ns", "--listen-on", f"{addr_a}:19956", "--kzg-params", "dev"],
                                 tmp_path / "full.log", in_a))
        for ns_prefix, name, addr in ((in_a, "shard-ns-a", addr_a), (in_b, "shard-ns-b", addr_b)):
            procs.append(RoleProcess(name, [*cluster, "sharded-cache", f"path={tmp_path / name},size=1GiB",
                                            "--instance", name, "--listen-on", f"{addr}:19955", "--kzg-params", "dev"],
                                     tmp_path / f"{name}.log", ns_prefix))

        def shards_filled() -> dict | None:
            members = _members(ns_b, nats_url)
            shards = [members.get(f"sharded-cache.shard-ns-{x}") for x in "ab"]
            if all(m and m["capacity"].get("owned", 0) > 0 and m["capacity"].get("missing") == 0 for m in shards):
                return members
            return None

        members = _wait(shards_filled, "filled", procs)
        assert members["sharded-cache.shard-ns-a"]["endpoints"] == [f"tcp://{addr_a}:19955"]
        assert members["sharded-cache.shard-ns-b"]["endpoints"] == [f"tcp://{addr_b}:19955"]
        owned = [members[f"sharded-cache.shard-ns-{x}"]["capacity"]["owned"] for x in "ab"]
        assert sum(owned) == 256 and min(owned) > 0

        probe = _in(ns_b, str(REPO_ROOT / "tests" / "cache" / "netns_probe.py"), f"tcp://{addr_a}:19955", str(secret))
        assert probe.returncode == 0, probe.stderr
        outcome = json.loads(probe.stdout.strip().splitlines()[-1])
        assert outcome["none"] == "HandshakeError" and outcome["wrong"] == "HandshakeError", outcome
        assert outcome["right"].startswith("ok:") and outcome["right"] != "ok:0+0", outcome

        bench = _in(ns_b, "-m", "services", "util", "sharded-cache-benchmark", "--nats-servers", nats_url,
                    "--sectors", "4", "--epoch", "1", "--cache-item-type", "piece", "--seed", "5", "--json",
                    "--no-controller", "--cluster-secret-file", str(secret), timeout=300)
        assert bench.returncode == 0, bench.stdout + bench.stderr
        summary = json.loads(bench.stdout.strip().splitlines()[-1])
        assert summary["failures"] == 0 and summary["pieces"] == 4, summary
        assert set(summary["sources"]) <= {f"tcp://{addr_a}:19955", f"tcp://{addr_b}:19955"}, summary
        for proc in procs:
            assert proc.alive(), proc.tail()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        if "nats_proc" in locals():
            nats_proc.terminate()
            nats_proc.wait(30)
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
