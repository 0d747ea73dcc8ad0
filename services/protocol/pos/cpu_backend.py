"""CPU (numba) table construction: tables 1..7 of one seed, in a reusable scratch arena.

Output is backend-neutral (``layout.TableArrays``) so the GPU backend can produce the same
arrays and share the proof search in ``tables.py``. All kernels release the GIL: callers may
build several table sets at once on threads, each with its own ``TableScratch``.

Memory: every working array lives in the scratch (see scratch.py) and is reused table after
table; what a table leaves behind is only what proof search needs, gathered as soon as the
table is sorted (its packed parent pairs, exact size; x for table 1; the ys of table 7).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .chacha8 import f1_into, keystream_blocks
from .fn import fn_into
from .layout import TableArrays, table_pair_bits
from .matching import TARGET_COL, TARGET_ROW, bucketize_into, find_matches_into
from .params import MAX_BUCKET_SIZE, num_buckets
from .scratch import TableScratch


@njit(cache=True, nogil=True)
def _gather(values, order, n, out):
    """out[i] = values[order[i]] for i < n."""
    for i in range(n):
        out[i] = values[order[i]]


@njit(cache=True, nogil=True)
def _gather_meta(hi, lo, order, n, out_hi, out_lo):
    for i in range(n):
        j = order[i]
        out_hi[i] = hi[j]
        out_lo[i] = lo[j]


@njit(cache=True, nogil=True)
def _table1_meta(order, n, out_hi, out_lo):
    """Table-1 metadata of each sorted entry is its x, i.e. its creation index."""
    for i in range(n):
        out_hi[i] = 0
        out_lo[i] = order[i]


def _match(scratch: TableScratch, kept: int, bucket_start: np.ndarray, n_buckets: int, bits: int) -> int:
    """All matches of the parent table in ``scratch.y_parent[:kept]`` into ``scratch.pairs``,
    growing the scratch (contents kept) when a table has more entries than it has room for."""
    n, next_pair = 0, 0
    while True:
        n, next_pair = find_matches_into(scratch.y_parent[:kept], bucket_start, n_buckets, TARGET_ROW, TARGET_COL,
                                         scratch.pairs, n, next_pair, bits)
        if next_pair >= n_buckets - 1:
            return n
        scratch.grow(n + MAX_BUCKET_SIZE)


def build_tables_cpu(seed: bytes, k: int, scratch: TableScratch, keep_table_ys: bool = False) -> TableArrays:
    if not scratch.in_use.acquire(blocking=False):
        raise RuntimeError("this TableScratch is in use by another table build (one build per arena at a time)")
    try:
        return _build(seed, k, scratch, keep_table_ys)
    finally:
        scratch.in_use.release()


def _build(seed: bytes, k: int, scratch: TableScratch, keep_table_ys: bool) -> TableArrays:
    n_buckets = num_buckets(k)
    bits = table_pair_bits(k)
    scratch.prepare(k)
    s = scratch
    n = 1 << k
    # table 1: the keystream borrows meta_new_lo, the radix sort y_parent / meta_parent_lo
    stream_words = s.meta_new_lo.view(np.uint32)
    assert stream_words.shape[0] >= 16 * keystream_blocks(k)
    f1_into(np.frombuffer(seed, dtype=np.uint8), k, stream_words, s.y_new)
    kept, bucket_start = bucketize_into(s.y_new[:n], n_buckets, s.y_new, s.order, s.y_parent,
                                        s.meta_parent_lo.view(np.uint32))
    x = s.order[:kept].copy()
    _table1_meta(s.order, kept, s.meta_parent_hi, s.meta_parent_lo)
    s.swap_ys()
    sizes = [kept]
    ys = [s.y_parent[:kept].copy()] if keep_table_ys else None
    children = []
    for table in range(2, 8):
        n = _match(s, kept, bucket_start, n_buckets, bits)
        fn_into(k, table, s.y_parent, s.meta_parent_hi, s.meta_parent_lo, s.pairs, n, bits,
                s.y_new, s.meta_new_hi, s.meta_new_lo)
        # the parent's ys and metadata are dead now: they hold the radix sort's scratch
        kept, bucket_start = bucketize_into(s.y_new[:n], n_buckets, s.y_new, s.order, s.y_parent,
                                            s.meta_parent_lo.view(np.uint32))
        pairs = np.empty(kept, dtype=s.pairs.dtype)
        _gather(s.pairs, s.order, kept, pairs)
        children.append(pairs)
        if table < 7:
            _gather_meta(s.meta_new_hi, s.meta_new_lo, s.order, kept, s.meta_parent_hi, s.meta_parent_lo)
        s.swap_ys()
        sizes.append(kept)
        if ys is not None:
            ys.append(s.y_parent[:kept].copy())
    y7 = ys[6] if ys is not None else s.y_parent[:kept].copy()
    return TableArrays(k=k, sizes=tuple(sizes), x=x, y7=y7, children=tuple(children), pair_bits=bits,
                       ys=None if ys is None else tuple(ys))
