"""Public entry points of the PoS package: backend selection, verification, hashes.

The GPU backend is imported only when asked for (or when ``auto`` probes for a device), so the
package works on machines without cupy. The backend is always the caller's explicit choice
(``cpu``, ``gpu`` or ``auto``): a daemon takes it from its ``--backend`` flag, tools from
``services.pos_backend`` (which also reads ``$AUTONOMYS_POS_BACKEND``); the core reads no
environment.
"""

from __future__ import annotations

import functools

import numpy as np

from ..hashes import blake3_hash
from ..parallel import Workers
from .chacha8 import f1_some
from .cpu_backend import build_tables_cpu
from .matching import SQUARE_TERMS
from .matching import has_match as _has_match_kernel
from .params import check_seed, proof_size, validate_k, y_bits
from .scratch import TableScratch, thread_scratch
from .tables import Tables, check_challenge_index, quality_of_proof
from .verify import verify_packed

BACKENDS = ("cpu", "gpu", "auto")


@functools.cache
def gpu_available() -> bool:
    """True when cupy imports and sees at least one CUDA device (probed once per process)."""
    try:
        from .gpu_backend import gpu_device_count
    except ImportError:
        return False
    return gpu_device_count() > 0


def available_backends() -> list[str]:
    return ["cpu", "gpu"] if gpu_available() else ["cpu"]


def resolve_backend(backend: str | None) -> str:
    """The concrete backend (``cpu`` or ``gpu``) for a requested ``cpu``, ``gpu`` or ``auto``
    (None, kept for older callers, is ``auto``: the environment is not read here)."""
    if backend is None:
        backend = "auto"
    if not isinstance(backend, str):
        raise ValueError(f"PoS backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    requested = backend.strip().lower()
    if requested not in BACKENDS:
        raise ValueError(f"unknown PoS backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if requested == "auto":
        return "gpu" if gpu_available() else "cpu"
    if requested == "gpu" and not gpu_available():
        raise RuntimeError("PoS backend 'gpu' requested but cupy or a CUDA device is not available")
    return requested


def create_tables(seed: bytes, k: int = 20, backend: str | None = "auto", *, keep_table_ys: bool = False,
                  scratch: TableScratch | None = None, workers: Workers | None = None) -> Tables:
    """Build tables 1..7 for ``seed`` (32 bytes) at size ``k`` on ``backend``.

    The result keeps what proof search needs (about 32 MiB at K=20); ``keep_table_ys`` also
    keeps the ys of tables 1..6 (``Tables.table_ys``: conformance checks, tools). The CPU
    backend works in ``scratch`` (default: the calling thread's arena, reused build after
    build; see ``scratch.py``); ``workers`` (CPU) split one build's matching and Fn over the
    caller's threads (same tables, sooner: proving).
    """
    seed = check_seed(seed)
    validate_k(k)
    chosen = resolve_backend(backend)
    if chosen == "gpu":
        from .gpu_backend import build_tables_gpu

        return Tables(seed, build_tables_gpu(seed, k, keep_table_ys), "gpu")
    arrays = build_tables_cpu(seed, k, thread_scratch() if scratch is None else scratch, keep_table_ys, workers)
    return Tables(seed, arrays, "cpu")


def verify(seed: bytes, challenge_index: int, proof: bytes, k: int = 20) -> bool:
    """Reference ``is_proof_valid``: True iff ``proof`` proves ``challenge_index`` for ``seed``.

    A proof of the wrong length raises ValueError (it is malformed input, not an invalid proof).
    """
    seed = check_seed(seed)
    validate_k(k)
    challenge_index = check_challenge_index(challenge_index)
    if len(proof) != proof_size(k):
        raise ValueError(f"PoS proof must be {proof_size(k)} bytes at K={k}, got {len(proof)}")
    # writable copies: numba's dispatcher takes a ~15 µs slow path for read-only buffers
    return bool(
        verify_packed(np.frombuffer(bytearray(seed), dtype=np.uint8), challenge_index,
                      np.frombuffer(bytearray(proof), dtype=np.uint8), k, SQUARE_TERMS)
    )


def verify_quality(seed: bytes, challenge: bytes, proof: bytes, k: int = 20) -> bytes | None:
    """Reference full-chiapos ``verify(seed, challenge32, proof)``: the quality when the proof is
    valid for target challenge[0..4], else None.

    Only q = challenge[31] & 0x1f = 0 is supported: for other q the reference computes its bit
    offset from a mis-placed q and reads out of range (spec 02 §8), so no value can be matched.
    """
    if len(challenge) != 32:
        raise ValueError(f"quality challenge must be 32 bytes, got {len(challenge)}")
    if challenge[31] & 0x1F:
        raise ValueError(
            f"quality index q={challenge[31] & 0x1F} != 0: the reference verify is undefined for it"
        )
    challenge_index = int.from_bytes(challenge[:4], "little")
    if not verify(seed, challenge_index, proof, k):
        return None
    return quality_of_proof(bytes(challenge), bytes(proof), k)


def proof_hash(proof: bytes) -> bytes:
    """``PosProof::hash`` = BLAKE3 of the proof bytes."""
    return blake3_hash(proof)


def compute_f1(x: int, seed: bytes, k: int = 20) -> int:
    """y = f1(x) for one x (spec 02 §3)."""
    seed = check_seed(seed)
    validate_k(k)
    if not 0 <= x < (1 << k):
        raise ValueError(f"x={x} is not a {k}-bit value")
    return int(f1_some(np.frombuffer(seed, dtype=np.uint8), k, np.array([x], dtype=np.int64))[0])


def has_match(left_y: int, right_y: int, k: int = 20) -> bool:
    """The verifier's (bucket-permissive) match test of spec 02 §4."""
    validate_k(k)
    limit = 1 << y_bits(k)
    for name, value in (("left_y", left_y), ("right_y", right_y)):
        if not 0 <= value < limit:
            raise ValueError(f"{name}={value} is not a {y_bits(k)}-bit y")
    return bool(_has_match_kernel(left_y, right_y, SQUARE_TERMS))


__all__ = ["create_tables", "verify", "verify_quality", "proof_hash", "compute_f1", "has_match",
           "available_backends", "resolve_backend", "gpu_available"]
