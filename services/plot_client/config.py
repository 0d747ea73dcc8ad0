"""Plot client (farmer) configuration (``cluster ... plot-client --reward-address ADDR
path=DIR,sectors=N ...``).

Each ``path=DIR,sectors=N`` is one farm: a directory holding a plot of N sectors. The reward
address is an SS58 address whose 32-byte account id is the farmer's reward public key.
"""

from __future__ import annotations

import argparse
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
    require_nats_servers,
    ss58_decode,
)

ROLE = "plot-client"
MAX_SECTORS_PER_FARM = 65535  # sector indices are u16 (spec 03 §1)


class FarmSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One farm directory; ``exists`` is False when it will be created at start."""

    path: str
    sectors: int
    exists: bool = True


class PlotClientConfig(RoleConfig, frozen=True, kw_only=True):
    """``reward_public_key`` is the hex account id decoded from ``reward_address``."""

    role: str = ROLE
    instance: str = msgspec.field(default_factory=lambda: default_instance(ROLE))
    reward_address: str = ""
    reward_address_prefix: int = 0
    reward_public_key: str = ""
    farms: tuple[FarmSpec, ...] = ()
    cache_group: str | None = None
    plotting_concurrency: int = 1


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
    parser.add_argument("--instance", metavar="NAME", help=f"instance name (default HOSTNAME-{ROLE})")


def from_args(args: argparse.Namespace, common: CommonArgs, dry_run: bool) -> PlotClientConfig:
    require_nats_servers(common.nats_servers, ROLE)
    prefix, public_key = ss58_decode(args.reward_address)
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
        reward_public_key=public_key.hex(),
        farms=farms,
        cache_group=parse_optional_cache_group(args.cache_group),
        plotting_concurrency=parse_int(args.plotting_concurrency, "--plotting-concurrency", minimum=1, maximum=256),
    )
