"""``autonomys-farmer conf``: generated supervisor programs / systemd units for the manual's
machines parse, pin plot-servers next to their GPU, and match the committed conf.d examples."""

from __future__ import annotations

import configparser
import filecmp
import json
import os
import shlex
import shutil
from pathlib import Path

import pytest

from services import cli, confgen, topology
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
    assert run_conf(capsys, "--role", "plotter", "--gpus", "4", "--nvidia-topo", str(TOPO),
                    *NATS, "--gpu-concurrency", "8", "--out", str(tmp_path), "--systemd",
                    "--binary", "/opt/af/autonomys-farmer") == 0
    conf = parse(tmp_path / "autonomys-plot-server.conf")
    assert conf["group:autonomys-plot-server"]["programs"] == ",".join(f"autonomys-plot-server-{i}" for i in range(4))
    # GPU0/1 share NUMA node 0 (0-47,96-143), GPU2/3 node 1 (48-95,144-191): each GPU gets half of
    # its node's 48 cores, every core with its SMT sibling (i and 96+i), never another GPU's.
    expected_cpus = ["0-23,96-119", "24-47,120-143", "48-71,144-167", "72-95,168-191"]
    for i in range(4):
        program = conf[f"program:autonomys-plot-server-{i}"]
        argv = shlex.split(program["command"])
        assert argv[:4] == ["numactl", "-C", expected_cpus[i], "-l"]
        assert argv[4] == "/opt/af/autonomys-farmer"
        assert argv[argv.index("--listen-port") + 1] == str(9966 + i)
        assert argv[argv.index("--record-encoding-concurrency") + 1] == "48"
        assert "--priority-cache" in argv
        assert argv[-1] == f"/var/plot-server/base-path-{i}"
        assert program["environment"] == f"CUDA_DEVICE_ORDER=PCI_BUS_ID,CUDA_VISIBLE_DEVICES={i},GPU_CONCURRENCY=8"
        assert program["autorestart"] == "true" and program["redirect_stderr"] == "true"
        assert program["stdout_logfile"] == f"/var/log/autonomys-plotter-{i}.log"
        unit = parse(tmp_path / "systemd" / f"autonomys-plot-server-{i}.service")
        assert unit["Service"]["ExecStart"].startswith(f"/usr/bin/numactl -C {expected_cpus[i]} -l ")
        assert unit["Install"]["WantedBy"] == "autonomys-plot-server.target"
    cache = shlex.split(parse(tmp_path / "autonomys-sharded-cache.conf")["program:autonomys-sharded-cache"]["command"])
    assert cache[-2:] == ["sharded-cache", "path=/var/autonomys-sharded-cache"]
    full = shlex.split(parse(tmp_path / "autonomys-full-piece.conf")["program:autonomys-full-piece"]["command"])
    assert full[-2:] == ["full-piece-sharded-cache", "path=/var/autonomys-full-piece"]


def test_generated_commands_pass_the_cli(capsys, tmp_path, monkeypatch):
    """Every generated command line is accepted by our own CLI (--dry-run)."""
    # the example storage machine has 8 TiB NVMe drives; this one does not
    monkeypatch.setattr("services.preflight.os.statvfs",
                        lambda path: os.statvfs_result((4096, 4096, 0, 0, 2**33, 0, 0, 0, 0, 255)))
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
    assert proof["environment"] == "CUDA_DEVICE_ORDER=PCI_BUS_ID,CUDA_VISIBLE_DEVICES=0"
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
    assert confgen.contiguous_gpu_cpus(3, 16) == ["0-15", "16-31", "32-47"]
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
    affinity = topology.parse_nvidia_topo(TOPO.read_text())
    assert affinity[0].cpus == affinity[1].cpus == tuple(range(0, 48)) + tuple(range(96, 144))
    assert affinity[2].cpus == affinity[3].cpus == tuple(range(48, 96)) + tuple(range(144, 192))
    assert [affinity[i].numa_node for i in range(4)] == [0, 0, 1, 1]
    with pytest.raises(ConfigError):
        topology.parse_nvidia_topo("no gpus here")


