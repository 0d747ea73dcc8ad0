"""NTT over Fr on the reference domain (spec 01 §7.2), checked against a naive DFT."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from services.protocol import field, ntt
from services.protocol.constants import BLS12_381_R as R
from services.protocol.parallel import Workers
from shared_paths import require_vectors


def naive_dft(values: list[int], root: int) -> list[int]:
    n = len(values)
    return [sum(v * pow(root, i * k, R) for k, v in enumerate(values)) % R for i in range(n)]


def test_roots_of_unity_match_spec():
    assert ntt.root_of_unity(15) == 0x3291357EE558B50D483405417A0CBE39C8D5F51DB3F32699FBD047E11279BB6E
    assert ntt.root_of_unity(16) == 0x2155379D12180CAA88F39A78F1AEB57867A665AE1FCADC91D7118F85CD96B8AD
    for s in range(1, 33):
        w = ntt.root_of_unity(s)
        assert pow(w, 1 << s, R) == 1 and pow(w, 1 << (s - 1), R) == R - 1


def test_root_of_unity_matches_vector():
    data = json.loads(require_vectors("kzg_ckzg_crosscheck.json").read_text())
    log_n = data["n"].bit_length() - 1
    assert ntt.root_of_unity(log_n) == int(data["root_of_unity_n_hex_be"], 16)


def test_twiddle_table_is_powers_of_omega_16():
    tw = ntt.domain_powers(16, 8)
    w = ntt.root_of_unity(16)
    assert field.to_ints(tw) == [pow(w, k, R) for k in range(8)]
    assert field.to_ints(ntt.domain_powers(4)) == [pow(ntt.root_of_unity(4), k, R) for k in range(8)]


@pytest.mark.parametrize("log_n", range(0, 8))
def test_ntt_matches_naive_dft(log_n):
    rng = random.Random(log_n)
    values = [rng.randrange(R) for _ in range(1 << log_n)]
    expected = naive_dft(values, ntt.root_of_unity(log_n))
    assert field.to_ints(ntt.ntt(field.from_ints(values))) == expected
    # linear: canonical limbs in, canonical limbs out
    assert field.limbs_to_ints(ntt.ntt(field.ints_to_limbs(values))) == expected
    inverse = naive_dft(values, pow(ntt.root_of_unity(log_n), -1, R))
    n_inv = pow(1 << log_n, -1, R)
    assert field.limbs_to_ints(ntt.intt(field.ints_to_limbs(values))) == [x * n_inv % R for x in inverse]


def test_batch_equals_single():
    rng = random.Random(7)
    rows = [[rng.randrange(R) for _ in range(64)] for _ in range(5)]
    batch = np.stack([field.ints_to_limbs(r) for r in rows])
    out = ntt.ntt(batch)
    for i, r in enumerate(rows):
        assert np.array_equal(out[i], ntt.ntt(field.ints_to_limbs(r)))
    assert np.array_equal(ntt.intt(out), batch)


def test_round_trip_largest_size():
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, size=(1 << 16, 32), dtype=np.uint8)
    raw[:, 0] &= 0x3F
    limbs = field.bytes_to_limbs(raw)
    assert np.array_equal(ntt.intt(ntt.ntt(limbs)), limbs)
    # spot-check a few outputs of the 2^16 forward transform against a direct evaluation
    values = field.limbs_to_ints(limbs[:4])
    sparse = np.zeros_like(limbs)
    sparse[:4] = limbs[:4]
    out = field.limbs_to_ints(ntt.ntt(sparse)[[0, 1, 12345, 65535]])
    w = ntt.root_of_unity(16)
    assert out == [sum(v * pow(w, i * k, R) for k, v in enumerate(values)) % R for i in (0, 1, 12345, 65535)]


def test_input_not_modified():
    limbs = field.ints_to_limbs(list(range(16)))
    before = limbs.copy()
    ntt.ntt(limbs)
    ntt.intt(limbs)
    assert np.array_equal(limbs, before)


@pytest.mark.parametrize("n", [3, 6, 1 << 17])
def test_bad_sizes_rejected(n):
    with pytest.raises(ValueError, match="power of two"):
        ntt.ntt(np.zeros((n, 4), np.uint64))


def test_bad_dtype_rejected():
    with pytest.raises(ValueError, match="uint64"):
        ntt.ntt(np.zeros((4, 4), np.int32))


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_threaded_transforms_equal_serial(count):
    rng = np.random.default_rng(count)
    raw = rng.integers(0, 256, size=(3, 1 << 14, 32), dtype=np.uint8)
    raw[..., 0] &= 0x3F
    limbs = field.bytes_to_limbs(raw.reshape(-1, 32)).reshape(3, 1 << 14, 4)
    single, batch = ntt.ntt(limbs[0]), ntt.ntt(limbs)
    inverse = ntt.intt(limbs)
    with ThreadPoolExecutor(count) as pool:
        workers = Workers(pool, count)
        assert np.array_equal(ntt.ntt(limbs[0], workers), single)  # one transform split over the threads
        assert np.array_equal(ntt.ntt(limbs, workers), batch)  # rows split over the threads
        assert np.array_equal(ntt.intt(limbs, workers), inverse)
    assert np.array_equal(batch[0], single)
