"""Fn for tables 2..7 (spec 02 §5): y_out and metadata from BLAKE3(y_L ‖ meta_L ‖ meta_R).

``fn_into`` hashes a whole table's matches 16 at a time so the unrolled compression vectorises
across messages, writing into the caller's arrays; ``fn_one`` is the same function for one match
(verifier, vectors). Metadata is (hi, lo) words (lo uint64, hi as narrow as K allows); y is uint32.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .bits import bswap32, concat128, get_field128, or_field128
from .blake3_unrolled import compress_words, compress_words_call

LANES = 16


@njit(cache=True, nogil=True, inline="always")
def _meta_bits(k, table):
    if table == 1:
        return k
    if table == 2 or table == 6:
        return 2 * k
    if table == 3 or table == 4:
        return 4 * k
    if table == 5:
        return 3 * k
    return 0


@njit(cache=True, nogil=True, inline="always")
def _write_message(words, lane, ys, pb, y_left, l_hi, l_lo, r_hi, r_lo, bitbuf):
    """Pack y_L ‖ meta_L ‖ meta_R MSB-first and store it as 16 LE message words of ``lane``."""
    bitbuf[0] = 0
    bitbuf[1] = 0
    bitbuf[2] = 0
    bitbuf[3] = 0
    bitbuf[4] = 0
    or_field128(bitbuf, np.uint64(0), np.uint64(y_left), ys, 0)
    or_field128(bitbuf, l_hi, l_lo, pb, ys)
    or_field128(bitbuf, r_hi, r_lo, pb, ys + pb)
    for i in range(4):
        w = bitbuf[i]
        words[(2 * i) * LANES + lane] = bswap32(np.uint32(w >> np.uint64(32)))
        words[(2 * i + 1) * LANES + lane] = bswap32(np.uint32(w & np.uint64(0xFFFFFFFF)))
    for i in range(8, 16):
        words[i * LANES + lane] = np.uint32(0)


@njit(cache=True, nogil=True, inline="always")
def _read_output(hashes, lane, k, table, ys, pb, l_hi, l_lo, r_hi, r_lo, bitbuf):
    """y_out and meta_out from the digest words of ``lane`` (see spec 02 §5)."""
    w0 = (np.uint64(bswap32(hashes[lane])) << np.uint64(32)) | np.uint64(bswap32(hashes[LANES + lane]))
    y = np.uint32(w0 >> np.uint64(64 - ys))
    if table == 2 or table == 3:
        hi, lo = concat128(l_hi, l_lo, r_hi, r_lo, pb)
    elif table == 7:
        hi = np.uint64(0)
        lo = np.uint64(0)
    else:
        ob = _meta_bits(k, table)
        w1 = (np.uint64(bswap32(hashes[2 * LANES + lane])) << np.uint64(32)) | np.uint64(
            bswap32(hashes[3 * LANES + lane]))
        if ys + ob <= 128:  # K <= 24: the field lies in the first 128 digest bits
            top = (w0 << np.uint64(ys)) | (w1 >> np.uint64(64 - ys))
            rest = w1 << np.uint64(ys)
            if ob > 64:
                hi = top >> np.uint64(128 - ob)
                lo = (top << np.uint64(ob - 64)) | (rest >> np.uint64(128 - ob)) if ob < 128 else rest
            else:
                hi = np.uint64(0)
                lo = top >> np.uint64(64 - ob)
        else:
            bitbuf[0] = w0
            bitbuf[1] = w1
            for i in range(2, 4):
                bitbuf[i] = (np.uint64(bswap32(hashes[(2 * i) * LANES + lane])) << np.uint64(32)) | np.uint64(
                    bswap32(hashes[(2 * i + 1) * LANES + lane]))
            hi, lo = get_field128(bitbuf, ys, ob)
    return y, hi, lo


@njit(cache=True, nogil=True, inline="always")
def _compress_lanes(words, block_len, hashes):
    for l in range(LANES):
        h = compress_words(
            words[0 * LANES + l], words[1 * LANES + l], words[2 * LANES + l], words[3 * LANES + l],
            words[4 * LANES + l], words[5 * LANES + l], words[6 * LANES + l], words[7 * LANES + l],
            words[8 * LANES + l], words[9 * LANES + l], words[10 * LANES + l], words[11 * LANES + l],
            words[12 * LANES + l], words[13 * LANES + l], words[14 * LANES + l], words[15 * LANES + l],
            block_len,
        )
        hashes[0 * LANES + l] = h[0]
        hashes[1 * LANES + l] = h[1]
        hashes[2 * LANES + l] = h[2]
        hashes[3 * LANES + l] = h[3]
        hashes[4 * LANES + l] = h[4]
        hashes[5 * LANES + l] = h[5]
        hashes[6 * LANES + l] = h[6]
        hashes[7 * LANES + l] = h[7]


@njit(cache=True, nogil=True)
def fn_into(k, table, parent_y, parent_hi, parent_lo, pairs, n, bits, out_y, out_hi, out_lo):
    """Fn of table ``table`` for the first ``n`` packed matches of ``pairs`` (parent indices
    ``left | (right - left) << bits``, see layout.py), written to out_y[:n] and, below table 7,
    out_hi[:n] / out_lo[:n]. Metadata arrays hold (hi, lo) words; hi may be a narrower dtype."""
    ys = k + 6
    pb = _meta_bits(k, table - 1)
    block_len = (ys + 2 * pb + 7) // 8
    shift = np.uint64(bits)
    mask = (np.uint64(1) << shift) - np.uint64(1)
    words = np.zeros(16 * LANES, dtype=np.uint32)
    hashes = np.zeros(8 * LANES, dtype=np.uint32)
    bitbuf = np.zeros(5, dtype=np.uint64)
    lefts = np.zeros(LANES, dtype=np.int64)
    rights = np.zeros(LANES, dtype=np.int64)
    for start in range(0, n, LANES):
        count = min(LANES, n - start)
        for l in range(count):
            packed = np.uint64(pairs[start + l])
            a = np.int64(packed & mask)
            b = a + np.int64(packed >> shift)
            lefts[l] = a
            rights[l] = b
            _write_message(words, l, ys, pb, parent_y[a], np.uint64(parent_hi[a]), np.uint64(parent_lo[a]),
                           np.uint64(parent_hi[b]), np.uint64(parent_lo[b]), bitbuf)
        _compress_lanes(words, block_len, hashes)
        for l in range(count):
            a = lefts[l]
            b = rights[l]
            y, hi, lo = _read_output(hashes, l, k, table, ys, pb, np.uint64(parent_hi[a]), np.uint64(parent_lo[a]),
                                     np.uint64(parent_hi[b]), np.uint64(parent_lo[b]), bitbuf)
            out_y[start + l] = y
            if table < 7:
                out_hi[start + l] = hi
                out_lo[start + l] = lo


@njit(cache=True, nogil=True)
def fn_one(k, table, y_left, l_hi, l_lo, r_hi, r_lo, words, hashes, bitbuf):
    """Fn for one match; ``words``/``hashes``/``bitbuf`` are scratch arrays as in fn_into."""
    ys = k + 6
    pb = _meta_bits(k, table - 1)
    block_len = (ys + 2 * pb + 7) // 8
    _write_message(words, 0, ys, pb, y_left, l_hi, l_lo, r_hi, r_lo, bitbuf)
    h = compress_words_call(
        words[0 * LANES], words[1 * LANES], words[2 * LANES], words[3 * LANES],
        words[4 * LANES], words[5 * LANES], words[6 * LANES], words[7 * LANES],
        words[8 * LANES], words[9 * LANES], words[10 * LANES], words[11 * LANES],
        words[12 * LANES], words[13 * LANES], words[14 * LANES], words[15 * LANES],
        block_len,
    )
    for i in range(8):
        hashes[i * LANES] = h[i]
    return _read_output(hashes, 0, k, table, ys, pb, l_hi, l_lo, r_hi, r_lo, bitbuf)


def new_scratch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scratch arrays for fn_one."""
    return (np.zeros(16 * LANES, dtype=np.uint32), np.zeros(8 * LANES, dtype=np.uint32),
            np.zeros(5, dtype=np.uint64))


