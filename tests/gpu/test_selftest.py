"""GPU self-test and work gate on the CPU backend (no GPU here): the reference known answer
passes; a wrong known answer makes the process refuse work, saying why, in its exit status, its
metrics and its membership record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from services.bus import Bus
from services.bus.membership import Member, Membership
from services.gpu import KNOWN_ANSWER, inventory, prepare_worker, run_self_test
from services.metrics import DaemonMetrics

REPO_ROOT = Path(__file__).resolve().parents[2]
WRONG_ANSWER = msgspec.structs.replace(KNOWN_ANSWER, proof_hashes={**KNOWN_ANSWER.proof_hashes, 4: ("00" * 32,)})


def test_cpu_backend_passes_the_known_answer():
    result = run_self_test(backend="cpu")
    assert result.ok, result.reason
    assert [c.name for c in result.checks] == ["known-answer", "verify"]
    assert result.tables_per_second > 0 and result.backend == "cpu"


def test_wrong_known_answer_is_refused_with_the_reason():
    result = run_self_test(backend="cpu", known_answer=WRONG_ANSWER)
    assert not result.ok
    assert result.reason.startswith("known-answer check failed on the cpu backend: challenge 4: 1 proof(s) df021712")
    assert "the reference 1 0000000000000000" in result.reason


def test_gpu_backend_without_a_gpu_is_a_failed_self_test():
    if inventory().backend == "gpu":
        pytest.skip("a GPU is present")
    result = run_self_test(backend="gpu")
    assert not result.ok and "backend gpu requested but" in result.reason


@pytest.mark.integration
def test_self_test_command_refuses_work_in_a_real_process(tmp_path):
    wrong = tmp_path / "wrong.json"
    wrong.write_bytes(msgspec.json.encode(WRONG_ANSWER))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "services", "self-test", "--backend", "cpu", "--known-answer",
                           str(wrong), "--json"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: refusing work: known-answer check failed on the cpu backend: challenge 4:")
    report = json.loads(proc.stdout)
    assert report["self_test"]["ok"] is False and report["inventory"]["backend"] == "cpu"


@pytest.mark.integration
async def test_refusing_worker_says_so_in_membership_and_metrics(nats_server):
    metrics = DaemonMetrics("proof-server")
    readiness = await prepare_worker(backend="cpu", hourly_cost=0.4, metrics=metrics, known_answer=WRONG_ANSWER)
    assert not readiness.ok
    bus = await Bus.connect([nats_server.url], name="selftest")
    try:
        membership = await Membership.open(bus)
        registration = await membership.register(Member(role="proof-server", instance="gpu-box-1",
                                                        capacity=readiness.capacity))
        members = await membership.members()
        await registration.stop()
    finally:
        await bus.close()
    capacity = members["proof-server.gpu-box-1"].capacity
    assert capacity["accepting_work"] == 0 and capacity["hourly_cost"] == 0.4 and capacity["backend"] == "cpu"
    assert str(capacity["self_test"]).startswith("failed: known-answer check failed")
    assert metrics.registry.get_sample_value("subspace_farmer_gpu_self_test_passed", {"backend": "cpu"}) == 0


@pytest.mark.gpu
def test_gpu_backend_passes_with_vram_check():
    if inventory().backend != "gpu":
        pytest.skip("no CUDA GPU with cupy on this machine: the GPU self-test was NOT run")
    result = run_self_test(backend="gpu", vram_bytes=1 << 30)
    assert result.ok, result.reason
    assert [c.name for c in result.checks] == ["known-answer", "verify", "vram"]
