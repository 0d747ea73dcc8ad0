"""``autonomys-farmer conf``: supervisor programs (and systemd units) for one machine of the
manual's topology.

The manual deploys three kinds of machine: *node* (nats-server, autonomys-node, controller,
proof-server), *plotter* (one plot-server per GPU pinned with ``numactl -C CPUS -l`` next to its
GPU, a sharded cache and a full-piece cache) and *storage* (plot-client). Writing those files by
hand is where CPU ranges overlap and GPU indices repeat; this generator derives them from the GPU
count and the machine's topology (:mod:`services.topology`):

* ``conf generate --role plotter ...`` runs ``nvidia-smi topo -m`` and ``lscpu`` on the machine it
  runs on (the target machine) and pins each GPU program to its NUMA node, splitting the node's
  physical cores (with their SMT siblings) between the GPUs attached to it;
* ``--nvidia-topo FILE [--lscpu FILE]`` does the same from saved outputs (for another machine);
* ``--numa-cpus CPUS`` per GPU sets the lists by hand; without any of these (plain ``conf``),
  contiguous ranges of ``--cores-per-gpu`` CPUs (32) are written, with a warning.

GPU programs get ``CUDA_VISIBLE_DEVICES=<i>`` and ``CUDA_DEVICE_ORDER=PCI_BUS_ID``: CUDA numbers
devices fastest-first by default, nvidia-smi (and so the topology) by PCI bus id, and only with
that variable does GPU ``i`` of ``nvidia-smi topo -m`` get the CPUs next to it.

``python -m services.confgen EXAMPLES_DIR`` regenerates the committed examples in ``conf.d/``.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from services import topology
from services.config import (
    ConfigError,
    JsonConfig,
    dedupe_nats_servers,
    parse_int,
    parse_kv_spec,
    parse_node_rpc_url,
    require_nats_servers,
    ss58_decode,
)
from services.topology import format_cpu_list, parse_cpu_list

MACHINE_ROLES = ("node", "plotter", "storage")
DEFAULT_BINARY = "/root/autonomys/autonomys-farmer"
DEFAULT_NODE_BINARY = "/root/autonomys/autonomys-node"
FIRST_PLOT_SERVER_PORT = 9966
NATS_CLUSTER_PORT = 4248
CONTIGUOUS_CORES_PER_GPU = 32  # the manual's -C 0-31 when nothing is known about the machine


class ConfGenConfig(JsonConfig, frozen=True, kw_only=True):
    """One machine's deployment; ``gpu_cpus[i]`` is the numactl CPU list of GPU ``i``."""

    machine_role: str
    nats_servers: tuple[str, ...]
    out_dir: str
    systemd: bool = False
    binary: str = DEFAULT_BINARY
    user: str = "root"
    log_dir: str = "/var/log"
    gpus: int = 1
    cores_per_gpu: int | None = None
    gpu_cpus: tuple[str, ...] = ()
    numa_source: str = "contiguous"
    cpu_source: str = ""
    gpu_concurrency: int | None = None
    # node machine
    node_rpc_url: str = "ws://127.0.0.1:9944"
    node_binary: str = DEFAULT_NODE_BINARY
    node_base_path: str = "/var/autonomys-node"
    dev_node: bool = False
    nats_binary: str = "nats-server"
    nats_config_path: str = "/etc/nats/nats-server.conf"
    nats_store_dir: str = "/var/nats-data"
    nats_server_name: str = ""
    # plotter machine
    plot_servers: int = 1
    plot_server_base: str = "/var/plot-server"
    first_listen_port: int = FIRST_PLOT_SERVER_PORT
    record_encoding_concurrency: int | None = None  # None: the number of CPUs each plot-server is pinned to
    priority_cache: bool = True
    sharded_cache_path: str = "/var/autonomys-sharded-cache"
    full_piece_cache_path: str = "/var/autonomys-full-piece"
    # storage machine
    reward_address: str | None = None
    farms: tuple[str, ...] = ()


# --- CPU lists ----------------------------------------------------------------------------


