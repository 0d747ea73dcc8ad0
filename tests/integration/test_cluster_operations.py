"""Operations end to end on loopback, real processes: every daemon's metrics endpoint shows the
work it did, and ``autonomys-farmer status`` shows the running cluster, live in a real terminal
(tmux) and as a ``--json`` snapshot.

The cluster: nats-server, the dev node of the official farm's chain (every audit wins), the
controller, a proof-server (``--hourly-cost``), a plot-client farming a copy of the official
farm, each with ``--prometheus-listen-on``. Once the dev node has authored a block from our
solution and the plot-client has signed its reward, each endpoint is scraped for non-zero
counters of its own work (slots, solutions, proofs, audits, bus requests); the live view must
have shown the farm, the GPU row, the solutions and the signed reward it saw on the bus. Then a
second proof-server whose self-test fails joins: the view must show its red line.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest
from cluster_processes import REPO_ROOT, ClusterProcess, official_chain_flags, wait_for_our_block
from dev_node_process import DevNodeProcess, clone_data_dir
from official_farm import copy_farm, params
from prometheus_client.parser import text_string_to_metric_families

from services.gpu import KNOWN_ANSWER
from shared_paths import require_mainnet_kzg

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
BLOCK_TIMEOUT_S = 420  # first proofs after a cold start include KZG loading and numba caches


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class TmuxScreen:
    """A command running in a detached tmux session of its own (private server socket)."""

    def __init__(self, command: list[str], exit_file: Path, width: int = 200, height: int = 70) -> None:
        self.binary = shutil.which("tmux")
        if self.binary is None:
            message = "tmux is not installed: the live status view was NOT checked in a terminal"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.socket = f"autonomys-status-test-{os.getpid()}"
        env = f"PYTHONPATH={shlex.quote(str(REPO_ROOT))}"
        # tmux started without a terminal exports COLUMNS=80 LINES=24: let the pane's real size count
        shell = (f"unset COLUMNS LINES; cd {shlex.quote(str(REPO_ROOT))} && {env} {shlex.join(command)}; "
                 f"echo $? > {shlex.quote(str(exit_file))}")
        self.exit_file = exit_file
        self._tmux("new-session", "-d", "-s", "status", "-x", str(width), "-y", str(height), shell)

    def _tmux(self, *args: str) -> str:
        return subprocess.run([self.binary, "-L", self.socket, *args], capture_output=True, text=True,
                              timeout=30).stdout

    def text(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "status")

    def wait_for(self, *needles: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.text()
            if all(n in screen for n in needles):
                return screen
            if self.exit_file.exists() or time.monotonic() > deadline:
                raise AssertionError(f"screen lacks {[n for n in needles if n not in screen]}:\n{screen}")
            time.sleep(0.5)

    def interrupt(self, timeout: float = 30.0) -> int:
        self._tmux("send-keys", "-t", "status", "C-c")
        deadline = time.monotonic() + timeout
        while not self.exit_file.exists() or not self.exit_file.read_text().strip():
            if time.monotonic() > deadline:
                raise AssertionError(f"status did not exit on Ctrl-C:\n{self.text()}")
            time.sleep(0.2)
        return int(self.exit_file.read_text())

    def close(self) -> None:
        self._tmux("kill-server")


def status_json(nats_url: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "services", "status", "--nats-server", nats_url, "--json"],
                          cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_for_json(nats_url: str, condition, what: str, timeout: float = 60.0) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        snapshot = status_json(nats_url)
        if condition(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"status --json never showed {what}: {json.dumps(snapshot, indent=1)[:3000]}")
        time.sleep(1.0)


def check_metrics(ports: dict[str, int], farm_id: str) -> None:
    node = scrape(ports["dev-node"])
    assert value(node, "subspace_farmer_dev_node_slots_total") > 0
    assert value(node, "subspace_farmer_dev_node_blocks_authored_total") >= 1
    assert value(node, "subspace_farmer_dev_node_solutions_received_total") >= 1

    controller = scrape(ports["controller"])
    assert value(controller, "subspace_farmer_controller_slots_total") > 0
    assert value(controller, "subspace_farmer_controller_solutions_total", result="forwarded") >= 1
    assert value(controller, "subspace_farmer_controller_reward_signatures_total") >= 1
    assert value(controller, "subspace_farmer_bus_published_total", message="SlotInfoBroadcast") > 0
    assert value(controller, "subspace_farmer_bus_handled_total", message="FarmerAppInfoRequest") >= 1

    proof = scrape(ports["proof-server"])
    assert value(proof, "subspace_farmer_proof_server_proofs_total", result="Success") >= 1
    assert value(proof, "subspace_farmer_proof_server_proving_time_seconds_count") >= 1
    assert value(proof, "subspace_farmer_bus_handled_total", message="ProveRequest") >= 1
    assert value(proof, "subspace_farmer_gpu_self_test_passed", backend="cpu") == 1
    assert value(proof, "subspace_farmer_gpu_tables_per_second", backend="cpu") > 0
    assert value(proof, "subspace_farmer_hourly_cost") == 0.35

    cache = scrape(ports["sharded-cache"])
    assert value(cache, "subspace_farmer_disk_piece_cache_write_piece_Pieces_total", cache_id="sc-ops") > 0
    assert value(cache, "subspace_farmer_disk_piece_cache_capacity_used_Pieces", cache_id="sc-ops") > 0
    assert value(cache, "subspace_farmer_piece_getter_pieces_total", source="controller") > 0
    assert value(cache, "subspace_farmer_piece_getter_fetch_time_seconds_count", source="controller") > 0
    assert value(scrape(ports["controller"]), "subspace_farmer_farmer_cache_piece_cache_capacity_used_Pieces") > 0

    client = scrape(ports["plot-client"])
    assert value(client, "subspace_farmer_farm_auditing_time_seconds_count", farm_id=farm_id) > 0
    assert value(client, "subspace_farmer_farm_proving_time_seconds_count", farm_id=farm_id, result="Success") >= 1
    for stage in ("found", "submitted", "accepted"):
        assert value(client, f"subspace_farmer_farm_solutions_{stage}_total", farm_id=farm_id) >= 1, stage
    assert value(client, "subspace_farmer_farm_sectors_total_Sectors", farm_id=farm_id, state="Plotted") == 2
    assert value(client, "subspace_farmer_farm_audited_sectors", farm_id=farm_id) == 2
    assert value(client, "subspace_farmer_bus_request_time_seconds_count", message="ProveRequest") >= 1
    assert value(client, "subspace_farmer_bus_published_total", message="SolutionNotification") >= 1


def check_snapshot(snapshot: dict, farm_id: str) -> None:
    roles = {(c["role"], c["instance"]): c for c in snapshot["components"]}
    assert set(roles) == {("controller", "ctl-ops"), ("proof-server", "ps-ops"), ("plot-client", "pc-ops"),
                          ("sharded-cache", "sc-ops")}
    assert all(c["health"] == "ok" for c in roles.values()), roles
    assert snapshot["problems"] == []
    (farm,) = snapshot["farms"]
    assert (farm["farm_id"], farm["plotted"], farm["sectors"], farm["percent"]) == (farm_id, 2, 2, 100.0)
    assert farm["solutions"] >= 1 and farm["rewards"] >= 1
    (gpu,) = snapshot["gpus"]
    assert gpu["instance"] == "ps-ops" and gpu["accepting_work"] and gpu["self_test"] == "passed"
    assert gpu["proved"] >= 1 and gpu["hourly_cost"] == 0.35 and gpu["cost_basis"] == "self-test"
    assert gpu["cost_per_tib"] > 0 and gpu["tables_per_second"] > 0
    assert snapshot["totals"]["rewards"] >= 1 and snapshot["totals"]["last_slot"] > 0
    (cache,) = snapshot["caches"]
    assert cache["instance"] == "sc-ops" and cache["pieces"] > 0 and cache["fill_percent"] == 100.0, cache
    assert snapshot["totals"]["cache_fill_percent"] == 100.0


def wrong_answer(path: Path) -> Path:
    hashes = dict(KNOWN_ANSWER.proof_hashes)
    hashes[4] = ("00" * 32,)
    path.write_bytes(msgspec.json.encode(msgspec.structs.replace(KNOWN_ANSWER, proof_hashes=hashes)))
    return path


def test_metrics_and_status_of_a_farming_cluster(tmp_path, official_chain_template, nats_server) -> None:
    farm = copy_farm(tmp_path / "farm")
    farm_id = params()["farmId"]
    kzg = str(require_mainnet_kzg())
    ports = {name: free_port() for name in ("dev-node", "controller", "proof-server", "plot-client", "sharded-cache")}
    node = DevNodeProcess(clone_data_dir(official_chain_template, tmp_path / "node"), *official_chain_flags(),
                          "--block-authoring-delay", "30", f"--prometheus-listen-on=127.0.0.1:{ports['dev-node']}")
    url = nats_server.url
    processes: list[ClusterProcess] = []
    screen: TmuxScreen | None = None

    def daemon(name: str, *args: str) -> ClusterProcess:
        processes.append(ClusterProcess(name, url, ["--prometheus-listen-on", f"127.0.0.1:{ports.get(name, 0)}", *args],
                                        tmp_path / f"{name}.log"))
        return processes[-1]

    try:
        node_url = node.wait_ready()
        daemon("controller", "controller", "--tmp", "--node-rpc-url", node_url, "--instance", "ctl-ops")
        daemon("sharded-cache", "sharded-cache", f"path={tmp_path / 'cache'},size=64MiB", "--instance", "sc-ops",
               "--listen-on", f"127.0.0.1:{free_port()}", "--kzg-params", kzg)
        daemon("proof-server", "proof-server", "--kzg-params", kzg, "--instance", "ps-ops", "--hourly-cost", "0.35",
               "--backend", "cpu").wait_for("proof-server started", 300)
        screen = TmuxScreen([sys.executable, "-m", "services", "status", "--nats-server", url],
                            tmp_path / "status.exit")
        screen.wait_for("Components", "ctl-ops", "ps-ops")
        daemon("plot-client", "plot-client", "--reward-address", ALICE, "--kzg-params", kzg, "--instance", "pc-ops",
               f"path={farm},sectors=2")
        block = wait_for_our_block(node_url, params()["publicKey"], BLOCK_TIMEOUT_S)
        processes[-1].wait_for(f"Successfully signed reward hash 0x{block['hash']}", 60)

        live = screen.wait_for("pc-ops", farm_id, "2/2", "100.0%", "reward-signed", f"block 0x{block['hash'][:16]}",
                               "solution", f"of farm {farm_id} (pc-ops)", "passed")
        assert "✗" not in live and "all healthy" in live, live
        check_snapshot(wait_for_json(url, lambda s: s["totals"]["rewards"] >= 1 and any(
            g["proved"] for g in s["gpus"]) and all(c["missing"] == 0 for c in s["caches"]),
            "the reward, the proofs and a full cache"), farm_id)
        check_metrics(ports, farm_id)

        daemon("proof-server-bad", "proof-server", "--kzg-params", "dev", "--instance", "ps-bad", "--backend", "cpu",
               "--self-test-known-answer", str(wrong_answer(tmp_path / "wrong.json"))).wait_for("refusing work:", 300)
        failing = screen.wait_for("✗ proof-server ps-bad: refusing work: known-answer check failed on the cpu backend")
        assert "1 failing" in failing
        assert screen.interrupt() == 0
    except BaseException:
        for process in processes:
            print(process.tail())
        print(node.log_tail(60))
        if screen is not None:
            print(screen.text())
        raise
    finally:
        if screen is not None:
            screen.close()
        statuses = {p.name: p.terminate() for p in reversed(processes)}
        statuses["dev-node"] = node.terminate()
    assert set(statuses.values()) == {0}, statuses
