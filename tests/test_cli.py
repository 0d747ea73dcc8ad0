"""The operator manual's command lines, pasted, must pass ``--dry-run`` with the right values;
bad input must fail with one ``error:`` line naming the value."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import sr25519

from services import cli
from services.config import ConfigError, ss58_decode, ss58_encode

REPO_ROOT = Path(__file__).resolve().parent.parent
NATS3 = ("--nats-server nats://192.168.1.1:4222 --nats-server nats://192.168.1.2:4222 "
         "--nats-server nats://192.168.1.2:4222")
BIN = "/root/autonomys/autonomys-farmer"

# Verbatim from the manual (seed 004), except the elided reward address "stBR..S8V".
MANUAL_CONTROLLER = f"{BIN} cluster {NATS3} controller --tmp --node-rpc-url ws://10.30.1.2:9944"
MANUAL_PROOF_SERVER = f"{BIN} cluster {NATS3} proof-server"
MANUAL_SHARDED_CACHE = f"{BIN} cluster {NATS3} sharded-cache path=/var/autonomys-sharded-cache"
MANUAL_FULL_PIECE = f"{BIN} cluster {NATS3} full-piece-sharded-cache path=/var/autonomys-full-piece"
MANUAL_PLOT_SERVERS = [
    f"numactl -C {cpus} -l {BIN} cluster {NATS3} plot-server --record-encoding-concurrency 32 --priority-cache "
    f"--listen-port {9966 + i} /var/plot-server/base-path-{i}"
    for i, cpus in enumerate(["0-31", "96-127", "96-127", "144-175"])
]
MANUAL_PLOT_CLIENT = (f"{BIN} cluster {NATS3} plot-client --reward-address REWARD path=/mnt/nvme0n1/,sectors=8000 "
                      "path=/mnt/nvme0n2/,sectors=8000 path=/mnt/nvme1n0/,sectors=8000 path=/mnt/nvme1n1/,sectors=8000")
MANUAL_REINIT = "autonomys-farmer util reinitialization-cache --nats-servers nats://192.168.200.6:4222 --delay 0"
MANUAL_BENCH = ("autonomys-farmer util sharded-cache-benchmark --nats-servers nats://192.168.0.2:4222 --sectors 256 "
                "--epoch 1 --cache-item-type split-parity-piece")
MANUAL_VERIFY = ("./autonomys-farmer util verify-piece --nats-server nats://192.168.1.1:4222 "
                 "--nats-server nats://192.168.1.2:4222 --nats-server nats://192.168.1.3:4222")


@pytest.fixture(scope="module")
def reward_address() -> str:
    keypair = sr25519.pair_from_seed(bytes(range(32)))
    return ss58_encode(keypair[0])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The manual's absolute /var and /mnt paths are re-rooted here so the test needs no root."""
    return tmp_path


def argv_of(line: str, root: Path, reward: str = "") -> list[str]:
    """Manual command line -> argv after the program name (numactl prefix stripped)."""
    line = line.replace(" /var/", f" {root}/var/").replace("=/var/", f"={root}/var/")
    line = line.replace("=/mnt/", f"={root}/mnt/").replace("REWARD", reward)
    words = shlex.split(line)
    start = next(i for i, w in enumerate(words) if w.endswith("autonomys-farmer"))
    return words[start + 1:]


