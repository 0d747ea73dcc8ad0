"""CPU (numba) table construction: tables 1..7 of one seed as plain numpy arrays.

Output is backend-neutral (``TableArrays``) so the GPU backend can produce the same arrays and
share the proof search in ``tables.py``. All kernels release the GIL: callers may build several
table sets at once on threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .chacha8 import f1_all
from .fn import fn_batch
from .matching import TARGET_COL, TARGET_ROW, bucketize, find_matches
from .params import num_buckets


@dataclass
class TableArrays:
    """Sorted tables of one seed. Index i of table t means the i-th entry in (y, creation) order.

    ys[t-1]: uint32 y of every kept entry of table t (ascending).
    x: uint32 x value of each table-1 entry.
    children: uint32; children[child_offset[t] + 2*i] / [... + 1] are the left / right parent
      (table t-1) indices of entry i of table t, t = 2..7 (child_offset has 8 slots, 0/1 unused).
    """

    k: int
    ys: list[np.ndarray]
    x: np.ndarray
    children: np.ndarray
    child_offset: np.ndarray


@njit(cache=True, nogil=True)
def _gather_u64(values, order):
    out = np.empty(order.shape[0], dtype=np.uint64)
    for i in range(order.shape[0]):
        out[i] = values[order[i]]
    return out


@njit(cache=True, nogil=True)
def _gather_children(left, right, order, children, offset):
    for i in range(order.shape[0]):
        children[offset + 2 * i] = left[order[i]]
        children[offset + 2 * i + 1] = right[order[i]]


def build_tables_cpu(seed: bytes, k: int) -> TableArrays:
    n_buckets = num_buckets(k)
    seed_array = np.frombuffer(seed, dtype=np.uint8)
    f1_ys = f1_all(seed_array, k)
    order, y, bucket_start = bucketize(f1_ys, n_buckets)
    x = order  # table-1 creation index is x itself
    meta_hi = np.zeros(x.shape[0], dtype=np.uint64)
    meta_lo = x.astype(np.uint64)
    ys = [y]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for table in range(2, 8):
        left, right, n = find_matches(y, bucket_start, n_buckets, TARGET_ROW, TARGET_COL)
        new_y, new_hi, new_lo = fn_batch(k, table, y, meta_hi, meta_lo, left, right, n)
        order, y, bucket_start = bucketize(new_y, n_buckets)
        parts.append((left, right, order))
        if table < 7:
            meta_hi = _gather_u64(new_hi, order)
            meta_lo = _gather_u64(new_lo, order)
        ys.append(y)
    child_offset = np.zeros(8, dtype=np.int64)
    total = 0
    for table, (_, _, order) in zip(range(2, 8), parts):
        child_offset[table] = total
        total += 2 * order.shape[0]
    children = np.empty(total, dtype=np.uint32)
    for table, (left, right, order) in zip(range(2, 8), parts):
        _gather_children(left, right, order, children, child_offset[table])
    return TableArrays(k=k, ys=ys, x=x, children=children, child_offset=child_offset)
