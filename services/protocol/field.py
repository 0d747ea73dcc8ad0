"""BLS12-381 scalar field Fr, vectorised on numpy arrays with numba kernels (spec 01 §2).

Why: records are 32 768 scalars and the erasure coding / KZG layers do hundreds of thousands
of field multiplications per record, far too many for Python integers.

Representation
--------------
* An *Fr array* is a C-contiguous ``numpy.uint64`` array of shape ``(n, 4)``: four 64-bit
  little-endian limbs per element. The arithmetic functions here (``add``, ``sub``, ``mul``,
  ``pow``, ``inverse``, ``batch_inverse``) work on elements in **Montgomery form**
  (``a * 2^256 mod r``); ``from_bytes`` / ``to_bytes`` / ``from_ints`` / ``to_ints`` convert.
* ``bytes_to_limbs`` / ``limbs_to_bytes`` convert between 32-byte big-endian canonical scalars
  and *canonical* (non-Montgomery) limb arrays. Linear maps (NTT, erasure extension, synthetic
  division) commute with the Montgomery factor, so ``ntt``/``erasure`` run directly on canonical
  limbs and skip the conversions.
* Array kernels work on 4 x 64-bit limbs with 64x64 -> 128-bit products from a small LLVM
  intrinsic (``_mac``; numba has no 128-bit integer type), branch-free reductions. The scalar
  helpers ``_mont_mul64``/``_add64``/``_sub64``/``_ld``/``_st`` are shared with ntt/erasure/kzg.

Scalars on the wire are 32 bytes big-endian and must be canonical (< r): anything else raises
``ValueError("Invalid scalar ...")``. "Safe" 31-byte chunks become scalars as ``0x00 ‖ chunk``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from services.protocol.constants import BLS12_381_R, SCALAR_FULL_BYTES, SCALAR_SAFE_BYTES

if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
    raise ImportError("services.protocol.field needs a little-endian machine")

R = BLS12_381_R
MONT_R = (1 << 256) % R
MONT_R2 = (1 << 512) % R

ZERO = np.uint64(0)

class InvalidScalarError(ValueError):
    """A 32-byte value that is not a canonical scalar (>= r), or a bad safe-bytes scalar."""


# --------------------------------------------------------------------------------------------
# numba scalar kernels: 4-tuples of uint64 limbs, 64x64 -> 128-bit products via an LLVM
# intrinsic (numba has no 128-bit integer type). Montgomery radix 2^256.
# --------------------------------------------------------------------------------------------

P0, P1, P2, P3 = (np.uint64((R >> (64 * i)) & ((1 << 64) - 1)) for i in range(4))
_R_LIMBS64 = np.array([P0, P1, P2, P3], dtype=np.uint64)
NEG_R_INV64 = np.uint64((-pow(R, -1, 1 << 64)) % (1 << 64))  # -r^-1 mod 2^64


@intrinsic
def _mac(typingctx, t, a, b, c):
    """``t + a*b + c`` as a 128-bit value split into (low, high) uint64 words (cannot overflow)."""
    signature = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64, types.uint64, types.uint64)

    def codegen(context, builder, sig, args):
        wide = ir.IntType(128)
        t_, a_, b_, c_ = (builder.zext(x, wide) for x in args)
        total = builder.add(builder.add(builder.mul(a_, b_), t_), c_)
        low = builder.trunc(total, ir.IntType(64))
        high = builder.trunc(builder.lshr(total, ir.Constant(wide, 64)), ir.IntType(64))
        return context.make_tuple(builder, sig.return_type, [low, high])

    return signature, codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _reduce64(t0, t1, t2, t3):
    """t - r if t >= r else t, for t < 2r; branch-free (random data would mispredict)."""
    s0 = t0 - P0
    borrow = np.uint64(t0 < P0)
    x = t1 - P1
    s1 = x - borrow
    borrow = np.uint64(t1 < P1) | np.uint64(x < borrow)
    x = t2 - P2
    s2 = x - borrow
    borrow = np.uint64(t2 < P2) | np.uint64(x < borrow)
    x = t3 - P3
    s3 = x - borrow
    borrow = np.uint64(t3 < P3) | np.uint64(x < borrow)
    keep = ZERO - borrow  # all ones when t < r
    return (
        (t0 & keep) | (s0 & ~keep),
        (t1 & keep) | (s1 & ~keep),
        (t2 & keep) | (s2 & ~keep),
        (t3 & keep) | (s3 & ~keep),
    )


@numba.njit(cache=True, nogil=True)
def _mont_mul64(a, b):
    """Montgomery product a*b*2^-256 mod r of 4x64-bit limb tuples (CIOS; r's top word < 2^62,
    so the extra carry word is never needed). Inputs < r."""
    a0, a1, a2, a3 = a
    t0 = t1 = t2 = t3 = ZERO
    for i in range(4):
        bi = b[i]
        t0, c = _mac(t0, a0, bi, ZERO)
        t1, c = _mac(t1, a1, bi, c)
        t2, c = _mac(t2, a2, bi, c)
        t3, c = _mac(t3, a3, bi, c)
        t4 = c
        m = t0 * NEG_R_INV64
        _, c = _mac(t0, m, P0, ZERO)
        t0, c = _mac(t1, m, P1, c)
        t1, c = _mac(t2, m, P2, c)
        t2, c = _mac(t3, m, P3, c)
        t3 = t4 + c
    return _reduce64(t0, t1, t2, t3)


@numba.njit(cache=True, nogil=True)
def _add64(a, b):
    """(a + b) mod r; a + b < 2r < 2^256."""
    r0 = a[0] + b[0]
    carry = np.uint64(r0 < a[0])
    x = a[1] + b[1]
    r1 = x + carry
    carry = np.uint64(x < a[1]) | np.uint64(r1 < carry)
    x = a[2] + b[2]
    r2 = x + carry
    carry = np.uint64(x < a[2]) | np.uint64(r2 < carry)
    r3 = a[3] + b[3] + carry
    return _reduce64(r0, r1, r2, r3)


@numba.njit(cache=True, nogil=True)
def _sub64(a, b):
    """(a - b) mod r; branch-free."""
    r0 = a[0] - b[0]
    borrow = np.uint64(a[0] < b[0])
    x = a[1] - b[1]
    r1 = x - borrow
    borrow = np.uint64(a[1] < b[1]) | np.uint64(x < borrow)
    x = a[2] - b[2]
    r2 = x - borrow
    borrow = np.uint64(a[2] < b[2]) | np.uint64(x < borrow)
    x = a[3] - b[3]
    r3 = x - borrow
    borrow = np.uint64(a[3] < b[3]) | np.uint64(x < borrow)
    mask = ZERO - borrow  # all ones when a < b: add r back
    s0 = r0 + (P0 & mask)
    carry = np.uint64(s0 < r0)
    x = r1 + (P1 & mask)
    s1 = x + carry
    carry = np.uint64(x < r1) | np.uint64(s1 < carry)
    x = r2 + (P2 & mask)
    s2 = x + carry
    carry = np.uint64(x < r2) | np.uint64(s2 < carry)
    s3 = r3 + (P3 & mask) + carry
    return (s0, s1, s2, s3)


@numba.njit(cache=True, nogil=True, inline="always")
def _ld(x, i):
    """Element i of an (n, 4) uint64 array as a 4-tuple."""
    return (x[i, 0], x[i, 1], x[i, 2], x[i, 3])


@numba.njit(cache=True, nogil=True, inline="always")
def _st(x, i, t):
    x[i, 0] = t[0]
    x[i, 1] = t[1]
    x[i, 2] = t[2]
    x[i, 3] = t[3]


# --------------------------------------------------------------------------------------------
# numba array kernels on (n, 4) uint64 arrays (b may have one row to broadcast)
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _mul_kernel(a, b, out):
    step = 1 if b.shape[0] > 1 else 0
    for i in range(a.shape[0]):
        _st(out, i, _mont_mul64(_ld(a, i), _ld(b, i * step)))


@numba.njit(cache=True, nogil=True)
def _add_kernel(a, b, out):
    step = 1 if b.shape[0] > 1 else 0
    for i in range(a.shape[0]):
        _st(out, i, _add64(_ld(a, i), _ld(b, i * step)))


@numba.njit(cache=True, nogil=True)
def _sub_kernel(a, b, out):
    step = 1 if b.shape[0] > 1 else 0
    for i in range(a.shape[0]):
        _st(out, i, _sub64(_ld(a, i), _ld(b, i * step)))


@numba.njit(cache=True, nogil=True)
def _pow_kernel(a, exp_bits, one, out):
    """out[i] = a[i]^e (Montgomery), exp_bits = bits of e, most significant first."""
    one_t = _ld(one, 0)
    for i in range(a.shape[0]):
        base = _ld(a, i)
        acc = one_t
        for k in range(exp_bits.shape[0]):
            acc = _mont_mul64(acc, acc)
            if exp_bits[k]:
                acc = _mont_mul64(acc, base)
        _st(out, i, acc)


@numba.njit(cache=True, nogil=True)
def _first_zero(a):
    """Index of the first zero element of an (n, 4) uint64 array, or -1."""
    for i in range(a.shape[0]):
        if (a[i, 0] | a[i, 1] | a[i, 2] | a[i, 3]) == ZERO:
            return i
    return -1


@numba.njit(cache=True, nogil=True)
def _prefix_products(a, prefix):
    """prefix[i] = a[0] * ... * a[i] (Montgomery)."""
    acc = _ld(a, 0)
    _st(prefix, 0, acc)
    for i in range(1, a.shape[0]):
        acc = _mont_mul64(acc, _ld(a, i))
        _st(prefix, i, acc)


@numba.njit(cache=True, nogil=True)
def _unwind_inverses(a, prefix, inv_total, out):
    """Given prefix products and 1/prod(a), write out[i] = 1/a[i]."""
    inv = _ld(inv_total, 0)
    for i in range(a.shape[0] - 1, 0, -1):
        _st(out, i, _mont_mul64(inv, _ld(prefix, i - 1)))
        inv = _mont_mul64(inv, _ld(a, i))
    _st(out, 0, inv)


@numba.njit(cache=True, nogil=True)
def _first_noncanonical(limbs):
    """Index of the first (n, 4) uint64 canonical-limb row that is >= r, or -1."""
    for i in range(limbs.shape[0]):
        ge = True
        for k in range(3, -1, -1):
            if limbs[i, k] != _R_LIMBS64[k]:
                ge = limbs[i, k] > _R_LIMBS64[k]
                break
        if ge:
            return i
    return -1


# --------------------------------------------------------------------------------------------
# Python API
# --------------------------------------------------------------------------------------------


def _as_fr(a: np.ndarray, name: str = "a") -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint64 or a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(
            f"{name} must be a numpy uint64 array of shape (n, 4), got "
            f"{type(a).__name__} {getattr(a, 'dtype', None)} {getattr(a, 'shape', None)}"
        )
    return np.ascontiguousarray(a)


def _binary(kernel, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = _as_fr(a, "a")
    b = _as_fr(b, "b")
    if b.shape[0] not in (1, a.shape[0]):
        raise ValueError(f"shape mismatch: a has {a.shape[0]} elements, b has {b.shape[0]}")
    out = np.empty_like(a)
    if a.shape[0]:
        kernel(a, b, out)
    return out


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise a + b mod r (any consistent representation; b may be a single row)."""
    return _binary(_add_kernel, a, b)


def sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise a - b mod r (any consistent representation; b may be a single row)."""
    return _binary(_sub_kernel, a, b)


def neg(a: np.ndarray) -> np.ndarray:
    """Element-wise -a mod r."""
    a = _as_fr(a)
    return sub(np.zeros_like(a), a)


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise Montgomery product: a*b for Montgomery inputs (b may be a single row)."""
    return _binary(_mul_kernel, a, b)


def square(a: np.ndarray) -> np.ndarray:
    return mul(a, a)


def pow(a: np.ndarray, exponent: int) -> np.ndarray:  # noqa: A001 - field power, shadows builtin on purpose
    """Element-wise a^exponent (Montgomery in and out), exponent >= 0 a Python int."""
    a = _as_fr(a)
    if not isinstance(exponent, int) or exponent < 0:
        raise ValueError(f"exponent must be a non-negative int, got {exponent!r}")
    bits = np.array([int(c) for c in bin(exponent)[2:]], dtype=np.uint8) if exponent else np.zeros(0, np.uint8)
    out = np.empty_like(a)
    if a.shape[0]:
        _pow_kernel(a, bits, from_ints([1]), out)
    return out


def inverse(a: np.ndarray) -> np.ndarray:
    """Element-wise 1/a (Fermat); raises ZeroDivisionError naming the first zero element."""
    return batch_inverse(a)


