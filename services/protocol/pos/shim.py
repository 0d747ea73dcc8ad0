"""Shim proof-of-space table (spec 02 §9): a trivial, insecure stand-in used by tests and dev
chains built with ``PosTableType::Shim``. Same interface as the Chia ``Tables``.

find_proof(ci): q = blake3(u32_le(ci)); none if U256_le(q) % 3 == 0, else the first 160 bytes of
seed ‖ q ‖ q ‖ q ‖ q. Verification recomputes and compares.
"""

from __future__ import annotations

import functools

import numpy as np

from ..constants import POS_PROOF_SIZE, RECORD_NUM_S_BUCKETS
from ..hashes import blake3_hash
from .params import check_seed
from .tables import check_challenge_index


def shim_find_proof(seed: bytes, challenge_index: int) -> bytes | None:
    seed = check_seed(seed)
    challenge_index = check_challenge_index(challenge_index)
    quality = blake3_hash(challenge_index.to_bytes(4, "little"))
    if int.from_bytes(quality, "little") % 3 == 0:
        return None
    return (seed + quality * 4)[:POS_PROOF_SIZE]


def shim_verify(seed: bytes, challenge_index: int, proof: bytes) -> bool:
    if len(proof) != POS_PROOF_SIZE:
        raise ValueError(f"shim PoS proof must be {POS_PROOF_SIZE} bytes, got {len(proof)}")
    expected = shim_find_proof(seed, challenge_index)
    return expected is not None and expected == bytes(proof)


class ShimTables:
    """Tables-like object for the shim PoS (K is fixed at 20: 160-byte proofs)."""

    k = 20
    backend = "shim"

    def __init__(self, seed: bytes) -> None:
        self.seed = check_seed(seed)

    @property
    def proof_size(self) -> int:
        return POS_PROOF_SIZE

    def find_proof(self, challenge_index: int) -> bytes | None:
        return shim_find_proof(self.seed, challenge_index)

    def find_proofs(self, challenge_index: int) -> list[bytes]:
        proof = self.find_proof(challenge_index)
        return [] if proof is None else [proof]

    def find_proofs_for_all_s_buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """(65536, 160) proofs (zero rows where none) and the found mask."""
        tails, found = _s_bucket_tails()
        proofs = np.zeros((RECORD_NUM_S_BUCKETS, POS_PROOF_SIZE), dtype=np.uint8)
        proofs[:, :32] = np.frombuffer(self.seed, dtype=np.uint8)
        proofs[:, 32:] = tails
        proofs[~found] = 0
        return proofs, found.copy()


@functools.cache
def _s_bucket_tails() -> tuple[np.ndarray, np.ndarray]:
    """Seed-independent part (q repeated, 128 bytes) of every s-bucket's shim proof, computed
    once per process, and whether a proof exists."""
    tails = np.empty((RECORD_NUM_S_BUCKETS, POS_PROOF_SIZE - 32), dtype=np.uint8)
    found = np.empty(RECORD_NUM_S_BUCKETS, dtype=bool)
    for s_bucket in range(RECORD_NUM_S_BUCKETS):
        quality = blake3_hash(s_bucket.to_bytes(4, "little"))
        found[s_bucket] = int.from_bytes(quality, "little") % 3 != 0
        tails[s_bucket] = np.frombuffer(quality * 4, dtype=np.uint8)
    tails.flags.writeable = False
    found.flags.writeable = False
    return tails, found


def create_shim_tables(seed: bytes) -> ShimTables:
    return ShimTables(seed)
