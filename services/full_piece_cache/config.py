"""Full piece sharded cache configuration (``cluster ... full-piece-sharded-cache path=DIR``).

The directory holds a complete exported history (``autonomys-export-piece``, default
``full-cache-tmp``); the cache serves those pieces to plot-servers over the TCP data plane and
NATS only carries membership and piece-location requests.
"""

from __future__ import annotations

import argparse

import msgspec

from services.cache import config as cache_config
from services.cache.config import DEFAULT_STALL_TIMEOUT_S

from services.config import CacheRoleConfig, CommonArgs, add_cache_arguments, cache_config_from_args, default_instance

ROLE = "full-piece-sharded-cache"
DEFAULT_LISTEN = "0.0.0.0:9956"


class FullPieceCacheConfig(CacheRoleConfig, frozen=True, kw_only=True):
    """Fields in :class:`services.config.CacheRoleConfig`."""

    role: str = ROLE
    instance: str = msgspec.field(default_factory=lambda: default_instance(ROLE))
    listen: str = DEFAULT_LISTEN
    kzg_params: str | None = None  # "mainnet", "dev", a path, or None (mainnet / $AUTONOMYS_KZG_PARAMS)
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cache_arguments(parser, ROLE, DEFAULT_LISTEN, "exported piece directory (autonomys-export-piece output)")
    cache_config.add_arguments(parser)


def from_args(args: argparse.Namespace, common: CommonArgs, dry_run: bool) -> FullPieceCacheConfig:
    config = cache_config_from_args(FullPieceCacheConfig, ROLE, args, common, dry_run)
    return msgspec.structs.replace(config, **cache_config.fields_from_args(args))