def batch_inverse(a: np.ndarray) -> np.ndarray:
    """Element-wise 1/a with Montgomery's trick (one exponentiation in total).

    Raises ZeroDivisionError naming the index of the first zero element.
    """
    a = _as_fr(a)
    n = a.shape[0]
    out = np.empty_like(a)
    if n == 0:
        return out
    zero_at = _first_zero(a)
    if zero_at >= 0:
        raise ZeroDivisionError(f"cannot invert zero field element at index {zero_at}")
    prefix = np.empty_like(a)
    _prefix_products(a, prefix)
    inv_total = pow(prefix[n - 1 : n], R - 2)
    _unwind_inverses(a, prefix, inv_total, out)
    return out


# ---- conversions ---------------------------------------------------------------------------


def _scalar_rows(data: bytes | bytearray | memoryview | np.ndarray | Sequence[bytes], width: int) -> np.ndarray:
    """(n, width) uint8 array from concatenated bytes, a uint8 array, or a list of byte strings."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ValueError(f"scalar byte array must be uint8, got {data.dtype}")
        arr = data.reshape(-1, width) if data.ndim == 1 else data
        if arr.ndim != 2 or arr.shape[1] != width:
            raise ValueError(f"scalar byte array must have shape (n, {width}), got {data.shape}")
        return arr
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if len(raw) % width:
            raise ValueError(f"byte string length {len(raw)} is not a multiple of {width}")
        return np.frombuffer(raw, dtype=np.uint8).reshape(-1, width)
    items = list(data)
    for i, item in enumerate(items):
        if not isinstance(item, (bytes, bytearray, memoryview)) or len(item) != width:
            raise ValueError(
                f"item {i} must be {width} bytes, got {type(item).__name__} of length "
                f"{len(item) if hasattr(item, '__len__') else '?'}"
            )
    return np.frombuffer(b"".join(items), dtype=np.uint8).reshape(len(items), width)


def bytes_to_limbs(data) -> np.ndarray:
    """Canonical (non-Montgomery) (n, 4) uint64 limbs from 32-byte big-endian scalars.

    ``data``: concatenated bytes (multiple of 32), an (n, 32) uint8 array, or a list of 32-byte
    strings. Raises InvalidScalarError for any value >= r, naming its index and hex.
    """
    rows = _scalar_rows(data, SCALAR_FULL_BYTES)
    limbs = np.ascontiguousarray(rows[:, ::-1]).view(np.uint64).reshape(rows.shape[0], 4)
    bad = _first_noncanonical(limbs) if rows.shape[0] else -1
    if bad >= 0:
        raise InvalidScalarError(f"Invalid scalar at index {bad}: 0x{bytes(rows[bad]).hex()} is not < r")
    return limbs


def limbs_to_bytes(limbs: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 big-endian scalars from canonical (n, 4) uint64 limbs."""
    limbs = _as_fr(limbs, "limbs")
    return np.ascontiguousarray(limbs.view(np.uint8).reshape(limbs.shape[0], 32)[:, ::-1])