def test_parse_nvidia_topo_copied_without_tabs():
    """The manual's own listing lost its tabs; the affinity column is still found."""
    manual = ("GPU0 GPU1 NIC0 NIC1 CPU Affinity NUMA Affinity GPU NUMA ID\n"
              "GPU0 X SYS NODE NODE 0-47,96-143 0 N/A\n"
              "GPU2 SYS X SYS SYS 48-95,144-191 1 N/A\n")
    affinity = topology.parse_nvidia_topo(manual)
    assert affinity[2].cpus[:2] == (48, 49) and affinity[2].numa_node == 1


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
    assert plot0.environment == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0"}
    assert plot0.command.startswith("numactl -C 0-23,96-119 -l ")


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


# --- conf generate on saved captures of real machines (tests/data/topology) -------------------

CAPTURES = REPO_ROOT / "tests" / "data" / "topology"
# Expected numactl lists, derived by hand from each machine's layout: a NUMA node's physical cores
# split evenly between its GPUs, each core with its SMT sibling.
EXPECTED = {
    # Ryzen 9 7950X, 16 cores / 32 threads, one RTX 4090
    "1s-1gpu-smt": ["0-31"],
    # EPYC 7543P, 32 cores, SMT off, 4 GPUs on the one NUMA node
    "1s-4gpu-nosmt": ["0-7", "8-15", "16-23", "24-31"],
    # the manual's plotter: 2x Xeon 8468 (48 cores, SMT), GPU0/1 on node 0, GPU2/3 on node 1
    "2s-4gpu-smt": ["0-23,96-119", "24-47,120-143", "48-71,144-167", "72-95,168-191"],
    # DGX H100: 2x Xeon 8480C (56 cores, SMT), GPU0-3 on node 0, GPU4-7 on node 1
    "2s-8gpu-smt": ["0-13,112-125", "14-27,126-139", "28-41,140-153", "42-55,154-167",
                    "56-69,168-181", "70-83,182-195", "84-97,196-209", "98-111,210-223"],
    # 2x EPYC 7763 (64 cores, SMT off)
    "2s-8gpu-nosmt": ["0-15", "16-31", "32-47", "48-63", "64-79", "80-95", "96-111", "112-127"],
    # EPYC 9654 (96 cores, SMT) in NPS4: four NUMA nodes on one socket, two GPUs each
    "1s-8gpu-nps4-smt": ["0-11,96-107", "12-23,108-119", "24-35,120-131", "36-47,132-143",
                         "48-59,144-155", "60-71,156-167", "72-83,168-179", "84-95,180-191"],
}


def plot_server_lists(out: Path) -> list[tuple[str, str, str]]:
    """(numactl list, CUDA_VISIBLE_DEVICES, concurrency) of each generated plot-server."""
    conf = parse(out / "autonomys-plot-server.conf")
    found = []
    for section in sorted((s for s in conf.sections() if s.startswith("program:")),
                          key=lambda name: int(name.rsplit("-", 1)[1])):
        argv = shlex.split(conf[section]["command"])
        env = dict(item.split("=", 1) for item in conf[section]["environment"].split(","))
        found.append((argv[2], env["CUDA_VISIBLE_DEVICES"], argv[argv.index("--record-encoding-concurrency") + 1]))
        assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    return found


@pytest.mark.parametrize("machine, lscpu", [(m, f) for m in sorted(EXPECTED) for f in ("lscpu.txt", "lscpu-p.txt", None)
                                             if f is None or (CAPTURES / m / f).exists()])
def test_generate_from_saved_captures(capsys, tmp_path, machine, lscpu):
    capture = CAPTURES / machine
    flags = ["--lscpu", str(capture / lscpu)] if lscpu else []
    assert run_conf(capsys, "generate", "--role", "plotter", *NATS, "--nvidia-topo",
                    str(capture / "nvidia-smi-topo-m.txt"), *flags, "--out", str(tmp_path), "--systemd") == 0
    found = plot_server_lists(tmp_path)
    assert [cpus for cpus, _, _ in found] == EXPECTED[machine]
    assert [gpu for _, gpu, _ in found] == [str(i) for i in range(len(EXPECTED[machine]))]
    for cpus, _, concurrency in found:  # one encoding thread per pinned CPU
        assert concurrency == str(len(topology.parse_cpu_list(cpus)))


