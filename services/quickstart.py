"""``autonomys-farmer quickstart``: a whole farming cluster on one machine, for a first look.

It writes a supervisord config into DATA_DIR and runs supervisord (from the supervisor package)
in the foreground as a child process. supervisord then runs, in this order: a nats-server with
JetStream and ``max_payload`` 3 MiB, the embedded dev node, the controller, and every other role
whose service module is part of this build. All state (NATS store, dev-node chain and
``blocks.jsonl``, caches, plots, logs) lives under DATA_DIR. A status line is printed every few
seconds; Ctrl-C / SIGTERM stops everything through supervisord (no orphans).

``--exit-after-blocks N`` turns it into a smoke test: exit 0 once the dev node has authored N
blocks during this run (new lines in its ``blocks.jsonl``), exit 1 with the reason when
``--timeout`` passes first.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
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
# The dev node may be in the middle of archiving a segment (tens of seconds on CPU) when asked to
# stop; give it time to finish cleanly rather than SIGKILL it.
STOP_WAIT_S = {"dev-node": 150}
DEFAULT_STOP_WAIT_S = 30
SHUTDOWN_GRACE_S = 240.0


class QuickstartConfig(JsonConfig, frozen=True, kw_only=True):
    data_dir: str
    exit_after_blocks: int | None = None
    timeout_s: float | None = None
    slot_duration_ms: int = 1000
    pieces_in_sector: int = 4
    sectors: int = 2
    pre_archived_segments: int = 1
    reward_address: str = DEV_REWARD_ADDRESS
    progress_interval_s: float = 5.0
    log_level: str = "info"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default="./data", metavar="DIR", help="all state and logs (default ./data)")
    parser.add_argument("--exit-after-blocks", default=None, metavar="N",
                        help="exit 0 once the dev node has authored N blocks during this run")
    parser.add_argument("--timeout", default=None, metavar="SECONDS",
                        help="give up (exit 1) after this long; with --exit-after-blocks")
    parser.add_argument("--slot-duration-ms", default="1000", metavar="N",
                        help="dev-node slot length (default 1000)")
    parser.add_argument("--pieces-in-sector", default="4", metavar="N", help="dev-node max pieces per sector (default 4)")
    parser.add_argument("--sectors", default="2", metavar="N", help="sectors in the local plot (default 2)")
    parser.add_argument("--pre-archived-segments", default="1", metavar="N",
                        help="history segments the dev node archives before the first slot (default 1)")
    parser.add_argument("--reward-address", default=DEV_REWARD_ADDRESS, metavar="SS58",
                        help="reward address of the local farmer (default: the dev key Alice)")
    parser.add_argument("--progress-interval", default="5", metavar="SECONDS", help="status line period (default 5)")


def from_args(args: argparse.Namespace, dry_run: bool, log_level: str = "info") -> QuickstartConfig:
    timeout = None if args.timeout is None else parse_seconds(args.timeout, "--timeout")
    interval = parse_seconds(args.progress_interval, "--progress-interval")
    ss58_decode(args.reward_address)
    return QuickstartConfig(
        data_dir=check_directory(args.data_dir, "--data-dir", create=not dry_run),
        exit_after_blocks=None if args.exit_after_blocks is None else parse_int(
            args.exit_after_blocks, "--exit-after-blocks", minimum=1),
        timeout_s=timeout,
        slot_duration_ms=parse_int(args.slot_duration_ms, "--slot-duration-ms", minimum=10, maximum=600_000),
        pieces_in_sector=parse_int(args.pieces_in_sector, "--pieces-in-sector", minimum=1, maximum=65535),
        sectors=parse_int(args.sectors, "--sectors", minimum=1, maximum=65535),
        pre_archived_segments=parse_int(args.pre_archived_segments, "--pre-archived-segments", minimum=0),
        reward_address=args.reward_address.strip(),
        progress_interval_s=interval,
        log_level=log_level,
    )


# --- supervisord config --------------------------------------------------------------------


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
        """supervisord's control socket; AF_UNIX paths are limited to ~107 bytes."""
        candidate = str(self.path("supervisor.sock"))
        if len(candidate) < 100:
            return candidate
        digest = hashlib.sha256(self.data_dir.encode()).hexdigest()[:16]
        return str(Path(tempfile.gettempdir()) / f"autonomys-quickstart-{digest}.sock")

    @property
    def blocks_file(self) -> Path:
        return self.path("node", "blocks.jsonl")


