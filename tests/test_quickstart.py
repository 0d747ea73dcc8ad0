"""``autonomys-farmer quickstart``: the generated supervisord/nats configs, and the real frame
(supervisord + nats-server + dev node + controller) starting and stopping without orphans."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services import cli, quickstart

REPO_ROOT = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, *extra: str) -> quickstart.QuickstartConfig:
    args = cli.build_parser().parse_args(["quickstart", "--data-dir", str(tmp_path / "data"), *extra])
    return quickstart.from_args(args, dry_run=False)


def _processes_mentioning(text: str) -> list[str]:
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


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def test_dry_run_prints_config_and_creates_nothing(capsys, tmp_path):
    data = tmp_path / "qs"
    code = cli.main(["quickstart", "--data-dir", str(data), "--exit-after-blocks", "3", "--timeout", "600",
                     "--slot-duration-ms", "2000", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    config = json.loads(out)
    assert config["data_dir"] == str(data)
    assert (config["exit_after_blocks"], config["timeout_s"], config["slot_duration_ms"]) == (3, 600.0, 2000)
    assert not data.exists()


def test_default_data_dir_is_dot_data(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["quickstart", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["data_dir"] == str(tmp_path / "data")


def test_generated_configs(tmp_path):
    config = _config(tmp_path, "--slot-duration-ms", "1500", "--sectors", "3")
    layout = quickstart.make_layout(config, ("sharded-cache", "plot-server", "proof-server", "plot-client"))
    conf = quickstart.prepare(config, layout)

    from supervisor.options import ServerOptions

    options = ServerOptions()
    options.realize(args=["-c", str(conf)])
    programs = sorted((g.priority, p.name, p.command) for g in options.process_group_configs for p in g.process_configs)
    names = [name for _, name, _ in programs]
    assert names[:3] == ["nats-server", "dev-node", "controller"]
    assert set(names[3:]) == {"sharded-cache", "plot-server", "proof-server", "plot-client"}
    commands = {name: command for _, name, command in programs}
    data = config.data_dir
    assert f"-c {data}/nats/nats-server.conf" in commands["nats-server"]
    assert f"dev-node --data-dir {data}/node --rpc-listen-on 127.0.0.1:{layout.rpc_port}" in commands["dev-node"]
    assert "--slot-duration-ms 1500" in commands["dev-node"]
    assert f"--nats-server nats://127.0.0.1:{layout.nats_port}" in commands["controller"]
    assert f"--node-rpc-url ws://127.0.0.1:{layout.rpc_port}" in commands["controller"]
    assert f"path={data}/farms/farm-0,sectors=3" in commands["plot-client"]
    for group in options.process_group_configs:
        for process in group.process_configs:
            assert process.stdout_logfile.startswith(f"{data}/logs/")
            assert process.redirect_stderr and process.autorestart
    nats = (Path(data) / "nats" / "nats-server.conf").read_text()
    assert "jetstream {" in nats and f"{data}/nats/jetstream" in nats
    assert f"max_payload: {3 * 1024 * 1024}" in nats
    assert f":{layout.nats_port}" in nats
    # every program's command line is valid for our own CLI
    for name, command in commands.items():
        words = command.split()
        if words[1:3] == ["-m", "services"]:
            assert cli.main([*words[3:], "--dry-run"]) == 0, name


def test_supervisord_frame_starts_and_stops_without_orphans(tmp_path):
    """Real supervisord running the real nats-server from the generated config."""
    config = _config(tmp_path)
    layout = quickstart.make_layout(config, ())
    quickstart.prepare(config, layout)
    commands = quickstart.program_commands(config, layout)
    layout.supervisord_conf.write_text(
        quickstart.render_supervisord_config(layout, {"nats-server": commands["nats-server"]}))
    proc = quickstart.start_supervisord(layout)
    try:
        _wait_port(layout.nats_port, 30)
        assert _processes_mentioning(config.data_dir)
    finally:
        code = quickstart.stop_supervisord(proc)
    assert code == 0
    assert _processes_mentioning(config.data_dir) == []
    log = (Path(config.data_dir) / "logs" / "supervisord.log").read_text()
    assert "stopped: nats-server (exit status 0)" in log


def _start_quickstart(data: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services", "quickstart", "--data-dir", str(data), "--progress-interval", "1", *extra],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.integration
@pytest.mark.slow
def test_quickstart_runs_until_sigterm(tmp_path):
    data = tmp_path / "data"
    proc = _start_quickstart(data)
    try:
        deadline = time.monotonic() + 120
        lines: list[str] = []
        # wait for a progress line showing the dev node answering dev_status
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("[") and "node=starting" not in line:
                break
        assert any(line.startswith("[") and "node=starting" not in line for line in lines), "".join(lines)
        layout = json.loads((data / "quickstart.json").read_text())["layout"]
        _wait_port(layout["nats_port"], 10)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM received; stopping" in out
    assert "stopped (supervisord exit status 0)" in out
    assert _processes_mentioning(str(data)) == []
    assert (data / "node").is_dir() and (data / "logs" / "dev-node.log").is_file()


@pytest.mark.integration
@pytest.mark.slow
def test_exit_after_blocks_counts_blocks_jsonl(tmp_path):
    """The exit condition reads the dev node's blocks.jsonl. No farmer role runs yet, so this test
    appends two records itself once the node is up (what it checks is the launcher, not mining)."""
    data = tmp_path / "data"
    proc = _start_quickstart(data, "--exit-after-blocks", "2", "--timeout", "150")
    try:
        lines: list[str] = []
        while True:
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
            if line.startswith("[") and "node=starting" not in line:
                break
        with open(data / "node" / "blocks.jsonl", "a") as blocks:
            blocks.write('{"test": 1}\n{"test": 2}\n')
        out, err = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "blocks authored in this run (wanted 2); stopping" in out
    assert _processes_mentioning(str(data)) == []


@pytest.mark.integration
@pytest.mark.slow
def test_quickstart_timeout_exits_nonzero_with_reason(tmp_path):
    data = tmp_path / "data"
    # 10^6 blocks cannot be authored in 10 s: the run must end by --timeout with the reason.
    proc = _start_quickstart(data, "--exit-after-blocks", "1000000", "--timeout", "10")
    try:
        out, err = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert "error: timeout after 10s" in err and "of 1000000 blocks authored" in err
    assert "stopped (supervisord exit status 0)" in out
    assert _processes_mentioning(str(data)) == []


def test_count_blocks(tmp_path):
    blocks = tmp_path / "blocks.jsonl"
    assert quickstart.count_blocks(blocks) == 0
    blocks.write_text('{"slot": 1}\n{"slot": 2}\n\n')
    assert quickstart.count_blocks(blocks) == 2


def test_scripts_quickstart_wrapper(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "quickstart.py"), "--data-dir",
                           str(tmp_path / "d"), "--dry-run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data_dir"] == str(tmp_path / "d")


def test_failed_programs_are_reported_with_their_last_log_line(tmp_path):
    """A program supervisord gave up on is named with its own one-line error; lines an earlier
    run left in a reused data dir's supervisord.log do not count."""
    layout = quickstart.Layout(data_dir=str(tmp_path), nats_port=1, nats_http_port=2, rpc_port=3, cache_port=4,
                               full_cache_port=5, plot_server_port=6, roles=())
    logs = tmp_path / "logs"
    logs.mkdir()
    old = "2026-01-01 00:00:00,000 INFO gave up: controller entered FATAL state, too many start retries too quickly\n"
    (logs / "supervisord.log").write_text(old)
    offset = len(old.encode())
    assert quickstart._fatal_programs(layout, offset) == []
    assert quickstart._fatal_programs(layout) == ["controller"]
    with open(logs / "supervisord.log", "a") as handle:
        handle.write("2026-01-01 00:01:00,000 INFO gave up: dev-node entered FATAL state, too many start retries\n")
    (logs / "dev-node.log").write_text("starting\nerror: dev-node: --kzg-params /nope: file not found\n\n")
    assert quickstart._fatal_programs(layout, offset) == ["dev-node"]
    assert quickstart.last_log_line(layout, "dev-node") == "error: dev-node: --kzg-params /nope: file not found"
    assert quickstart.last_log_line(layout, "controller") == "(no log written)"
    assert "FAILED=dev-node" in quickstart.status_line(layout, 1.0, offset)
    assert "dev-node" in quickstart.ESSENTIAL_PROGRAMS
