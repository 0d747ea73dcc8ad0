"""SegmentHeader SCALE / JSON forms and hash (spec 01 section 5) against the reference.

Headers of ``archiver_ref.json``, ``sector_history_ref.json`` (with the anchor headers its
history rule builds) and ``official_farm/``: SCALE, hash and fields; the exact ``serde_json``
text of ``json_forms_ref.json`` (both progress forms, ``LastArchivedBlock``,
``ArchivedBlockProgress``). Malformed input is rejected with the field named.
"""

from __future__ import annotations

import json

import pytest
from reference_vectors import farm_path, load_json, xof

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


def _text(value: object) -> str:
    """serde_json's compact text of a JSON value (what the RPC server writes)."""
    return json.dumps(value, separators=(",", ":"))


def _forms(type_name: str) -> list[dict]:
    return [form for form in load_json("json_forms_ref.json")["forms"] if form["type"] == type_name]


def _check_header_fields(header: SegmentHeader, fields: dict) -> None:
    """A header against the vectors' field form (``scale``, ``hash``, fields)."""
    assert header.to_scale().hex() == fields["scale"]
    assert SegmentHeader.from_scale(bytes.fromhex(fields["scale"])) == header
    assert len(header.to_scale()) == (
        SEGMENT_HEADER_SIZE_COMPLETE if header.last_archived_block.archived_progress.is_complete else SEGMENT_HEADER_SIZE_PARTIAL
    )
    assert header.hash().hex() == fields["hash"] == blake3_hash(bytes.fromhex(fields["scale"])).hex()
    assert header.segment_index == fields["segment_index"]
    assert header.segment_commitment.hex() == fields["segment_commitment"]
    assert header.prev_segment_header_hash.hex() == fields["prev_segment_header_hash"]
    last = fields["last_archived_block"]
    assert header.last_archived_block.number == last["number"]
    progress = last["archived_progress"]
    if progress == "complete":
        assert header.last_archived_block.archived_progress.is_complete
    else:
        assert header.last_archived_block.archived_progress.partial_bytes == progress["partial"]


def test_segment_header_json_text_and_scale() -> None:
    """Both progress forms: the exact serde text and the SCALE it comes with."""
    forms = _forms("SegmentHeader")
    assert len(forms) == 12
    assert {"complete" in form["json"] for form in forms} == {True, False}
    for form in forms:
        assert form["value"].startswith("SCALE ")
        header = SegmentHeader.from_scale(bytes.fromhex(form["value"][6:]))
        assert _text(header.to_json()) == form["json"]
        assert SegmentHeader.from_json(json.loads(form["json"])) == header
        assert header.to_scale().hex() == form["value"][6:]


def test_last_archived_block_and_progress_json_text() -> None:
    headers = {
        SegmentHeader.from_scale(bytes.fromhex(f["value"][6:])).segment_index: SegmentHeader.from_scale(
            bytes.fromhex(f["value"][6:])
        )
        for f in _forms("SegmentHeader")
        if "partial" in f["json"]
    }
    forms = _forms("LastArchivedBlock")
    assert forms
    for form in forms:
        segment_index = int(form["value"].removeprefix("of segment "))
        last = headers[segment_index].last_archived_block
        assert _text(last.to_json()) == form["json"]
        assert LastArchivedBlock.from_json(json.loads(form["json"])) == last
    values = {"Complete": ArchivedBlockProgress.complete(), "Partial(12345)": ArchivedBlockProgress.partial(12345)}
    for form in _forms("ArchivedBlockProgress"):
        progress = values[form["value"]]
        assert _text(progress.to_json()) == form["json"]
        assert ArchivedBlockProgress.from_json(json.loads(form["json"])) == progress


def test_archiver_vector_headers() -> None:
    segments = load_json("archiver_ref.json")["segments"]
    for segment in segments:
        fields = segment["header"]
        _check_header_fields(SegmentHeader.from_scale(bytes.fromhex(fields["scale"])), fields)
    assert segments[1]["header"]["prev_segment_header_hash"] == segments[0]["header"]["hash"]


def test_history_vector_headers() -> None:
    """Each segment of ``sector_history_ref.json`` and the anchor header built by its rule."""
    history = load_json("sector_history_ref.json")
    label = history["seed_label"]
    assert "anchor_header(s) = V0 { segment_index: s-1" in history["history_rule"]
    for segment in history["segments"]:
        s = segment["segment_index"]
        anchor = SegmentHeader(
            s - 1,
            xof(f"{label} anchor commitment", s, 48),
            xof(f"{label} anchor prev hash", s, 32),
            LastArchivedBlock(10 * s, ArchivedBlockProgress.complete()),
        )
        _check_header_fields(anchor, segment["anchor_header"])
        header = SegmentHeader.from_scale(bytes.fromhex(segment["header"]["scale"]))
        _check_header_fields(header, segment["header"])
        assert header.prev_segment_header_hash == anchor.hash()
        assert _text(header.to_json()) == segment["header_serde_json"]
        assert SegmentHeader.from_json(json.loads(segment["header_serde_json"])) == header


def test_official_farm_segment_headers() -> None:
    headers = [SegmentHeader.from_json(value) for value in json.loads(farm_path("segment_headers.json").read_text())]
    lines = farm_path("segment_headers.scale.hex").read_text().split("\n")
    lines = [line.split() for line in lines if line.strip()]
    assert len(lines) == len(headers) == 1
    for (index, scale, hash_hex), header in zip(lines, headers):
        assert header.segment_index == int(index)
        assert header.to_scale().hex() == scale and header.hash().hex() == hash_hex


def test_json_round_trip_of_big_index() -> None:
    header = _header(ArchivedBlockProgress.partial(77), index=2**64 - 1)
    assert SegmentHeader.from_json(json.loads(json.dumps(header.to_json()))) == header
    assert SegmentHeader.from_scale(header.to_scale()) == header


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