def available_roles() -> tuple[tuple[str, ...], dict[str, str]]:
    """Optional roles whose service imports cleanly, and why the others are left out."""
    present, skipped = [], {}
    for role, module in OPTIONAL_ROLES.items():
        if importlib.util.find_spec(module) is None:
            skipped[role] = "not in this build yet"
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure means "leave it out"
            skipped[role] = f"import failed: {type(exc).__name__}: {exc}"
            continue
        present.append(role)
    return tuple(present), skipped


def _free_ports(count: int) -> list[int]:
    import socket

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
    nats, http, rpc, cache, full, plot = _free_ports(6)
    return Layout(data_dir=config.data_dir, nats_port=nats, nats_http_port=http, rpc_port=rpc, cache_port=cache,
                  full_cache_port=full, plot_server_port=plot, roles=roles)


def render_nats_config(layout: Layout) -> str:
    from services.bus.server import NatsServerConfig

    return NatsServerConfig(host="127.0.0.1", port=layout.nats_port, http_port=layout.nats_http_port,
                            jetstream=True, store_dir=str(layout.path("nats", "jetstream")),
                            server_name="quickstart").render()


def program_commands(config: QuickstartConfig, layout: Layout) -> dict[str, list[str]]:
    """supervisord program name -> argv, in start order."""
    from services.bus.server import find_nats_server_binary

    farmer = [sys.executable, "-m", "services"]
    cluster = [*farmer, "cluster", "--nats-server", layout.nats_url, "--log-level", config.log_level]
    commands: dict[str, list[str]] = {
        "nats-server": [find_nats_server_binary(), "-c", str(layout.path("nats", "nats-server.conf"))],
        "dev-node": [*farmer, "dev-node", "--data-dir", str(layout.path("node")),
                     "--rpc-listen-on", f"127.0.0.1:{layout.rpc_port}", "--rpc-methods", "unsafe",
                     "--slot-duration-ms", str(config.slot_duration_ms),
                     "--pieces-in-sector", str(config.pieces_in_sector),
                     "--pre-archived-segments", str(config.pre_archived_segments),
                     "--log-level", config.log_level],
        "controller": [*cluster, "controller", "--base-path", str(layout.path("controller")),
                       "--node-rpc-url", layout.rpc_url],
    }
    # The dev node archives with the insecure dev KZG setup: the caches must verify with it too.
    # The full-piece cache starts on an empty history directory and fills it from the cluster
    # (the dev node's pieces through the controller); `autonomys-export-piece` into that directory
    # (NODE_URL=<rpc url>) does the same up front.
    if "sharded-cache" in layout.roles:
        commands["sharded-cache"] = [*cluster, "sharded-cache", f"path={layout.path('sharded-cache')},size=4GiB",
                                     "--listen-on", f"127.0.0.1:{layout.cache_port}", "--kzg-params", "dev"]
    if "full-piece-sharded-cache" in layout.roles:
        commands["full-piece-sharded-cache"] = [*cluster, "full-piece-sharded-cache",
                                                f"path={layout.path('full-piece-cache')}",
                                                "--listen-on", f"127.0.0.1:{layout.full_cache_port}",
                                                "--kzg-params", "dev"]
    if "proof-server" in layout.roles:
        commands["proof-server"] = [*cluster, "proof-server", "--kzg-params", "dev"]  # the dev node's setup
    if "plot-server" in layout.roles:
        commands["plot-server"] = [*cluster, "plot-server", "--listen-host", "127.0.0.1",
                                   "--listen-port", str(layout.plot_server_port), "--priority-cache",
                                   str(layout.path("plot-server"))]
    if "plot-client" in layout.roles:
        commands["plot-client"] = [*cluster, "plot-client", "--reward-address", config.reward_address,
                                   "--kzg-params", "dev",  # the dev node's setup
                                   f"path={layout.path('farms', 'farm-0')},sectors={config.sectors}"]
    return commands


def _quote(argv: list[str]) -> str:
    # supervisor splits command= with shlex in POSIX mode; '%' must be doubled (it expands %(x)s).
    import shlex

    return shlex.join(argv).replace("%", "%%")