def to_montgomery(limbs: np.ndarray) -> np.ndarray:
    """Canonical limbs -> Montgomery form."""
    return mul(limbs, _int_limbs([MONT_R2]))


def from_montgomery(mont: np.ndarray) -> np.ndarray:
    """Montgomery form -> canonical limbs."""
    return mul(mont, _int_limbs([1]))


def _int_limbs(values: Sequence[int]) -> np.ndarray:
    """Canonical limbs of Python ints (each reduced mod r)."""
    raw = b"".join((int(v) % R).to_bytes(32, "little") for v in values)
    return np.frombuffer(raw, dtype=np.uint64).reshape(len(values), 4).copy()


def from_ints(values: Sequence[int]) -> np.ndarray:
    """Montgomery Fr array from Python ints (reduced mod r)."""
    return _int_limbs([v * MONT_R for v in values])


def to_ints(mont: np.ndarray) -> list[int]:
    """Python ints from a Montgomery Fr array."""
    canon = from_montgomery(mont)
    return [int.from_bytes(canon[i].tobytes(), "little") for i in range(canon.shape[0])]


def limbs_to_ints(limbs: np.ndarray) -> list[int]:
    """Python ints from canonical limbs."""
    limbs = _as_fr(limbs, "limbs")
    return [int.from_bytes(limbs[i].tobytes(), "little") for i in range(limbs.shape[0])]


