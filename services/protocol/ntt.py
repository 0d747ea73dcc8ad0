"""Radix-2 number-theoretic transform over the BLS12-381 scalar field (spec 01 §7.2).

Why: KZG ``poly`` (inverse DFT of 2^15 evaluations) and erasure coding (2^15 -> 2^16) need
fast transforms on the reference's evaluation domain.

Domain: ``omega_s = 7^((r-1)/2^s) mod r`` (rust-kzg ``SCALE2_ROOT_OF_UNITY``), natural order:
domain point ``i`` is ``omega^i``. For n = 2^s:

* ``ntt(a)[i]  = sum_k a[k] * omega_s^(i*k)``            (evaluate coefficients on the domain)
* ``intt(v)[k] = n^-1 * sum_i v[i] * omega_s^(-i*k)``    (interpolate: evaluations -> coefficients)

Both are linear, so they work on Fr arrays in either representation (Montgomery or canonical
limbs, see ``field``); the result is in the same representation as the input. Inputs are
``(n, 4)`` uint64 arrays or ``(batch, n, 4)`` for many transforms of the same size in one call;
sizes are powers of two from 1 to 2^16 (MAX_LOG_SIZE).

Threads: with ``workers`` (a :class:`services.protocol.parallel.Workers`, the caller's executor)
transforms of >= 2^13 elements in total are split over its threads (the numba kernels release
the GIL): batch rows between threads, or a single transform's independent blocks and then each
remaining stage's twiddle range. ``run_split`` does the same for element-wise kernels. Without
``workers`` everything runs on the calling thread. Results do not depend on the split.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from services.protocol import field
from services.protocol.parallel import Workers, run_all, worker_count
from services.protocol.field import R, _add64, _ld, _mont_mul64, _st, _sub64

MAX_LOG_SIZE = 16
MAX_SIZE = 1 << MAX_LOG_SIZE
GENERATOR = 7


def root_of_unity(log_n: int) -> int:
    """Primitive 2^log_n-th root of unity ``7^((r-1)/2^log_n) mod r`` as an int."""
    if not 0 <= log_n <= 32:
        raise ValueError(f"root of unity order 2^{log_n} is not supported (2-adicity of r is 32)")
    return pow(GENERATOR, (R - 1) >> log_n, R)


@numba.njit(cache=True, nogil=True)
def _powers_kernel(base, count, one, out):
    """out[k] = base^k for k < count (Montgomery; (n, 4) uint64 arrays)."""
    acc = _ld(one, 0)
    b = _ld(base, 0)
    for k in range(count):
        _st(out, k, acc)
        acc = _mont_mul64(acc, b)


_twiddle_lock = threading.Lock()
_twiddles: np.ndarray | None = None


def twiddles() -> np.ndarray:
    """(2^15, 4) uint64 table of omega_16^k in Montgomery form, k < 2^15 (built once, read-only)."""
    global _twiddles
    with _twiddle_lock:
        if _twiddles is None:
            table = np.empty((MAX_SIZE // 2, 4), dtype=np.uint64)
            _powers_kernel(field.from_ints([root_of_unity(MAX_LOG_SIZE)]), MAX_SIZE // 2, field.from_ints([1]), table)
            table.flags.writeable = False
            _twiddles = table
        return _twiddles


def domain_powers(log_n: int, count: int | None = None) -> np.ndarray:
    """Montgomery Fr array of omega_{log_n}^k for k < count (default 2^log_n / 2)."""
    if not 1 <= log_n <= MAX_LOG_SIZE:
        raise ValueError(f"domain size 2^{log_n} is outside 2^1..2^{MAX_LOG_SIZE}")
    n = 1 << log_n
    count = n // 2 if count is None else count
    if not 0 <= count <= n // 2:
        raise ValueError(f"count {count} must be in 0..{n // 2}")
    stride = MAX_SIZE // n
    return np.ascontiguousarray(twiddles()[: count * stride : stride])


@numba.njit(cache=True, nogil=True)
def _bit_reverse_permute(data, log_n):
    n = data.shape[0]
    for i in range(n):
        j = 0
        x = i
        for _ in range(log_n):
            j = (j << 1) | (x & 1)
            x >>= 1
        if i < j:
            for k in range(4):
                t = data[i, k]
                data[i, k] = data[j, k]
                data[j, k] = t


@numba.njit(cache=True, nogil=True)
def _butterflies(data, h, k_start, k_stop, shift, tw):
    """One radix-2 DIT stage with half-size h on data (length a multiple of 2h), restricted to
    in-block offsets k in [k_start, k_stop); twiddle for k is omega_max^(k << shift)."""
    n = data.shape[0]
    for start in range(0, n, 2 * h):
        for k in range(k_start, k_stop):
            i = start + k
            j = i + h
            u = _ld(data, i)
            if k == 0:
                v = _ld(data, j)
            else:
                v = _mont_mul64(_ld(data, j), _ld(tw, k << shift))
            _st(data, i, _add64(u, v))
            _st(data, j, _sub64(u, v))


@numba.njit(cache=True, nogil=True)
def _ntt_stages(data, log_first, log_stop, log_max, tw):
    """DIT stages with half-sizes 2^log_first .. 2^(log_stop-1) on bit-reversed data."""
    for log_h in range(log_first, log_stop):
        h = 1 << log_h
        _butterflies(data, h, 0, h, log_max - 1 - log_h, tw)


@numba.njit(cache=True, nogil=True)
def _ntt_inplace(data, log_n, tw, log_max):
    """Forward DFT of one (n, 4) uint64 vector in place (natural order in and out)."""
    _bit_reverse_permute(data, log_n)
    _ntt_stages(data, 0, log_n, log_max, tw)


@numba.njit(cache=True, nogil=True)
def _ntt_batch(data, log_n, tw, log_max):
    for b in range(data.shape[0]):
        _ntt_inplace(data[b], log_n, tw, log_max)


@numba.njit(cache=True, nogil=True)
def _reverse_and_scale(src, scale, dst, b_start, b_stop, k_start, k_stop):
    """dst[b, k] = src[b, (n - k) % n] * scale[k] for rows b in [b_start, b_stop) and k in
    [k_start, k_stop) (scale is Montgomery)."""
    n = src.shape[1]
    for b in range(b_start, b_stop):
        for k in range(k_start, k_stop):
            kk = (n - k) & (n - 1)
            _st(dst[b], k, _mont_mul64(_ld(src[b], kk), _ld(scale, k)))


@numba.njit(cache=True, nogil=True)
def _scale_rows(src, scale, dst, b_start, b_stop, k_start, k_stop):
    """dst[b, k] = src[b, k] * scale[k] for rows b in [b_start, b_stop), k in [k_start, k_stop)."""
    for b in range(b_start, b_stop):
        for k in range(k_start, k_stop):
            _st(dst[b], k, _mont_mul64(_ld(src[b], k), _ld(scale, k)))


def _as_batch(values: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """(batch, n, 4) contiguous copy, log2(n), whether the input was 2-D."""
    if not isinstance(values, np.ndarray) or values.dtype != np.uint64 or values.shape[-1:] != (4,):
        raise ValueError(
            f"values must be a numpy uint64 array of shape (n, 4) or (batch, n, 4), got "
            f"{getattr(values, 'dtype', type(values).__name__)} {getattr(values, 'shape', None)}"
        )
    if values.ndim == 2:
        batch, single = values[None], True
    elif values.ndim == 3:
        batch, single = values, False
    else:
        raise ValueError(f"values must be 2-D or 3-D, got shape {values.shape}")
    n = batch.shape[1]
    if n < 1 or n & (n - 1) or n > MAX_SIZE:
        raise ValueError(f"NTT size {n} must be a power of two between 1 and {MAX_SIZE}")
    return np.array(batch, dtype=np.uint64, order="C", copy=True), n.bit_length() - 1, single


PARALLEL_MIN_ELEMENTS = 1 << 13  # smaller transforms run on the calling thread


def _split_single(data: np.ndarray, log_n: int, parts: int, tw: np.ndarray, workers: Workers) -> None:
    """One forward DFT split into ``parts`` (a power of two): after the bit reversal the first
    log_n - log2(parts) stages act on independent blocks; each later stage splits its twiddle
    range."""
    log_w = parts.bit_length() - 1
    n = 1 << log_n
    _bit_reverse_permute(data, log_n)
    block = n >> log_w
    run_all(workers, [(_ntt_stages, data[b * block : (b + 1) * block], 0, log_n - log_w, MAX_LOG_SIZE, tw) for b in range(parts)])
    for log_h in range(log_n - log_w, log_n):
        h = 1 << log_h
        part = h // parts
        shift = MAX_LOG_SIZE - 1 - log_h
        run_all(workers, [(_butterflies, data, h, w * part, (w + 1) * part, shift, tw) for w in range(parts)])


def ntt_inplace_batch(batch: np.ndarray, workers: Workers | None = None) -> None:
    """Forward DFT in place on a C-contiguous (batch, n, 4) uint64 array (hot-path helper).

    With ``workers``, large work is split: whole rows when there are several, else one transform."""
    rows, n = batch.shape[0], batch.shape[1]
    log_n = n.bit_length() - 1
    tw = twiddles()
    threads = min(worker_count(workers), n)
    if threads == 1 or rows * n < PARALLEL_MIN_ELEMENTS or rows == 0:
        _ntt_batch(batch, log_n, tw, MAX_LOG_SIZE)
    elif rows >= 2:
        parts = min(threads, rows)
        bounds = [rows * w // parts for w in range(parts + 1)]
        run_all(workers, [(_ntt_batch, batch[bounds[w] : bounds[w + 1]], log_n, tw, MAX_LOG_SIZE) for w in range(parts)])
    else:
        parts = 1 << (threads.bit_length() - 1)  # largest power of two <= threads
        _split_single(batch[0], log_n, parts, tw, workers)


def ntt(values: np.ndarray, workers: Workers | None = None) -> np.ndarray:
    """Forward DFT: ``out[i] = sum_k values[k] * omega^(i*k)`` over the size-n domain."""
    batch, _, single = _as_batch(values)
    ntt_inplace_batch(batch, workers)
    return batch[0] if single else batch


_inverse_scale_lock = threading.Lock()
_inverse_scales: dict[int, np.ndarray] = {}


def _inverse_scale(n: int) -> np.ndarray:
    """Montgomery Fr row [n^-1] repeated n times (cached)."""
    with _inverse_scale_lock:
        table = _inverse_scales.get(n)
        if table is None:
            table = np.repeat(field.from_ints([pow(n, -1, R)]), n, axis=0)
            table.flags.writeable = False
            _inverse_scales[n] = table
        return table


def run_split(kernel, rows: int, count: int, *args, workers: Workers | None = None) -> None:
    """Call ``kernel(*args, row_start, row_stop, start, stop)`` over rows [0, rows) x [0, count),
    split over ``workers`` (by rows when there are enough, else by the inner range) when
    ``rows * count`` is large; the kernel must treat disjoint blocks independently."""
    threads = worker_count(workers)
    if threads == 1 or rows * count < PARALLEL_MIN_ELEMENTS:
        kernel(*args, 0, rows, 0, count)
    elif rows >= threads:
        bounds = [rows * w // threads for w in range(threads + 1)]
        run_all(workers, [(kernel, *args, bounds[w], bounds[w + 1], 0, count) for w in range(threads)])
    else:
        threads = min(threads, count)
        bounds = [count * w // threads for w in range(threads + 1)]
        run_all(workers, [(kernel, *args, 0, rows, bounds[w], bounds[w + 1]) for w in range(threads)])


def reverse_and_scale(batch: np.ndarray, scale: np.ndarray, workers: Workers | None = None) -> np.ndarray:
    """``out[b, k] = batch[b, -k mod n] * scale[k]`` (scale: Montgomery (n, 4)); new array."""
    out = np.empty_like(batch)
    run_split(_reverse_and_scale, batch.shape[0], batch.shape[1], batch, np.ascontiguousarray(scale), out, workers=workers)
    return out


def scale_rows(batch: np.ndarray, scale: np.ndarray, workers: Workers | None = None) -> np.ndarray:
    """``out[b, k] = batch[b, k] * scale[k]`` (scale: Montgomery (n, 4)); new array."""
    out = np.empty_like(batch)
    run_split(_scale_rows, batch.shape[0], batch.shape[1], batch, np.ascontiguousarray(scale), out, workers=workers)
    return out


def intt(values: np.ndarray, workers: Workers | None = None) -> np.ndarray:
    """Inverse DFT: ``out[k] = n^-1 * sum_i values[i] * omega^(-i*k)`` (evaluations -> coefficients)."""
    batch, _, single = _as_batch(values)
    ntt_inplace_batch(batch, workers)
    out = reverse_and_scale(batch, _inverse_scale(batch.shape[1]), workers)
    return out[0] if single else out