def dry_run(capsys, argv: list[str]) -> tuple[dict, str]:
    code = cli.main([*argv, "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), err


def fails(capsys, argv: list[str], *needles: str) -> str:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code != 0
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    for needle in needles:
        assert needle in last, (needle, last)
    assert "Traceback" not in err
    return last


# --- SS58 ----------------------------------------------------------------------------------


def test_ss58_known_vector():
    # Substrate's well-known dev account Alice (generic prefix 42).
    prefix, key = ss58_decode("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
    assert prefix == 42
    assert key.hex() == "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
    assert ss58_encode(key, 42) == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def test_ss58_autonomys_prefix_round_trip(reward_address):
    assert reward_address.startswith("s")  # prefix 6094 addresses start with "su"/"st"
    prefix, key = ss58_decode(reward_address)
    assert prefix == 6094
    assert key == sr25519.pair_from_seed(bytes(range(32)))[0]


@pytest.mark.parametrize("bad", ["stBR..S8V", "", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ",
                                 "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKut"])
def test_ss58_rejects_bad_addresses(bad):
    with pytest.raises(ConfigError):
        ss58_decode(bad)


# --- manual command lines ------------------------------------------------------------------


def test_manual_controller(capsys, root):
    config, err = dry_run(capsys, argv_of(MANUAL_CONTROLLER, root))
    assert config["role"] == "controller"
    assert config["nats_servers"] == ["nats://192.168.1.1:4222", "nats://192.168.1.2:4222"]
    assert "warning: duplicate --nats-server nats://192.168.1.2:4222" in err
    assert config["tmp"] is True and config["base_path"] is None
    assert config["node_rpc_url"] == "ws://10.30.1.2:9944"
    assert config["cache_groups"] == ["default"]
    assert config["instance"].endswith("-controller")


def test_manual_proof_server_with_gpu_environment(capsys, root, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("GPU_CONCURRENCY", "16")
    config, _ = dry_run(capsys, argv_of(MANUAL_PROOF_SERVER, root))
    assert config["role"] == "proof-server"
    assert config["cuda_visible_devices"] == "0"
    assert config["gpu_concurrency"] == 16
    assert len(config["nats_servers"]) == 2


def test_manual_caches_do_not_create_directories(capsys, root):
    config, _ = dry_run(capsys, argv_of(MANUAL_SHARDED_CACHE, root))
    assert config["role"] == "sharded-cache"
    assert config["paths"] == [{"path": f"{root}/var/autonomys-sharded-cache", "size_bytes": None, "exists": False}]
    config, _ = dry_run(capsys, argv_of(MANUAL_FULL_PIECE, root))
    assert config["role"] == "full-piece-sharded-cache"
    assert config["paths"][0]["path"] == f"{root}/var/autonomys-full-piece"
    assert not (root / "var").exists()


@pytest.mark.parametrize("index", range(4))
def test_manual_plot_servers(capsys, root, monkeypatch, index):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", str(index))
    monkeypatch.delenv("GPU_CONCURRENCY", raising=False)
    config, _ = dry_run(capsys, argv_of(MANUAL_PLOT_SERVERS[index], root))
    assert config["role"] == "plot-server"
    assert config["record_encoding_concurrency"] == 32
    assert config["priority_cache"] is True
    assert config["listen_port"] == 9966 + index
    assert config["base_path"] == f"{root}/var/plot-server/base-path-{index}"
    assert config["cuda_visible_devices"] == str(index)
    assert config["gpu_concurrency"] is None
    assert config["instance"].endswith(f"plot-server-{9966 + index}")
    assert not (root / "var").exists()


def test_manual_plot_client(capsys, root, reward_address, monkeypatch):
    (root / "mnt" / "nvme0n1").mkdir(parents=True)
    # the manual's storage machine has four 8 TiB NVMe drives; this test machine does not
    monkeypatch.setattr("services.preflight.os.statvfs", lambda path: os.statvfs_result((4096, 4096, 0, 0, 2**33, 0, 0, 0, 0, 255)))
    config, _ = dry_run(capsys, argv_of(MANUAL_PLOT_CLIENT, root, reward_address))
    assert config["role"] == "plot-client"
    assert config["reward_address"] == reward_address
    assert config["reward_account_id"] == sr25519.pair_from_seed(bytes(range(32)))[0].hex()
    assert [f["sectors"] for f in config["farms"]] == [8000] * 4
    assert [Path(f["path"]).name for f in config["farms"]] == ["nvme0n1", "nvme0n2", "nvme1n0", "nvme1n1"]
    assert [f["exists"] for f in config["farms"]] == [True, False, False, False]
    assert not (root / "mnt" / "nvme0n2").exists()


def test_manual_utils(capsys, root):
    config, _ = dry_run(capsys, argv_of(MANUAL_REINIT, root))
    assert config == {"command": "reinitialization-cache", "nats_servers": ["nats://192.168.200.6:4222"],
                      "log_level": "info", "json_logs": False, "delay_s": 0, "cache_group": None}
    config, _ = dry_run(capsys, argv_of(MANUAL_BENCH, root))
    assert config["command"] == "sharded-cache-benchmark"
    assert (config["sectors"], config["epochs"], config["cache_item_type"]) == (256, 1, "split-parity-piece")
    config, _ = dry_run(capsys, argv_of(MANUAL_VERIFY, root))
    assert config["command"] == "verify-piece"
    assert config["nats_servers"] == [f"nats://192.168.1.{i}:4222" for i in (1, 2, 3)]


def test_nats_flag_spellings_are_interchangeable(capsys, root):
    a, _ = dry_run(capsys, ["util", "verify-piece", "--nats-servers", "nats://h1:4222", "--nats-server", "nats://h2:1"])
    b, _ = dry_run(capsys, ["util", "--nats-server", "nats://h1:4222", "verify-piece", "--nats-servers", "nats://h2:1"])
    assert a == b and a["nats_servers"] == ["nats://h1:4222", "nats://h2:1"]
    c, _ = dry_run(capsys, ["cluster", "--nats-servers", "nats://h1:4222", "controller", "--nats-server", "nats://h2:1",
                            "--tmp"])
    assert c["nats_servers"] == ["nats://h1:4222", "nats://h2:1"]


def test_export_piece_reads_node_url(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NODE_URL", "http://192.168.1.1:9944")
    code = cli.export_piece_main(["--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    config = json.loads(out)
    assert config["node_url"] == "http://192.168.1.1:9944"
    assert config["node_ws_url"] == "ws://192.168.1.1:9944"
    assert config["output_dir"] == str(tmp_path / "full-cache-tmp")
    assert not (tmp_path / "full-cache-tmp").exists()


def test_dev_node_dry_run(capsys, tmp_path):
    config, _ = dry_run(capsys, ["dev-node", "--data-dir", str(tmp_path / "node"), "--rpc-listen-on",
                                 "127.0.0.1:9955", "--slot-duration-ms", "500", "--pieces-in-sector", "8",
                                 "--solution-range", "1000000", "--kzg-params", "dev"])
    assert config["data_dir"] == str(tmp_path / "node")
    assert config["rpc_listen_on"] == "127.0.0.1:9955"
    assert (config["slot_duration_ms"], config["pieces_in_sector"], config["solution_range"]) == (500, 8, 1000000)
    assert config["kzg_params"] is None
    assert not (tmp_path / "node").exists()


def test_global_flags_at_any_level(capsys):
    config, _ = dry_run(capsys, ["--log-level", "debug", "cluster", "--nats-server", "nats://h:4222",
                                 "--prometheus-listen-on", "127.0.0.1:0", "proof-server", "--json-logs"])
    assert config["log_level"] == "debug" and config["json_logs"] is True and config["log_format"] == "json"
    assert config["prometheus_listen_on"] == ["127.0.0.1:0"]


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["cluster", "--nats-server", "http://x:4222", "proof-server"], ["http://x:4222"]),
        (["cluster", "--nats-server", "nats://x:99999", "proof-server"], ["nats://x:99999"]),
        (["cluster", "proof-server"], ["--nats-server"]),
        (["cluster", "--nats-server", "nats://h:1", "controller", "--node-rpc-url", "ftp://n:9944"], ["ftp://n:9944"]),
        (["cluster", "--nats-server", "nats://h:1", "plot-server", "--listen-port", "70000", "/tmp/p"], ["70000"]),
        (["cluster", "--nats-server", "nats://h:1", "plot-server", "--record-encoding-concurrency", "0", "/tmp/p"],
         ["--record-encoding-concurrency", "'0'"]),
        (["cluster", "--nats-server", "nats://h:1", "plot-client", "--reward-address", "stBR..S8V",
          "path=/tmp/f,sectors=8"], ["stBR..S8V"]),
        (["cluster", "--nats-server", "nats://h:1", "sharded-cache", "pth=/tmp/x"], ["pth"]),
        (["cluster", "--nats-server", "nats://h:1", "no-such-role"], ["no-such-role"]),
        (["util", "reinitialization-cache", "--nats-servers", "nats://h:1", "--delay", "-1"], ["--delay", "-1"]),
        (["util", "reinitialization-cache", "--nats-servers", "nats://h:1", "--delay", "soon"], ["soon"]),
        (["util", "sharded-cache-benchmark", "--nats-servers", "nats://h:1", "--cache-item-type", "whole-sector"],
         ["whole-sector"]),
        (["util", "sharded-cache-benchmark", "--nats-servers", "nats://h:1", "--sectors", "0"], ["--sectors"]),
        (["dev-node", "--rpc-listen-on", "localhost"], ["localhost"]),
        (["dev-node", "--slot-duration-ms", "fast"], ["fast"]),
        (["dev-node", "--kzg-params", "/nonexistent/params.bin"], ["/nonexistent/params.bin"]),
        (["quickstart", "--timeout", "-5"], ["-5"]),
        (["--log-level", "loud", "cluster", "--nats-server", "nats://h:1", "proof-server"], ["loud"]),
    ],
)
def test_bad_values_fail_with_one_line(capsys, argv, needles):
    fails(capsys, [*argv, "--dry-run"], *needles)


@pytest.mark.parametrize("sectors", ["0", "-3", "many", "70000"])
def test_bad_sector_counts(capsys, tmp_path, reward_address, sectors):
    spec = f"path={tmp_path}/farm,sectors={sectors}"
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "plot-client", "--reward-address", reward_address,
                   spec, "--dry-run"], f"sectors={sectors!r}")


def test_farm_path_that_is_a_file(capsys, tmp_path, reward_address):
    (tmp_path / "file").write_text("x")
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "plot-client", "--reward-address", reward_address,
                   f"path={tmp_path}/file,sectors=4", "--dry-run"], f"{tmp_path}/file", "not a directory")


