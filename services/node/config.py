"""Configuration for the embedded dev node (``autonomys-farmer dev-node``) and the node RPC client.

The dev node stands in for ``autonomys-node`` on one machine: it serves spec 05's JSON-RPC,
archives synthetic history and authors a block for each valid solution. Its protocol
parameters are flags whose defaults let one CPU machine farm a block within minutes (tiny
sectors, a maximal solution range like the test runtime's ``u64::MAX``).
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

from services.config import (
    ConfigError,
    JsonConfig,
    check_directory,
    check_file,
    parse_host_port,
    parse_int,
    parse_listen,
    parse_listen_list,
    parse_log_level,
    parse_node_rpc_url,
)

U64_MAX = (1 << 64) - 1
DEFAULT_RPC_LISTEN = "127.0.0.1:9944"
DEFAULT_DATA_DIR = "./data/node"
RPC_METHODS = ("auto", "safe", "unsafe")
BLOCKS_FILE_NAME = "blocks.jsonl"


class DevNodeConfig(JsonConfig, frozen=True, kw_only=True):
    """Everything the dev node needs; all state lives under ``data_dir``.

    * ``rpc_methods``: ``unsafe`` allows the farmer's unsafe methods (submit solution, reward
      signature, acknowledge, piece); ``safe`` refuses them; ``auto`` (default) is unsafe on a
      loopback listener and safe otherwise (Substrate's rule).
    * ``kzg_params``: path of the trusted setup file, ``"mainnet"`` (packaged), or None for the
      insecure dev setup.
    * ``pieces_in_sector``: the chain's ``max_pieces_in_sector``.
    * ``solution_range``: initial (and, without adjustment, fixed) block solution range.
    * ``pre_archived_segments``: history segments archived before the first slot.
    * ``history_seed``: seed of the deterministic synthetic block content.
    """

    role: str = "dev-node"
    data_dir: str = DEFAULT_DATA_DIR
    rpc_listen_on: str = DEFAULT_RPC_LISTEN
    rpc_methods: str = "auto"
    slot_duration_ms: int = 1000
    block_authoring_delay_slots: int = 2
    pieces_in_sector: int = 4
    solution_range: int = U64_MAX
    slot_probability: tuple[int, int] = (1, 1)
    recent_segments: int = 5
    recent_history_fraction: tuple[int, int] = (1, 10)
    min_sector_lifetime: int = 4
    pre_archived_segments: int = 1
    history_seed: str = "autonomys-dev"
    kzg_params: str | None = None
    prometheus_listen_on: tuple[str, ...] = ()
    log_level: str = "info"
    json_logs: bool = False

    @property
    def rpc_host(self) -> str:
        return parse_host_port(self.rpc_listen_on, "--rpc-listen-on", allow_zero_port=True)[0]

    @property
    def rpc_port(self) -> int:
        return parse_host_port(self.rpc_listen_on, "--rpc-listen-on", allow_zero_port=True)[1]

    @property
    def unsafe_rpc_allowed(self) -> bool:
        if self.rpc_methods != "auto":
            return self.rpc_methods == "unsafe"
        host = self.rpc_host
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def blocks_file(self) -> Path:
        """Append-only log of authored blocks, one JSON object per line."""
        return Path(self.data_dir) / BLOCKS_FILE_NAME

    @property
    def rpc_url(self) -> str:
        host = self.rpc_host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"ws://{host}:{self.rpc_port}"


class NodeClientConfig(JsonConfig, frozen=True, kw_only=True):
    """How a farmer-side process talks to a node (real ``autonomys-node`` or the dev node)."""

    url: str = "ws://127.0.0.1:9944"
    request_timeout_s: float = 60.0
    reconnect_initial_delay_s: float = 1.0
    reconnect_max_delay_s: float = 30.0
    max_message_bytes: int = 64 * 1024 * 1024  # a piece is ~2 MiB as hex JSON

    def __post_init__(self) -> None:
        parse_node_rpc_url(self.url)
        if self.request_timeout_s <= 0:
            raise ConfigError(f"invalid node request timeout {self.request_timeout_s!r}: must be > 0")


def _parse_fraction(value: str, what: str) -> tuple[int, int]:
    num, sep, den = value.partition("/")
    if not sep:
        raise ConfigError(f"invalid {what} {value!r}: expected NUM/DEN like 1/10")
    numerator = parse_int(num, what, minimum=1)
    denominator = parse_int(den, what, minimum=1)
    if numerator > denominator:
        raise ConfigError(f"invalid {what} {value!r}: must be at most 1")
    return numerator, denominator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                        help=f"chain state, blocks.jsonl and logs (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--rpc-listen-on", default=DEFAULT_RPC_LISTEN, metavar="HOST:PORT",
                        help=f"JSON-RPC WebSocket listener (default {DEFAULT_RPC_LISTEN}; port 0 = any free port)")
    parser.add_argument("--rpc-methods", default="auto", metavar="auto|safe|unsafe",
                        help="allow unsafe RPC methods (auto: only on a loopback listener)")
    parser.add_argument("--slot-duration-ms", default="1000", metavar="N", help="slot length (default 1000)")
    parser.add_argument("--block-authoring-delay", default="2", metavar="SLOTS",
                        help="slots between a slot's challenge and its block (default 2)")
    parser.add_argument("--pieces-in-sector", default="4", metavar="N",
                        help="max_pieces_in_sector of the dev chain (default 4; mainnet 1000)")
    parser.add_argument("--solution-range", default=str(U64_MAX), metavar="N",
                        help="block solution range (default u64::MAX: every audit wins)")
    parser.add_argument("--slot-probability", default="1/1", metavar="NUM/DEN", help="default 1/1")
    parser.add_argument("--recent-segments", default="5", metavar="N", help="default 5")
    parser.add_argument("--recent-history-fraction", default="1/10", metavar="NUM/DEN", help="default 1/10")
    parser.add_argument("--min-sector-lifetime", default="4", metavar="N", help="in segments (default 4)")
    parser.add_argument("--pre-archived-segments", default="1", metavar="N",
                        help="history segments archived before the first slot (default 1)")
    parser.add_argument("--history-seed", default="autonomys-dev", metavar="TEXT",
                        help="seed of the deterministic synthetic history")
    parser.add_argument("--kzg-params", default=None, metavar="PATH|mainnet|dev",
                        help="trusted setup: a file, the packaged mainnet setup, or the insecure dev setup (default)")
    parser.add_argument("--prometheus-listen-on", "--metrics-listen", dest="metrics_listen_local", action="append",
                        default=None, metavar="HOST:PORT", help="Prometheus metrics listener (repeatable)")


def from_args(args: argparse.Namespace, dry_run: bool, log_level: str = "info", json_logs: bool = False,
              prometheus_listen_on: tuple[str, ...] = ()) -> DevNodeConfig:
    rpc_methods = args.rpc_methods.strip().lower()
    if rpc_methods not in RPC_METHODS:
        raise ConfigError(f"invalid --rpc-methods {args.rpc_methods!r}: expected auto, safe or unsafe")
    rpc_listen_on = parse_listen(args.rpc_listen_on, "--rpc-listen-on", allow_zero_port=True)
    kzg = args.kzg_params
    if kzg is not None and kzg.strip().lower() in ("", "dev"):
        kzg = None
    if kzg is not None and kzg.strip().lower() == "mainnet":
        kzg = "mainnet"
    elif kzg is not None:
        kzg = check_file(kzg, "--kzg-params")
    return DevNodeConfig(
        data_dir=check_directory(args.data_dir, "--data-dir", create=not dry_run),
        rpc_listen_on=rpc_listen_on,
        rpc_methods=rpc_methods,
        slot_duration_ms=parse_int(args.slot_duration_ms, "--slot-duration-ms", minimum=10, maximum=600_000),
        block_authoring_delay_slots=parse_int(args.block_authoring_delay, "--block-authoring-delay", minimum=0,
                                              maximum=1000),
        pieces_in_sector=parse_int(args.pieces_in_sector, "--pieces-in-sector", minimum=1, maximum=65535),
        solution_range=parse_int(args.solution_range, "--solution-range", minimum=1, maximum=U64_MAX),
        slot_probability=_parse_fraction(args.slot_probability, "--slot-probability"),
        recent_segments=parse_int(args.recent_segments, "--recent-segments", minimum=1),
        recent_history_fraction=_parse_fraction(args.recent_history_fraction, "--recent-history-fraction"),
        min_sector_lifetime=parse_int(args.min_sector_lifetime, "--min-sector-lifetime", minimum=1),
        pre_archived_segments=parse_int(args.pre_archived_segments, "--pre-archived-segments", minimum=0,
                                        maximum=10_000),
        history_seed=args.history_seed,
        kzg_params=kzg,
        prometheus_listen_on=parse_listen_list([*prometheus_listen_on, *(args.metrics_listen_local or [])]),
        log_level=parse_log_level(log_level),
        json_logs=json_logs,
    )