def render_supervisord_config(layout: Layout, commands: dict[str, list[str]]) -> str:
    """supervisord config running ``commands`` (name -> argv) in the given order."""
    logs = layout.path("logs")
    lines = [
        "; generated by `autonomys-farmer quickstart`; rewritten on every start",
        "[supervisord]",
        "nodaemon=true",
        f"logfile={logs / 'supervisord.log'}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        f"pidfile={layout.path('supervisord.pid')}",
        f"childlogdir={logs}",
        f"directory={layout.data_dir}",
        "loglevel=info",
        "",
        "[unix_http_server]",
        f"file={layout.socket_path}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{layout.socket_path}",
    ]
    for priority, (name, argv) in enumerate(commands.items(), start=1):
        lines += [
            "",
            f"[program:{name}]",
            f"command={_quote(argv)}",
            f"priority={priority * 10}",
            "autostart=true",
            "autorestart=true",
            "startsecs=2",
            "startretries=10",
            "stopsignal=TERM",
            f"stopwaitsecs={STOP_WAIT_S.get(name, DEFAULT_STOP_WAIT_S)}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={logs / (name + '.log')}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=2",
        ]
    return "\n".join(lines) + "\n"


def prepare(config: QuickstartConfig, layout: Layout) -> Path:
    """Create the directories and write the nats and supervisord configs; returns the latter."""
    for sub in ("logs", "nats", "nats/jetstream", "node", "controller", "sharded-cache", "full-piece-cache",
                "plot-server", "farms/farm-0"):
        layout.path(sub).mkdir(parents=True, exist_ok=True)
    layout.path("nats", "nats-server.conf").write_text(render_nats_config(layout))
    layout.supervisord_conf.write_text(render_supervisord_config(layout, program_commands(config, layout)))
    layout.path("quickstart.json").write_text(
        json.dumps({"config": msgspec.to_builtins(config), "layout": msgspec.to_builtins(layout),
                    "nats_url": layout.nats_url, "rpc_url": layout.rpc_url}, indent=2))
    return layout.supervisord_conf


# --- progress ------------------------------------------------------------------------------


def count_blocks(blocks_file: Path) -> int:
    try:
        with open(blocks_file, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except FileNotFoundError:
        return 0


async def _dev_status(url: str) -> dict | None:
    import websockets

    try:
        async with websockets.connect(url, open_timeout=2, close_timeout=1) as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "dev_status", "params": []}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 2))
    except Exception:  # noqa: BLE001 - the node may be starting or restarting
        return None
    result = reply.get("result") if isinstance(reply, dict) else None
    return result if isinstance(result, dict) else None


STATUS_KEYS = ("ready", "chainHeight", "lastSlot", "slot", "segmentsArchived", "historySize", "blocksAuthored",
               "solutionsReceived", "solutionsRejected", "votes", "rewardSigningFailures")


def status_line(layout: Layout, elapsed: float, log_offset: int = 0) -> str:
    """One progress line: blocks in blocks.jsonl plus the dev node's ``dev_status`` highlights."""
    status = asyncio.run(_dev_status(layout.rpc_url))
    parts = [f"[{elapsed:6.0f}s]", f"blocks={count_blocks(layout.blocks_file)}"]
    if status:
        shown = [key for key in STATUS_KEYS if key in status] or [
            key for key, value in status.items() if isinstance(value, (int, float, bool))]
        parts += [f"{key}={status[key]}" for key in shown if key != "blocksAuthored"]
    else:
        parts.append("node=starting")
    gave_up = _fatal_programs(layout, log_offset)
    if gave_up:
        parts.append("FAILED=" + ",".join(gave_up))
    return " ".join(parts)


