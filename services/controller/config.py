"""Controller configuration, built from ``autonomys-farmer cluster ... controller`` flags.

The manual's line is ``cluster --nats-server URL ... controller --tmp --node-rpc-url
ws://10.30.1.2:9944``. ``--tmp`` keeps the controller's own state (identity, known peers) in a
throw-away directory instead of ``--base-path``.
"""

from __future__ import annotations

import argparse
import tempfile

import msgspec

from services.config import (
    CommonArgs,
    RoleConfig,
    check_directory,
    default_instance,
    parse_cache_group,
    parse_int,
    parse_node_rpc_url,
    require_nats_servers,
)

ROLE = "controller"
DEFAULT_NODE_RPC_URL = "ws://127.0.0.1:9944"
DEFAULT_CACHE_GROUP = "default"
DEFAULT_SERVICE_INSTANCES = 32  # spec 06 §1: NATS queue groups spread requests over these


class ControllerConfig(RoleConfig, frozen=True, kw_only=True):
    """Everything the controller daemon needs.

    ``base_path`` is None with ``tmp``: the service then creates (and removes) a temporary
    directory itself. ``cache_groups`` are the cache groups whose caches make up this
    controller's farmer cache (spec 06 §1, default ``["default"]``).
    """

    role: str = ROLE
    nats_servers: tuple[str, ...] = ()
    instance: str = msgspec.field(default_factory=lambda: default_instance(ROLE))
    node_rpc_url: str = DEFAULT_NODE_RPC_URL
    tmp: bool = False
    base_path: str | None = None
    cache_groups: tuple[str, ...] = (DEFAULT_CACHE_GROUP,)
    service_instances: int = DEFAULT_SERVICE_INSTANCES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node-rpc-url", default=DEFAULT_NODE_RPC_URL, metavar="URL",
                        help=f"node JSON-RPC WebSocket URL (default {DEFAULT_NODE_RPC_URL})")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--tmp", action="store_true", help="keep controller state in a temporary directory")
    where.add_argument("--base-path", metavar="DIR", help="directory for controller state")
    parser.add_argument("--cache-group", action="append", metavar="NAME", dest="cache_groups",
                        help=f"cache group(s) this controller uses (default {DEFAULT_CACHE_GROUP!r}); repeatable")
    parser.add_argument("--service-instances", default=str(DEFAULT_SERVICE_INSTANCES), metavar="N",
                        help=f"concurrent request handlers (default {DEFAULT_SERVICE_INSTANCES})")
    parser.add_argument("--instance", metavar="NAME", help="instance name (default HOSTNAME-controller)")


def from_args(args: argparse.Namespace, common: CommonArgs, dry_run: bool) -> ControllerConfig:
    require_nats_servers(common.nats_servers, ROLE)
    base_path = None
    if args.base_path is not None:
        base_path = check_directory(args.base_path, "controller --base-path", create=not dry_run)
    elif not args.tmp:
        # Neither given: the reference requires one; default to a stable per-user directory.
        base_path = check_directory(f"{tempfile.gettempdir()}/autonomys-controller", "controller base path",
                                    create=not dry_run)
    groups = tuple(dict.fromkeys(parse_cache_group(g) for g in (args.cache_groups or [DEFAULT_CACHE_GROUP])))
    return ControllerConfig(
        **common.role_fields(),
        instance=args.instance or default_instance(ROLE),
        node_rpc_url=parse_node_rpc_url(args.node_rpc_url),
        tmp=bool(args.tmp),
        base_path=base_path,
        cache_groups=groups,
        service_instances=parse_int(args.service_instances, "--service-instances", minimum=1, maximum=1024),
    )
