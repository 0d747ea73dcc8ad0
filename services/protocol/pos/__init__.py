"""Proof of space (spec 02): Chia-style tables at K=20 built from a 32-byte seed, proof search
and verification, bit-exact with the reference ``subspace-proof-of-space`` crate.

Backends: ``cpu`` (numba kernels, always available) and ``gpu`` (cupy, imported lazily, used by
``auto`` when a CUDA device is present). Choose with ``create_tables(..., backend=...)`` or the
environment variable ``AUTONOMYS_POS_BACKEND`` (cpu | gpu | auto; default auto).

Public API:
  create_tables(seed, k=20, backend=None) -> Tables
  Tables.find_proof(ci) -> bytes | None, Tables.find_proofs(ci) -> list[bytes],
  Tables.find_proofs_for_all_s_buckets() -> (proofs (65536, 8K) uint8, found (65536,) bool),
  Tables.find_first_proofs(indices), Tables.find_qualities(challenge32), Tables.table_ys(t)
  verify(seed, ci, proof, k=20) -> bool; verify_quality(seed, challenge32, proof, k=20)
  proof_hash(proof) -> bytes; quality_of_proof(challenge32, proof, k)
  compute_f1(x, seed, k), compute_fn(k, table, y_left, meta_left, meta_right), has_match(...)
  create_shim_tables(seed), shim_verify(seed, ci, proof)
"""

from __future__ import annotations

from .api import (
    available_backends,
    compute_f1,
    create_tables,
    has_match,
    proof_hash,
    verify,
    verify_quality,
)
from .fn import compute_fn
from .params import POS_BACKEND_ENV, proof_size
from .shim import ShimTables, create_shim_tables, shim_find_proof, shim_verify
from .tables import Tables, quality_of_proof

__all__ = [
    "POS_BACKEND_ENV",
    "ShimTables",
    "Tables",
    "available_backends",
    "compute_f1",
    "compute_fn",
    "create_shim_tables",
    "create_tables",
    "has_match",
    "proof_hash",
    "proof_size",
    "quality_of_proof",
    "shim_find_proof",
    "shim_verify",
    "verify",
    "verify_quality",
]