def contiguous_gpu_cpus(gpus: int, cores_per_gpu: int) -> list[str]:
    """``0-31``, ``32-63``, ...: what is written when nothing is known about the machine."""
    return [format_cpu_list(list(range(i * cores_per_gpu, (i + 1) * cores_per_gpu))) for i in range(gpus)]


def _read(path: str, flag: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {flag} {path!r}: {exc.strerror}") from None


def machine_topology(args: argparse.Namespace, detect: bool) -> tuple[dict | None, topology.CpuTopology | None,
                                                                      str, str]:
    """(GPU affinities, CPU topology, where each came from) from files or, with ``detect``, the
    tools on this machine; (None, None, ...) when there is nothing to read."""
    gpus = cpus = None
    gpu_source = cpu_source = ""
    if args.nvidia_topo:
        gpus = topology.parse_nvidia_topo(_read(args.nvidia_topo, "--nvidia-topo"))
        gpu_source = f"nvidia-smi topo -m ({args.nvidia_topo})"
    elif detect:
        text = topology.local_nvidia_topo()
        if text is not None:
            gpus = topology.parse_nvidia_topo(text)
            gpu_source = "nvidia-smi topo -m (this machine)"
    if args.lscpu:
        cpus = topology.parse_lscpu(_read(args.lscpu, "--lscpu"))
        cpu_source = f"lscpu ({args.lscpu})"
    elif detect and not args.nvidia_topo:  # never mix this machine's CPUs with another machine's GPUs
        text = topology.local_lscpu()
        if text is not None:
            cpus = topology.parse_lscpu(text)
            cpu_source = "lscpu -p (this machine)"
    return gpus, cpus, gpu_source, cpu_source


# --- arguments -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("conf_action", nargs="?", choices=("generate",), metavar="generate",
                        help="read nvidia-smi topo -m and lscpu on this machine (default: only the files given)")
    parser.add_argument("--role", required=True, dest="machine_role", metavar="|".join(MACHINE_ROLES),
                        help="which machine of the manual's topology")
    parser.add_argument("--nats-server", "--nats-servers", action="append", dest="conf_nats_servers",
                        metavar="URL", help="NATS server URL (repeatable)")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write the files into")
    parser.add_argument("--systemd", action="store_true",
                        help="also write systemd units into DIR/systemd/ (always with generate)")
    parser.add_argument("--gpus", default=None, metavar="N",
                        help="GPUs to use (default: all in the topology, else 1)")
    parser.add_argument("--cores-per-gpu", default=None, metavar="N",
                        help="physical cores per GPU program, SMT siblings included (default: the GPU's NUMA "
                             f"node split evenly; {CONTIGUOUS_CORES_PER_GPU} CPUs without a topology)")
    numa = parser.add_mutually_exclusive_group()
    numa.add_argument("--numa-cpus", action="append", metavar="CPUS",
                      help="numactl CPU list for GPU i, one flag per GPU in order (e.g. 0-31)")
    numa.add_argument("--nvidia-topo", metavar="FILE", help="file holding `nvidia-smi topo -m` output")
    parser.add_argument("--lscpu", metavar="FILE",
                        help="file holding `lscpu -p=CPU,CORE,SOCKET,NODE` (or plain `lscpu`) output")
    parser.add_argument("--gpu-concurrency", default=None, metavar="N", help="GPU_CONCURRENCY for GPU programs")
    parser.add_argument("--binary", default=None, metavar="PATH",
                        help=f"autonomys-farmer executable (default: the one on PATH, else {DEFAULT_BINARY})")
    parser.add_argument("--user", default="root", help="user the programs run as (default root)")
    parser.add_argument("--log-dir", default="/var/log", metavar="DIR", help="log directory (default /var/log)")
    node = parser.add_argument_group("node machine")
    node.add_argument("--node-rpc-url", default="ws://127.0.0.1:9944", metavar="URL")
    node.add_argument("--node-binary", default=DEFAULT_NODE_BINARY, metavar="PATH")
    node.add_argument("--node-base-path", default="/var/autonomys-node", metavar="DIR")
    node.add_argument("--dev-node", action="store_true",
                      help="run `autonomys-farmer dev-node` (data in --node-base-path) instead of autonomys-node")
    node.add_argument("--nats-binary", default="nats-server", metavar="PATH")
    node.add_argument("--nats-store-dir", default="/var/nats-data", metavar="DIR")
    node.add_argument("--nats-server-name", default=None, metavar="NAME", help="default: the host name")
    plotter = parser.add_argument_group("plotter machine")
    plotter.add_argument("--plot-servers", default=None, metavar="N", help="plot-servers (default: one per GPU)")
    plotter.add_argument("--plot-server-base", default="/var/plot-server", metavar="DIR")
    plotter.add_argument("--first-listen-port", default=str(FIRST_PLOT_SERVER_PORT), metavar="PORT")
    plotter.add_argument("--record-encoding-concurrency", default=None, metavar="N",
                         help="default: --cores-per-gpu")
    plotter.add_argument("--no-priority-cache", action="store_true")
    plotter.add_argument("--sharded-cache-path", default="/var/autonomys-sharded-cache", metavar="DIR")
    plotter.add_argument("--full-piece-cache-path", default="/var/autonomys-full-piece", metavar="DIR")
    storage = parser.add_argument_group("storage machine")
    storage.add_argument("--reward-address", default=None, metavar="SS58")
    storage.add_argument("--farm", action="append", dest="farms", metavar="path=DIR,sectors=N",
                         help="one farm (repeatable)")


