"""ChaCha8 keystream (key = PoS seed, zero nonce, counter from 0) and F1 of table 1 (spec 02 §3).

Numba kernels: the whole 2^K-entry table needs K * 2^K / 8 keystream bytes (2.5 MiB at K=20),
a single x (the verifier) only the one or two 64-byte blocks its K bits live in.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .params import PARAM_EXT

_SIGMA = np.array([0x61707865, 0x3320646E, 0x79622D32, 0x6B206574], dtype=np.uint32)


@njit(cache=True, nogil=True, inline="always")
def _quarter(a, b, c, d):
    a = np.uint32(a + b)
    d = np.uint32(d ^ a)
    d = np.uint32((d << np.uint32(16)) | (d >> np.uint32(16)))
    c = np.uint32(c + d)
    b = np.uint32(b ^ c)
    b = np.uint32((b << np.uint32(12)) | (b >> np.uint32(20)))
    a = np.uint32(a + b)
    d = np.uint32(d ^ a)
    d = np.uint32((d << np.uint32(8)) | (d >> np.uint32(24)))
    c = np.uint32(c + d)
    b = np.uint32(b ^ c)
    b = np.uint32((b << np.uint32(7)) | (b >> np.uint32(25)))
    return a, b, c, d


@njit(cache=True, nogil=True)
def _key_words(seed):
    key = np.empty(8, dtype=np.uint32)
    for i in range(8):
        key[i] = np.uint32(
            np.uint32(seed[4 * i])
            | (np.uint32(seed[4 * i + 1]) << np.uint32(8))
            | (np.uint32(seed[4 * i + 2]) << np.uint32(16))
            | (np.uint32(seed[4 * i + 3]) << np.uint32(24))
        )
    return key


@njit(cache=True, nogil=True, inline="always")
def _block_into(key, counter, out_words, out_offset):
    """Write the 16 little-endian words of keystream block ``counter`` at out_words[out_offset].

    State words live in local variables (registers); 8 rounds = 4 double rounds.
    """
    s0 = _SIGMA[0]
    s1 = _SIGMA[1]
    s2 = _SIGMA[2]
    s3 = _SIGMA[3]
    s4 = key[0]
    s5 = key[1]
    s6 = key[2]
    s7 = key[3]
    s8 = key[4]
    s9 = key[5]
    s10 = key[6]
    s11 = key[7]
    s12 = np.uint32(counter)
    x0, x1, x2, x3, x4, x5, x6, x7 = s0, s1, s2, s3, s4, s5, s6, s7
    x8, x9, x10, x11, x12 = s8, s9, s10, s11, s12
    x13 = np.uint32(0)
    x14 = np.uint32(0)
    x15 = np.uint32(0)
    for _ in range(4):
        x0, x4, x8, x12 = _quarter(x0, x4, x8, x12)
        x1, x5, x9, x13 = _quarter(x1, x5, x9, x13)
        x2, x6, x10, x14 = _quarter(x2, x6, x10, x14)
        x3, x7, x11, x15 = _quarter(x3, x7, x11, x15)
        x0, x5, x10, x15 = _quarter(x0, x5, x10, x15)
        x1, x6, x11, x12 = _quarter(x1, x6, x11, x12)
        x2, x7, x8, x13 = _quarter(x2, x7, x8, x13)
        x3, x4, x9, x14 = _quarter(x3, x4, x9, x14)
    o = out_offset
    out_words[o + 0] = np.uint32(x0 + s0)
    out_words[o + 1] = np.uint32(x1 + s1)
    out_words[o + 2] = np.uint32(x2 + s2)
    out_words[o + 3] = np.uint32(x3 + s3)
    out_words[o + 4] = np.uint32(x4 + s4)
    out_words[o + 5] = np.uint32(x5 + s5)
    out_words[o + 6] = np.uint32(x6 + s6)
    out_words[o + 7] = np.uint32(x7 + s7)
    out_words[o + 8] = np.uint32(x8 + s8)
    out_words[o + 9] = np.uint32(x9 + s9)
    out_words[o + 10] = np.uint32(x10 + s10)
    out_words[o + 11] = np.uint32(x11 + s11)
    out_words[o + 12] = np.uint32(x12 + s12)
    out_words[o + 13] = x13
    out_words[o + 14] = x14
    out_words[o + 15] = x15


def keystream_blocks(k: int) -> int:
    """ChaCha8 blocks F1 of a whole table reads (+8 bytes: every x reads an 8-byte window)."""
    stream_bytes = (k * (1 << k) + 7) // 8 + 8
    return (stream_bytes + 63) // 64


@njit(cache=True, nogil=True)
def keystream_into(seed, n_blocks, out):
    """The first ``n_blocks`` ChaCha8 blocks as uint32 words into out[:16 * n_blocks]
    (view as '<u1' for the byte stream)."""
    key = _key_words(seed)
    for block in range(n_blocks):
        _block_into(key, block, out, block * 16)


def keystream_words(seed: np.ndarray, n_blocks: int) -> np.ndarray:
    """``n_blocks`` ChaCha8 blocks as a new uint32 array (the dev history's block filler)."""
    out = np.empty(n_blocks * 16, dtype=np.uint32)
    keystream_into(seed, n_blocks, out)
    return out


@njit(cache=True, nogil=True, inline="always")
def _read_be64(stream, byte_offset):
    v = np.uint64(0)
    for i in range(8):
        v = (v << np.uint64(8)) | np.uint64(stream[byte_offset + i])
    return v


@njit(cache=True, nogil=True)
def f1_into(seed, k, stream_words, out_y):
    """y = f1(x) for every x in 0..2^K into out_y[:2^K] (indexed by x); ``stream_words``
    (C-contiguous uint32, at least 16 * keystream_blocks(k)) is scratch for the keystream."""
    n = 1 << k
    n_blocks = (((k * n + 7) // 8 + 8) + 63) // 64  # keystream_blocks(k)
    keystream_into(seed, n_blocks, stream_words)
    stream = stream_words.view(np.uint8)
    mask = np.uint64((1 << k) - 1)
    low_shift = np.uint64(k - PARAM_EXT)
    for x in range(n):
        bit = k * x
        window = _read_be64(stream, bit >> 3)
        partial = (window >> np.uint64(64 - k - (bit & 7))) & mask
        out_y[x] = np.uint32((partial << np.uint64(PARAM_EXT)) | (np.uint64(x) >> low_shift))


def f1_all(seed: np.ndarray, k: int) -> np.ndarray:
    """y = f1(x) for every x in 0..2^K (new uint32 array indexed by x; tests, tools)."""
    ys = np.empty(1 << k, dtype=np.uint32)
    f1_into(seed, k, np.empty(16 * keystream_blocks(k), dtype=np.uint32), ys)
    return ys


@njit(cache=True, nogil=True)
def f1_some(seed, k, xs):
    """f1 of selected x values, generating only the keystream blocks each x needs."""
    key = _key_words(seed)
    blocks = np.zeros(32, dtype=np.uint32)  # two consecutive blocks = 128 bytes
    window_bytes = blocks.view(np.uint8)
    ys = np.empty(xs.shape[0], dtype=np.uint32)
    mask = np.uint64((1 << k) - 1)
    low_shift = np.uint64(k - PARAM_EXT)
    for i in range(xs.shape[0]):
        x = np.int64(xs[i])
        bit = k * x
        first_block = bit >> 9
        _block_into(key, first_block, blocks, 0)
        if (bit + k - 1) >> 9 != first_block:  # the K bits run into the next block
            _block_into(key, first_block + 1, blocks, 16)
        # bytes of the window past the K bits may be stale; they are shifted out below
        window = _read_be64(window_bytes, (bit >> 3) - first_block * 64)
        partial = (window >> np.uint64(64 - k - (bit & 7))) & mask
        ys[i] = np.uint32((partial << np.uint64(PARAM_EXT)) | (np.uint64(x) >> low_shift))
    return ys
