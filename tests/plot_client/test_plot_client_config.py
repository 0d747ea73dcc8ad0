"""plot-client command line: the reward address is an account for solutions, not a farm key."""

from __future__ import annotations

import json

import pytest

from services import cli
from services.config import ss58_decode

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
ALICE_HEX = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"


def _dry_run(capsys, *args: str) -> dict:
    code = cli.main(["cluster", "--nats-server", "nats://127.0.0.1:4222", "plot-client", *args, "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_reward_address_is_the_solution_account(capsys, tmp_path) -> None:
    config = _dry_run(capsys, "--reward-address", ALICE, f"path={tmp_path},sectors=2")
    assert config["reward_address"] == ALICE and config["reward_account_id"] == ALICE_HEX
    assert ss58_decode(ALICE)[1].hex() == ALICE_HEX
    assert "reward_public_key" not in config
    assert config["kzg_params"] is None and config["proving_threads"] == 1


def test_proving_options(capsys, tmp_path) -> None:
    setup = tmp_path / "setup.bin"
    setup.write_bytes(b"x")
    config = _dry_run(capsys, "--reward-address", ALICE, f"path={tmp_path},sectors=2", "--kzg-params", str(setup),
                      "--proving-threads", "2", "--farming-thread-pool-size", "8")
    assert config["kzg_params"] == str(setup) and config["proving_threads"] == 2 and config["farming_threads"] == 8
    for keyword in ("dev", "mainnet"):
        assert _dry_run(capsys, "--reward-address", ALICE, f"path={tmp_path},sectors=1", "--kzg-params", keyword)[
            "kzg_params"] == keyword


@pytest.mark.parametrize("args,needle", [
    (["path=X,sectors=65535"], "must be 1..65534"),
    (["path=X,sectors=1", "--kzg-params", "/nonexistent/setup.bin"], "--kzg-params"),
    (["path=X,sectors=1", "--proving-threads", "0"], "--proving-threads"),
])
def test_bad_options_are_one_line_errors(capsys, tmp_path, args, needle) -> None:
    args = [a.replace("X", str(tmp_path)) for a in args]
    code = cli.main(["cluster", "--nats-server", "nats://127.0.0.1:4222", "plot-client", "--reward-address", ALICE,
                     *args, "--dry-run"])
    _, err = capsys.readouterr()
    assert code == 2 and needle in err and "Traceback" not in err