def from_args(args: argparse.Namespace) -> ConfGenConfig:
    role = args.machine_role.strip().lower()
    if role not in MACHINE_ROLES:
        raise ConfigError(f"invalid --role {args.machine_role!r}: expected node, plotter or storage")
    servers = require_nats_servers(dedupe_nats_servers(args.conf_nats_servers or []), "conf")
    cores = None if args.cores_per_gpu is None else parse_int(args.cores_per_gpu, "--cores-per-gpu", minimum=1,
                                                               maximum=4096)
    detect = args.conf_action == "generate" and not args.numa_cpus
    gpu_topology, cpu_topology, gpu_source, cpu_source = machine_topology(args, detect)
    if args.gpus is not None:
        gpus = parse_int(args.gpus, "--gpus", minimum=0, maximum=64)
    else:
        gpus = len(gpu_topology) if gpu_topology is not None else 1
    gpu_concurrency = None if args.gpu_concurrency is None else parse_int(args.gpu_concurrency, "--gpu-concurrency",
                                                                           minimum=1, maximum=1024)
    plot_servers = max(gpus, 1) if args.plot_servers is None else parse_int(args.plot_servers, "--plot-servers",
                                                                             minimum=1, maximum=64)
    pinned = plot_servers if role == "plotter" else gpus
    if args.numa_cpus:
        if len(args.numa_cpus) != pinned:
            raise ConfigError(f"--numa-cpus given {len(args.numa_cpus)} times for {pinned} GPU programs")
        gpu_cpus = [format_cpu_list(parse_cpu_list(c, "--numa-cpus")) for c in args.numa_cpus]
        source = "--numa-cpus"
    elif gpu_topology is not None:
        gpu_cpus = [format_cpu_list(c) for c in topology.allocate(range(pinned), gpu_topology, cpu_topology, cores)]
        source = gpu_source
    else:
        gpu_cpus = contiguous_gpu_cpus(pinned, cores or CONTIGUOUS_CORES_PER_GPU)
        source = "contiguous"
        if role == "plotter" or detect:
            print("warning: no nvidia-smi topo -m output: plot-servers get contiguous CPU ranges that ignore "
                  "NUMA; run `conf generate` on the machine or give --nvidia-topo FILE", file=sys.stderr)
    reward_address = None
    farms: tuple[str, ...] = ()
    if role == "storage":
        if not args.reward_address:
            raise ConfigError("conf --role storage needs --reward-address")
        ss58_decode(args.reward_address)
        reward_address = args.reward_address.strip()
        if not args.farms:
            raise ConfigError("conf --role storage needs at least one --farm path=DIR,sectors=N")
        for farm in args.farms:
            values = parse_kv_spec(farm, "--farm", required=("path", "sectors"))
            parse_int(values["sectors"], f"sectors in --farm {farm!r}", minimum=1, maximum=65535)
        farms = tuple(args.farms)
    binary = args.binary or shutil.which("autonomys-farmer") or DEFAULT_BINARY
    return ConfGenConfig(
        machine_role=role,
        nats_servers=servers,
        out_dir=args.out,
        systemd=bool(args.systemd) or args.conf_action == "generate",
        binary=binary,
        user=args.user,
        log_dir=args.log_dir.rstrip("/") or "/",
        gpus=gpus,
        cores_per_gpu=cores,
        gpu_cpus=tuple(gpu_cpus),
        numa_source=source,
        cpu_source=cpu_source,
        gpu_concurrency=gpu_concurrency,
        node_rpc_url=parse_node_rpc_url(args.node_rpc_url),
        node_binary=args.node_binary,
        node_base_path=args.node_base_path,
        dev_node=bool(args.dev_node),
        nats_binary=args.nats_binary,
        nats_store_dir=args.nats_store_dir,
        nats_server_name=args.nats_server_name or socket.gethostname(),
        plot_servers=plot_servers,
        plot_server_base=args.plot_server_base.rstrip("/"),
        first_listen_port=parse_int(args.first_listen_port, "--first-listen-port", minimum=1,
                                    maximum=65535 - plot_servers),
        record_encoding_concurrency=None if args.record_encoding_concurrency is None else parse_int(
            args.record_encoding_concurrency, "--record-encoding-concurrency", minimum=1, maximum=4096),
        priority_cache=not args.no_priority_cache,
        sharded_cache_path=args.sharded_cache_path,
        full_piece_cache_path=args.full_piece_cache_path,
        reward_address=reward_address,
        farms=farms,
    )


