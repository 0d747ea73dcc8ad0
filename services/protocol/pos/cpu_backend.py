"""CPU (numba) table construction: tables 1..7 of one seed, in a reusable scratch arena.

Output is backend-neutral (``layout.TableArrays``) so the GPU backend can produce the same
arrays and share the proof search in ``tables.py``. All kernels release the GIL: callers may
build several table sets at once on threads, each with its own ``TableScratch``.

Memory: every working array lives in the scratch (see scratch.py) and is reused table after
table; what a table leaves behind is only what proof search needs, gathered as soon as the
table is sorted (its packed parent pairs, exact size; x for table 1; the ys of table 7).

One build on several threads (``workers``, the caller's ``Workers``: a proof must be ready
within the farming timeout, so a proof-server splits its one table set over its cores): the
matching of each table is split into contiguous bucket ranges of about equal size, each
matched into a buffer of its own and concatenated in bucket order (the serial order), and Fn
is split into contiguous ranges of the matches. Sorting stays serial. Plot-servers encode one
record per thread and pass no workers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..parallel import Workers, worker_count

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


PARALLEL_MIN_ENTRIES = 1 << 14  # below this a table is matched / hashed on the calling thread


def _match_range(y: np.ndarray, bucket_start: np.ndarray, first: int, end: int, bits: int,
                 dtype: np.dtype) -> np.ndarray:
    """The matches of bucket pairs ``first .. end - 1`` (a buffer of their own, grown as needed)."""
    entries = int(bucket_start[end + 1] - bucket_start[first])
    pairs = np.empty(entries + entries // 8 + 2 * MAX_BUCKET_SIZE, dtype=dtype)
    n, next_pair = 0, first
    while True:
        # n_buckets = end + 1 bounds the kernel's walk at bucket pair end - 1
        n, next_pair = find_matches_into(y, bucket_start, end + 1, TARGET_ROW, TARGET_COL, pairs, n, next_pair, bits)
        if next_pair >= end:
            return pairs[:n]
        grown = np.empty(2 * pairs.shape[0], dtype=dtype)
        grown[:n] = pairs[:n]
        pairs = grown


def _match_split(scratch: TableScratch, kept: int, bucket_start: np.ndarray, n_buckets: int, bits: int,
                 workers: Workers) -> int:
    """:func:`_match` over ``workers``: bucket ranges of about ``kept / parts`` entries each."""
    parts = worker_count(workers)
    last = n_buckets - 1
    cuts = [0]
    for p in range(1, parts):
        cut = int(np.searchsorted(bucket_start[:n_buckets], kept * p // parts))
        cuts.append(min(max(cut, cuts[-1]), last))
    cuts.append(last)
    y = scratch.y_parent[:kept]
    found = workers.run_all([(_match_range, y, bucket_start, a, b, bits, scratch.pairs.dtype)
                             for a, b in zip(cuts, cuts[1:]) if b > a])
    total = sum(part.shape[0] for part in found)
    scratch.grow(total)
    offset = 0
    for part in found:
        scratch.pairs[offset:offset + part.shape[0]] = part
        offset += part.shape[0]
    return total


def _fn_split(k: int, table: int, s: TableScratch, n: int, bits: int, workers: Workers | None) -> None:
    """Fn of the ``n`` matches in ``s.pairs`` into ``s.y_new`` / ``s.meta_new_*``, in
    contiguous ranges over ``workers``."""
    parts = worker_count(workers)
    if parts <= 1 or n < PARALLEL_MIN_ENTRIES:
        fn_into(k, table, s.y_parent, s.meta_parent_hi, s.meta_parent_lo, s.pairs, n, bits,
                s.y_new, s.meta_new_hi, s.meta_new_lo)
        return
    bounds = [n * p // parts for p in range(parts + 1)]
    workers.run_all([(fn_into, k, table, s.y_parent, s.meta_parent_hi, s.meta_parent_lo, s.pairs[a:b], b - a, bits,
                      s.y_new[a:b], s.meta_new_hi[a:b], s.meta_new_lo[a:b]) for a, b in zip(bounds, bounds[1:])])


def build_tables_cpu(seed: bytes, k: int, scratch: TableScratch, keep_table_ys: bool = False,
                     workers: Workers | None = None) -> TableArrays:
    if not scratch.in_use.acquire(blocking=False):
        raise RuntimeError("this TableScratch is in use by another table build (one build per arena at a time)")
    try:
        return _build(seed, k, scratch, keep_table_ys, workers)
    finally:
        scratch.in_use.release()


def _build(seed: bytes, k: int, scratch: TableScratch, keep_table_ys: bool, workers: Workers | None) -> TableArrays:
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
        if worker_count(workers) > 1 and kept >= PARALLEL_MIN_ENTRIES:
            n = _match_split(s, kept, bucket_start, n_buckets, bits, workers)
        else:
            n = _match(s, kept, bucket_start, n_buckets, bits)
        _fn_split(k, table, s, n, bits, workers)
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
