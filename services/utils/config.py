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
    CommonArgs,
    ConfigError,
    JsonConfig,
    check_directory,
    check_file,
    parse_int,
    parse_log_level,
    parse_node_rpc_url,
    parse_optional_cache_group,
    parse_seconds,
    require_nats_servers,
)

CACHE_ITEM_TYPES = ("piece", "split-parity-piece")
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
    ``epochs`` rounds, fetching ``cache_item_type`` items."""

    command: str = "sharded-cache-benchmark"
    sectors: int = 1
    epochs: int = 1
    cache_item_type: str = "split-parity-piece"
    pieces_in_sector: int = DEFAULT_PIECES_IN_SECTOR
    cache_group: str | None = None


class VerifyPieceConfig(UtilConfig, frozen=True, kw_only=True):
    """Check cached pieces against the segment commitments the controller serves."""

    command: str = "verify-piece"
    cache_group: str | None = None
    kzg_params: str | None = None


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
    first_segment: int = 0
    last_segment: int | None = None
    log_level: str = "info"
    json_logs: bool = False


def add_reinitialization_cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--delay", default="0", metavar="SECONDS", help="re-initialize after this many seconds")
    parser.add_argument("--cache-group", default=None, metavar="NAME", help="only this cache group (default: all)")


def add_sharded_cache_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sectors", default="1", metavar="N", help="sectors to download per epoch")
    parser.add_argument("--epoch", default="1", metavar="N", help="number of rounds")
    parser.add_argument("--cache-item-type", default="split-parity-piece", metavar="|".join(CACHE_ITEM_TYPES),
                        help="what to fetch from the caches")
    parser.add_argument("--pieces-in-sector", default=str(DEFAULT_PIECES_IN_SECTOR), metavar="N",
                        help=f"pieces per sector (default {DEFAULT_PIECES_IN_SECTOR})")
    parser.add_argument("--cache-group", default=None, metavar="NAME", help="cache group (default: any)")


def add_verify_piece_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-group", default=None, metavar="NAME", help="cache group (default: all)")
    parser.add_argument("--kzg-params", default=None, metavar="PATH", help="trusted setup file")


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
    )


def verify_piece_from_args(args, common: CommonArgs, dry_run: bool) -> VerifyPieceConfig:
    _need_nats("verify-piece", common)
    return VerifyPieceConfig(
        nats_servers=common.nats_servers, log_level=common.log_level, json_logs=common.json_logs,
        cache_group=parse_optional_cache_group(args.cache_group),
        kzg_params=check_file(args.kzg_params, "--kzg-params") if args.kzg_params else None,
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
    parser.add_argument("--kzg-params", default=None, metavar="PATH", help="trusted setup file (mainnet parameters)")
    parser.add_argument("--first-segment", default="0", metavar="N", help="first segment index to export")
    parser.add_argument("--last-segment", default=None, metavar="N", help="last segment index (default: newest)")


def export_piece_from_args(args, dry_run: bool, log_level: str = "info", json_logs: bool = False,
                           environ: dict | None = None) -> ExportPieceConfig:
    env = os.environ if environ is None else environ
    url = args.node_url or env.get("NODE_URL") or "http://127.0.0.1:9944"
    first = parse_int(args.first_segment, "--first-segment", minimum=0)
    last = None if args.last_segment is None else parse_int(args.last_segment, "--last-segment", minimum=first)
    return ExportPieceConfig(
        node_url=parse_node_rpc_url(url),
        node_ws_url=node_ws_url(url),
        output_dir=check_directory(args.output, "export output directory", create=not dry_run),
        kzg_params=check_file(args.kzg_params, "--kzg-params") if args.kzg_params else None,
        first_segment=first,
        last_segment=last,
        log_level=parse_log_level(log_level),
        json_logs=json_logs,
    )
