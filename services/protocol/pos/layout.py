"""Memory layout of built tables, shared by the CPU and GPU backends and the proof search.

Why a layout of its own: a plotted record needs only what proof search reads, and it needs it
for every one of the sector's 1,000 seeds, so every byte per entry counts. After a build,
``TableArrays`` keeps, per table set:

* ``x``: the x value of each table-1 entry, in (y, creation) order (uint32);
* ``y7``: the sorted ys of table 7 (uint32), where a challenge's proofs are looked up;
* ``children[t - 2]`` for tables t = 2..7: each entry's two parents in table t-1 packed in one
  word, ``left | (right - left) << pair_bits``. A match pairs an entry of parent bucket b with
  one of bucket b+1, and a kept bucket holds at most 512 entries, so ``right - left`` < 1024
  (``DELTA_BITS`` = 10) and ``left`` < ``n_buckets * 512``: at K=20 that is 22 + 10 bits, one
  uint32 per entry instead of two (uint64 words above K=20).
* the ys of tables 1..6 only when asked for (``keep_table_ys``: conformance tests, tools).

At K=20 that is about 32 MiB per table set (7 tables of ~2^20 entries, 4 bytes each).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import MAX_BUCKET_SIZE, num_buckets

DELTA_BITS = 10  # right - left < 2 * MAX_BUCKET_SIZE
assert (2 * MAX_BUCKET_SIZE - 1) < (1 << DELTA_BITS)


def pair_bits(n_buckets: int) -> int:
    """Bits of the ``left`` field: every parent index is below ``n_buckets * 512``."""
    return max(1, (n_buckets * MAX_BUCKET_SIZE - 1).bit_length())


def pairs_dtype(bits: int) -> np.dtype:
    """uint32 when ``left`` and the delta fit one 32-bit word (K <= 20), else uint64."""
    return np.dtype(np.uint32) if bits + DELTA_BITS <= 32 else np.dtype(np.uint64)


def meta_hi_dtype(k: int) -> np.dtype:
    """Metadata is at most 4K bits, held as (hi, lo): lo 64 bits, hi the 4K - 64 above them."""
    hi_bits = max(0, 4 * k - 64)
    if hi_bits <= 16:
        return np.dtype(np.uint16)
    if hi_bits <= 32:
        return np.dtype(np.uint32)
    return np.dtype(np.uint64)


def unpack_pairs(pairs: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) int64 parent indices of packed pairs (tests, tools)."""
    packed = np.asarray(pairs).astype(np.uint64)
    left = packed & np.uint64((1 << bits) - 1)
    right = left + (packed >> np.uint64(bits))
    return left.astype(np.int64), right.astype(np.int64)


def pack_interleaved(xp, interleaved, bits: int):  # noqa: ANN001, ANN201 - numpy or cupy
    """Packed pairs from ``[left0, right0, left1, right1, ...]`` (uint32), with array module
    ``xp`` (numpy, or cupy for the GPU backend's device arrays)."""
    dtype = pairs_dtype(bits)
    pairs = interleaved.reshape(-1, 2)
    left = pairs[:, 0].astype(dtype)
    delta = (pairs[:, 1] - pairs[:, 0]).astype(dtype)
    return xp.bitwise_or(left, xp.left_shift(delta, dtype.type(bits)))


@dataclass(frozen=True, eq=False)
class TableArrays:
    """Tables 1..7 of one seed as proof search needs them (see the module docstring).

    ``sizes[t - 1]`` is the number of kept entries of table t; ``ys`` holds all seven tables'
    sorted ys when the build kept them, else None.
    """

    k: int
    sizes: tuple[int, ...]
    x: np.ndarray
    y7: np.ndarray
    children: tuple[np.ndarray, ...]
    pair_bits: int
    ys: tuple[np.ndarray, ...] | None = None

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        total = self.x.nbytes + self.y7.nbytes + sum(c.nbytes for c in self.children)
        if self.ys is not None:
            total += sum(y.nbytes for y in self.ys[:6])
        return total


def table_pair_bits(k: int) -> int:
    return pair_bits(num_buckets(k))


__all__ = ["DELTA_BITS", "TableArrays", "meta_hi_dtype", "pack_interleaved", "pair_bits", "pairs_dtype",
           "table_pair_bits", "unpack_pairs"]
