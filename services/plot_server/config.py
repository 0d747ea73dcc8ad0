"""Plot server configuration (``cluster ... plot-server [flags] BASE_PATH``).

Manual line: ``plot-server --record-encoding-concurrency 32 --priority-cache --listen-port 9966
/var/plot-server/base-path-0`` with ``CUDA_VISIBLE_DEVICES`` / ``GPU_CONCURRENCY`` in the
environment and ``numactl`` pinning from supervisor. Plot-clients download finished sectors
over TCP from ``--listen-port``.
"""

from __future__ import annotations

import argparse
import os

import msgspec

from services.config import (
    CommonArgs,
    RoleConfig,
    check_directory,
    data_plane_listen_host,
    default_instance,
    gpu_environment,
    parse_backend,
    parse_optional_cache_group,
    parse_host_port,
    parse_int,
    parse_port,
    require_nats_servers,
)

ROLE = "plot-server"
DEFAULT_LISTEN_PORT = 9966


class PlotServerConfig(RoleConfig, frozen=True, kw_only=True):
    """``priority_cache``: fetch pieces from the caches before anything else (manual flag).
    ``cuda_visible_devices`` / ``gpu_concurrency`` mirror the environment for the GPU backend.
    ``sectors_in_flight``: sectors plotted at once; ``max_finished_sectors``: finished sectors
    waiting under BASE_PATH for their plot-client (plotting pauses at this many: backpressure)."""

    role: str = ROLE
    instance: str = msgspec.field(default_factory=lambda: default_instance(ROLE))
    base_path: str = ""
    listen_host: str = "0.0.0.0"
    listen_port: int = DEFAULT_LISTEN_PORT
    advertise_host: str | None = None
    record_encoding_concurrency: int = 1
    priority_cache: bool = False
    cache_group: str | None = None
    backend: str = "auto"
    cuda_visible_devices: str | None = None
    gpu_concurrency: int | None = None
    sectors_in_flight: int = 1
    max_finished_sectors: int = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base_path", metavar="BASE_PATH", help="directory for in-progress sectors")
    parser.add_argument("--record-encoding-concurrency", default=None, metavar="N",
                        help="records encoded in parallel (default: CPU count)")
    parser.add_argument("--priority-cache", action="store_true", help="take pieces from the caches first")
    parser.add_argument("--listen-port", default=str(DEFAULT_LISTEN_PORT), metavar="PORT",
                        help=f"TCP port plot-clients download sectors from (default {DEFAULT_LISTEN_PORT})")
    parser.add_argument("--listen-host", default=None, metavar="HOST",
                        help="listener address (default 0.0.0.0; loopback without a cluster secret)")
    parser.add_argument("--advertise-host", default=None, metavar="HOST", help="address plot-clients connect to")
    parser.add_argument("--cache-group", default=None, metavar="NAME",
                        help="cache group to take pieces from (default: any)")
    parser.add_argument("--backend", default="auto", metavar="auto|cpu|gpu", help="encoding backend (default auto)")
    parser.add_argument("--sectors-in-flight", default="1", metavar="N",
                        help="sectors plotted at once (default 1; each holds its sector buffer in RAM)")
    parser.add_argument("--max-finished-sectors", default="2", metavar="N",
                        help="finished sectors kept under BASE_PATH for download before pulling more jobs (default 2)")
    parser.add_argument("--instance", metavar="NAME", help=f"instance name (default HOSTNAME-{ROLE}-PORT)")


def from_args(args: argparse.Namespace, common: CommonArgs, dry_run: bool) -> PlotServerConfig:
    require_nats_servers(common.nats_servers, ROLE)
    port = parse_port(args.listen_port, "--listen-port")
    host, _ = parse_host_port(f"{args.listen_host or '0.0.0.0'}:{port}", "--listen-host")
    host = data_plane_listen_host(args.listen_host and host, host, common.cluster_secret, "--listen-host", ROLE)
    if args.record_encoding_concurrency is None:
        concurrency = os.cpu_count() or 1
    else:
        concurrency = parse_int(args.record_encoding_concurrency, "--record-encoding-concurrency", minimum=1,
                                maximum=4096)
    cuda, gpu_concurrency = gpu_environment()
    return PlotServerConfig(
        **common.role_fields(),
        instance=args.instance or default_instance(ROLE, str(port)),
        base_path=check_directory(args.base_path, "plot-server BASE_PATH", create=not dry_run),
        listen_host=host,
        listen_port=port,
        advertise_host=args.advertise_host,
        record_encoding_concurrency=concurrency,
        priority_cache=bool(args.priority_cache),
        cache_group=parse_optional_cache_group(args.cache_group),
        backend=parse_backend(args.backend),
        cuda_visible_devices=cuda,
        gpu_concurrency=gpu_concurrency,
        sectors_in_flight=parse_int(args.sectors_in_flight, "--sectors-in-flight", minimum=1, maximum=64),
        max_finished_sectors=parse_int(args.max_finished_sectors, "--max-finished-sectors", minimum=1, maximum=1024),
    )
