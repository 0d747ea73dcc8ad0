"""Cache protocol messages: subjects, bitmaps, and the data-plane request declaration."""

from __future__ import annotations

import random

import pytest

from services.bus.message import decode, encode
from services.cache.messages import (
    CacheContainsRequest,
    CacheContainsResult,
    CacheVerifyProgress,
    CacheVerifyRequest,
    GetPieces,
    SegmentHeldNotification,
    bitmap,
    unbitmap,
)


def test_bitmap_round_trip() -> None:
    rng = random.Random(3)
    for count in (0, 1, 7, 8, 9, 1000):
        flags = [rng.random() < 0.5 for _ in range(count)]
        assert unbitmap(bitmap(flags), count) == flags
        assert CacheContainsResult(held=bitmap(flags)).flags(count) == flags
    with pytest.raises(ValueError):
        unbitmap(b"\x01", 9)


def test_subjects_and_codec() -> None:
    assert CacheContainsRequest.subject_for("shard-1") == "subspace.cache.shard-1.contains"
    assert CacheVerifyRequest.stream and CacheVerifyRequest.response is CacheVerifyProgress
    note = SegmentHeldNotification(role="sharded-cache", instance="a", cache_group="default", segment_index=3, held=128)
    assert decode(encode(note), SegmentHeldNotification) == note
    assert GetPieces.bulk and GetPieces(piece_indices=[1, 2]).expected_keys() == [1, 2]
