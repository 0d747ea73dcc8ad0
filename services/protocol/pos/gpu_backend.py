"""GPU (cupy) table construction, producing the same ``TableArrays`` as the CPU backend.

cupy is imported lazily: importing this module without cupy raises ImportError, which
``api.gpu_available`` turns into "no GPU". CUDA kernels live in gpu_kernels.py (ChaCha8 + F1,
one-block-per-bucket-pair matching, one-thread-per-match Fn); sorting uses cupy's radix sort on
unique (y << 32 | creation index) keys, which is exactly the (y, creation order) rule of spec 02
§6 (buckets over 512 entries take an exact slow path first). Proof search runs on the host over
the copied arrays (it is a few µs per proof; the tables are the heavy part).
"""

from __future__ import annotations

import functools

import numpy as np

from .gpu_kernels import CUDA_SOURCE
from .layout import TableArrays, pack_interleaved, table_pair_bits
from .params import MAX_BUCKET_SIZE, PARAM_BC, num_buckets

_THREADS = 256


def _cupy():
    import cupy  # noqa: PLC0415 - deliberately lazy: cupy is optional

    return cupy


def gpu_device_count() -> int:
    """CUDA devices cupy can see; 0 when cupy is missing or the driver/runtime fails."""
    try:
        cp = _cupy()
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001 - any CUDA/driver failure means "no usable GPU"
        return 0


@functools.cache
def _module():
    cp = _cupy()
    return cp.RawModule(code=CUDA_SOURCE, options=("--std=c++14",))


def _kernel(name: str):
    return _module().get_function(name)


def _grid(n: int) -> tuple[int]:
    return ((n + _THREADS - 1) // _THREADS,)


def _bucketize(cp, y, n_buckets: int):
    """(order int64, sorted_y uint32, bucket_start int64) on the device: the first 512 entries
    (creation order) of each bucket, sorted by (y, creation order)."""
    n = int(y.shape[0])
    creation = cp.arange(n, dtype=cp.uint64)
    bucket = (y // PARAM_BC).astype(cp.int64)
    counts = cp.bincount(bucket, minlength=n_buckets)
    if int(counts.max()) > MAX_BUCKET_SIZE:
        # exact path: rank of each entry inside its bucket in creation order, keep rank < 512
        by_bucket = cp.sort((bucket.astype(cp.uint64) << cp.uint64(32)) | creation)
        sorted_bucket = (by_bucket >> cp.uint64(32)).astype(cp.int64)
        starts = cp.cumsum(counts) - counts
        rank = cp.arange(n, dtype=cp.int64) - starts[sorted_bucket]
        candidates = (by_bucket[rank < MAX_BUCKET_SIZE] & cp.uint64(0xFFFFFFFF))
    else:
        candidates = creation
    keys = cp.sort((y[candidates.astype(cp.int64)].astype(cp.uint64) << cp.uint64(32)) | candidates)
    order = (keys & cp.uint64(0xFFFFFFFF)).astype(cp.int64)
    sorted_y = (keys >> cp.uint64(32)).astype(cp.uint32)
    edges = cp.arange(n_buckets + 1, dtype=cp.int64) * PARAM_BC
    bucket_start = cp.searchsorted(sorted_y.astype(cp.int64), edges).astype(cp.int64)
    return order, sorted_y, bucket_start


def build_tables_gpu(seed: bytes, k: int, keep_table_ys: bool = False) -> TableArrays:
    cp = _cupy()
    n = 1 << k
    n_buckets = num_buckets(k)
    n_pairs = n_buckets - 1
    key = cp.asarray(np.frombuffer(seed, dtype="<u4").astype(np.uint32))
    stream_bytes = (k * n + 7) // 8 + 8
    n_blocks = (stream_bytes + 63) // 64
    stream = cp.empty(n_blocks * 16, dtype=cp.uint32)
    _kernel("chacha8_blocks")(_grid(n_blocks), (_THREADS,), (key, stream, np.int64(n_blocks)))
    f1_ys = cp.empty(n, dtype=cp.uint32)
    _kernel("f1_kernel")(_grid(n), (_THREADS,), (stream.view(cp.uint8), np.int32(k), np.int64(n), f1_ys))
    del stream
    order, y, bucket_start = _bucketize(cp, f1_ys, n_buckets)
    x = order.astype(cp.uint32)
    meta_hi = cp.zeros(x.shape[0], dtype=cp.uint64)
    meta_lo = x.astype(cp.uint64)
    ys = [y]
    children_parts = []
    match = _kernel("match_kernel")
    fn = _kernel("fn_kernel")
    interleave = _kernel("interleave_children")
    slot = cp.arange(n_pairs * MAX_BUCKET_SIZE, dtype=cp.int64)
    for table in range(2, 8):
        left_sparse = cp.empty(n_pairs * MAX_BUCKET_SIZE, dtype=cp.uint32)
        right_sparse = cp.empty(n_pairs * MAX_BUCKET_SIZE, dtype=cp.uint32)
        pair_count = cp.zeros(n_pairs, dtype=cp.int32)
        match((n_pairs,), (MAX_BUCKET_SIZE,), (y, bucket_start, left_sparse, right_sparse, pair_count))
        valid = (slot % MAX_BUCKET_SIZE) < pair_count[slot // MAX_BUCKET_SIZE]
        kept = cp.flatnonzero(valid)  # ascending: creation order of the new entries
        left = left_sparse[kept]
        right = right_sparse[kept]
        del left_sparse, right_sparse, valid, kept
        n_matches = int(left.shape[0])
        new_y = cp.empty(n_matches, dtype=cp.uint32)
        new_hi = cp.empty(n_matches, dtype=cp.uint64)
        new_lo = cp.empty(n_matches, dtype=cp.uint64)
        if n_matches:
            fn(_grid(n_matches), (_THREADS,), (np.int32(k), np.int32(table), y, meta_hi, meta_lo, left,
                                              right, np.int64(n_matches), new_y, new_hi, new_lo))
        order, y, bucket_start = _bucketize(cp, new_y, n_buckets)
        kept_n = int(order.shape[0])
        children = cp.empty(2 * kept_n, dtype=cp.uint32)
        if kept_n:
            interleave(_grid(kept_n), (_THREADS,), (left, right, order, np.int64(kept_n), children))
        children_parts.append(children)
        if table < 7:
            meta_hi = new_hi[order]
            meta_lo = new_lo[order]
        ys.append(y)
    bits = table_pair_bits(k)
    # packed on the device (layout.py): half the bytes to copy and to keep
    children = tuple(pack_interleaved(cp, part, bits).get() for part in children_parts)
    sizes = tuple(int(part.shape[0]) for part in ys)
    host_ys = tuple(part.get() for part in ys) if keep_table_ys else None
    return TableArrays(
        k=k,
        sizes=sizes,
        x=x.get(),
        y7=host_ys[6] if host_ys is not None else ys[6].get(),
        children=children,
        pair_bits=bits,
        ys=host_ys,
    )
