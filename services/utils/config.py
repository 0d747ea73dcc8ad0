"""Configurations of the operator utilities: ``autonomys-farmer util <command>`` and
``autonomys-export-piece``.

The manual spells the NATS flag ``--nats-servers`` for some utilities and ``--nats-server`` for
others; the CLI accepts both everywhere and hands the merged list here.
"""

from __future__ import annotations

import argparse
import os
from urllib.parse import urlsplit, urlunsplit

from services.config import (
    ClusterSecret,
    NO_SECRET,
    CommonArgs,
    ConfigError,
    JsonConfig,
    check_directory,
    check_file,
    parse_int,
    parse_log_level,
    parse_node_rpc_url,
    parse_cluster_secret,
    parse_optional_cache_group,
    parse_seconds,
    require_nats_servers,
)

# What sharded-cache-benchmark fetches per simulated sector (see its --help):
CACHE_ITEM_TYPES = ("piece", "split-parity-piece", "segment")
CACHE_ITEM_HELP = {
    "piece": "the sector's pieces in offset order, as one download (a plot-server)",
    "split-parity-piece": "the sector's source (even index) and parity (odd index) pieces as two concurrent "
                          "downloads (the recent-history parity offsets are the hot set every sector shares)",
    "segment": "whole segments of history in order, 256 pieces each (a filling shard or full-piece cache); "
               "--sectors counts segments",
}
DEFAULT_EXPORT_DIR = "full-cache-tmp"
DEFAULT_PIECES_IN_SECTOR = 1000  # mainnet max_pieces_in_sector


class UtilConfig(JsonConfig, frozen=True, kw_only=True):
    command: str
    nats_servers: tuple[str, ...] = ()
    log_level: str = "info"
    json_logs: bool = False


class ReinitializationCacheConfig(UtilConfig, frozen=True, kw_only=True):
    """Ask the whole cache cluster to re-initialize after ``delay_s`` seconds."""

    command: str = "reinitialization-cache"
    delay_s: int = 0
    cache_group: str | None = None


class ShardedCacheBenchmarkConfig(UtilConfig, frozen=True, kw_only=True):
    """Replay a plotter's sector download against the caches: ``sectors`` sectors per epoch,
    ``epochs`` rounds, fetching ``cache_item_type`` items, ``concurrency`` sectors at once,
    public keys drawn from ``seed``; ``json_output``: the last stdout line is a JSON summary."""

    command: str = "sharded-cache-benchmark"
    sectors: int = 1
    epochs: int = 1
    cache_item_type: str = "split-parity-piece"
    pieces_in_sector: int = DEFAULT_PIECES_IN_SECTOR
    cache_group: str | None = None
    concurrency: int = 1
    seed: int | None = None
    json_output: bool = False
    use_controller: bool = True
    stall_timeout_s: float = 10.0
    cluster_secret: ClusterSecret = NO_SECRET  # the caches' TCP data plane


class VerifyPieceConfig(UtilConfig, frozen=True, kw_only=True):
    """Have every cache check its pieces against the segment commitments; ``repair`` refetches
    bad and missing ones from other sources."""

    command: str = "verify-piece"
    cache_group: str | None = None
    repair: bool = False
    timeout_s: float = 3600.0


class StatusConfig(UtilConfig, frozen=True, kw_only=True):
    """``autonomys-farmer status``: the live cluster view (membership records and broadcasts);
    ``json_output``: print one snapshot as JSON and exit."""

    command: str = "status"
    json_output: bool = False
    timeout_s: float = 10.0


class ExportPieceConfig(JsonConfig, frozen=True, kw_only=True):
    """``autonomys-export-piece``: rebuild history pieces from an archival node into ``output_dir``.

    ``node_url`` comes from ``NODE_URL`` (the manual uses ``http://HOST:9944``); the WebSocket
    form actually dialled is ``node_ws_url``.
    """

    command: str = "export-piece"
    node_url: str = "http://127.0.0.1:9944"
    node_ws_url: str = "ws://127.0.0.1:9944"
    output_dir: str = DEFAULT_EXPORT_DIR
    kzg_params: str | None = None
    first_segment: int | None = None  # None: resume after the last exported segment
    last_segment: int | None = None
    log_level: str = "info"
    json_logs: bool = False


