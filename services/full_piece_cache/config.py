"""Full piece sharded cache configuration (``cluster ... full-piece-sharded-cache path=DIR``).

The directory holds a complete exported history (``autonomys-export-piece``, default
``full-cache-tmp``); the cache serves those pieces to plot-servers over the TCP data plane and
NATS only carries membership and piece-location requests.
"""

from __future__ import annotations

import argparse

import msgspec

from services.config import (
    CommonArgs,
    ConfigError,
    DataDir,
    RoleConfig,
    default_instance,
    parse_cache_dir,
    parse_cache_group,
    parse_listen,
)

ROLE = "full-piece-sharded-cache"
DEFAULT_LISTEN = "0.0.0.0:9956"


class FullPieceCacheConfig(RoleConfig, frozen=True, kw_only=True):
    """``paths``: one or more cache directories; ``listen``: TCP data plane listener;
    ``advertise_host``: address other machines use to reach it (None: detected at start)."""

    role: str = ROLE
    instance: str = msgspec.field(default_factory=lambda: default_instance(ROLE))
    paths: tuple[DataDir, ...] = ()
    cache_group: str = "default"
    listen: str = DEFAULT_LISTEN
    advertise_host: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="path=DIR[,size=SIZE]",
                        help="exported piece directory (repeatable)")
    parser.add_argument("--cache-group", default="default", metavar="NAME", help="cache group (default 'default')")
    parser.add_argument("--listen-on", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"TCP data plane listener (default {DEFAULT_LISTEN})")
    parser.add_argument("--advertise-host", default=None, metavar="HOST", help="address peers connect to")
    parser.add_argument("--instance", metavar="NAME", help=f"instance name (default HOSTNAME-{ROLE})")


def from_args(args: argparse.Namespace, common: CommonArgs, dry_run: bool) -> FullPieceCacheConfig:
    if not common.nats_servers:
        raise ConfigError(f"{ROLE} needs at least one --nats-server URL")
    paths = tuple(parse_cache_dir(p, "full-piece-sharded-cache", create=not dry_run) for p in args.paths)
    if len({d.path for d in paths}) != len(paths):
        raise ConfigError(f"{ROLE}: the same path is given twice in {' '.join(args.paths)!r}")
    return FullPieceCacheConfig(
        **common.role_fields(),
        instance=args.instance or default_instance(ROLE),
        paths=paths,
        cache_group=parse_cache_group(args.cache_group),
        listen=parse_listen(args.listen_on, "--listen-on"),
        advertise_host=args.advertise_host,
    )
