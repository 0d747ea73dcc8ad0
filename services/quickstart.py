"""``autonomys-farmer quickstart``: a whole farming cluster on one machine, for a first look.

It takes an exclusive lock on DATA_DIR (a second quickstart there is refused, naming the
holder), writes a supervisord config into it and runs supervisord in the foreground as a child
process. The programs start in stages (``services.quickstart_run``): a nats-server with JetStream
and ``max_payload`` 3 MiB and the numba JIT warm-up first, then the embedded dev node, then the
controller, the piece caches and the plot-client, and, once the kernels are in the cache, the
plot-server and the proof-server. Roles whose service module is not part of this build are left
out (said so). All state (NATS store, dev-node chain and ``blocks.jsonl``, caches, plots, logs)
lives under DATA_DIR.

The terminal shows each phase as it is reached (archiving, warm-up, cache fill, plotting, first
audit, first solution, blocks) and a status line every few seconds. A role that exits before
the first block stops the quickstart with its name, its log and the reason (exit 1); later,
supervisord restarts it and the quickstart says why it exited. Ctrl-C / SIGTERM stops everything
through supervisord (no orphans).

``--exit-after-blocks N`` turns it into a smoke test: exit 0 once the dev node has authored N
blocks during this run (new lines in its ``blocks.jsonl``), exit 1 with the reason when
``--timeout`` passes first. ``--dry-run`` prints the configuration and the plan (stages and
command lines) and starts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import socket
import sys
from pathlib import Path

import msgspec

from services.config import (
    AUTONOMYS_SS58_PREFIX,
    JsonConfig,
    check_directory,
    parse_int,
    parse_seconds,
    ss58_decode,
    ss58_encode,
)
from services.quickstart_supervisor import Program, render_config, socket_path

# Well-known development key ("Alice"); rewards on a dev chain are worthless anyway.
DEV_REWARD_ADDRESS = ss58_encode(bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"),
                                 AUTONOMYS_SS58_PREFIX)
REPO_ROOT = Path(__file__).resolve().parent.parent
# role -> service module whose presence decides whether quickstart runs it (beyond node + controller)
OPTIONAL_ROLES = {
    "sharded-cache": "services.sharded_cache.service",
    "full-piece-sharded-cache": "services.full_piece_cache.service",
    "plot-server": "services.plot_server.service",
    "proof-server": "services.proof_server.service",
    "plot-client": "services.plot_client.service",
}
REQUIRED_SERVICES = {"dev-node": "services.node.dev_node", "controller": "services.controller.service"}
# every role a block needs: without one of them --exit-after-blocks cannot succeed
FARMING_ROLES = ("plot-server", "plot-client")
WARMUP = "jit-warmup"
# The dev node may be in the middle of archiving a segment when asked to stop; give it time to
# finish cleanly rather than SIGKILL it.
STOP_WAIT_S = {"dev-node": 150}


U64_MAX = (1 << 64) - 1
# mainnet's slot probability: a block every 6 slots on average
BLOCKS_PER_SLOT = 1 / 6


def default_solution_range(sectors: int, pieces_in_sector: int) -> int:
    """The dev chain's solution range for a block every ~6 slots once the plot is complete.

    A chunk wins when its audit distance is at most ``range / 2``; distances are uniform in
    ``[0, 2^63]``, so a chunk wins with probability ``range / 2^64``. An audit reads one s-bucket
    per sector, about ``pieces_in_sector / 2`` chunks (a record keeps half of its 65 536 extended
    chunks). With ``u64::MAX`` every audit wins and every slot asks for a proof (about a second
    of CPU each), more than a small machine can prove within the farming timeout."""
    chunks_per_slot = max(1.0, sectors * pieces_in_sector / 2)
    return max(1, min(U64_MAX, int(2**64 * BLOCKS_PER_SLOT / chunks_per_slot)))


class QuickstartConfig(JsonConfig, frozen=True, kw_only=True):
    """``block_authoring_delay``: slots a solution has (the farming timeout is that many slots).
    6, not mainnet's 4: on a busy 2-core machine that is also plotting, one proof takes 3-5 s,
    and the plot-client keeps its local-proving estimate (2 s at first) of the timeout back from
    the proof-server; with 4 s it falls back to proving locally, late, for every slot.
    ``solution_range``: the dev chain's (fixed) solution range, see :func:`default_solution_range`."""

    data_dir: str
    exit_after_blocks: int | None = None
    timeout_s: float | None = None
    slot_duration_ms: int = 1000
    block_authoring_delay: int = 6
    pieces_in_sector: int = 4
    sectors: int = 2
    solution_range: int = U64_MAX
    pre_archived_segments: int = 1
    reward_address: str = DEV_REWARD_ADDRESS
    progress_interval_s: float = 5.0
    jit_warmup: bool = True
    log_level: str = "info"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default="./data", metavar="DIR", help="all state and logs (default ./data)")
    parser.add_argument("--exit-after-blocks", default=None, metavar="N",
                        help="exit 0 once the dev node has authored N blocks during this run")
    parser.add_argument("--timeout", default=None, metavar="SECONDS",
                        help="give up (exit 1) after this long; with --exit-after-blocks")
    parser.add_argument("--slot-duration-ms", default="1000", metavar="N",
                        help="dev-node slot length (default 1000)")
    parser.add_argument("--block-authoring-delay", default="6", metavar="SLOTS",
                        help="slots a solution has to reach the dev node (default 6; mainnet 4)")
    parser.add_argument("--pieces-in-sector", default="4", metavar="N", help="dev-node max pieces per sector (default 4)")
    parser.add_argument("--sectors", default="2", metavar="N", help="sectors in the local plot (default 2)")
    parser.add_argument("--solution-range", default=None, metavar="N",
                        help="dev chain solution range (default: a block every ~6 slots for this plot size)")
    parser.add_argument("--pre-archived-segments", default="1", metavar="N",
                        help="history segments the dev node archives before the first slot (default 1)")
    parser.add_argument("--reward-address", default=DEV_REWARD_ADDRESS, metavar="SS58",
                        help="reward address of the local farmer (default: the dev key Alice)")
    parser.add_argument("--progress-interval", default="5", metavar="SECONDS", help="status line period (default 5)")
    parser.add_argument("--no-jit-warmup", action="store_true",
                        help="start the PoS roles at once instead of after compiling the numba kernels")


