"""``autonomys-farmer conf``: generated supervisor programs / systemd units for the manual's
machines parse, pin plot-servers next to their GPU, and match the committed conf.d examples."""

from __future__ import annotations

import configparser
import filecmp
import json
import shlex
import shutil
from pathlib import Path

import pytest

from services import cli, confgen
from services.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_D = REPO_ROOT / "conf.d"
TOPO = CONF_D / confgen.EXAMPLE_TOPO_FILE
NATS = ["--nats-server", "nats://192.168.1.1:4222", "--nats-server", "nats://192.168.1.2:4222"]


def run_conf(capsys, *argv: str) -> int:
    code = cli.main(["conf", *argv])
    capsys.readouterr()
    return code


def parse(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # keep case (systemd keys)
    parser.read_string(path.read_text(), source=str(path))
    return parser


def test_plotter_from_nvidia_topo(capsys, tmp_path):
    assert run_conf(capsys, "--role", "plotter", "--gpus", "4", "--cores-per-gpu", "32", "--nvidia-topo", str(TOPO),
                    *NATS, "--gpu-concurrency", "8", "--out", str(tmp_path), "--systemd",
                    "--binary", "/opt/af/autonomys-farmer") == 0
    conf = parse(tmp_path / "autonomys-plot-server.conf")
    assert conf["group:autonomys-plot-server"]["programs"] == ",".join(f"autonomys-plot-server-{i}" for i in range(4))
    # GPU0/1 share NUMA node 0 (0-47,96-143), GPU2/3 node 1 (48-95,144-191): disjoint slices.
    expected_cpus = ["0-31", "96-127", "48-79", "144-175"]
    for i in range(4):
        program = conf[f"program:autonomys-plot-server-{i}"]
        argv = shlex.split(program["command"])
        assert argv[:4] == ["numactl", "-C", expected_cpus[i], "-l"]
        assert argv[4] == "/opt/af/autonomys-farmer"
        assert argv[argv.index("--listen-port") + 1] == str(9966 + i)
        assert argv[argv.index("--record-encoding-concurrency") + 1] == "32"
        assert "--priority-cache" in argv
        assert argv[-1] == f"/var/plot-server/base-path-{i}"
        assert program["environment"] == f"CUDA_VISIBLE_DEVICES={i},GPU_CONCURRENCY=8"
        assert program["autorestart"] == "true" and program["redirect_stderr"] == "true"
        assert program["stdout_logfile"] == f"/var/log/autonomys-plotter-{i}.log"
        unit = parse(tmp_path / "systemd" / f"autonomys-plot-server-{i}.service")
        assert unit["Service"]["ExecStart"].startswith(f"/usr/bin/numactl -C {expected_cpus[i]} -l ")
        assert unit["Install"]["WantedBy"] == "autonomys-plot-server.target"
    cache = shlex.split(parse(tmp_path / "autonomys-sharded-cache.conf")["program:autonomys-sharded-cache"]["command"])
    assert cache[-2:] == ["sharded-cache", "path=/var/autonomys-sharded-cache"]
    full = shlex.split(parse(tmp_path / "autonomys-full-piece.conf")["program:autonomys-full-piece"]["command"])
    assert full[-2:] == ["full-piece-sharded-cache", "path=/var/autonomys-full-piece"]


def test_generated_commands_pass_the_cli(capsys, tmp_path):
    """Every generated command line is accepted by our own CLI (--dry-run)."""
    for argv in confgen.example_commands(str(tmp_path)):
        (tmp_path / "examples").mkdir(exist_ok=True)
        shutil.copy(TOPO, tmp_path / confgen.EXAMPLE_TOPO_FILE)
        config = confgen.from_args(_parse(argv))
        for program in confgen.programs(config):
            words = list(program.argv)
            if words[0] == "numactl":
                words = words[4:]
            if not words[0].endswith("autonomys-farmer"):
                continue  # nats-server / autonomys-node
            words = [w.replace("=/var/", f"={tmp_path}/var/").replace("=/mnt/", f"={tmp_path}/mnt/") for w in words]
            words = [f"{tmp_path}{w}" if w.startswith("/var/") else w for w in words]
            assert cli.main([*words[1:], "--dry-run"]) == 0, (program.name, capsys.readouterr().err)
            json.loads(capsys.readouterr().out)


def _parse(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser()
    confgen.add_arguments(parser)
    return parser.parse_args(argv)


def test_node_machine(capsys, tmp_path):
    assert run_conf(capsys, "--role", "node", *NATS, "--out", str(tmp_path), "--nats-server-name", "n1") == 0
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert names == ["autonomys-controller.conf", "autonomys-nats-server.conf", "autonomys-node.conf",
                     "autonomys-proof-server.conf"]
    controller = parse(tmp_path / "autonomys-controller.conf")["program:autonomys-controller"]
    argv = shlex.split(controller["command"])
    assert argv[-4:] == ["controller", "--tmp", "--node-rpc-url", "ws://127.0.0.1:9944"]
    proof = parse(tmp_path / "autonomys-proof-server.conf")["program:autonomys-proof-server"]
    assert proof["environment"] == "CUDA_VISIBLE_DEVICES=0"
    assert proof["stdout_logfile_maxbytes"] == "500MB"
    # start order of the manual: nats-server -> node -> controller -> proof-server
    priorities = [int(parse(tmp_path / f"{n}.conf")[f"program:{n}"]["priority"]) for n in
                  ("autonomys-nats-server", "autonomys-node", "autonomys-controller", "autonomys-proof-server")]
    assert priorities == sorted(priorities) and len(set(priorities)) == 4
    nats = (tmp_path / "nats" / "nats-server.conf").read_text()
    assert "max_payload = 3MB" in nats and "jetstream {" in nats and "server_name=n1" in nats
    assert "nats://192.168.1.2:4248" in nats
    assert not (tmp_path / "systemd").exists()


def test_storage_machine_requires_reward_address(capsys, tmp_path):
    code = cli.main(["conf", "--role", "storage", *NATS, "--out", str(tmp_path), "--farm", "path=/mnt/a,sectors=10"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines()[-1] == "error: conf --role storage needs --reward-address"


def test_contiguous_default_and_explicit_numa_cpus(capsys, tmp_path):
    assert confgen.allocate_gpu_cpus(3, 16, None) == ["0-15", "16-31", "32-47"]
    assert run_conf(capsys, "--role", "plotter", "--gpus", "2", *NATS, "--out", str(tmp_path),
                    "--numa-cpus", "0-15,64-79", "--numa-cpus", "32-47") == 0
    conf = parse(tmp_path / "autonomys-plot-server.conf")
    assert shlex.split(conf["program:autonomys-plot-server-0"]["command"])[:3] == ["numactl", "-C", "0-15,64-79"]
    assert shlex.split(conf["program:autonomys-plot-server-1"]["command"])[:3] == ["numactl", "-C", "32-47"]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--role", "plotter", "--gpus", "2", "--numa-cpus", "0-15"], "--numa-cpus given 1 times for 2"),
        (["--role", "plotter", "--gpus", "1", "--numa-cpus", "15-0"], "15-0"),
        (["--role", "plotter", "--gpus", "many"], "many"),
        (["--role", "plotter", "--gpus", "2", "--cores-per-gpu", "100", "--nvidia-topo", str(TOPO)], "100"),
        (["--role", "farm"], "farm"),
        (["--role", "storage", "--reward-address", "stBR..S8V", "--farm", "path=/mnt/a,sectors=1"], "stBR..S8V"),
        (["--role", "node", "--nvidia-topo", "/nonexistent/topo.txt"], "/nonexistent/topo.txt"),
    ],
)
def test_bad_conf_values(capsys, tmp_path, argv, needle):
    code = cli.main(["conf", *NATS, "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: ") and needle in err.strip().splitlines()[-1]


def test_dry_run_writes_nothing(capsys, tmp_path):
    out_dir = tmp_path / "out"
    assert cli.main(["conf", "--role", "plotter", "--gpus", "2", *NATS, "--out", str(out_dir), "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gpu_cpus"] == ["0-31", "32-63"]
    assert "autonomys-plot-server.conf" in report["would_write"]
    assert not out_dir.exists()


def test_parse_nvidia_topo_from_manual():
    affinity = confgen.parse_nvidia_topo(TOPO.read_text())
    assert affinity[0] == affinity[1] == list(range(0, 48)) + list(range(96, 144))
    assert affinity[2] == affinity[3] == list(range(48, 96)) + list(range(144, 192))
    with pytest.raises(ConfigError):
        confgen.parse_nvidia_topo("no gpus here")


def test_supervisor_accepts_generated_files(tmp_path):
    """supervisord's own config loader reads every committed program file."""
    from supervisor.options import ServerOptions

    main = tmp_path / "supervisord.conf"
    main.write_text(f"[supervisord]\nlogfile={tmp_path}/s.log\npidfile={tmp_path}/s.pid\n"
                    f"[include]\nfiles={CONF_D}/*.conf\n")
    options = ServerOptions()
    options.realize(args=["-c", str(main)])
    names = {p.name for group in options.process_group_configs for p in group.process_configs}
    assert {"autonomys-controller", "autonomys-proof-server", "autonomys-plot-client", "autonomys-sharded-cache",
            "autonomys-full-piece", "autonomys-nats-server", "autonomys-node"} <= names
    assert {f"autonomys-plot-server-{i}" for i in range(4)} <= names
    plot0 = next(p for g in options.process_group_configs for p in g.process_configs
                 if p.name == "autonomys-plot-server-0")
    assert plot0.environment == {"CUDA_VISIBLE_DEVICES": "0"}
    assert plot0.command.startswith("numactl -C 0-31 -l ")


def test_committed_examples_are_current(tmp_path):
    (tmp_path / "examples").mkdir()
    shutil.copy(TOPO, tmp_path / confgen.EXAMPLE_TOPO_FILE)
    written = confgen.generate_examples(str(tmp_path))
    assert written
    for path in written:
        rel = Path(path).relative_to(tmp_path)
        committed = CONF_D / rel
        # the topo path inside the generated files is not recorded, so the contents must match
        assert committed.is_file(), f"conf.d/{rel} missing: run python -m services.confgen conf.d"
        assert filecmp.cmp(path, committed, shallow=False), f"conf.d/{rel} is stale: regenerate it"


def test_node_machine_with_dev_node(capsys, tmp_path):
    assert run_conf(capsys, "--role", "node", *NATS, "--out", str(tmp_path), "--dev-node",
                    "--binary", "/opt/af/autonomys-farmer", "--node-base-path", "/srv/dev-node") == 0
    argv = shlex.split(parse(tmp_path / "autonomys-node.conf")["program:autonomys-node"]["command"])
    assert argv[:4] == ["/opt/af/autonomys-farmer", "dev-node", "--data-dir", "/srv/dev-node"]
    assert cli.main([*argv[1:3], str(tmp_path / "dn"), *argv[4:], "--dry-run"]) == 0
