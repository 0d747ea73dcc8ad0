"""A proof-server whose start-up self-test fails takes no work and says why: the real daemon
process, given a wrong known answer (``--self-test-known-answer``, as a faulty GPU would
compute), logs ``refusing work: ...``, registers ``accepting_work: 0`` with the reason, shows
``subspace_farmer_gpu_self_test_passed 0`` and never joins the proving queue group (a request
finds no responder); SIGTERM still stops it with status 0. On CPU (the same check runs there)."""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from cluster_processes import ClusterProcess  # noqa: E402

from services.bus.client import Bus  # noqa: E402
from services.bus.errors import NoResponders  # noqa: E402
from services.bus.membership import Membership  # noqa: E402
from services.gpu import KNOWN_ANSWER  # noqa: E402
from services.proof_server.messages import ProveRequest  # noqa: E402

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wrong_answer(path: Path) -> Path:
    """The reference's answer with one proof hash of challenge 1 changed (one bit)."""
    hashes = dict(KNOWN_ANSWER.proof_hashes)
    good = hashes[1][0]
    hashes[1] = (f"{int(good[0], 16) ^ 1:x}{good[1:]}",)
    path.write_bytes(msgspec.json.encode(msgspec.structs.replace(KNOWN_ANSWER, proof_hashes=hashes)))
    return path


async def test_failed_self_test_refuses_work(tmp_path, nats_server):
    port = free_port()
    process = ClusterProcess("proof-server", nats_server.url, [
        "--prometheus-listen-on", f"127.0.0.1:{port}", "proof-server", "--backend", "cpu", "--kzg-params", "dev",
        "--hourly-cost", "0.5", "--instance", "ps-bad", "--self-test-known-answer", str(wrong_answer(tmp_path / "ka.json")),
    ], tmp_path / "proof-server.log")
    bus = await Bus.connect([nats_server.url], name="self-test-check")
    try:
        line = json.loads(process.wait_for("refusing work:", 300))
        assert line["level"] == "error"
        assert line["event"].startswith("refusing work: known-answer check failed on the cpu backend: challenge 1:")
        process.wait_for("proof-server started without taking work", 60)
        members = await (await Membership.open(bus)).members()
        capacity = members["proof-server.ps-bad"].capacity
        assert capacity["accepting_work"] == 0 and capacity["hourly_cost"] == 0.5
        assert str(capacity["self_test"]).startswith("failed: known-answer check failed")
        request = ProveRequest(deadline=time.time() + 60, public_key=bytes(32), reward_address=bytes(32),
                               sector_index=0, history_size=1, s_bucket=0, piece_offset=0, record=b"\0")
        with pytest.raises(NoResponders):
            await bus.request(request, timeout=5, retries=1)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 'subspace_farmer_gpu_self_test_passed{backend="cpu"} 0.0' in text
        assert "subspace_farmer_hourly_cost 0.5" in text
        assert "subspace_farmer_proof_server_proofs_total{" not in text  # no request reached it
        assert process.proc.poll() is None  # it stays up, visible to the operator
    except BaseException:
        print(process.tail())
        raise
    finally:
        await bus.close()
        status = process.terminate()
    assert status == 0


def test_known_answer_flag_is_checked_at_the_command_line(tmp_path, capsys):
    from services import cli

    good = wrong_answer(tmp_path / "ka.json")
    argv = ["cluster", "--nats-server", "nats://127.0.0.1:4222", "proof-server", "--self-test-known-answer"]
    assert cli.main([*argv, str(good), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["self_test_known_answer"] == str(good)
    (tmp_path / "bad.json").write_text("{not json")
    assert cli.main([*argv, str(tmp_path / "bad.json"), "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: cannot use --self-test-known-answer '{tmp_path / 'bad.json'}'")
