"""``autonomys-farmer quickstart``: the plan and the generated supervisord/nats configs, the real
frame (supervisord + nats-server) starting and stopping without orphans, and real quickstart
processes: SIGTERM, --timeout, a role that cannot start (fail fast, naming its log and reason).
The whole cluster farming its first block is tests/test_quickstart_e2e.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from quickstart_processes import REPO_ROOT, processes_mentioning, read_until, start_quickstart, wait_port

from services import cli, quickstart
from services.quickstart_supervisor import SupervisorControl, start_supervisord, stop_supervisord


def _config(tmp_path: Path, *extra: str) -> quickstart.QuickstartConfig:
    args = cli.build_parser().parse_args(["quickstart", "--data-dir", str(tmp_path / "data"), *extra])
    return quickstart.from_args(args, dry_run=False)


def test_dry_run_prints_config_and_plan_and_creates_nothing(capsys, tmp_path):
    data = tmp_path / "qs"
    code = cli.main(["quickstart", "--data-dir", str(data), "--exit-after-blocks", "3", "--timeout", "600",
                     "--slot-duration-ms", "2000", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["data_dir"] == str(data)
    assert (report["exit_after_blocks"], report["timeout_s"], report["slot_duration_ms"]) == (3, 600.0, 2000)
    stages = report["plan"]["stages"]
    assert stages[0] == {"when": "at once", "start": ["nats-server", "jit-warmup"]}
    assert stages[1]["start"] == ["dev-node"] and stages[2]["start"][0] == "controller"
    programs = report["plan"]["programs"]
    assert "--slot-duration-ms 2000" in " ".join(programs["dev-node"]["command"])
    assert programs["controller"]["log"] == str(data / "logs" / "controller.log")
    assert not data.exists()


def test_default_data_dir_is_dot_data(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["quickstart", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["data_dir"] == str(tmp_path / "data")


def test_generated_configs(tmp_path):
    config = _config(tmp_path, "--slot-duration-ms", "1500", "--sectors", "3")
    roles = ("sharded-cache", "plot-server", "proof-server", "plot-client")
    layout = quickstart.make_layout(config, roles)
    conf = quickstart.prepare(config, layout)

    from supervisor.options import ServerOptions

    options = ServerOptions()
    options.realize(args=["-c", str(conf)])
    programs = sorted((g.priority, p.name, p.command, p) for g in options.process_group_configs
                      for p in g.process_configs)
    names = [name for _, name, _, _ in programs]
    # start (priority) order: stop order is the reverse, NATS last
    assert names == ["nats-server", "jit-warmup", "dev-node", "controller", "sharded-cache", "plot-client",
                     "plot-server", "proof-server"]
    commands = {name: command for _, name, command, _ in programs}
    data = config.data_dir
    assert f"-c {data}/nats/nats-server.conf" in commands["nats-server"]
    assert f"dev-node --data-dir {data}/node --rpc-listen-on 127.0.0.1:{layout.rpc_port}" in commands["dev-node"]
    assert "--slot-duration-ms 1500" in commands["dev-node"] and "--block-authoring-delay 6" in commands["dev-node"]
    assert f"--solution-range {quickstart.default_solution_range(3, 4)}" in commands["dev-node"]
    assert f"--nats-server nats://127.0.0.1:{layout.nats_port}" in commands["controller"]
    assert f"--node-rpc-url ws://127.0.0.1:{layout.rpc_port}" in commands["controller"]
    assert f"path={data}/farms/farm-0,sectors=3" in commands["plot-client"]
    assert f"--prometheus-listen-on {layout.metrics_address('plot-client')}" in commands["plot-client"]
    for _, name, _, process in programs:
        assert process.stdout_logfile == f"{data}/logs/{name}.log"
        assert process.redirect_stderr and not process.autostart  # the quickstart starts them in stages
        # the warm-up runs once; the daemons are restarted by supervisord once the cluster farms
        assert (process.autorestart is False) == (name == "jit-warmup"), name
    nats = (Path(data) / "nats" / "nats-server.conf").read_text()
    assert "jetstream {" in nats and f"{data}/nats/jetstream" in nats
    assert f"max_payload: {3 * 1024 * 1024}" in nats
    assert f":{layout.nats_port}" in nats
    # every program's command line is valid for our own CLI (the warm-up is a module of its own)
    for name, command in commands.items():
        words = command.split()
        if words[1:3] == ["-m", "services"]:
            assert cli.main([*words[3:], "--dry-run"]) == 0, name
    assert commands["jit-warmup"].split()[1:] == ["-m", "services.jit_warmup"]


def test_supervisord_frame_starts_in_stages_and_stops_without_orphans(tmp_path):
    """Real supervisord, the real nats-server started over its XML-RPC socket."""
    config = _config(tmp_path)
    layout = quickstart.make_layout(config, ())
    conf = quickstart.prepare(config, layout)
    proc = start_supervisord(conf, layout.data_dir, REPO_ROOT)
    try:
        control = SupervisorControl(layout.data_dir)
        control.wait_ready(proc)
        assert control.states()["nats-server"] == "STOPPED"  # nothing starts on its own
        control.start("nats-server")
        wait_port(layout.nats_port, 30)
        assert processes_mentioning(config.data_dir)
    finally:
        code = stop_supervisord(proc)
    assert code == 0
    assert processes_mentioning(config.data_dir) == []
    log = (Path(config.data_dir) / "logs" / "supervisord.log").read_text()
    assert "stopped: nats-server (exit status 0)" in log


@pytest.mark.integration
@pytest.mark.slow
def test_quickstart_runs_until_sigterm(tmp_path):
    data = tmp_path / "data"
    proc = start_quickstart(data, "--no-jit-warmup")
    try:
        lines = read_until(proc, lambda line: "dev node RPC listens" in line, "the dev node's RPC")
        assert any("started nats-server" in line for line in lines)
        layout = json.loads((data / "quickstart.json").read_text())["layout"]
        wait_port(layout["nats_port"], 10)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM received; stopping" in out
    assert "stopped (supervisord exit status 0)" in out
    assert processes_mentioning(str(data)) == []
    assert (data / "node").is_dir() and (data / "logs" / "dev-node.log").is_file()


@pytest.mark.integration
@pytest.mark.slow
def test_quickstart_timeout_exits_nonzero_with_reason(tmp_path):
    data = tmp_path / "data"
    proc = start_quickstart(data, "--no-jit-warmup", "--timeout", "8")
    try:
        out, err = proc.communicate(timeout=250)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert "error: timeout after 8s with 0 blocks authored; still waiting for " in err and "; last status:" in err
    assert "stopped (supervisord exit status 0)" in out
    assert processes_mentioning(str(data)) == []


@pytest.mark.integration
@pytest.mark.slow
def test_a_role_that_cannot_start_stops_the_quickstart_with_its_log_and_reason(tmp_path):
    """The dev node refuses a data dir holding another chain: the quickstart names it, its log
    and the dev node's own one-line reason, exits 1 and leaves nothing running."""
    data = tmp_path / "data"
    (data / "node").mkdir(parents=True)
    (data / "node" / "chain.json").write_text(json.dumps({"genesisHash": "00" * 32, "historySeed": "other"}))
    proc = start_quickstart(data, "--no-jit-warmup")
    try:
        out, err = proc.communicate(timeout=250)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    log = data / "logs" / "dev-node.log"
    line = next(line for line in err.splitlines() if line.startswith("error: "))
    assert line.startswith("error: dev-node exited (status 1) before the cluster authored a block: ")
    assert "error: dev node state in" in line and "not the chain of seed 'autonomys-dev'" in line
    assert line.endswith(f"(log {log})")
    assert "stopped (supervisord exit status 0)" in out
    assert processes_mentioning(str(data)) == []