def ints_to_limbs(values: Sequence[int]) -> np.ndarray:
    """Canonical limbs from Python ints (reduced mod r)."""
    return _int_limbs(values)


def from_bytes(data) -> np.ndarray:
    """Montgomery Fr array from 32-byte big-endian canonical scalars (see bytes_to_limbs)."""
    return to_montgomery(bytes_to_limbs(data))


def to_bytes(mont: np.ndarray) -> list[bytes]:
    """32-byte big-endian scalars from a Montgomery Fr array."""
    rows = limbs_to_bytes(from_montgomery(mont))
    return [rows[i].tobytes() for i in range(rows.shape[0])]


def scalar_from_bytes(value: bytes) -> int:
    """One 32-byte big-endian canonical scalar as an int; InvalidScalarError if >= r."""
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != SCALAR_FULL_BYTES:
        raise InvalidScalarError(f"Invalid scalar: expected 32 bytes, got {value!r:.80}")
    x = int.from_bytes(value, "big")
    if x >= R:
        raise InvalidScalarError(f"Invalid scalar: 0x{bytes(value).hex()} is not < r")
    return x


def scalar_to_bytes(value: int) -> bytes:
    """32-byte big-endian form of an int in [0, r)."""
    if not 0 <= value < R:
        raise InvalidScalarError(f"Invalid scalar: {value} is not in [0, r)")
    return value.to_bytes(SCALAR_FULL_BYTES, "big")


def safe_bytes_to_scalars(data) -> np.ndarray:
    """(n, 32) uint8 big-endian scalars ``0x00 ‖ chunk`` from 31-byte safe chunks.

    ``data``: concatenated bytes (multiple of 31), an (n, 31) uint8 array or a list of 31-byte
    strings. Every result is canonical by construction.
    """
    rows = _scalar_rows(data, SCALAR_SAFE_BYTES)
    out = np.zeros((rows.shape[0], SCALAR_FULL_BYTES), dtype=np.uint8)
    out[:, 1:] = rows
    return out


def scalars_to_safe_bytes(data) -> np.ndarray:
    """(n, 31) uint8 safe chunks from 32-byte scalars whose first byte is 0x00.

    Raises InvalidScalarError naming the first scalar whose first byte is not zero.
    """
    rows = _scalar_rows(data, SCALAR_FULL_BYTES)
    nonzero = np.flatnonzero(rows[:, 0])
    if nonzero.size:
        i = int(nonzero[0])
        raise InvalidScalarError(
            f"Invalid scalar at index {i}: 0x{bytes(rows[i]).hex()} does not fit in {SCALAR_SAFE_BYTES} safe bytes"
        )
    return np.ascontiguousarray(rows[:, 1:])


def safe_bytes_to_scalar(chunk: bytes) -> bytes:
    """One 31-byte chunk -> 32-byte scalar ``0x00 ‖ chunk``."""
    if not isinstance(chunk, (bytes, bytearray, memoryview)) or len(chunk) != SCALAR_SAFE_BYTES:
        raise ValueError(f"safe scalar chunk must be {SCALAR_SAFE_BYTES} bytes, got {chunk!r:.80}")
    return b"\x00" + bytes(chunk)


def scalar_to_safe_bytes(scalar: bytes) -> bytes:
    """32-byte scalar -> its 31 safe bytes; InvalidScalarError unless byte 0 is 0x00."""
    scalar_from_bytes(scalar)
    if scalar[0] != 0:
        raise InvalidScalarError(f"Invalid scalar: 0x{bytes(scalar).hex()} does not fit in {SCALAR_SAFE_BYTES} safe bytes")
    return bytes(scalar[1:])
