"""Bucket grouping and left/right matching (spec 02 §4, §6) as numba kernels.

Entry order is what makes plots interoperable: buckets keep at most 512 entries in creation
order and are sorted by (y, creation order); matches come out per bucket pair, left entries in
sorted order, the 64 targets ascending, every right entry with that r, capped at 512 per pair.

The kernels write into arrays the caller provides (a build's reusable scratch, scratch.py), so
repeated table builds allocate nothing large; ``bucketize`` / ``find_matches`` are allocating
wrappers for tests and tools.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .layout import pair_bits, pairs_dtype, unpack_pairs
from .params import MAX_BUCKET_SIZE, PARAM_B, PARAM_BC, PARAM_C, PARAM_M


def _target_square_terms() -> np.ndarray:
    """((2m + parity)^2) % C for parity 0/1 and m = 0..63."""
    table = np.empty((2, PARAM_M), dtype=np.int64)
    for parity in range(2):
        for m in range(PARAM_M):
            table[parity, m] = ((2 * m + parity) ** 2) % PARAM_C
    return table


SQUARE_TERMS = _target_square_terms()
_RANK_BITS = 9  # ranks inside a bucket are < 512
_RANK_MASK = (1 << _RANK_BITS) - 1


_RADIX_BITS = 13


@njit(cache=True, nogil=True)
def _bucketize_capped(y, n_buckets, counts, sorted_out, order_out):
    """Exact slow path for tables where some bucket holds more than 512 entries."""
    n = y.shape[0]
    bucket_start = np.empty(n_buckets + 1, dtype=np.int64)
    total = 0
    for b in range(n_buckets):
        bucket_start[b] = total
        total += min(counts[b], MAX_BUCKET_SIZE)
    bucket_start[n_buckets] = total
    fill = np.zeros(n_buckets, dtype=np.int64)
    keys = np.empty(total, dtype=np.uint32)
    creation = np.empty(total, dtype=np.uint32)
    for i in range(n):
        b = y[i] // PARAM_BC
        rank = fill[b]
        if rank < MAX_BUCKET_SIZE:
            slot = bucket_start[b] + rank
            # key (r, rank) is unique per bucket and sorts exactly as (y, creation order)
            keys[slot] = np.uint32(((y[i] - b * PARAM_BC) << _RANK_BITS) | rank)
            creation[slot] = i
            fill[b] = rank + 1
    # y is read for the last time above: sorted_out may be the same array
    for b in range(n_buckets):
        start = bucket_start[b]
        end = bucket_start[b + 1]
        if end - start > 1:
            keys[start:end].sort()
        for j in range(start, end):
            order_out[j] = creation[start + (keys[j] & _RANK_MASK)]
            sorted_out[j] = np.uint32(b * PARAM_BC + (keys[j] >> _RANK_BITS))
    return total, bucket_start


@njit(cache=True, nogil=True)
def bucketize_into(y, n_buckets, sorted_out, order_out, tmp_y, tmp_i):
    """Group entries (given in creation order) into buckets of BC consecutive y values, keep the
    first 512 of each bucket, sort each bucket by (y, creation order).

    Writes sorted_out[i] (the y of the i-th kept entry) and order_out[i] (its creation index)
    and returns (kept, bucket_start): bucket b is [bucket_start[b], bucket_start[b+1]).
    ``sorted_out`` may be ``y`` itself (y is consumed before it is written); ``tmp_y`` /
    ``tmp_i`` (uint32, at least len(y)) are radix scratch and must not overlap the others.
    Without overflow this is a stable LSD radix sort by y (two passes); a bucket over 512
    entries switches to the exact per-bucket path.
    """
    n = y.shape[0]
    counts = np.zeros(n_buckets, dtype=np.int64)
    max_y = 0
    for i in range(n):
        counts[y[i] // PARAM_BC] += 1
        if y[i] > max_y:
            max_y = y[i]
    for b in range(n_buckets):
        if counts[b] > MAX_BUCKET_SIZE:
            return _bucketize_capped(y, n_buckets, counts, sorted_out, order_out)
    bucket_start = np.empty(n_buckets + 1, dtype=np.int64)
    bucket_start[0] = 0
    for b in range(n_buckets):
        bucket_start[b + 1] = bucket_start[b] + counts[b]
    low_size = 1 << _RADIX_BITS
    low_mask = low_size - 1
    high_size = (np.int64(max_y) >> _RADIX_BITS) + 1
    low_start = np.zeros(low_size + 1, dtype=np.int64)
    high_start = np.zeros(high_size + 1, dtype=np.int64)
    for i in range(n):
        low_start[(y[i] & low_mask) + 1] += 1
        high_start[(np.int64(y[i]) >> _RADIX_BITS) + 1] += 1
    for d in range(low_size):
        low_start[d + 1] += low_start[d]
    for d in range(high_size):
        high_start[d + 1] += high_start[d]
    for i in range(n):
        d = y[i] & low_mask
        slot = low_start[d]
        low_start[d] = slot + 1
        tmp_y[slot] = y[i]
        tmp_i[slot] = i
    for j in range(n):
        value = tmp_y[j]
        d = np.int64(value) >> _RADIX_BITS
        slot = high_start[d]
        high_start[d] = slot + 1
        sorted_out[slot] = value
        order_out[slot] = tmp_i[j]
    return n, bucket_start


def bucketize(y: np.ndarray, n_buckets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`bucketize_into` on new arrays (tests, tools): (order, sorted_y, bucket_start)."""
    n = y.shape[0]
    sorted_y = np.empty(n, dtype=np.uint32)
    order = np.empty(n, dtype=np.uint32)
    kept, bucket_start = bucketize_into(y, n_buckets, sorted_y, order, np.empty(n, np.uint32), np.empty(n, np.uint32))
    return order[:kept], sorted_y[:kept], bucket_start