def from_args(args: argparse.Namespace, dry_run: bool, log_level: str = "info") -> QuickstartConfig:
    timeout = None if args.timeout is None else parse_seconds(args.timeout, "--timeout")
    interval = parse_seconds(args.progress_interval, "--progress-interval")
    ss58_decode(args.reward_address)
    sectors = parse_int(args.sectors, "--sectors", minimum=1, maximum=65535)
    pieces_in_sector = parse_int(args.pieces_in_sector, "--pieces-in-sector", minimum=1, maximum=65535)
    solution_range = (default_solution_range(sectors, pieces_in_sector) if args.solution_range is None
                      else parse_int(args.solution_range, "--solution-range", minimum=1, maximum=U64_MAX))
    return QuickstartConfig(
        data_dir=check_directory(args.data_dir, "--data-dir", create=not dry_run),
        exit_after_blocks=None if args.exit_after_blocks is None else parse_int(
            args.exit_after_blocks, "--exit-after-blocks", minimum=1),
        timeout_s=timeout,
        slot_duration_ms=parse_int(args.slot_duration_ms, "--slot-duration-ms", minimum=10, maximum=600_000),
        block_authoring_delay=parse_int(args.block_authoring_delay, "--block-authoring-delay", minimum=1,
                                        maximum=1000),
        pieces_in_sector=pieces_in_sector,
        sectors=sectors,
        solution_range=solution_range,
        pre_archived_segments=parse_int(args.pre_archived_segments, "--pre-archived-segments", minimum=0),
        reward_address=args.reward_address.strip(),
        progress_interval_s=interval,
        jit_warmup=not getattr(args, "no_jit_warmup", False),
        log_level=log_level,
    )


# --- layout and programs -------------------------------------------------------------------


class Layout(msgspec.Struct, frozen=True, kw_only=True):
    """Concrete ports and paths of one quickstart run."""

    data_dir: str
    nats_port: int
    nats_http_port: int
    rpc_port: int
    cache_port: int
    full_cache_port: int
    plot_server_port: int
    roles: tuple[str, ...]
    metrics_ports: dict[str, int] = {}

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def rpc_url(self) -> str:
        return f"ws://127.0.0.1:{self.rpc_port}"

    def path(self, *parts: str) -> Path:
        return Path(self.data_dir, *parts)

    @property
    def supervisord_conf(self) -> Path:
        return self.path("supervisord.conf")

    @property
    def socket_path(self) -> str:
        return socket_path(self.data_dir)

    @property
    def blocks_file(self) -> Path:
        return self.path("node", "blocks.jsonl")

    def log_file(self, program: str) -> Path:
        return self.path("logs", program + ".log")

    def metrics_address(self, program: str) -> str | None:
        port = self.metrics_ports.get(program)
        return None if port is None else f"127.0.0.1:{port}"


