"""Entry-order rules of spec 02 §6 that the reference vectors rarely or never exercise: buckets
over 512 entries and bucket pairs with more than 512 matches. Checked against a direct, slow
transcription of the spec text (the reference vectors cover the common path)."""

from __future__ import annotations

import numpy as np

from services.protocol.pos.matching import (
    SQUARE_TERMS,
    _bucketize_capped,
    bucketize,
    find_matches,
    has_match,
)
from services.protocol.pos.params import PARAM_B, PARAM_BC, PARAM_C


def _spec_bucketize(y, n_buckets):
    buckets = [[] for _ in range(n_buckets)]
    for position, value in enumerate(y):
        bucket = buckets[value // PARAM_BC]
        if len(bucket) < 512:
            bucket.append((int(value), position))
    order, starts = [], [0]
    for bucket in buckets:
        order += [position for _, position in sorted(bucket)]
        starts.append(len(order))
    return order, starts


def _spec_matches(y, starts):
    left_out, right_out = [], []
    for b in range(len(starts) - 2):
        lefts = range(starts[b], starts[b + 1])
        rights = range(starts[b + 1], starts[b + 2])
        pair = []
        for i in lefts:
            if len(pair) >= 512:
                break
            r_left = int(y[i]) - b * PARAM_BC
            targets = sorted(((r_left // PARAM_C + m) % PARAM_B) * PARAM_C
                             + (((2 * m + b % 2) ** 2 + r_left) % PARAM_C) for m in range(64))
            for target in targets:
                pair += [(i, j) for j in rights if int(y[j]) - (b + 1) * PARAM_BC == target]
        pair = pair[:512]
        left_out += [i for i, _ in pair]
        right_out += [j for _, j in pair]
    return left_out, right_out


def test_bucket_overflow_keeps_first_512_in_creation_order():
    rng = np.random.default_rng(7)
    n_buckets = 4
    crowded = rng.integers(PARAM_BC, PARAM_BC + 40, size=700)  # bucket 1, many equal ys
    others = rng.integers(0, n_buckets * PARAM_BC, size=300)
    y = np.concatenate([others[:150], crowded, others[150:]]).astype(np.uint32)
    order, sorted_y, starts = bucketize(y, n_buckets)
    expected_order, expected_starts = _spec_bucketize(y, n_buckets)
    assert list(starts) == expected_starts
    assert starts[2] - starts[1] == 512
    assert [int(v) for v in order] == expected_order
    assert np.array_equal(sorted_y, y[order])


def test_radix_path_equals_exact_path_without_overflow():
    rng = np.random.default_rng(5)
    n_buckets = 300
    y = rng.integers(0, n_buckets * PARAM_BC, size=70_000).astype(np.uint32)
    y[1000:1100] = y[5]  # many equal ys: ties must stay in creation order
    order, sorted_y, starts = bucketize(y, n_buckets)
    counts = np.bincount(y // PARAM_BC, minlength=n_buckets).astype(np.int64)
    assert counts.max() <= 512
    exact_order = np.empty(y.shape[0], np.uint32)
    exact_y = np.empty(y.shape[0], np.uint32)
    kept, exact_starts = _bucketize_capped(y, n_buckets, counts, exact_y, exact_order)
    assert kept == y.shape[0]
    assert np.array_equal(order, exact_order)
    assert np.array_equal(sorted_y, exact_y)
    assert np.array_equal(starts, exact_starts)
    expected_order, expected_starts = _spec_bucketize(y, n_buckets)
    assert [int(v) for v in order] == expected_order


def test_match_cap_and_order_against_spec_text():
    rng = np.random.default_rng(11)
    n_buckets = 6
    # bucket 2 and 3 crowded with few distinct r values so one pair exceeds 512 matches
    parts = [rng.integers(b * PARAM_BC, (b + 1) * PARAM_BC, size=200) for b in range(n_buckets)]
    left_r = rng.integers(0, PARAM_BC, size=8)
    parts[2] = 2 * PARAM_BC + np.repeat(left_r, 40)
    targets = [((r // PARAM_C + m) % PARAM_B) * PARAM_C + (((2 * m) ** 2 + r) % PARAM_C)
               for r in left_r for m in range(0, 64, 9)]
    parts[3] = 3 * PARAM_BC + np.repeat(np.array(targets), 6)
    y = np.concatenate([rng.permutation(p) for p in parts]).astype(np.uint32)
    order, _sorted, starts = bucketize(y, n_buckets)
    sorted_y = y[order]
    left, right = find_matches(sorted_y, starts, n_buckets)
    expected_left, expected_right = _spec_matches(sorted_y, list(starts))
    assert [int(v) for v in left] == expected_left
    assert [int(v) for v in right] == expected_right
    pair_2_3 = sum(1 for i in expected_left if starts[2] <= i < starts[3])
    assert pair_2_3 == 512  # the cap was exercised


def test_every_table_match_passes_has_match():
    rng = np.random.default_rng(3)
    y = np.sort(rng.integers(0, 5 * PARAM_BC, size=1200)).astype(np.uint32)
    order, _sorted, starts = bucketize(y, 5)
    sorted_y = y[order]
    left, right = find_matches(sorted_y, starts, 5)
    assert len(left) > 0
    for i, j in zip(left, right):
        assert has_match(int(sorted_y[i]), int(sorted_y[j]), SQUARE_TERMS)
