"""``Tables``: built proof-of-space tables of one seed and the proof searches over them
(spec 02 §7, quality from §8), independent of the backend that built them.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..constants import RECORD_NUM_S_BUCKETS
from .layout import TableArrays
from .params import proof_size
from .proofs import (
    first_proof,
    first_proofs_for_challenges,
    proof_range,
    proofs_for_entries,
    target_of_challenge_index,
    unpack_x,
)

_ALL_S_BUCKETS = np.arange(RECORD_NUM_S_BUCKETS, dtype=np.uint32)
_ALL_S_BUCKETS.flags.writeable = False


def check_challenge_index(challenge_index: int) -> int:
    if isinstance(challenge_index, (bool, np.bool_)) or not isinstance(challenge_index, (int, np.integer)):
        raise ValueError(f"challenge_index must be an int, got {challenge_index!r}")
    if not 0 <= int(challenge_index) < (1 << 32):
        raise ValueError(f"challenge_index {challenge_index} is not a u32")
    return int(challenge_index)


def quality_challenge_target(challenge: bytes, k: int) -> int:
    if len(challenge) != 32:
        raise ValueError(f"quality challenge must be 32 bytes, got {len(challenge)}")
    return int.from_bytes(challenge[:4], "big") >> (32 - k)


def quality_of_proof(challenge: bytes, proof: bytes, k: int) -> bytes:
    """SHA-256(challenge ‖ x_{2q} ‖ x_{2q+1}) with q = challenge[31] & 0x1f, the two K-bit values
    packed MSB-first into ceil(2K/8) bytes (spec 02 §8; full-chiapos only, unused by Subspace)."""
    if len(challenge) != 32:
        raise ValueError(f"quality challenge must be 32 bytes, got {len(challenge)}")
    if len(proof) != proof_size(k):
        raise ValueError(f"proof must be {proof_size(k)} bytes at K={k}, got {len(proof)}")
    q = challenge[31] & 0x1F
    xs = unpack_x(np.frombuffer(bytearray(proof), dtype=np.uint8), k)
    pair = (int(xs[2 * q]) << k) | int(xs[2 * q + 1])
    n_bytes = (2 * k + 7) // 8
    packed = (pair << (8 * n_bytes - 2 * k)).to_bytes(n_bytes, "big")
    return hashlib.sha256(bytes(challenge) + packed).digest()


class Tables:
    """Tables 1..7 of one seed. Build with ``create_tables``; every search is read-only, so one
    object may be shared by threads."""

    def __init__(self, seed: bytes, arrays: TableArrays, backend: str) -> None:
        self.seed = bytes(seed)
        self.k = arrays.k
        self.backend = backend
        self._arrays = arrays
        self._proof_size = proof_size(self.k)

    @property
    def proof_size(self) -> int:
        return self._proof_size

    @property
    def table_sizes(self) -> tuple[int, ...]:
        """Kept entries of tables 1..7."""
        return self._arrays.sizes

    @property
    def nbytes(self) -> int:
        """Bytes these tables hold."""
        return self._arrays.nbytes

    def table_ys(self, table: int) -> np.ndarray:
        """y of every kept entry of ``table`` (1..7), ascending (read-only view). Tables 1..6
        are kept only when built with ``keep_table_ys=True``."""
        if table not in range(1, 8):
            raise ValueError(f"table must be 1..7, got {table!r}")
        arrays = self._arrays
        if table == 7:
            ys = arrays.y7
        elif arrays.ys is None:
            raise ValueError(f"the ys of table {table} were not kept: build with keep_table_ys=True")
        else:
            ys = arrays.ys[table - 1]
        view = ys.view()
        view.flags.writeable = False
        return view

    def find_proof(self, challenge_index: int) -> bytes | None:
        """The first proof for ``challenge_index`` (what the farmer uses), or None."""
        challenge_index = check_challenge_index(challenge_index)
        out = np.empty(self._proof_size, dtype=np.uint8)
        arrays = self._arrays
        if first_proof(challenge_index, self.k, arrays.y7, arrays.x, arrays.children, arrays.pair_bits, out):
            return out.tobytes()
        return None

    def _entry_range(self, target: int) -> tuple[int, int]:
        start, end = proof_range(self._arrays.y7, target)
        return int(start), int(end)

    def _proofs_for_target(self, target: int) -> list[bytes]:
        start, end = self._entry_range(target)
        if start == end:
            return []
        arrays = self._arrays
        packed = proofs_for_entries(np.arange(start, end, dtype=np.int64), self.k, arrays.x, arrays.children,
                                    arrays.pair_bits)
        return [row.tobytes() for row in packed]

    def find_proofs(self, challenge_index: int) -> list[bytes]:
        """All proofs for ``challenge_index`` in the reference iteration order."""
        challenge_index = check_challenge_index(challenge_index)
        return self._proofs_for_target(int(target_of_challenge_index(challenge_index, self.k)))

    def find_qualities(self, challenge: bytes) -> list[bytes]:
        """Qualities of all proofs for a 32-byte challenge (target from challenge[0..4]), aligned
        with ``find_proofs(u32_le(challenge[0..4]))`` (reference ``Tables::find_quality``)."""
        target = quality_challenge_target(challenge, self.k)
        return [quality_of_proof(challenge, proof, self.k) for proof in self._proofs_for_target(target)]

    find_quality = find_qualities  # the reference name (Tables::find_quality)

    def find_first_proofs(self, challenge_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First proofs of many challenge indices at once: ((n, proof_size) uint8, zero rows where
        none; (n,) bool found)."""
        indices = np.asarray(challenge_indices)
        if indices.ndim != 1 or indices.dtype.kind not in "iu":
            raise ValueError(f"challenge_indices must be a 1-D integer array, got {indices.dtype}{indices.shape}")
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= 1 << 32):
            raise ValueError("challenge_indices must all be u32 values")
        arrays = self._arrays
        return first_proofs_for_challenges(indices.astype(np.uint32), self.k, arrays.y7, arrays.x,
                                           arrays.children, arrays.pair_bits)

    def find_proofs_for_all_s_buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """First proof of every s-bucket 0..65535 (challenge index = s-bucket), as the record
        encoder needs: ((65536, proof_size) uint8, zero rows where none; (65536,) bool found)."""
        return self.find_first_proofs(_ALL_S_BUCKETS)


__all__ = ["Tables", "quality_of_proof", "check_challenge_index"]