def available_roles() -> tuple[tuple[str, ...], dict[str, str]]:
    """Optional roles whose service imports cleanly, and why the others are left out."""
    present, skipped = [], {}
    for role, module in OPTIONAL_ROLES.items():
        if importlib.util.find_spec(module) is None:
            skipped[role] = "not in this build yet"
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure means "cannot run"
            skipped[role] = f"import failed: {type(exc).__name__}: {exc}"
            continue
        present.append(role)
    return tuple(present), skipped


def _free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


def make_layout(config: QuickstartConfig, roles: tuple[str, ...]) -> Layout:
    with_metrics = ["dev-node", "controller", *roles]
    nats, http, rpc, cache, full, plot, *metrics = _free_ports(6 + len(with_metrics))
    return Layout(data_dir=config.data_dir, nats_port=nats, nats_http_port=http, rpc_port=rpc, cache_port=cache,
                  full_cache_port=full, plot_server_port=plot, roles=roles,
                  metrics_ports=dict(zip(with_metrics, metrics)))


def render_nats_config(layout: Layout) -> str:
    from services.bus.server import NatsServerConfig

    return NatsServerConfig(host="127.0.0.1", port=layout.nats_port, http_port=layout.nats_http_port,
                            jetstream=True, store_dir=str(layout.path("nats", "jetstream")),
                            server_name="quickstart").render()


def program_commands(config: QuickstartConfig, layout: Layout) -> dict[str, list[str]]:
    """supervisord program name -> argv, in start order (the JIT warm-up not included)."""
    from services.bus.server import find_nats_server_binary

    farmer = [sys.executable, "-m", "services"]
    cluster = [*farmer, "cluster", "--nats-server", layout.nats_url, "--log-level", config.log_level]
    # the plot-client logs each audit at debug (one line per slot): the terminal's "first audit"
    plot_client_level = config.log_level if config.log_level in ("debug", "trace") else "debug"
    plot_client_cluster = [*farmer, "cluster", "--nats-server", layout.nats_url, "--log-level", plot_client_level]

    def metrics(program: str) -> list[str]:
        address = layout.metrics_address(program)
        return [] if address is None else ["--prometheus-listen-on", address]

    commands: dict[str, list[str]] = {
        "nats-server": [find_nats_server_binary(), "-c", str(layout.path("nats", "nats-server.conf"))],
        "dev-node": [*farmer, "dev-node", "--data-dir", str(layout.path("node")),
                     "--rpc-listen-on", f"127.0.0.1:{layout.rpc_port}", "--rpc-methods", "unsafe",
                     "--slot-duration-ms", str(config.slot_duration_ms),
                     "--block-authoring-delay", str(config.block_authoring_delay),
                     "--pieces-in-sector", str(config.pieces_in_sector),
                     "--solution-range", str(config.solution_range),
                     "--pre-archived-segments", str(config.pre_archived_segments), *metrics("dev-node"),
                     "--log-level", config.log_level],
        "controller": [*cluster, *metrics("controller"), "controller", "--base-path", str(layout.path("controller")),
                       "--node-rpc-url", layout.rpc_url],
    }
    # The dev node archives with the insecure dev KZG setup: the caches must verify with it too.
    # The full-piece cache starts on an empty history directory and fills it from the cluster
    # (the dev node's pieces through the controller); `autonomys-export-piece` into that directory
    # (NODE_URL=<rpc url>) does the same up front.
    if "sharded-cache" in layout.roles:
        commands["sharded-cache"] = [*cluster, *metrics("sharded-cache"), "sharded-cache",
                                     f"path={layout.path('sharded-cache')},size=4GiB",
                                     "--listen-on", f"127.0.0.1:{layout.cache_port}", "--kzg-params", "dev"]
    if "full-piece-sharded-cache" in layout.roles:
        commands["full-piece-sharded-cache"] = [*cluster, *metrics("full-piece-sharded-cache"),
                                                "full-piece-sharded-cache", f"path={layout.path('full-piece-cache')}",
                                                "--listen-on", f"127.0.0.1:{layout.full_cache_port}",
                                                "--kzg-params", "dev"]
    if "plot-client" in layout.roles:
        commands["plot-client"] = [*plot_client_cluster, *metrics("plot-client"), "plot-client",
                                   "--reward-address", config.reward_address,
                                   "--kzg-params", "dev",  # the dev node's setup
                                   f"path={layout.path('farms', 'farm-0')},sectors={config.sectors}"]
    if "plot-server" in layout.roles:
        commands["plot-server"] = [*cluster, *metrics("plot-server"), "plot-server", "--listen-host", "127.0.0.1",
                                   "--listen-port", str(layout.plot_server_port), "--priority-cache",
                                   str(layout.path("plot-server"))]
    if "proof-server" in layout.roles:
        commands["proof-server"] = [*cluster, *metrics("proof-server"), "proof-server",
                                    "--kzg-params", "dev"]  # the dev node's setup
    return commands


