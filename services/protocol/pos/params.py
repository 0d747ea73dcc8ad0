"""Proof-of-space parameters (spec 02 section 1) and the K-dependent sizes derived from them.

Kept apart from the kernels so the CPU and GPU backends, the verifier and the tests agree on one
definition of every size.
"""

from __future__ import annotations

PARAM_EXT = 6
PARAM_M = 1 << PARAM_EXT  # 64 targets per left entry
PARAM_B = 119
PARAM_C = 127
PARAM_BC = PARAM_B * PARAM_C  # 15_113
MAX_BUCKET_SIZE = 512  # = REDUCED_BUCKET_SIZE = REDUCED_MATCHES_COUNT
PROOF_X_COUNT = 64

# y must fit a 32-bit word (K + 6 <= 32) and every Fn input one 64-byte BLAKE3 block held in a
# 256-bit buffer (K + 6 + 8K <= 256); below 10 the tables are too small to mean anything.
MIN_K = 10
MAX_K = 26


def validate_k(k: int) -> int:
    """Return ``k`` if it is a supported table size, else raise ValueError naming it."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"PoS K must be an int, got {k!r}")
    if not MIN_K <= k <= MAX_K:
        raise ValueError(f"PoS K={k} unsupported: must be in {MIN_K}..{MAX_K}")
    return k


def check_seed(seed: bytes) -> bytes:
    """Return the 32-byte PoS ``seed`` as bytes, else raise ValueError."""
    if not isinstance(seed, (bytes, bytearray, memoryview)):
        raise ValueError(f"PoS seed must be bytes, got {type(seed).__name__}")
    if len(seed) != 32:
        raise ValueError(f"PoS seed must be 32 bytes, got {len(seed)}")
    return bytes(seed)


def y_bits(k: int) -> int:
    return k + PARAM_EXT


def metadata_size_bits(k: int, table: int) -> int:
    """Bits of metadata carried by entries of ``table`` (1..7)."""
    multiplier = {1: 1, 2: 2, 3: 4, 4: 4, 5: 3, 6: 2, 7: 0}
    if table not in multiplier:
        raise ValueError(f"PoS table number must be 1..7, got {table!r}")
    return k * multiplier[table]


def num_buckets(k: int) -> int:
    """ceil(2^(K+6) / BC): bucket count of every table."""
    return ((1 << y_bits(k)) + PARAM_BC - 1) // PARAM_BC


def proof_size(k: int) -> int:
    """Bytes of a packed proof: 64 K-bit x values."""
    return PROOF_X_COUNT * k // 8