def _target_parts() -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables splitting target(p, r_l, m) = ROW[r_l / C][m] + COL[p][r_l % C][m]."""
    row = np.empty((PARAM_B, PARAM_M), dtype=np.uint16)
    col = np.empty((2, PARAM_C, PARAM_M), dtype=np.uint16)
    for high in range(PARAM_B):
        for m in range(PARAM_M):
            row[high, m] = ((high + m) % PARAM_B) * PARAM_C
    for parity in range(2):
        for low in range(PARAM_C):
            for m in range(PARAM_M):
                col[parity, low, m] = (((2 * m + parity) ** 2) + low) % PARAM_C
    return row.reshape(-1), col.reshape(-1)


TARGET_ROW, TARGET_COL = _target_parts()


@njit(cache=True, nogil=True)
def find_matches_into(y, bucket_start, n_buckets, target_row, target_col, pairs, n, first_pair, bits):
    """Matches between adjacent buckets of a sorted parent table, in reference order, from
    bucket pair ``first_pair`` on, appended to ``pairs`` at index ``n``.

    Each match is stored packed, ``left | (right - left) << bits`` (see layout.py).
    Returns (n, next_pair): when ``pairs`` has no room for another pair's 512 matches it stops
    before that pair, and the caller grows ``pairs`` and calls again from ``next_pair``; a
    finished table returns ``next_pair = n_buckets - 1``.
    target_row / target_col are TARGET_ROW / TARGET_COL (uint16). Targets are visited in
    ascending order without sorting: they ascend with the row (high + m) % B, so the m that wrap
    past B come first. Measured choices: a byte-per-r presence array beats a bitmap, uint16
    tables beat int32, and an m-major "vectorised" variant is slower (no gathers on this CPU).
    """
    capacity = pairs.shape[0]
    shift = np.uint64(bits)
    present = np.zeros(PARAM_BC, dtype=np.uint8)
    r_first = np.zeros(PARAM_BC, dtype=np.int32)
    r_count = np.zeros(PARAM_BC, dtype=np.int32)
    last_pair = max(n_buckets - 1, 0)
    for b in range(first_pair, last_pair):
        if n + MAX_BUCKET_SIZE > capacity:
            return n, b
        l_start = bucket_start[b]
        l_end = bucket_start[b + 1]
        r_start = bucket_start[b + 1]
        r_end = bucket_start[b + 2]
        if l_start == l_end or r_start == r_end:
            continue
        right_base = np.uint64((b + 1) * PARAM_BC)
        for j in range(r_start, r_end):
            r = np.uint64(y[j]) - right_base
            if r_count[r] == 0:
                r_first[r] = j
            r_count[r] += 1
            present[r] = 1
        parity = np.uint64(b & 1)
        left_base = np.uint64(b * PARAM_BC)
        found = 0
        for i in range(l_start, l_end):
            if found >= MAX_BUCKET_SIZE:
                break
            r_left = np.uint64(y[i]) - left_base
            high = r_left // np.uint64(PARAM_C)
            low = r_left % np.uint64(PARAM_C)
            start = np.uint64(PARAM_B) - high
            if start >= np.uint64(PARAM_M):
                start = np.uint64(0)
            row = high * np.uint64(PARAM_M)
            col = (parity * np.uint64(PARAM_C) + low) * np.uint64(PARAM_M)
            for s in range(PARAM_M):
                m = (start + np.uint64(s)) & np.uint64(PARAM_M - 1)
                target = np.uint64(target_row[row + m]) + np.uint64(target_col[col + m])
                if present[target]:
                    first = r_first[target]
                    for q in range(r_count[target]):
                        if found < MAX_BUCKET_SIZE:
                            pairs[n] = np.uint64(i) | (np.uint64(first + q - i) << shift)
                            n += 1
                            found += 1
        for j in range(r_start, r_end):
            r = np.uint64(y[j]) - right_base
            r_count[r] = 0
            present[r] = 0
    return n, last_pair


def find_matches(y: np.ndarray, bucket_start: np.ndarray, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """All matches of a sorted parent table as (left, right) index arrays (tests, tools)."""
    bits = pair_bits(n_buckets)
    pairs = np.empty(max(n_buckets - 1, 0) * MAX_BUCKET_SIZE, dtype=pairs_dtype(bits))
    n, _ = find_matches_into(y, bucket_start, n_buckets, TARGET_ROW, TARGET_COL, pairs, 0, 0, bits)
    return unpack_pairs(pairs[:n], bits)


@njit(cache=True, nogil=True)
def has_match(left_y, right_y, square_terms):
    """The verifier's permissive match test: right's r is one of left's 64 targets; the buckets
    are NOT checked for adjacency (as in the reference).

    O(1) form of "any m in 0..63 with target(p, r_l, m) == r_r": the row part
    (r_l / C + m) % B must equal r_r / C, which fixes m = (r_r / C - r_l / C) mod B (unique as
    B > 64); then only the column part remains to compare.
    """
    parity = (left_y // PARAM_BC) & 1
    r_left = left_y % PARAM_BC
    r_right = right_y % PARAM_BC
    m = (r_right // PARAM_C - r_left // PARAM_C) % PARAM_B
    if m >= PARAM_M:
        return False
    return (square_terms[parity, m] + r_left % PARAM_C) % PARAM_C == r_right % PARAM_C