def split128(value: int) -> tuple[int, int]:
    return (value >> 64) & 0xFFFFFFFFFFFFFFFF, value & 0xFFFFFFFFFFFFFFFF


def compute_fn(k: int, table: int, y_left: int, meta_left: int, meta_right: int) -> tuple[int, int]:
    """Python-level Fn (tests, tools): returns (y_out, meta_out) as ints."""
    from .params import metadata_size_bits, validate_k, y_bits

    validate_k(k)
    if table not in range(2, 8):
        raise ValueError(f"Fn table must be 2..7, got {table!r}")
    pb = metadata_size_bits(k, table - 1)
    for name, value, bits in (("y_left", y_left, y_bits(k)), ("meta_left", meta_left, pb),
                              ("meta_right", meta_right, pb)):
        if not 0 <= value < (1 << bits):
            raise ValueError(f"{name}={value} does not fit {bits} bits (K={k}, table {table})")
    words, hashes, bitbuf = new_scratch()
    lh, ll = split128(meta_left)
    rh, rl = split128(meta_right)
    y, hi, lo = fn_one(k, table, y_left, np.uint64(lh), np.uint64(ll), np.uint64(rh), np.uint64(rl),
                       words, hashes, bitbuf)
    return int(y), (int(hi) << 64) | int(lo)
