"""Plot client (farmer) configuration (``cluster ... plot-client --reward-address ADDR
path=DIR,sectors=N ...``).

Each ``path=DIR,sectors=N`` is one farm: a directory holding a plot of N sectors (the reference
farm layout, ``services.farm``). The reward address is an SS58 address; its 32-byte account id
is what goes into every solution's ``reward_address`` field. It is not a farm's public key: each
farm signs with its own key, derived from that farm's ``identity.bin``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import msgspec

from services.config import (
    CommonArgs,
    ConfigError,
    RoleConfig,
    check_directory,
    default_instance,
    parse_optional_cache_group,
    parse_int,
    parse_kv_spec,
    parse_kzg_params,
    require_nats_servers,
    ss58_decode,
)

ROLE = "plot-client"
MAX_SECTORS_PER_FARM = 65534  # sector indices are u16 and the reference keeps the count below u16::MAX
DEFAULT_FARMING_THREADS = max(4, min(32, 4 * (os.cpu_count() or 1)))  # audit reads in flight


class FarmSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One farm directory; ``exists`` is False when it will be created at start."""

    path: str
    sectors: int
    exists: bool = True


class PlotClientConfig(RoleConfig, frozen=True, kw_only=True):
    """``reward_account_id``: hex of the 32-byte account id the SS58 ``reward_address`` encodes
    (``Solution.reward_address``). ``kzg_params``: trusted setup file, ``"dev"`` for the dev
    node's insecure setup, None for the mainnet setup at its default path. ``farming_threads``:
    audit reads in flight across all farms; ``proving_threads``: proofs computed locally at once
    when no proof-server answers in time."""

    role: str = ROLE
    instance: str = msgspec.field(default_factory=lambda: default_instance(ROLE))
    reward_address: str = ""
    reward_address_prefix: int = 0
    reward_account_id: str = ""
    farms: tuple[FarmSpec, ...] = ()
    cache_group: str | None = None
    plotting_concurrency: int = 1
    farming_threads: int = DEFAULT_FARMING_THREADS
    proving_threads: int = 1
    kzg_params: str | None = None


def parse_farm(text: str, create: bool) -> FarmSpec:
    values = parse_kv_spec(text, "farm", required=("path", "sectors"))
    sectors = values["sectors"]
    try:
        count = int(sectors)
    except ValueError:
        raise ConfigError(f"invalid sectors={sectors!r} in {text!r}: expected a positive integer") from None
    if not 0 < count <= MAX_SECTORS_PER_FARM:
        raise ConfigError(f"invalid sectors={sectors!r} in {text!r}: must be 1..{MAX_SECTORS_PER_FARM}")
    exists = Path(values["path"]).expanduser().is_dir()
    path = check_directory(values["path"], "farm path", create=create)
    return FarmSpec(path=path, sectors=count, exists=exists)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("farms", nargs="+", metavar="path=DIR,sectors=N", help="farm directory and sector count")
    parser.add_argument("--reward-address", required=True, metavar="SS58", help="reward address (SS58)")
    parser.add_argument("--cache-group", default=None, metavar="NAME", help="cache group for piece reads")
    parser.add_argument("--plotting-concurrency", default="1", metavar="N",
                        help="sectors requested from plot-servers at once per farm (default 1)")
    parser.add_argument("--farming-thread-pool-size", default=str(DEFAULT_FARMING_THREADS), metavar="N",
                        help=f"audit reads in flight across all farms (default {DEFAULT_FARMING_THREADS})")
    parser.add_argument("--proving-threads", default="1", metavar="N",
                        help="local proofs at once when no proof-server answers in time (default 1)")
    parser.add_argument("--kzg-params", default=None, metavar="PATH|mainnet|dev",
                        help="KZG trusted setup: mainnet (default, packaged), dev (the dev node's insecure one) or a file")
    parser.add_argument("--instance", metavar="NAME", help=f"instance name (default HOSTNAME-{ROLE})")


def from_args(args: argparse.Namespace, common: CommonArgs, dry_run: bool) -> PlotClientConfig:
    require_nats_servers(common.nats_servers, ROLE)
    prefix, account_id = ss58_decode(args.reward_address)
    farms = tuple(parse_farm(text, create=not dry_run) for text in args.farms)
    seen: set[str] = set()
    for farm in farms:
        if farm.path in seen:
            raise ConfigError(f"farm path {farm.path!r} is given twice")
        seen.add(farm.path)
    return PlotClientConfig(
        **common.role_fields(),
        instance=args.instance or default_instance(ROLE),
        reward_address=args.reward_address.strip(),
        reward_address_prefix=prefix,
        reward_account_id=account_id.hex(),
        farms=farms,
        cache_group=parse_optional_cache_group(args.cache_group),
        plotting_concurrency=parse_int(args.plotting_concurrency, "--plotting-concurrency", minimum=1, maximum=256),
        farming_threads=parse_int(args.farming_thread_pool_size, "--farming-thread-pool-size", minimum=1, maximum=1024),
        proving_threads=parse_int(args.proving_threads, "--proving-threads", minimum=1, maximum=64),
        kzg_params=parse_kzg_params(args.kzg_params),
    )

