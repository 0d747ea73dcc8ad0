"""Proof extraction from built tables (spec 02 §7) and proof packing / unpacking.

A table-7 entry expands, left child before right, into 64 x values; they are packed as 64 K-bit
big-endian fields. Everything here is numba so the batch search over all 65,536 s-buckets is
one call with no Python loop per s-bucket.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .bits import bswap32
from .params import PARAM_EXT, PROOF_X_COUNT


@njit(cache=True, nogil=True, inline="always")
def target_of_challenge_index(challenge_index, k):
    """Top K bits of u32_be(u32_le(challenge_index))."""
    return np.int64(bswap32(np.uint32(challenge_index)) >> np.uint32(32 - k))


@njit(cache=True, nogil=True)
def lower_bound(values, key):
    """First index i with values[i] >= key (values ascending)."""
    lo = 0
    hi = values.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def proof_range(y7, target):
    """[start, end) of table-7 entries whose y >> 6 == target (table 7 is y-sorted)."""
    start = lower_bound(y7, np.int64(target) << PARAM_EXT)
    end = lower_bound(y7, (np.int64(target) + 1) << PARAM_EXT)
    return start, end


@njit(cache=True, nogil=True, inline="always")
def expand_x(entry, x, children, bits, out):
    """Write the 64 x values under table-7 entry ``entry`` into out[0:64] (left first).

    children[t - 2][i] holds the parents of entry i of table t (t = 2..7) packed as
    ``left | (right - left) << bits`` (layout.py)."""
    shift = np.uint64(bits)
    mask = (np.uint64(1) << shift) - np.uint64(1)
    out[0] = entry
    width = 1
    for table in range(7, 1, -1):
        parents = children[table - 2]
        for j in range(width - 1, -1, -1):  # backwards: in place without overwriting
            packed = np.uint64(parents[out[j]])
            left = np.int64(packed & mask)
            out[2 * j] = left
            out[2 * j + 1] = left + np.int64(packed >> shift)
        width *= 2
    for j in range(PROOF_X_COUNT):
        out[j] = x[out[j]]


@njit(cache=True, nogil=True, inline="always")
def pack_x(values, k, out, out_offset):
    """64 K-bit values MSB-first into out[out_offset : out_offset + 8K] (zero-filled first)."""
    n_bytes = PROOF_X_COUNT * k // 8
    for i in range(n_bytes):
        out[out_offset + i] = 0
    acc = np.uint64(0)
    acc_bits = 0
    pos = out_offset
    for j in range(PROOF_X_COUNT):
        acc = (acc << np.uint64(k)) | np.uint64(values[j])
        acc_bits += k
        while acc_bits >= 8:
            acc_bits -= 8
            out[pos] = np.uint8((acc >> np.uint64(acc_bits)) & np.uint64(0xFF))
            pos += 1
    if acc_bits > 0:
        out[pos] = np.uint8((acc << np.uint64(8 - acc_bits)) & np.uint64(0xFF))


@njit(cache=True, nogil=True)
def unpack_x(proof, k):
    """The 64 K-bit x values of a packed proof."""
    values = np.empty(PROOF_X_COUNT, dtype=np.int64)
    mask = (np.uint64(1) << np.uint64(k)) - np.uint64(1)
    acc = np.uint64(0)
    acc_bits = 0
    pos = 0
    for j in range(PROOF_X_COUNT):
        while acc_bits < k:
            acc = (acc << np.uint64(8)) | np.uint64(proof[pos])
            pos += 1
            acc_bits += 8
        acc_bits -= k
        values[j] = np.int64((acc >> np.uint64(acc_bits)) & mask)
    return values


@njit(cache=True, nogil=True)
def proofs_for_entries(entries, k, x, children, bits):
    """Packed proofs (len(entries), 8K) uint8 for the given table-7 entries."""
    proof_len = PROOF_X_COUNT * k // 8
    out = np.empty((entries.shape[0], proof_len), dtype=np.uint8)
    flat = out.reshape(-1)
    xs = np.empty(PROOF_X_COUNT, dtype=np.int64)
    for i in range(entries.shape[0]):
        expand_x(entries[i], x, children, bits, xs)
        pack_x(xs, k, flat, i * proof_len)
    return out


_BATCH = 4096  # proofs expanded together: enough independent loads to overlap cache misses


@njit(cache=True, nogil=True)
def first_proofs_for_challenges(challenge_indices, k, y7, x, children, bits):
    """First proof of every challenge index: ((n, 8K) uint8 zero where none, (n,) bool found).

    Expands the found proofs level by level (breadth-first over a batch of up to 4096) rather
    than one proof at a time: the loads of one level are independent, so many cache misses
    overlap, while the batch's node array stays small (2 MiB).
    """
    n = challenge_indices.shape[0]
    proof_len = PROOF_X_COUNT * k // 8
    out = np.zeros((n, proof_len), dtype=np.uint8)
    flat = out.reshape(-1)
    found = np.zeros(n, dtype=np.bool_)
    entries = np.empty(n, dtype=np.int64)
    rows = np.empty(n, dtype=np.int64)
    n_found = 0
    for i in range(n):
        target = target_of_challenge_index(challenge_indices[i], k)
        start = lower_bound(y7, target << PARAM_EXT)
        if start < y7.shape[0] and (np.int64(y7[start]) >> PARAM_EXT) == target:
            found[i] = True
            entries[n_found] = start
            rows[n_found] = i
            n_found += 1
    shift = np.uint64(bits)
    mask = (np.uint64(1) << shift) - np.uint64(1)
    nodes = np.empty((min(n_found, _BATCH), PROOF_X_COUNT), dtype=np.int64)
    xs = np.empty(PROOF_X_COUNT, dtype=np.int64)
    for first in range(0, n_found, _BATCH):
        batch = min(_BATCH, n_found - first)
        for f in range(batch):
            nodes[f, 0] = entries[first + f]
        width = 1
        for table in range(7, 1, -1):
            parents = children[table - 2]
            for f in range(batch):
                for j in range(width - 1, -1, -1):  # backwards: in place without overwriting
                    packed = np.uint64(parents[nodes[f, j]])
                    left = np.int64(packed & mask)
                    nodes[f, 2 * j] = left
                    nodes[f, 2 * j + 1] = left + np.int64(packed >> shift)
            width *= 2
        for f in range(batch):
            for j in range(PROOF_X_COUNT):
                xs[j] = x[nodes[f, j]]
            pack_x(xs, k, flat, rows[first + f] * proof_len)
    return out, found


@njit(cache=True, nogil=True)
def first_proof(challenge_index, k, y7, x, children, bits, out):
    """Pack the first proof of one challenge index into ``out``; False when there is none."""
    target = target_of_challenge_index(challenge_index, k)
    start = lower_bound(y7, target << PARAM_EXT)
    if start >= y7.shape[0] or (np.int64(y7[start]) >> PARAM_EXT) != target:
        return False
    xs = np.empty(PROOF_X_COUNT, dtype=np.int64)
    expand_x(start, x, children, bits, xs)
    pack_x(xs, k, out, 0)
    return True
