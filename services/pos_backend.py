"""Which proof-of-space backend a caller without a ``--backend`` flag of its own asks for.

Why outside ``services.protocol``: the protocol core takes the backend (cpu | gpu | auto) as an
explicit argument and reads no environment. Daemons pass their config's ``--backend``; tests,
benchmarks and tools use :func:`pos_backend`, which honours ``$AUTONOMYS_POS_BACKEND`` so that a
whole run can be pointed at one backend (e.g. the GPU) without editing code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

POS_BACKEND_ENV = "AUTONOMYS_POS_BACKEND"
POS_BACKENDS = ("auto", "cpu", "gpu")


def pos_backend(flag: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``flag`` when given, else ``$AUTONOMYS_POS_BACKEND``, else ``auto``: one of
    :data:`POS_BACKENDS` (ValueError naming the source otherwise)."""
    env = os.environ if environ is None else environ
    if flag is not None:
        value, source = flag, "backend"
    else:
        value, source = env.get(POS_BACKEND_ENV, "auto"), f"${POS_BACKEND_ENV}"
    backend = value.strip().lower()
    if backend not in POS_BACKENDS:
        raise ValueError(f"invalid {source} {value!r}: expected {', '.join(POS_BACKENDS)}")
    return backend


__all__ = ["POS_BACKENDS", "POS_BACKEND_ENV", "pos_backend"]
