"""Erasure coding (spec 01 §8): extension bit-exact with the C-KZG cross-check vectors, recovery."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from shared_paths import require_vectors

from services.protocol import field, ntt
from services.protocol.constants import BLS12_381_R as R
from services.protocol.erasure import ErasureCoding, ErasureError, _zero_poly
from services.protocol.parallel import Workers


@pytest.fixture(scope="module")
def vectors() -> list[dict]:
    entries = json.loads(require_vectors("kzg_ckzg_crosscheck.json").read_text())["erasure_coding"]
    assert entries, "no erasure vectors"
    return entries


def random_scalars(rng: random.Random, n: int) -> list[bytes]:
    return [rng.randrange(R).to_bytes(32, "big") for _ in range(n)]


def interleave(source: list[bytes], parity: list[bytes]) -> list[bytes]:
    full = [b""] * (2 * len(source))
    full[0::2] = source
    full[1::2] = parity
    return full


def test_extend_matches_vectors(vectors):
    for entry in vectors:
        source = [bytes.fromhex(h) for h in entry["source_natural_hex"]]
        assert len(source) == entry["source_count"]
        parity = ErasureCoding(entry["scale"]).extend(source)
        assert parity == [bytes.fromhex(h) for h in entry["extension_hex"]]


def test_scale_16_instance_gives_the_same_extension(vectors):
    entry = vectors[0]
    source = [bytes.fromhex(h) for h in entry["source_natural_hex"]]
    assert ErasureCoding(16).extend(source) == [bytes.fromhex(h) for h in entry["extension_hex"]]


def test_extend_definition_small():
    """parity[i] = p(w^(2i+1)) where p(w^(2i)) = source[i], computed with Python ints."""
    rng = random.Random(5)
    for n in (1, 2, 4, 8):
        values = [rng.randrange(R) for _ in range(n)]
        w = ntt.root_of_unity((2 * n).bit_length() - 1)
        # Lagrange interpolation through (w^(2i), values[i]) evaluated at w^(2i+1)
        xs = [pow(w, 2 * i, R) for i in range(n)]

        def p(x: int) -> int:
            total = 0
            for j, xj in enumerate(xs):
                num = den = 1
                for k, xk in enumerate(xs):
                    if k != j:
                        num = num * (x - xk) % R
                        den = den * (xj - xk) % R
                total += values[j] * num * pow(den, -1, R)
            return total % R

        expected = [p(pow(w, 2 * i + 1, R)).to_bytes(32, "big") for i in range(n)]
        assert ErasureCoding(4).extend([v.to_bytes(32, "big") for v in values]) == expected


def test_recover_vector_from_any_half(vectors):
    entry = vectors[1]
    source = [bytes.fromhex(h) for h in entry["source_natural_hex"]]
    full = interleave(source, [bytes.fromhex(h) for h in entry["extension_hex"]])
    ec = ErasureCoding(entry["scale"])
    rng = random.Random(11)
    patterns = {
        "parity only": set(range(0, len(full), 2)),
        "source only": set(range(1, len(full), 2)),
        "random half": set(rng.sample(range(len(full)), len(source))),
        "first half": set(range(len(source))),
    }
    for name, dropped in patterns.items():
        shards = [None if i in dropped else s for i, s in enumerate(full)]
        assert ec.recover(shards) == full, name
    assert ec.recover_source([None if i % 2 == 0 else s for i, s in enumerate(full)]) == source


@pytest.mark.parametrize("n", [1, 2, 4, 16, 128])
def test_round_trip_any_erasure_count(n):
    rng = random.Random(n)
    ec = ErasureCoding(16)
    source = random_scalars(rng, n)
    full = interleave(source, ec.extend(source))
    for dropped_count in sorted({0, 1, n // 2, max(n - 1, 0), n}):
        for _ in range(3):
            dropped = set(rng.sample(range(2 * n), dropped_count))
            shards = [None if i in dropped else s for i, s in enumerate(full)]
            assert ec.recover(shards) == full


def test_too_few_shards(vectors):
    ec = ErasureCoding(8)
    source = random_scalars(random.Random(1), 128)
    full = interleave(source, ec.extend(source))
    shards = [None if i < 129 else s for i, s in enumerate(full)]
    with pytest.raises(ErasureError, match="too few shards to recover: 127 present, need at least 128 of 256"):
        ec.recover(shards)


def test_inconsistent_shards_detected():
    ec = ErasureCoding(8)
    rng = random.Random(2)
    source = random_scalars(rng, 64)
    full = interleave(source, ec.extend(source))
    shards: list[bytes | None] = list(full)
    shards[3] = (int.from_bytes(shards[3], "big") ^ 1).to_bytes(32, "big")
    for i in (0, 10, 20):  # more than n present: the corruption is detectable
        shards[i] = None
    with pytest.raises(ErasureError, match="inconsistent"):
        ec.recover(shards)


def test_batch_arrays_match_list_api():
    rng = random.Random(3)
    ec = ErasureCoding(16)
    rows = [random_scalars(rng, 128) for _ in range(4)]
    batch = np.array([[np.frombuffer(s, np.uint8) for s in row] for row in rows])
    parity = ec.extend_array(batch)
    assert parity.shape == (4, 128, 32)
    for i, row in enumerate(rows):
        assert [p.tobytes() for p in parity[i]] == ec.extend(row)
    full = np.empty((4, 256, 32), np.uint8)
    full[:, 0::2] = batch
    full[:, 1::2] = parity
    present = np.ones(256, bool)
    present[rng.sample(range(256), 128)] = False
    garbage = full.copy()
    garbage[:, ~present] = 0xFF  # absent positions are ignored, even if not canonical
    assert np.array_equal(ec.recover_array(garbage, present), full)
    # limb variant: canonical in, canonical out
    limbs = field.bytes_to_limbs(full.reshape(-1, 32)).reshape(4, 256, 4)
    assert np.array_equal(ec.recover_limbs(limbs, present), limbs)
    assert np.array_equal(ec.extend_limbs(limbs[:, 0::2].copy()), limbs[:, 1::2])


def test_full_record_round_trip():
    """One record: 2^15 source chunks -> 2^16 values, recover from a random half."""
    rng = np.random.default_rng(4)
    ec = ErasureCoding(16)
    source = np.zeros((1 << 15, 32), np.uint8)
    source[:, 1:] = rng.integers(0, 256, size=(1 << 15, 31), dtype=np.uint8)
    parity = ec.extend_array(source)
    full = np.empty((1 << 16, 32), np.uint8)
    full[0::2] = source
    full[1::2] = parity
    present = np.zeros(1 << 16, bool)
    present[rng.choice(1 << 16, 1 << 15, replace=False)] = True
    assert np.array_equal(ec.recover_array(full, present), full)
    # the polynomial directly (what Kzg.poly of the source gives) and the source values only
    known = field.bytes_to_limbs(np.where(present[:, None], full, 0))
    source_limbs = field.bytes_to_limbs(source)
    assert np.array_equal(ec.recover_poly_limbs(known, present), ntt.intt(source_limbs))
    assert np.array_equal(ec.recover_source_limbs(known, present), source_limbs)


def test_invalid_inputs():
    ec = ErasureCoding(4)
    with pytest.raises(field.InvalidScalarError, match="Invalid scalar at index 1"):
        ec.extend([bytes(32), R.to_bytes(32, "big")])
    with pytest.raises(ErasureError, match="power of two"):
        ec.extend([bytes(32)] * 3)
    with pytest.raises(ErasureError, match="2\\*16 <= 16"):
        ec.extend([bytes(32)] * 16)
    with pytest.raises(ErasureError, match="shard count 6"):
        ec.recover([bytes(32)] * 6)
    with pytest.raises(ErasureError, match="shard 1 must be 32 bytes"):
        ec.recover([bytes(32), b"x"])
    with pytest.raises(ErasureError, match="scale"):
        ErasureCoding(17)
    with pytest.raises(ErasureError, match="scale"):
        ErasureCoding(0)


def python_zero_poly(roots: list[int]) -> list[int]:
    coefficients = [1]
    for root in roots:
        shifted = [0] + coefficients
        coefficients = [(shifted[i] - root * (coefficients[i] if i < len(coefficients) else 0)) % R for i in range(len(shifted))]
    return coefficients


@pytest.mark.parametrize("m", [1, 2, 8, 64])
def test_zero_poly_matches_python(m):
    rng = random.Random(m)
    roots = [0] * (m // 4) + [rng.randrange(R) for _ in range(m - m // 4)]  # 0 pads the degree
    assert field.to_ints(_zero_poly(field.from_ints(roots), None)) == python_zero_poly(roots)


@pytest.mark.parametrize("dropped_count", [0, 3, 33, 64])
def test_recover_poly_and_source(dropped_count):
    """Erasure counts that are not powers of two (degree padded with X^k) included."""
    rng = random.Random(10 + dropped_count)
    ec = ErasureCoding(16)
    source = random_scalars(rng, 64)
    full = interleave(source, ec.extend(source))
    present = np.ones(128, bool)
    present[rng.sample(range(128), dropped_count)] = False
    limbs = field.bytes_to_limbs(full)
    limbs[~present] = 0
    assert np.array_equal(ec.recover_poly_limbs(limbs, present), ntt.intt(field.bytes_to_limbs(source)))
    assert np.array_equal(ec.recover_source_limbs(limbs, present), field.bytes_to_limbs(source))
    batch = np.stack([limbs, limbs])
    assert np.array_equal(ec.recover_poly_limbs(batch, present)[1], ntt.intt(field.bytes_to_limbs(source)))


@pytest.mark.parametrize("dropped_count", [0, 1, 3, 5, 63])
def test_any_corrupt_shard_detected_without_evaluation(dropped_count):
    """With more than n shards, every corrupt present shard is caught by the degree check alone
    (recover_poly_limbs never evaluates the result on the domain)."""
    rng = random.Random(20 + dropped_count)
    ec = ErasureCoding(8)
    source = random_scalars(rng, 64)
    limbs = field.bytes_to_limbs(interleave(source, ec.extend(source)))
    present = np.ones(128, bool)
    present[rng.sample(range(128), dropped_count)] = False
    for corrupt in rng.sample(list(np.flatnonzero(present)), 4):
        bad = limbs.copy()
        bad[corrupt, 0] ^= 1
        with pytest.raises(ErasureError, match="inconsistent"):
            ec.recover_poly_limbs(bad, present)
        with pytest.raises(ErasureError, match="inconsistent"):
            ec.recover_limbs(bad, present)


def test_threaded_recovery_equals_serial():
    rng = np.random.default_rng(5)
    ec = ErasureCoding(16)
    source = np.zeros((1 << 13, 32), np.uint8)
    source[:, 1:] = rng.integers(0, 256, size=(1 << 13, 31), dtype=np.uint8)
    full = np.empty((1 << 14, 32), np.uint8)
    full[0::2] = source
    full[1::2] = ec.extend_array(source)
    present = np.zeros(1 << 14, bool)
    present[rng.choice(1 << 14, 1 << 13, replace=False)] = True
    results = []
    for count in (1, 2, 3):
        with ThreadPoolExecutor(count) as pool:
            results.append(ec.recover_array(full, present, Workers(pool, count)))
    for result in results:
        assert np.array_equal(result, full)
