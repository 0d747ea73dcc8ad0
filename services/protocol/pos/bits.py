"""Small numba helpers for MSB-first bit strings and 128-bit values held as (hi, lo) uint64.

Fn metadata reaches 4K bits (80 at K=20), wider than a machine word, so it travels as two words.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U64_ZERO = np.uint64(0)


@njit(cache=True, nogil=True, inline="always")
def bswap32(x):
    x = np.uint32(x)
    return np.uint32(
        ((x & np.uint32(0xFF)) << np.uint32(24))
        | ((x & np.uint32(0xFF00)) << np.uint32(8))
        | ((x >> np.uint32(8)) & np.uint32(0xFF00))
        | (x >> np.uint32(24))
    )


@njit(cache=True, nogil=True, inline="always")
def shl64(x, s):
    """x << s for 0 <= s (0 when s >= 64, unlike the hardware shift)."""
    if s >= 64:
        return _U64_ZERO
    return np.uint64(x) << np.uint64(s)


@njit(cache=True, nogil=True, inline="always")
def shr64(x, s):
    if s >= 64:
        return _U64_ZERO
    return np.uint64(x) >> np.uint64(s)


@njit(cache=True, nogil=True, inline="always")
def or_field64(words, value, nbits, offset):
    """OR an nbits-wide (<= 64) value into the big-endian uint64 bit buffer ``words`` at bit
    ``offset`` (MSB-first). ``value`` must not have bits above nbits."""
    if nbits == 0:
        return
    w = offset >> 6
    end = (offset & 63) + nbits
    if end <= 64:
        words[w] |= shl64(value, 64 - end)
    else:
        words[w] |= shr64(value, end - 64)
        words[w + 1] |= shl64(value, 128 - end)


@njit(cache=True, nogil=True, inline="always")
def or_field128(words, hi, lo, nbits, offset):
    """OR an nbits-wide (<= 128) value (hi, lo) into ``words`` at bit ``offset``."""
    if nbits > 64:
        or_field64(words, hi, nbits - 64, offset)
        or_field64(words, lo, 64, offset + nbits - 64)
    else:
        or_field64(words, lo, nbits, offset)


@njit(cache=True, nogil=True, inline="always")
def get_field64(words, offset, nbits):
    """Read nbits (1..64) at bit ``offset`` of the big-endian uint64 buffer ``words``."""
    w = offset >> 6
    s = offset & 63
    top = shl64(words[w], s)
    if s > 0:
        top |= shr64(words[w + 1], 64 - s)
    return shr64(top, 64 - nbits)


@njit(cache=True, nogil=True, inline="always")
def get_field128(words, offset, nbits):
    """Read nbits (1..128) at bit ``offset``; returns (hi, lo)."""
    if nbits > 64:
        return get_field64(words, offset, nbits - 64), get_field64(words, offset + nbits - 64, 64)
    return _U64_ZERO, get_field64(words, offset, nbits)


@njit(cache=True, nogil=True, inline="always")
def concat128(left_hi, left_lo, right_hi, right_lo, right_bits):
    """(left << right_bits) | right for 128-bit values; right_bits in 1..127."""
    if right_bits < 64:
        hi = shl64(left_hi, right_bits) | shr64(left_lo, 64 - right_bits)
        lo = shl64(left_lo, right_bits)
    else:
        hi = shl64(left_lo, right_bits - 64)
        lo = _U64_ZERO
    return hi | right_hi, lo | right_lo
