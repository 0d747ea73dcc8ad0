"""Proof server configuration (``cluster ... proof-server``).

The manual starts it with only the NATS servers and ``CUDA_VISIBLE_DEVICES`` (and optionally
``GPU_CONCURRENCY``) in the environment; it proves audit winners for every plot-client.
"""

from __future__ import annotations

import argparse

import msgspec

from services.config import (
    CommonArgs,
    RoleConfig,
    default_instance,
    gpu_environment,
    parse_backend,
    parse_int,
    parse_kzg_params,
    require_nats_servers,
)

ROLE = "proof-server"


class ProofServerConfig(RoleConfig, frozen=True, kw_only=True):
    """``concurrency``: proofs computed in parallel (None: ``GPU_CONCURRENCY`` on a GPU, else the
    backend default). ``kzg_params``: trusted setup (None: mainnet; ``"dev"``: the dev chain's)."""

    role: str = ROLE
    instance: str = msgspec.field(default_factory=lambda: default_instance(ROLE))
    backend: str = "auto"
    concurrency: int | None = None
    cuda_visible_devices: str | None = None
    gpu_concurrency: int | None = None
    kzg_params: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto", metavar="auto|cpu|gpu", help="proving backend (default auto)")
    parser.add_argument("--concurrency", default=None, metavar="N", help="proofs computed in parallel")
    parser.add_argument("--kzg-params", default=None, metavar="PATH|mainnet|dev",
                        help="KZG trusted setup: mainnet (default, packaged), dev (the dev node's insecure one) or a file")
    parser.add_argument("--instance", metavar="NAME", help=f"instance name (default HOSTNAME-{ROLE})")


def from_args(args: argparse.Namespace, common: CommonArgs, dry_run: bool) -> ProofServerConfig:
    require_nats_servers(common.nats_servers, ROLE)
    cuda, gpu_concurrency = gpu_environment()
    return ProofServerConfig(
        **common.role_fields(),
        instance=args.instance or default_instance(ROLE),
        backend=parse_backend(args.backend),
        concurrency=None if args.concurrency is None else parse_int(args.concurrency, "--concurrency", minimum=1,
                                                                    maximum=4096),
        cuda_visible_devices=cuda,
        gpu_concurrency=gpu_concurrency,
        kzg_params=parse_kzg_params(args.kzg_params),
    )
