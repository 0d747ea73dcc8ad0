"""Proof of space (spec 02): Chia-style tables at K=20 built from a 32-byte seed, proof search
and verification, bit-exact with the reference ``subspace-proof-of-space`` crate.

Backends: ``cpu`` (numba kernels, always available) and ``gpu`` (cupy, imported lazily, used by
``auto`` when a CUDA device is present). The caller chooses: ``create_tables(..., backend=...)``
(cpu | gpu | auto; default auto). Callers without a flag of their own may use
``services.pos_backend`` (outside the core: it reads ``$AUTONOMYS_POS_BACKEND``).

Memory (CPU): each build works in a reusable per-thread arena (``scratch.py``, ~40 MiB at K=20)
and the returned tables keep only what proof search reads (~32 MiB, ``layout.py``).

Public API:
  create_tables(seed, k=20, backend="auto", keep_table_ys=False, scratch=None) -> Tables
  Tables.find_proof(ci) -> bytes | None, Tables.find_proofs(ci) -> list[bytes],
  Tables.find_proofs_for_all_s_buckets() -> (proofs (65536, 8K) uint8, found (65536,) bool),
  Tables.find_first_proofs(indices), Tables.find_qualities(challenge32), Tables.table_sizes,
  Tables.table_ys(t) (t = 7, or all with keep_table_ys), Tables.nbytes
  TableScratch, thread_scratch(), release_thread_scratch()
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
from .params import proof_size
from .scratch import TableScratch, release_thread_scratch, thread_scratch
from .shim import ShimTables, create_shim_tables, shim_find_proof, shim_verify
from .tables import Tables, quality_of_proof

__all__ = [
    "ShimTables",
    "TableScratch",
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
    "release_thread_scratch",
    "shim_find_proof",
    "shim_verify",
    "thread_scratch",
    "verify",
    "verify_quality",
]