def _fatal_programs(layout: Layout, since: int = 0) -> list[str]:
    """Programs supervisord gave up on (``gave up: NAME entered FATAL state``) in the part of
    its log written after byte ``since`` (a reused data dir keeps earlier runs' lines)."""
    try:
        with open(layout.path("logs", "supervisord.log"), "rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    names = []
    for line in text.splitlines():
        if "gave up:" in line:
            name = line.split("gave up:", 1)[1].split()[0]
            if name not in names:
                names.append(name)
    return names


def last_log_line(layout: Layout, program: str) -> str:
    """The last non-empty line a program wrote (its one-line error, when it failed)."""
    try:
        lines = layout.path("logs", program + ".log").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    for line in reversed(lines):
        if line.strip():
            return line.strip()[:300]
    return "(empty log)"


# The cluster cannot work without these: quickstart stops (exit 1) when supervisord gives up on one.
ESSENTIAL_PROGRAMS = ("nats-server", "dev-node", "controller")


# --- running -------------------------------------------------------------------------------


def stop_supervisord(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=SHUTDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            print("error: supervisord did not stop in time; killing its process group", file=sys.stderr)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def start_supervisord(layout: Layout) -> subprocess.Popen:
    """supervisord in the foreground (``-n``), in its own session so a terminal Ctrl-C reaches
    only us and we stop it in order; children find ``services`` through PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    with open(layout.path("logs", "supervisord.stderr"), "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(layout.supervisord_conf)],
            env=env, cwd=layout.data_dir, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr,
        )


def run(config: QuickstartConfig) -> int:
    """Run the cluster until Ctrl-C / SIGTERM (or --exit-after-blocks / --timeout)."""
    for role, module in REQUIRED_SERVICES.items():
        if importlib.util.find_spec(module) is None:
            print(f"error: quickstart needs {role} ({module}), which is not available in this build yet",
                  file=sys.stderr)
            return 1
    roles, skipped = available_roles()
    layout = make_layout(config, roles)
    conf = prepare(config, layout)
    print(f"quickstart: data in {layout.data_dir}; NATS {layout.nats_url}; node RPC {layout.rpc_url}")
    print(f"quickstart: roles: nats-server, dev-node, controller{''.join(', ' + r for r in roles)}")
    for role, reason in skipped.items():
        print(f"quickstart: {role} left out ({reason})")
    print(f"quickstart: logs in {layout.path('logs')}; supervisorctl -c {conf} status")
    sys.stdout.flush()

    proc = start_supervisord(layout)
    stop_reason: list[str] = []

    def on_signal(signum, _frame) -> None:
        stop_reason.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    start = time.monotonic()
    next_progress = start
    status = 0
    # a data dir reused from an earlier run already holds blocks: count only this run's
    baseline = count_blocks(layout.blocks_file)
    reported_failures: set[str] = set()
    try:
        log_offset = layout.path("logs", "supervisord.log").stat().st_size
    except FileNotFoundError:
        log_offset = 0
    try:
        while not stop_reason:
            if proc.poll() is not None:
                print(f"error: supervisord exited with status {proc.returncode}; see "
                      f"{layout.path('logs', 'supervisord.log')}", file=sys.stderr)
                return 1
            now = time.monotonic()
            # blocks.jsonl grows all run long: read it only when a condition needs the count
            blocks = None
            if config.exit_after_blocks is not None:
                blocks = count_blocks(layout.blocks_file) - baseline
                if blocks >= config.exit_after_blocks:
                    print(f"quickstart: {blocks} blocks authored in this run "
                          f"(wanted {config.exit_after_blocks}); stopping")
                    break
            if config.timeout_s is not None and now - start >= config.timeout_s:
                if blocks is None:
                    blocks = count_blocks(layout.blocks_file) - baseline
                wanted = f" of {config.exit_after_blocks}" if config.exit_after_blocks is not None else ""
                failed = _fatal_programs(layout, log_offset)
                extra = f"; failed programs: {', '.join(failed)}" if failed else ""
                print(f"error: timeout after {config.timeout_s:g}s with {blocks}{wanted} blocks authored{extra} "
                      f"(logs in {layout.path('logs')})", file=sys.stderr)
                status = 1
                break
            failed_now = [name for name in _fatal_programs(layout, log_offset) if name not in reported_failures]
            for name in failed_now:
                reported_failures.add(name)
                print(f"quickstart: {name} failed: {last_log_line(layout, name)}", file=sys.stderr, flush=True)
            essential = [name for name in failed_now if name in ESSENTIAL_PROGRAMS]
            if essential:
                print(f"error: {', '.join(essential)} failed and was given up on by supervisord; stopping "
                      f"(logs in {layout.path('logs')})", file=sys.stderr)
                status = 1
                break
            if now >= next_progress:
                print(status_line(layout, now - start, log_offset), flush=True)
                next_progress = now + config.progress_interval_s
            time.sleep(0.2)
        if stop_reason:
            print(f"quickstart: {stop_reason[0]} received; stopping", flush=True)
    finally:
        # our handlers stay installed while stopping: a second Ctrl-C must not abandon supervisord
        code = stop_supervisord(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print(f"quickstart: stopped (supervisord exit status {code})", flush=True)
    return status
