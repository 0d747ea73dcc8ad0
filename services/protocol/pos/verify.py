"""Proof verification (spec 02 §8): recompute the 64-leaf tree from the proof's x values.

Replicates the reference's permissiveness: ``has_match`` checks only the r-targets, not that the
right y lies in the bucket after the left one. Only the keystream blocks each x needs are
generated, so one verification costs 64 ChaCha8 double-blocks and 63 BLAKE3 compressions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .chacha8 import f1_some
from .fn import fn_one, LANES
from .matching import has_match
from .params import PARAM_EXT, PROOF_X_COUNT
from .proofs import target_of_challenge_index, unpack_x


@njit(cache=True, nogil=True)
def verify_packed(seed, challenge_index, proof, k, square_terms):
    """True iff ``proof`` (8K bytes) is valid for ``seed`` (32 bytes uint8) and the index."""
    xs = unpack_x(proof, k)
    ys = f1_some(seed, k, xs)
    hi = np.zeros(PROOF_X_COUNT, dtype=np.uint64)
    lo = np.empty(PROOF_X_COUNT, dtype=np.uint64)
    for i in range(PROOF_X_COUNT):
        lo[i] = np.uint64(xs[i])
    y = ys.astype(np.uint32)
    words = np.zeros(16 * LANES, dtype=np.uint32)
    hashes = np.zeros(8 * LANES, dtype=np.uint32)
    bitbuf = np.zeros(5, dtype=np.uint64)
    width = PROOF_X_COUNT
    for table in range(2, 8):
        width //= 2
        for j in range(width):
            left_y = y[2 * j]
            right_y = y[2 * j + 1]
            if not has_match(np.int64(left_y), np.int64(right_y), square_terms):
                return False
            new_y, new_hi, new_lo = fn_one(k, table, left_y, hi[2 * j], lo[2 * j], hi[2 * j + 1],
                                           lo[2 * j + 1], words, hashes, bitbuf)
            y[j] = new_y
            hi[j] = new_hi
            lo[j] = new_lo
    return (np.int64(y[0]) >> PARAM_EXT) == target_of_challenge_index(challenge_index, k)
