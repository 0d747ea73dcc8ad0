"""SegmentHeader SCALE / JSON forms and hash (spec 01 section 5)."""

from __future__ import annotations

import json

import pytest

from services.protocol.hashes import blake3_hash
from services.protocol.scale import ScaleError
from services.protocol.segments import (
    SEGMENT_HEADER_SIZE_COMPLETE,
    SEGMENT_HEADER_SIZE_PARTIAL,
    ArchivedBlockProgress,
    LastArchivedBlock,
    SegmentHeader,
)

COMMITMENT = bytes(range(48))
PREV_HASH = bytes(range(100, 132))


def _header(progress: ArchivedBlockProgress, index: int = 5, number: int = 1234) -> SegmentHeader:
    return SegmentHeader(index, COMMITMENT, PREV_HASH, LastArchivedBlock(number, progress))


def test_scale_layout_complete() -> None:
    header = _header(ArchivedBlockProgress.complete())
    # Built by hand from the spec 01 section 5 table.
    expected = (
        b"\x00"
        + (5).to_bytes(8, "little")
        + COMMITMENT
        + PREV_HASH
        + (1234).to_bytes(4, "little")
        + b"\x00"
    )
    encoded = header.to_scale()
    assert encoded == expected
    assert len(encoded) == SEGMENT_HEADER_SIZE_COMPLETE == 94
    assert SegmentHeader.from_scale(encoded) == header
    assert header.hash() == blake3_hash(expected)


def test_scale_layout_partial() -> None:
    header = _header(ArchivedBlockProgress.partial(0x01020304))
    encoded = header.to_scale()
    assert len(encoded) == SEGMENT_HEADER_SIZE_PARTIAL == 98
    assert encoded[-5:] == b"\x01\x04\x03\x02\x01"
    assert SegmentHeader.from_scale(encoded) == header
    assert header.last_archived_block.archived_progress.partial_bytes == 0x01020304


def test_scale_rejects_malformed() -> None:
    encoded = _header(ArchivedBlockProgress.complete()).to_scale()
    with pytest.raises(ScaleError, match="unknown SegmentHeader variant index 1"):
        SegmentHeader.from_scale(b"\x01" + encoded[1:])
    with pytest.raises(ScaleError, match="unknown ArchivedBlockProgress variant index 2"):
        SegmentHeader.from_scale(encoded[:-1] + b"\x02")
    with pytest.raises(ScaleError, match="truncated"):
        SegmentHeader.from_scale(encoded[:-2])
    with pytest.raises(ScaleError, match="trailing"):
        SegmentHeader.from_scale(encoded + b"\x00")
    with pytest.raises(ScaleError, match="truncated partial archived bytes"):
        SegmentHeader.from_scale(encoded[:-1] + b"\x01\x00\x00")


def test_json_shape_complete() -> None:
    header = _header(ArchivedBlockProgress.complete())
    assert header.to_json() == {
        "v0": {
            "segmentIndex": 5,
            "segmentCommitment": COMMITMENT.hex(),
            "prevSegmentHeaderHash": PREV_HASH.hex(),
            "lastArchivedBlock": {"number": 1234, "archivedProgress": "complete"},
        }
    }
    assert SegmentHeader.from_json(json.loads(json.dumps(header.to_json()))) == header


def test_json_shape_partial_and_big_index() -> None:
    header = _header(ArchivedBlockProgress.partial(77), index=2**64 - 1)
    value = header.to_json()
    assert value["v0"]["lastArchivedBlock"]["archivedProgress"] == {"partial": 77}
    assert value["v0"]["segmentIndex"] == 2**64 - 1
    assert SegmentHeader.from_json(json.loads(json.dumps(value))) == header


def _json_with(**changes: object) -> dict:
    inner = _header(ArchivedBlockProgress.complete()).to_json()["v0"]
    inner.update(changes)
    return {"v0": inner}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"v1": {}}, "unknown SegmentHeader variant 'v1'"),
        ({}, "exactly one variant key"),
        ("v0", "exactly one variant key"),
        (_json_with(segmentIndex=-1), "segmentIndex out of range"),
        (_json_with(segmentIndex=2**64), "segmentIndex out of range"),
        (_json_with(segmentIndex=True), "segmentIndex must be an integer"),
        (_json_with(segmentIndex=5.0), "segmentIndex must be an integer"),
        (_json_with(segmentCommitment="00" * 47), "segmentCommitment must be 48 bytes"),
        (_json_with(segmentCommitment="0x" + "00" * 47), "must not start with 0x"),
        (_json_with(prevSegmentHeaderHash="zz" * 32), "prevSegmentHeaderHash is not valid hex"),
        (_json_with(lastArchivedBlock={"number": 1}), "missing field 'archivedProgress'"),
        (_json_with(lastArchivedBlock={"number": 2**32, "archivedProgress": "complete"}), "out of range"),
        (_json_with(lastArchivedBlock={"number": 1, "archivedProgress": "partial"}), "unknown archivedProgress"),
        (_json_with(lastArchivedBlock={"number": 1, "archivedProgress": {"partial": -3}}), "out of range"),
        (_json_with(lastArchivedBlock={"number": 1, "archivedProgress": {"Partial": 3}}), "unknown archivedProgress"),
    ],
)
def test_json_rejects_malformed(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentHeader.from_json(value)


def test_json_missing_field() -> None:
    inner = _header(ArchivedBlockProgress.complete()).to_json()["v0"]
    del inner["prevSegmentHeaderHash"]
    with pytest.raises(ValueError, match="missing field 'prevSegmentHeaderHash'"):
        SegmentHeader.from_json({"v0": inner})


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="segment_commitment must be 48 bytes"):
        SegmentHeader(0, bytes(47), PREV_HASH, LastArchivedBlock(0, ArchivedBlockProgress.complete()))
    with pytest.raises(ValueError, match="partial bytes out of range"):
        ArchivedBlockProgress.partial(2**32)