@pytest.mark.parametrize("machine", sorted(EXPECTED))
def test_captured_allocations_respect_numa_and_smt(machine):
    """Independent of the expected table: disjoint lists, inside the GPU's NUMA node, whole
    cores only, and equal shares for GPUs on one node."""
    capture = CAPTURES / machine
    gpus = topology.parse_nvidia_topo((capture / "nvidia-smi-topo-m.txt").read_text())
    cpus = topology.parse_lscpu((capture / "lscpu.txt").read_text())
    lists = topology.allocate(sorted(gpus), gpus, cpus)
    seen: set[int] = set()
    for index, chosen in zip(sorted(gpus), lists):
        assert not seen & set(chosen), f"GPU{index} reuses CPUs"
        seen.update(chosen)
        assert set(chosen) <= set(cpus.nodes[gpus[index].numa_node])
        cores = {cpus.core_of[c] for c in chosen}
        assert sum(1 for c in cpus.cpus if cpus.core_of[c] in cores) == len(chosen), "a core was split"
        same_node = [lst for i, lst in zip(sorted(gpus), lists) if gpus[i].numa_node == gpus[index].numa_node]
        assert len({len(lst) for lst in same_node}) == 1


def test_parsable_lscpu_gives_exact_siblings():
    """lscpu -p numbers cores explicitly, so adjacent siblings (0,1 on one core) are kept together."""
    text = "# CPU,Core,Socket,Node\n" + "".join(f"{cpu},{cpu // 2},0,0\n" for cpu in range(16))
    cpus = topology.parse_lscpu(text)
    assert cpus.exact and cpus.threads_per_core == 2
    gpus = {0: topology.GpuAffinity(0, tuple(range(16)), 0), 1: topology.GpuAffinity(1, tuple(range(16)), 0)}
    assert [topology.format_cpu_list(c) for c in topology.allocate([0, 1], gpus, cpus)] == ["0-7", "8-15"]


def test_both_capture_forms_agree():
    capture = CAPTURES / "2s-4gpu-smt"
    human = topology.parse_lscpu((capture / "lscpu.txt").read_text())
    parsable = topology.parse_lscpu((capture / "lscpu-p.txt").read_text())
    assert human.nodes == parsable.nodes and human.threads_per_core == parsable.threads_per_core == 2
    assert human.sockets == parsable.sockets == 2 and human.model == "Intel(R) Xeon(R) Platinum 8468"
    pairs = lambda t: sorted(tuple(c for c in t.cpus if t.core_of[c] == core) for core in set(t.core_of.values()))  # noqa: E731
    assert pairs(human) == pairs(parsable)


def test_cores_per_gpu_limits_and_overflow(capsys, tmp_path):
    capture = CAPTURES / "2s-4gpu-smt"
    base = ["conf", "generate", "--role", "plotter", *NATS, "--nvidia-topo", str(capture / "nvidia-smi-topo-m.txt"),
            "--lscpu", str(capture / "lscpu-p.txt"), "--out", str(tmp_path)]
    assert cli.main([*base, "--cores-per-gpu", "20"]) == 0
    capsys.readouterr()
    assert [c for c, _, _ in plot_server_lists(tmp_path)][:2] == ["0-19,96-115", "20-39,116-135"]
    assert cli.main([*base, "--cores-per-gpu", "30"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: GPU0, GPU1 share CPUs 0-47,96-143 with 48 free physical cores") and "30" in last


def test_generate_reads_the_local_tools(capsys, tmp_path, monkeypatch):
    """`conf generate` runs nvidia-smi and lscpu itself. nvidia-smi is a script printing a saved
    capture (this machine has no GPU); lscpu is this machine's, so the GPU's affinity is cut to
    the CPUs that exist here."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\n[ \"$1 $2\" = 'topo -m' ] && exec cat {CAPTURES / '1s-1gpu-smt' / 'nvidia-smi-topo-m.txt'}\n"
                    "exit 1\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    local = topology.parse_lscpu(topology.local_lscpu())
    out = tmp_path / "out"
    assert cli.main(["conf", "generate", "--role", "plotter", *NATS, "--out", str(out), "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["numa_source"] == "nvidia-smi topo -m (this machine)"
    assert report["cpu_source"] == "lscpu -p (this machine)"
    assert report["gpus"] == 1
    assert report["gpu_cpus"] == [topology.format_cpu_list([c for c in local.cpus if c < 32])]


def test_plain_conf_without_topology_warns(capsys, tmp_path):
    assert cli.main(["conf", "--role", "plotter", "--gpus", "2", *NATS, "--out", str(tmp_path), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["gpu_cpus"] == ["0-31", "32-63"]
    assert "warning: no nvidia-smi topo -m output" in err