def warmup_command() -> list[str]:
    return [sys.executable, "-m", "services.jit_warmup"]


# the order programs start in; each stage starts when the condition named here holds
# (services.quickstart_run.Runner.stage_ready; the PoS roles need the kernels of
# services.jit_warmup.NEEDED_BY in the cache, else each would compile them itself, at once)
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("at once", ("nats-server", WARMUP)),
    ("once NATS accepts connections", ("dev-node",)),
    ("once the dev node's RPC listens", ("controller", "sharded-cache", "full-piece-sharded-cache", "plot-client")),
    ("once the warm-up compiled the plotting kernels", ("plot-server",)),
    ("once the warm-up compiled the proving kernels", ("proof-server",)),
)


def programs(config: QuickstartConfig, layout: Layout) -> list[Program]:
    """Every supervisord program of this run, in start order."""
    commands = program_commands(config, layout)
    if config.jit_warmup:
        commands = {"nats-server": commands.pop("nats-server"), WARMUP: warmup_command(), **commands}
    order = [name for _, names in STAGES for name in names]
    names = sorted(commands, key=lambda name: order.index(name) if name in order else len(order))
    return [Program(name, commands[name], stop_wait_s=STOP_WAIT_S.get(name, 30), oneshot=name == WARMUP)
            for name in names]


def plan(config: QuickstartConfig, layout: Layout) -> dict:
    """Stages, command lines, ports and logs of a run (what ``--dry-run`` prints)."""
    progs = {p.name: p for p in programs(config, layout)}
    stages = [{"when": when, "start": [name for name in names if name in progs]} for when, names in STAGES]
    return {
        "stages": [stage for stage in stages if stage["start"]],
        "programs": {name: {"command": p.argv, "log": str(layout.log_file(name))} for name, p in progs.items()},
        "nats_url": layout.nats_url,
        "node_rpc_url": layout.rpc_url,
        "metrics": {name: f"http://{layout.metrics_address(name)}/metrics" for name in layout.metrics_ports
                    if name in progs},
        "ports": "picked free at start; these were free when the plan was made",
    }


def prepare(config: QuickstartConfig, layout: Layout) -> Path:
    """Create the directories and write the nats and supervisord configs; returns the latter.
    Only call it while holding the data dir's lock (``services.quickstart_lock``)."""
    for sub in ("logs", "nats", "nats/jetstream", "node", "controller", "sharded-cache", "full-piece-cache",
                "plot-server", "farms/farm-0"):
        layout.path(sub).mkdir(parents=True, exist_ok=True)
    layout.path("nats", "nats-server.conf").write_text(render_nats_config(layout))
    layout.supervisord_conf.write_text(render_config(layout.data_dir, programs(config, layout)))
    layout.path("quickstart.json").write_text(
        json.dumps({"config": msgspec.to_builtins(config), "layout": msgspec.to_builtins(layout),
                    "nats_url": layout.nats_url, "rpc_url": layout.rpc_url}, indent=2))
    return layout.supervisord_conf


def dry_run_report(config: QuickstartConfig) -> str:
    roles, skipped = available_roles()
    layout = make_layout(config, roles)
    report = {**msgspec.to_builtins(config), "plan": plan(config, layout), "left_out": skipped}
    return json.dumps(report, indent=2)


def run(config: QuickstartConfig) -> int:
    """Run the cluster until Ctrl-C / SIGTERM (or --exit-after-blocks / --timeout)."""
    from services.quickstart_run import run_quickstart

    return run_quickstart(config)
