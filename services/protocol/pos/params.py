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
NUM_TABLES = 7

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


def fn_input_bits(k: int, table: int) -> int:
    """Bits hashed by Fn of ``table`` (2..7): y_L ‖ meta_L ‖ meta_R."""
    return y_bits(k) + 2 * metadata_size_bits(k, table - 1)


def challenge_target(challenge_index: int, k: int) -> int:
    """Top K bits of u32_be(u32_le(challenge_index)) (spec 02 section 2)."""
    if isinstance(challenge_index, bool) or not isinstance(challenge_index, int):
        raise ValueError(f"challenge_index must be an int, got {challenge_index!r}")
    if not 0 <= challenge_index < (1 << 32):
        raise ValueError(f"challenge_index {challenge_index} is not a u32")
    swapped = int.from_bytes(challenge_index.to_bytes(4, "little"), "big")
    return swapped >> (32 - k)
POS_BACKEND_ENV = "AUTONOMYS_POS_BACKEND"