# --- programs ------------------------------------------------------------------------------


class Program(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    argv: tuple[str, ...]
    environment: tuple[tuple[str, str], ...] = ()
    log_max_bytes: str = "100MB"
    priority: int = 100
    after: tuple[str, ...] = ()
    file: str = ""  # supervisor file stem the program goes into
    group: str | None = None


def _cluster_argv(config: ConfGenConfig) -> list[str]:
    argv = [config.binary, "cluster"]
    for url in config.nats_servers:
        argv += ["--nats-server", url]
    return argv


def _gpu_env(config: ConfGenConfig, gpu: int | None) -> tuple[tuple[str, str], ...]:
    env = []
    if gpu is not None:
        env += [("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), ("CUDA_VISIBLE_DEVICES", str(gpu))]
    if config.gpu_concurrency is not None and gpu is not None:
        env.append(("GPU_CONCURRENCY", str(config.gpu_concurrency)))
    return tuple(env)


def programs(config: ConfGenConfig) -> list[Program]:
    """The programs of one machine, in start order."""
    out: list[Program] = []
    if config.machine_role == "node":
        nats = "autonomys-nats-server"
        out.append(Program(name=nats, argv=(config.nats_binary, "-c", config.nats_config_path), priority=10, file=nats))
        if config.dev_node:
            node_argv: tuple[str, ...] = (config.binary, "dev-node", "--data-dir", config.node_base_path,
                                          "--rpc-listen-on", "0.0.0.0:9944", "--rpc-methods", "unsafe")
        else:  # the manual's autonomys-node line
            node_argv = (config.node_binary, "run", "--base-path", config.node_base_path, "--farmer",
                         "--rpc-listen-on", "0.0.0.0:9944", "--chain", "mainnet", "--blocks-pruning=archive",
                         "--state-pruning=archive", "--sync", "full", "--rpc-methods", "unsafe", "--rpc-cors", "all")
        out.append(Program(name="autonomys-node", file="autonomys-node", priority=20, after=(nats,), argv=node_argv))
        out.append(Program(name="autonomys-controller", file="autonomys-controller", priority=30,
                           after=(nats, "autonomys-node"),
                           argv=(*_cluster_argv(config), "controller", "--tmp", "--node-rpc-url", config.node_rpc_url)))
        count = max(config.gpus, 1)
        for i in range(count):
            name = "autonomys-proof-server" if count == 1 else f"autonomys-proof-server-{i}"
            out.append(Program(name=name, file="autonomys-proof-server", priority=40,
                               group="autonomys-proof-server" if count > 1 else None,
                               after=(nats, "autonomys-controller"), log_max_bytes="500MB",
                               environment=_gpu_env(config, i if config.gpus else None),
                               argv=(*_cluster_argv(config), "proof-server")))
    elif config.machine_role == "plotter":
        out.append(Program(name="autonomys-sharded-cache", file="autonomys-sharded-cache", priority=10,
                           argv=(*_cluster_argv(config), "sharded-cache", f"path={config.sharded_cache_path}")))
        out.append(Program(name="autonomys-full-piece", file="autonomys-full-piece", priority=10,
                           argv=(*_cluster_argv(config), "full-piece-sharded-cache",
                                 f"path={config.full_piece_cache_path}")))
        for i in range(config.plot_servers):
            concurrency = config.record_encoding_concurrency or len(parse_cpu_list(config.gpu_cpus[i]))
            argv = ["numactl", "-C", config.gpu_cpus[i], "-l", *_cluster_argv(config), "plot-server",
                    "--record-encoding-concurrency", str(concurrency)]
            if config.priority_cache:
                argv.append("--priority-cache")
            argv += ["--listen-port", str(config.first_listen_port + i), f"{config.plot_server_base}/base-path-{i}"]
            out.append(Program(name=f"autonomys-plot-server-{i}", file="autonomys-plot-server", priority=20,
                               group="autonomys-plot-server", after=("autonomys-sharded-cache", "autonomys-full-piece"),
                               environment=_gpu_env(config, i if config.gpus else None), argv=tuple(argv)))
    else:
        argv = [*_cluster_argv(config), "plot-client", "--reward-address", config.reward_address or "", *config.farms]
        out.append(Program(name="autonomys-plot-client", file="autonomys-plot-client", argv=tuple(argv)))
    return out


def _log_name(program: Program) -> str:
    # The manual logs plot-server-N into autonomys-plotter-N.log.
    return program.name.replace("autonomys-plot-server-", "autonomys-plotter-") + ".log"


def render_supervisor_program(config: ConfGenConfig, program: Program) -> str:
    lines = [f"[program:{program.name}]", "command=" + shlex.join(program.argv), "autorestart=true",
             f"user={config.user}"]
    if program.environment:
        lines.append("environment=" + ",".join(f"{k}={v}" for k, v in program.environment))
    lines += [
        f"priority={program.priority}",
        "stopsignal=TERM",
        "stopwaitsecs=60",
        "redirect_stderr=true",
        f"stdout_logfile_maxbytes={program.log_max_bytes}",
        "stdout_logfile_backups=2",
        f"stdout_logfile={config.log_dir}/{_log_name(program)}",
    ]
    return "\n".join(lines) + "\n"


def render_systemd_unit(config: ConfGenConfig, program: Program) -> str:
    argv = list(program.argv)
    if argv[0] == "numactl":
        argv[0] = "/usr/bin/numactl"
    after = " ".join(["network-online.target", *(f"{name}.service" for name in program.after)])
    lines = [
        "[Unit]",
        f"Description=Autonomys farmer cluster: {program.name}",
        "Wants=network-online.target",
        f"After={after}",
        "",
        "[Service]",
        "Type=simple",
        f"User={config.user}",
        *(f"Environment={k}={v}" for k, v in program.environment),
        "ExecStart=" + shlex.join(argv),
        "Restart=always",
        "RestartSec=5",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=60",
        "LimitNOFILE=1048576",
        f"StandardOutput=append:{config.log_dir}/{_log_name(program)}",
        "StandardError=inherit",
        "",
        "[Install]",
        f"WantedBy={program.group + '.target' if program.group else 'multi-user.target'}",
    ]
    return "\n".join(lines) + "\n"


def render_nats_config(config: ConfGenConfig) -> str:
    """The manual's example nats-server config: JetStream, max_payload 3MB, a route per server."""
    hosts = [urlsplit(url).hostname for url in config.nats_servers]
    lines = [
        f"server_name={config.nats_server_name}",
        "listen: 0.0.0.0:4222",
        "http: 0.0.0.0:8222",
        "max_payload = 3MB",
        "jetstream {",
        f"  store_dir={config.nats_store_dir}",
        "}",
    ]
    if len(hosts) > 1:
        lines += ["cluster {", "  name: autonomys-cluster", f"  listen: 0.0.0.0:{NATS_CLUSTER_PORT}", "  routes: ["]
        lines += [f"    nats://{host}:{NATS_CLUSTER_PORT}" for host in hosts]
        lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def render(config: ConfGenConfig) -> dict[str, str]:
    """Relative path -> file content for everything ``conf`` writes."""
    header = f"# generated by `autonomys-farmer conf --role {config.machine_role}`; edit freely\n"
    files: dict[str, str] = {}
    progs = programs(config)
    by_file: dict[str, list[Program]] = {}
    for program in progs:
        by_file.setdefault(program.file, []).append(program)
    for stem, members in by_file.items():
        text = header + f"# /etc/supervisor/conf.d/{stem}.conf\n"
        groups = sorted({p.group for p in members if p.group})
        for group in groups:
            names = ",".join(p.name for p in members if p.group == group)
            text += f"[group:{group}]\nprograms={names}\n\n"
        text += "\n".join(render_supervisor_program(config, p) for p in members)
        files[f"{stem}.conf"] = text
    if config.machine_role == "node":
        files["nats/nats-server.conf"] = (f"# generated by `autonomys-farmer conf --role node`\n"
                                          f"# {config.nats_config_path}\n" + render_nats_config(config))
    if config.systemd:
        for program in progs:
            files[f"systemd/{program.name}.service"] = (
                header + f"# /etc/systemd/system/{program.name}.service\n"
                + render_systemd_unit(config, program))
        for group in sorted({p.group for p in progs if p.group}):
            members = [p.name + ".service" for p in progs if p.group == group]
            files[f"systemd/{group}.target"] = (
                header + f"# /etc/systemd/system/{group}.target\n[Unit]\nDescription=Autonomys {group} group\n"
                f"Wants={' '.join(members)}\n\n[Install]\nWantedBy=multi-user.target\n")
    return files


def write(config: ConfGenConfig, files: dict[str, str]) -> list[str]:
    out = Path(config.out_dir)
    written = []
    for rel, text in sorted(files.items()):
        path = out / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as exc:
            raise ConfigError(f"cannot write {str(path)!r}: {exc.strerror}") from None
        written.append(str(path))
    return written


# --- the manual's example topology (committed under conf.d/) -------------------------------

EXAMPLE_NATS = ["--nats-server", "nats://192.168.1.1:4222", "--nats-server", "nats://192.168.1.2:4222",
                "--nats-server", "nats://192.168.1.3:4222"]
EXAMPLE_REWARD_ADDRESS = "sufsKsx4kZ26i7bJXc1TFguysVzjkzsDtE2VDiCEBY2WjyGAj"  # dev key "Alice": replace it
EXAMPLE_TOPO_FILE = "examples/nvidia-smi-topo-m.txt"


def example_commands(out_dir: str) -> list[list[str]]:
    """`conf` argument lists producing the committed example files for the manual's machines."""
    common = [*EXAMPLE_NATS, "--binary", DEFAULT_BINARY, "--out", out_dir, "--systemd"]
    return [
        ["--role", "node", "--gpus", "1", "--node-rpc-url", "ws://127.0.0.1:9944", "--nats-server-name", "n1",
         *common],
        ["--role", "plotter", "--gpus", "4", "--nvidia-topo", f"{out_dir}/{EXAMPLE_TOPO_FILE}", *common],
        ["--role", "storage", "--gpus", "0", "--reward-address", EXAMPLE_REWARD_ADDRESS,
         "--farm", "path=/mnt/nvme0n1/,sectors=8000", "--farm", "path=/mnt/nvme0n2/,sectors=8000",
         "--farm", "path=/mnt/nvme1n1/,sectors=8000", "--farm", "path=/mnt/nvme1n2/,sectors=8000", *common],
    ]


def generate_examples(out_dir: str) -> list[str]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    written: list[str] = []
    for argv in example_commands(out_dir):
        config = from_args(parser.parse_args(argv))
        written += write(config, render(config))
    return written


if __name__ == "__main__":
    for written_path in generate_examples(sys.argv[1] if len(sys.argv) > 1 else "conf.d"):
        print(written_path)