def parse_kzg_setting(value: str | None) -> str | None:
    """``--kzg-params``: ``dev`` (the dev node's insecure setup), ``mainnet``, a readable file, or
    None (default: the command decides, see its help)."""
    if value is None or not value.strip():
        return None
    if value.strip().lower() in ("dev", "mainnet"):
        return value.strip().lower()
    return check_file(value, "--kzg-params")


def add_reinitialization_cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--delay", default="0", metavar="SECONDS", help="re-initialize after this many seconds")
    parser.add_argument("--cache-group", default=None, metavar="NAME", help="only this cache group (default: all)")


def add_sharded_cache_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sectors", default="1", metavar="N", help="sectors to download per epoch")
    parser.add_argument("--epoch", default="1", metavar="N", help="number of rounds")
    parser.add_argument("--cache-item-type", default="split-parity-piece", metavar="|".join(CACHE_ITEM_TYPES),
                        help="what to fetch: " + "; ".join(f"{k}: {v}" for k, v in CACHE_ITEM_HELP.items()))
    parser.add_argument("--pieces-in-sector", default=str(DEFAULT_PIECES_IN_SECTOR), metavar="N",
                        help=f"pieces per sector (default {DEFAULT_PIECES_IN_SECTOR}, capped by the chain's maximum)")
    parser.add_argument("--cache-group", default=None, metavar="NAME", help="cache group (default: any)")
    parser.add_argument("--concurrency", default="1", metavar="N", help="sectors downloaded at once (default 1)")
    parser.add_argument("--seed", default=None, metavar="N", help="seed of the random public keys (default: random, printed)")
    parser.add_argument("--json", action="store_true", dest="json_output",
                        help="print a JSON summary as the last line (sectors, pieces, pieces_per_s, mib_per_s, "
                             "p50_ms, p99_ms, failures, ...)")
    parser.add_argument("--no-controller", action="store_false", dest="use_controller",
                        help="caches only: never fall back to the controller (node)")
    parser.add_argument("--stall-timeout", default="10", metavar="SECONDS",
                        help="retry another source after this long without progress (default 10)")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--cluster-secret", default=None, metavar="TEXT", help="the caches' data-plane secret")
    secret.add_argument("--cluster-secret-file", default=None, metavar="PATH",
                        help="file holding it (env AUTONOMYS_CLUSTER_SECRET also works)")


def add_verify_piece_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-group", default=None, metavar="NAME", help="cache group (default: all)")
    parser.add_argument("--repair", action="store_true", help="refetch bad and missing pieces from other sources")
    parser.add_argument("--timeout", default="3600", metavar="SECONDS", dest="verify_timeout",
                        help="give up on a cache that reports nothing for this long (default 3600)")


def _need_nats(command: str, common: CommonArgs) -> None:
    require_nats_servers(common.nats_servers, f"util {command}", flag="--nats-servers")


def reinitialization_cache_from_args(args, common: CommonArgs, dry_run: bool) -> ReinitializationCacheConfig:
    _need_nats("reinitialization-cache", common)
    return ReinitializationCacheConfig(
        nats_servers=common.nats_servers, log_level=common.log_level, json_logs=common.json_logs,
        delay_s=parse_int(args.delay, "--delay", minimum=0, maximum=86_400),
        cache_group=parse_optional_cache_group(args.cache_group),
    )


