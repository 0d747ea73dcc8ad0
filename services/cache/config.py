"""Flags both cache roles take beyond :class:`services.config.CacheRoleConfig` (light module:
the CLI imports it for ``--dry-run`` without loading the cache machinery)."""

from __future__ import annotations

import argparse

from services.config import ConfigError, check_file, parse_seconds

DEFAULT_STALL_TIMEOUT_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kzg-params", default=None, metavar="mainnet|dev|PATH",
                        help="trusted setup the chain uses (default: the packaged mainnet parameters, "
                             "or $AUTONOMYS_KZG_PARAMS; dev: the dev node's insecure setup)")
    parser.add_argument("--stall-timeout", default=str(DEFAULT_STALL_TIMEOUT_S), metavar="SECONDS",
                        help=f"give up on a source that sends nothing for this long and use another "
                             f"(default {DEFAULT_STALL_TIMEOUT_S:g})")


def fields_from_args(args: argparse.Namespace) -> dict:
    """``kzg_params`` / ``stall_timeout_s`` for the role config."""
    kzg = args.kzg_params
    if kzg is not None:
        kzg = kzg.strip()
        if not kzg:
            raise ConfigError("empty --kzg-params")
        kzg = kzg.lower() if kzg.lower() in ("dev", "mainnet") else check_file(kzg, "--kzg-params")
    return {"kzg_params": kzg, "stall_timeout_s": parse_seconds(args.stall_timeout, "--stall-timeout")}