def test_scripts_quickstart_wrapper(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "quickstart.py"), "--data-dir",
                           str(tmp_path / "d"), "--dry-run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data_dir"] == str(tmp_path / "d")


def test_exit_after_blocks_needs_the_farming_roles(monkeypatch, capsys, tmp_path):
    """Without a plot-server in the build no block can come: said at once, nothing started."""
    from services import quickstart_run

    monkeypatch.setattr(quickstart_run, "available_roles", lambda: (("plot-client",), {"plot-server": "not in this build yet"}))
    config = _config(tmp_path, "--exit-after-blocks", "1")
    assert quickstart_run.run_quickstart(config) == 1
    err = capsys.readouterr().err
    assert "error: --exit-after-blocks needs plot-server, not in this build: no block can be authored" in err
    assert not (Path(config.data_dir) / "supervisord.conf").exists()


def test_a_role_that_does_not_import_is_a_failure(monkeypatch, capsys, tmp_path):
    from services import quickstart_run

    monkeypatch.setattr(quickstart_run, "available_roles",
                        lambda: ((), {"proof-server": "import failed: ImportError: no module named cupy_x"}))
    assert quickstart_run.run_quickstart(_config(tmp_path)) == 1
    assert "error: proof-server cannot run: import failed: ImportError: no module named cupy_x" in capsys.readouterr().err


def test_default_solution_range_gives_a_block_every_six_slots(tmp_path):
    """P(a chunk wins) = range / 2^64; an audit reads about pieces_in_sector / 2 chunks per sector."""
    for sectors, pieces in ((2, 4), (3, 4), (10, 1000)):
        chance_per_slot = quickstart.default_solution_range(sectors, pieces) / 2**64 * sectors * pieces / 2
        assert abs(chance_per_slot - 1 / 6) < 1e-9
    assert quickstart.default_solution_range(1, 1) == int(2**64 / 6)  # at least one chunk per audit
    assert quickstart.default_solution_range(65535, 65535) >= 1
    assert _config(tmp_path, "--solution-range", "12345").solution_range == 12345
