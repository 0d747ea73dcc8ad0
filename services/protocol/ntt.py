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
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from services.protocol import field
from services.protocol.field import R, _add, _load, _mont_mul, _store, _sub

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
    """out[k] = base^k for k < count (Montgomery)."""
    acc = _load(one, 0)
    b = _load(base, 0)
    for k in range(count):
        _store(out, k, acc)
        acc = _mont_mul(acc, b)


_twiddle_lock = threading.Lock()
_twiddles: np.ndarray | None = None


def twiddles() -> np.ndarray:
    """(2^15, 8) uint32 table of omega_16^k in Montgomery form, k < 2^15 (built once)."""
    global _twiddles
    with _twiddle_lock:
        if _twiddles is None:
            table = np.empty((MAX_SIZE // 2, 4), dtype=np.uint64)
            _powers_kernel(
                field.u32_view(field.from_ints([root_of_unity(MAX_LOG_SIZE)])),
                MAX_SIZE // 2,
                field.u32_view(field.from_ints([1])),
                field.u32_view(table),
            )
            _twiddles = field.u32_view(table)
            _twiddles.flags.writeable = False
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
    tw = twiddles()
    return np.ascontiguousarray(tw[: count * stride : stride]).view(np.uint64).reshape(count, 4)


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
            for k in range(8):
                t = data[i, k]
                data[i, k] = data[j, k]
                data[j, k] = t


@numba.njit(cache=True, nogil=True)
def _ntt_inplace(data, log_n, tw, log_max):
    """Forward DFT of one (n, 8) uint32 vector in place (natural order in and out)."""
    n = data.shape[0]
    _bit_reverse_permute(data, log_n)
    h = 1
    log_h = 0
    while h < n:
        shift = log_max - 1 - log_h  # twiddle for j in a block of 2h is omega_max^(j << shift)
        for start in range(0, n, 2 * h):
            i = start
            j = start + h
            u = _load(data, i)
            v = _load(data, j)
            _store(data, i, _add(u, v))
            _store(data, j, _sub(u, v))
        for k in range(1, h):
            w = _load(tw, k << shift)
            for start in range(0, n, 2 * h):
                i = start + k
                j = i + h
                u = _load(data, i)
                v = _mont_mul(_load(data, j), w)
                _store(data, i, _add(u, v))
                _store(data, j, _sub(u, v))
        h *= 2
        log_h += 1


@numba.njit(cache=True, nogil=True)
def _ntt_batch(data, log_n, tw, log_max):
    for b in range(data.shape[0]):
        _ntt_inplace(data[b], log_n, tw, log_max)


@numba.njit(cache=True, nogil=True)
def _reverse_and_scale(src, scale, dst):
    """dst[b, k] = src[b, (n - k) % n] * scale[k] for every batch row b (scale is Montgomery)."""
    n = src.shape[1]
    for b in range(src.shape[0]):
        for k in range(n):
            kk = (n - k) & (n - 1)
            _store(dst[b], k, _mont_mul(_load(src[b], kk), _load(scale, k)))


@numba.njit(cache=True, nogil=True)
def _scale_rows(src, scale, dst):
    """dst[b, k] = src[b, k] * scale[k] for every batch row b (scale is Montgomery)."""
    for b in range(src.shape[0]):
        for k in range(src.shape[1]):
            _store(dst[b], k, _mont_mul(_load(src[b], k), _load(scale, k)))


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


def _u32_batch(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32).reshape(a.shape[0], a.shape[1], 8)


def ntt_inplace_batch(batch: np.ndarray) -> None:
    """Forward DFT in place on a C-contiguous (batch, n, 4) uint64 array (hot-path helper)."""
    n = batch.shape[1]
    _ntt_batch(_u32_batch(batch), n.bit_length() - 1, twiddles(), MAX_LOG_SIZE)


def ntt(values: np.ndarray) -> np.ndarray:
    """Forward DFT: ``out[i] = sum_k values[k] * omega^(i*k)`` over the size-n domain."""
    batch, _, single = _as_batch(values)
    ntt_inplace_batch(batch)
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


def reverse_and_scale(batch: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``out[b, k] = batch[b, -k mod n] * scale[k]`` (scale: Montgomery (n, 4)); new array."""
    out = np.empty_like(batch)
    _reverse_and_scale(_u32_batch(batch), field.u32_view(np.ascontiguousarray(scale)), _u32_batch(out))
    return out


def scale_rows(batch: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``out[b, k] = batch[b, k] * scale[k]`` (scale: Montgomery (n, 4)); new array."""
    out = np.empty_like(batch)
    _scale_rows(_u32_batch(batch), field.u32_view(np.ascontiguousarray(scale)), _u32_batch(out))
    return out


def intt(values: np.ndarray) -> np.ndarray:
    """Inverse DFT: ``out[k] = n^-1 * sum_i values[i] * omega^(-i*k)`` (evaluations -> coefficients)."""
    batch, _, single = _as_batch(values)
    ntt_inplace_batch(batch)
    out = reverse_and_scale(batch, _inverse_scale(batch.shape[1]))
    return out[0] if single else out
