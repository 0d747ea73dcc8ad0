"""Fr arithmetic and scalar encodings (spec 01 §2) against Python big-int arithmetic."""

from __future__ import annotations

import random

import numpy as np
import pytest

from services.protocol import field
from services.protocol.constants import BLS12_381_R as R

EDGE = [0, 1, 2, R - 1, R - 2, (1 << 64) - 1, 1 << 64, (1 << 128) + 12345, R >> 1, (R >> 1) + 1, 0xFFFFFFFF]


@pytest.fixture(scope="module")
def operands() -> tuple[list[int], list[int]]:
    rng = random.Random(1)
    a = EDGE + [rng.randrange(R) for _ in range(500)]
    b = list(reversed(EDGE)) + [rng.randrange(R) for _ in range(500)]
    return a, b


def test_add_sub_mul_neg_match_python_ints(operands):
    a, b = operands
    fa, fb = field.from_ints(a), field.from_ints(b)
    assert field.to_ints(field.add(fa, fb)) == [(x + y) % R for x, y in zip(a, b)]
    assert field.to_ints(field.sub(fa, fb)) == [(x - y) % R for x, y in zip(a, b)]
    assert field.to_ints(field.mul(fa, fb)) == [x * y % R for x, y in zip(a, b)]
    assert field.to_ints(field.square(fa)) == [x * x % R for x in a]
    assert field.to_ints(field.neg(fa)) == [-x % R for x in a]


def test_broadcast_single_row(operands):
    a, _ = operands
    k = 0x1234_5678_9ABC_DEF0_1122_3344
    assert field.to_ints(field.mul(field.from_ints(a), field.from_ints([k]))) == [x * k % R for x in a]
    assert field.to_ints(field.add(field.from_ints(a), field.from_ints([k]))) == [(x + k) % R for x in a]


def test_pow_and_inverse(operands):
    a, _ = operands
    fa = field.from_ints(a)
    for e in (0, 1, 2, 3, 65537, R - 2, (1 << 200) + 7):
        assert field.to_ints(field.pow(fa[:40], e)) == [pow(x, e, R) for x in a[:40]]
    nonzero = [x for x in a if x]
    assert field.to_ints(field.batch_inverse(field.from_ints(nonzero))) == [pow(x, -1, R) for x in nonzero]
    assert field.to_ints(field.inverse(field.from_ints([5]))) == [pow(5, -1, R)]


def test_inverse_of_zero_names_index():
    with pytest.raises(ZeroDivisionError, match="index 2"):
        field.batch_inverse(field.from_ints([3, 4, 0, 5]))


def test_montgomery_round_trip(operands):
    a, _ = operands
    limbs = field.ints_to_limbs(a)
    assert field.limbs_to_ints(field.from_montgomery(field.to_montgomery(limbs))) == a
    assert field.limbs_to_ints(limbs) == a


def test_bytes_round_trip_big_endian(operands):
    a, _ = operands
    raw = [x.to_bytes(32, "big") for x in a]
    limbs = field.bytes_to_limbs(raw)
    assert field.limbs_to_ints(limbs) == a
    assert [row.tobytes() for row in field.limbs_to_bytes(limbs)] == raw
    assert field.to_bytes(field.from_bytes(raw)) == raw
    # same result from concatenated bytes and from an (n, 32) array
    assert np.array_equal(field.bytes_to_limbs(b"".join(raw)), limbs)
    assert np.array_equal(field.bytes_to_limbs(np.frombuffer(b"".join(raw), np.uint8).reshape(-1, 32)), limbs)


@pytest.mark.parametrize("bad", [R, R + 1, (1 << 256) - 1, 1 << 255])
def test_non_canonical_scalar_rejected(bad):
    values = [(1).to_bytes(32, "big"), bad.to_bytes(32, "big")]
    with pytest.raises(field.InvalidScalarError, match="Invalid scalar at index 1"):
        field.bytes_to_limbs(values)
    with pytest.raises(ValueError, match="Invalid scalar"):
        field.scalar_from_bytes(bad.to_bytes(32, "big"))


def test_largest_canonical_scalar_accepted():
    assert field.limbs_to_ints(field.bytes_to_limbs([(R - 1).to_bytes(32, "big")])) == [R - 1]
    assert field.scalar_from_bytes((R - 1).to_bytes(32, "big")) == R - 1


def test_wrong_lengths_rejected():
    with pytest.raises(ValueError, match="item 1 must be 32 bytes"):
        field.bytes_to_limbs([bytes(32), bytes(31)])
    with pytest.raises(ValueError, match="multiple of 32"):
        field.bytes_to_limbs(bytes(33))
    with pytest.raises(ValueError, match="Invalid scalar"):
        field.scalar_from_bytes(bytes(31))
    with pytest.raises(ValueError, match="shape"):
        field.mul(np.zeros((3, 4), np.uint64), np.zeros((2, 4), np.uint64))
    with pytest.raises(ValueError, match="uint64"):
        field.add(np.zeros((3, 4), np.int64), np.zeros((3, 4), np.uint64))


def test_safe_bytes_conversions():
    rng = random.Random(2)
    chunks = [bytes(rng.randrange(256) for _ in range(31)) for _ in range(20)] + [b"\xff" * 31]
    scalars = field.safe_bytes_to_scalars(chunks)
    assert [row.tobytes() for row in scalars] == [b"\x00" + c for c in chunks]
    field.bytes_to_limbs(scalars)  # every safe scalar is canonical
    assert [row.tobytes() for row in field.scalars_to_safe_bytes(scalars)] == chunks
    assert field.safe_bytes_to_scalar(chunks[0]) == b"\x00" + chunks[0]
    assert field.scalar_to_safe_bytes(b"\x00" + chunks[0]) == chunks[0]


def test_unsafe_scalar_rejected_as_safe_bytes():
    big = (1 << 250).to_bytes(32, "big")
    with pytest.raises(field.InvalidScalarError, match="index 1"):
        field.scalars_to_safe_bytes([bytes(32), big])
    with pytest.raises(field.InvalidScalarError):
        field.scalar_to_safe_bytes(big)
    with pytest.raises(ValueError, match="31 bytes"):
        field.safe_bytes_to_scalar(bytes(32))


def test_empty_arrays():
    empty = np.zeros((0, 4), np.uint64)
    assert field.mul(empty, empty).shape == (0, 4)
    assert field.batch_inverse(empty).shape == (0, 4)
    assert field.bytes_to_limbs([]).shape == (0, 4)