def test_bad_gpu_concurrency(capsys, monkeypatch):
    monkeypatch.setenv("GPU_CONCURRENCY", "lots")
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "proof-server", "--dry-run"], "GPU_CONCURRENCY", "lots")


def test_missing_service_is_one_line_exit_1(capsys, monkeypatch):
    monkeypatch.setitem(cli.CLUSTER_ROLES, "proof-server",
                        ("services.proof_server.config", "services.proof_server.no_such_service", "X"))
    code = cli.main(["cluster", "--nats-server", "nats://h:1", "proof-server"])
    _, err = capsys.readouterr()
    assert code == 1
    assert err.strip() == "error: proof-server: not available in this build yet"


def test_subprocess_entry_point_one_line_error():
    """Through the real interpreter: no traceback, the last line names the bad value."""
    proc = subprocess.run([sys.executable, "-m", "services", "cluster", "--nats-server", "nats://h:1", "plot-client",
                           "--reward-address", "stBR..S8V", "path=/tmp/x,sectors=8000", "--dry-run"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1].startswith("error: invalid SS58 address 'stBR..S8V'")
    assert "Traceback" not in proc.stderr


def test_subprocess_dry_run_prints_json():
    proc = subprocess.run([sys.executable, "-m", "services", *shlex.split(MANUAL_CONTROLLER)[1:], "--dry-run"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["node_rpc_url"] == "ws://10.30.1.2:9944"


# --- cluster secret (services.p2p) ---------------------------------------------------------


def test_cluster_secret_sources_are_shown_but_never_the_secret(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("AUTONOMYS_CLUSTER_SECRET", raising=False)
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret-0123456789abcdef\n")
    secret_file.chmod(0o600)
    cache = ["sharded-cache", f"path={tmp_path}/cache", "--listen-on", "0.0.0.0:9955"]
    cases = [
        (["--cluster-secret-file", str(secret_file)], f"--cluster-secret-file {secret_file}", "file-secret"),
        (["--cluster-secret", "flag-secret-0123456789abcdef"], "--cluster-secret", "flag-secret"),
        ([], "env AUTONOMYS_CLUSTER_SECRET", "env-secret"),
    ]
    for flags, source, text in cases:
        if not flags:
            monkeypatch.setenv("AUTONOMYS_CLUSTER_SECRET", "env-secret-0123456789abcdef")
        code = cli.main(["cluster", "--nats-server", "nats://h:1", *flags, *cache, "--dry-run"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert text not in out and text not in err
        config = json.loads(out)
        assert config["cluster_secret"] == {"set": True, "source": source}
        assert config["listen"] == "0.0.0.0:9955"


def test_without_a_secret_listeners_stay_on_loopback(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("AUTONOMYS_CLUSTER_SECRET", raising=False)
    config, err = dry_run(capsys, ["cluster", "--nats-server", "nats://h:1", "sharded-cache", f"path={tmp_path}/c"])
    assert config["cluster_secret"] == {"set": False, "source": None}
    assert config["listen"] == "127.0.0.1:9955"
    assert "warning: no cluster secret: sharded-cache listens on 127.0.0.1 only" in err
    config, _ = dry_run(capsys, ["cluster", "--nats-server", "nats://h:1", "plot-server", str(tmp_path / "ps")])
    assert config["listen_host"] == "127.0.0.1"
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "sharded-cache", f"path={tmp_path}/c", "--listen-on",
                   "0.0.0.0:9955", "--dry-run"], "--listen-on", "needs a cluster secret")
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "plot-server", "--listen-host", "10.0.0.1",
                   str(tmp_path / "ps"), "--dry-run"], "--listen-host '10.0.0.1'", "needs a cluster secret")
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "--cluster-secret-file", str(tmp_path / "absent"),
                   "proof-server", "--dry-run"], "cannot read --cluster-secret-file")


# --- flags named where they are wrong (issue 9) ----------------------------------------------

ROLE_USAGE = "usage: autonomys-farmer cluster plot-server"


def test_misspelled_role_flag_names_itself_under_the_role_usage(capsys):
    """The report's reproduction: the typo is named, the valid base path is not, and the usage
    shown is plot-server's (argparse alone printed the top-level usage)."""
    code = cli.main(["cluster", "--nats-server", "nats://127.0.0.1:4222", "plot-server", "--listen-prot", "9966",
                     "/tmp/x"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(ROLE_USAGE), err
    last = err.strip().splitlines()[-1]
    assert last == ("error: autonomys-farmer cluster plot-server: unrecognized option '--listen-prot' "
                    "(did you mean --listen-port?)")
    assert "/tmp/x" not in last


def test_misspelled_cluster_flag_and_extra_positional(capsys):
    code = cli.main(["cluster", "--nats-srever", "nats://h:1", "controller", "--tmp"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("usage: autonomys-farmer cluster ")
    assert "'--nats-srever' (did you mean --nats-server?)" in err.strip().splitlines()[-1]
    code = cli.main(["cluster", "--nats-server", "nats://h:1", "plot-server", "/tmp/a", "/tmp/b", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(ROLE_USAGE)
    assert err.strip().splitlines()[-1].endswith("unrecognized arguments: /tmp/b")


def test_flag_of_another_role_is_refused_with_help_hint(capsys):
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "controller", "--hourly-cost", "1", "--dry-run"],
          "controller", "'--hourly-cost'")


def test_option_values_may_look_like_flags(capsys):
    """A value starting with '-' belongs to its option, it is no unknown flag."""
    fails(capsys, ["util", "reinitialization-cache", "--nats-servers", "nats://h:1", "--delay", "-1", "--dry-run"],
          "--delay", "-1")


def test_subprocess_reproduction_names_the_typo():
    proc = subprocess.run([sys.executable, "-m", "services", "cluster", "--nats-server", "nats://127.0.0.1:4222",
                           "plot-server", "--listen-prot", "9966", "/tmp/x"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(ROLE_USAGE)
    assert "'--listen-prot' (did you mean --listen-port?)" in proc.stderr.strip().splitlines()[-1]


# --- metrics, logs and cost flags ------------------------------------------------------------


def test_prometheus_listen_on_is_repeatable_at_both_levels(capsys, tmp_path):
    config, err = dry_run(capsys, ["cluster", "--nats-server", "nats://h:1", "--prometheus-listen-on", "127.0.0.1:0",
                                   "--prometheus-listen-on", "[::1]:0", "plot-server", "--prometheus-listen-on",
                                   "127.0.0.1:0", str(tmp_path / "p")])
    assert config["prometheus_listen_on"] == ["127.0.0.1:0", "[::1]:0"]
    assert "warning: duplicate --prometheus-listen-on 127.0.0.1:0 ignored" in err
    config, _ = dry_run(capsys, ["cluster", "--nats-server", "nats://h:1", "controller", "--tmp"])
    assert config["prometheus_listen_on"] == []  # none served unless given


@pytest.mark.parametrize("argv, needles", [
    (["--log-format", "xml"], ["--log-format", "xml"]),
    (["--json-logs", "--log-format", "console"], ["--json-logs", "console"]),
    (["--hourly-cost", "cheap"], ["--hourly-cost", "cheap"]),
    (["--hourly-cost", "-1"], ["--hourly-cost", "-1"]),
    (["--prometheus-listen-on", "9090"], ["--prometheus-listen-on", "9090"]),
])
def test_bad_operations_flags(capsys, argv, needles):
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "proof-server", *argv, "--dry-run"], *needles)


def test_hourly_cost_and_log_format_on_gpu_roles(capsys):
    config, _ = dry_run(capsys, ["cluster", "--nats-server", "nats://h:1", "proof-server", "--hourly-cost", "0.85",
                                 "--log-format", "console"])
    assert config["hourly_cost"] == 0.85 and config["log_format"] == "console" and config["json_logs"] is False


# --- dry-run preflight -----------------------------------------------------------------------


def _listening_socket():  # noqa: ANN202 - socket.socket
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_dry_run_reports_ports_in_use(capsys, tmp_path):
    with _listening_socket() as busy:
        port = busy.getsockname()[1]
        fails(capsys, ["cluster", "--nats-server", "nats://h:1", "--prometheus-listen-on", f"127.0.0.1:{port}",
                       "proof-server", "--dry-run"], "--prometheus-listen-on", f"port {port} is already in use")
        fails(capsys, ["cluster", "--nats-server", "nats://h:1", "plot-server", "--listen-host", "127.0.0.1",
                       "--listen-port", str(port), str(tmp_path / "p"), "--dry-run"], "--listen-port", str(port))
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "--prometheus-listen-on", "127.0.0.1:9977",
                   "plot-server", "--listen-port", "9977", str(tmp_path / "p"), "--dry-run"], "port 9977 is given twice")
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "--prometheus-listen-on", "192.0.2.7:9100",
                   "proof-server", "--dry-run"], "192.0.2.7 is not an address of this machine")


def test_dry_run_reports_missing_free_space(capsys, tmp_path, reward_address):
    base = ["cluster", "--nats-server", "nats://h:1", "plot-client", "--reward-address", reward_address]
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    too_many = min(65535, free // 1_056_896_064 + 1)
    if too_many * 1_056_896_064 <= free:
        pytest.skip(f"{tmp_path} has more free space than 65535 sectors need")
    last = fails(capsys, [*base, f"path={tmp_path}/a,sectors={too_many}", "--dry-run"], "not enough free space",
                 f"path={tmp_path}/a,sectors={too_many}")
    assert "GiB free" in last
    config, _ = dry_run(capsys, [*base, f"path={tmp_path}/a,sectors=1"])  # 1.0 GiB: fits
    assert config["farms"][0]["sectors"] == 1


def test_farm_paths_that_can_never_be_created(capsys, reward_address):
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "plot-client", "--reward-address", reward_address,
                   "path=/proc/autonomys-farm,sectors=1", "--dry-run"], "/proc/autonomys-farm", "proc")
    fails(capsys, ["cluster", "--nats-server", "nats://h:1", "sharded-cache", "path=/sys/kernel/cache", "--dry-run"],
          "/sys/kernel/cache", "sysfs")
