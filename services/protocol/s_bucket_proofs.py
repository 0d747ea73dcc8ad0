"""Proofs of space of one record's seed for all 65 536 s-buckets (spec 03 s6, spec 04 s3).

Why a module of its own: plotting masks every chunk of a record with the BLAKE3 hash of the
first proof of its s-bucket, and reading and proving rebuild the same proofs to un-mask it.
All three take a ``ProofsForSeed`` provider (``seed -> SBucketProofs``) so the PoS backend (CPU
numba, GPU cupy, or the insecure shim for fast tests) is the caller's choice.

Main API: ``SBucketProofs(found, proofs)``, ``chia_proofs_for_seed(backend)`` (real K=20
tables), ``shim_proofs_for_seed`` (tests/dev), ``proofs_from_tables``, ``proof_mask_hashes``,
``check_s_bucket_proofs``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from services.protocol.auditing import blake3_hash_rows
from services.protocol.constants import POS_PROOF_SIZE, RECORD_NUM_S_BUCKETS
from services.protocol.parallel import Workers


class SBucketProofs(NamedTuple):
    """Proofs of space of one seed for every s-bucket (challenge index 0..65535).

    ``found[s]`` tells whether ``find_proof(s)`` exists; ``proofs[s]`` holds it (160 bytes, zero
    where not found).
    """

    found: np.ndarray  # (65536,) bool
    proofs: np.ndarray  # (65536, 160) uint8

    def proof(self, s_bucket: int) -> bytes | None:
        return self.proofs[s_bucket].tobytes() if self.found[s_bucket] else None

    def mask_hashes(self) -> np.ndarray:
        """``(65536, 32)`` uint8: BLAKE3 of each found proof (zero rows where none)."""
        return proof_mask_hashes(self.found, self.proofs)


ProofsForSeed = Callable[[bytes], SBucketProofs]


def _check_shapes(found: np.ndarray, proofs: np.ndarray) -> bool:
    return found.shape == (RECORD_NUM_S_BUCKETS,) and proofs.shape == (RECORD_NUM_S_BUCKETS, POS_PROOF_SIZE)


def proof_mask_hashes(found: np.ndarray, proofs: np.ndarray) -> np.ndarray:
    """``(65536, 32)`` uint8: BLAKE3 of ``proofs[s]`` where ``found[s]``, zero rows elsewhere."""
    found = np.asarray(found, dtype=bool)
    if not _check_shapes(found, proofs):
        raise ValueError(
            f"s-bucket proofs must be shaped ({RECORD_NUM_S_BUCKETS},) and ({RECORD_NUM_S_BUCKETS}, {POS_PROOF_SIZE}), "
            f"got {found.shape} and {proofs.shape}"
        )
    hashes = np.zeros((RECORD_NUM_S_BUCKETS, 32), dtype=np.uint8)
    hashes[found] = blake3_hash_rows(np.asarray(proofs, dtype=np.uint8)[found])
    return hashes


def check_s_bucket_proofs(proofs: SBucketProofs) -> SBucketProofs:
    """Normalised dtypes; ValueError when a provider returned arrays of the wrong shape."""
    found = np.asarray(proofs.found, dtype=bool)
    raw = np.asarray(proofs.proofs, dtype=np.uint8)
    if not _check_shapes(found, raw):
        raise ValueError(
            f"PoS backend returned arrays shaped {found.shape} / {raw.shape}, expected "
            f"({RECORD_NUM_S_BUCKETS},) / ({RECORD_NUM_S_BUCKETS}, {POS_PROOF_SIZE})"
        )
    return SBucketProofs(found, raw)


def proofs_from_tables(tables) -> SBucketProofs:  # noqa: ANN001 - pos.Tables or pos.shim.ShimTables
    """First proof of every s-bucket from a PoS ``Tables`` object."""
    proofs, found = tables.find_proofs_for_all_s_buckets()
    return check_s_bucket_proofs(SBucketProofs(found, proofs))


def chia_proofs_for_seed(backend: str | None = "auto", workers: Workers | None = None) -> ProofsForSeed:
    """``ProofsForSeed`` building the real K=20 Chia tables (the protocol's PoS) on ``backend``
    (``cpu``, ``gpu`` or ``auto``; None = auto: see ``services.protocol.pos.api.resolve_backend``;
    callers wanting ``$AUTONOMYS_POS_BACKEND`` pass ``services.pos_backend.pos_backend()``). On the CPU
    each calling thread builds in its own reused arena and keeps only what the s-bucket search
    reads (``services.protocol.pos.scratch``); ``workers`` split each CPU build over the caller's
    threads (a proof-server's one table set per proof; see ``pos.cpu_backend``)."""
    from services.protocol.pos import create_tables  # heavy numba import, only when used

    def proofs_for_seed(seed: bytes) -> SBucketProofs:
        return proofs_from_tables(create_tables(seed, 20, backend, workers=workers))

    return proofs_for_seed


def shim_proofs_for_seed(seed: bytes) -> SBucketProofs:
    """``ProofsForSeed`` with the insecure shim table (spec 02 s9; tests and dev chains only)."""
    from services.protocol.pos import create_shim_tables

    return proofs_from_tables(create_shim_tables(seed))