def sharded_cache_benchmark_from_args(args, common: CommonArgs, dry_run: bool) -> ShardedCacheBenchmarkConfig:
    _need_nats("sharded-cache-benchmark", common)
    item_type = args.cache_item_type.strip()
    if item_type not in CACHE_ITEM_TYPES:
        raise ConfigError(f"invalid --cache-item-type {args.cache_item_type!r}: expected one of "
                          f"{', '.join(CACHE_ITEM_TYPES)}")
    return ShardedCacheBenchmarkConfig(
        nats_servers=common.nats_servers, log_level=common.log_level, json_logs=common.json_logs,
        sectors=parse_int(args.sectors, "--sectors", minimum=1, maximum=1_000_000),
        epochs=parse_int(args.epoch, "--epoch", minimum=1, maximum=1_000_000),
        cache_item_type=item_type,
        pieces_in_sector=parse_int(args.pieces_in_sector, "--pieces-in-sector", minimum=1, maximum=65535),
        cache_group=parse_optional_cache_group(args.cache_group),
        concurrency=parse_int(args.concurrency, "--concurrency", minimum=1, maximum=256),
        seed=None if args.seed is None else parse_int(args.seed, "--seed", minimum=0),
        json_output=bool(args.json_output),
        use_controller=bool(args.use_controller),
        stall_timeout_s=parse_seconds(args.stall_timeout, "--stall-timeout"),
        cluster_secret=parse_cluster_secret(args.cluster_secret, args.cluster_secret_file),
    )


def verify_piece_from_args(args, common: CommonArgs, dry_run: bool) -> VerifyPieceConfig:
    _need_nats("verify-piece", common)
    return VerifyPieceConfig(
        nats_servers=common.nats_servers, log_level=common.log_level, json_logs=common.json_logs,
        cache_group=parse_optional_cache_group(args.cache_group),
        repair=bool(args.repair),
        timeout_s=parse_seconds(args.verify_timeout, "--timeout"),
    )


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", dest="json_output",
                        help="print one snapshot of the cluster as JSON (for scripts)")
    parser.add_argument("--timeout", default="10", metavar="SECONDS", dest="status_timeout",
                        help="give up connecting after this long (default 10)")


def status_from_args(args, common: CommonArgs, dry_run: bool) -> StatusConfig:
    require_nats_servers(common.nats_servers, "status")
    timeout = parse_seconds(args.status_timeout, "--timeout")
    return StatusConfig(nats_servers=common.nats_servers, log_level=common.log_level, json_logs=common.json_logs,
                        json_output=bool(args.json_output), timeout_s=timeout)


def node_ws_url(url: str) -> str:
    """``http(s)://`` node URL (as NODE_URL is written in the manual) -> ``ws(s)://``."""
    parts = urlsplit(parse_node_rpc_url(url))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def add_export_piece_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node-url", default=None, metavar="URL",
                        help="node RPC URL (default: $NODE_URL, else http://127.0.0.1:9944)")
    parser.add_argument("--output", "-o", default=DEFAULT_EXPORT_DIR, metavar="DIR",
                        help=f"output directory (default ./{DEFAULT_EXPORT_DIR})")
    parser.add_argument("--kzg-params", default=None, metavar="mainnet|dev|PATH",
                        help="trusted setup (default: the dev setup for a dev node, else the mainnet parameters)")
    parser.add_argument("--first-segment", default=None, metavar="N",
                        help="re-export from this segment (earlier exported segments are kept; default: resume)")
    parser.add_argument("--last-segment", default=None, metavar="N", help="last segment index (default: newest)")


def export_piece_from_args(args, dry_run: bool, log_level: str = "info", json_logs: bool = False,
                           environ: dict | None = None) -> ExportPieceConfig:
    env = os.environ if environ is None else environ
    url = args.node_url or env.get("NODE_URL") or "http://127.0.0.1:9944"
    first = None if args.first_segment is None else parse_int(args.first_segment, "--first-segment", minimum=0)
    last = None if args.last_segment is None else parse_int(args.last_segment, "--last-segment", minimum=first or 0)
    return ExportPieceConfig(
        node_url=parse_node_rpc_url(url),
        node_ws_url=node_ws_url(url),
        output_dir=check_directory(args.output, "export output directory", create=not dry_run),
        kzg_params=parse_kzg_setting(args.kzg_params),
        first_segment=first,
        last_segment=last,
        log_level=parse_log_level(log_level),
        json_logs=json_logs,
    )
