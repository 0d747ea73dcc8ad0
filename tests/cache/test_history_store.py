"""The exported-history store: segments appended durably, verified pieces served with a per-read
check, bad and unverified pieces never served, torn header lines dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cache.history_store import HEADERS_FILE, SEGMENTS_DIR, HistoryStore, segment_file_name
from services.cache.store import StoreError, piece_digests
from services.protocol.constants import NUM_PIECES, PIECE_SIZE
from services.protocol.segments import ArchivedBlockProgress, LastArchivedBlock, SegmentHeader


def _header(index: int) -> SegmentHeader:
    return SegmentHeader(segment_index=index, segment_commitment=bytes([index + 1]) * 48,
                         prev_segment_header_hash=bytes(32),
                         last_archived_block=LastArchivedBlock(index, ArchivedBlockProgress.complete()))


def _pieces(index: int) -> list[bytes]:
    return [bytes([index, k]) * (PIECE_SIZE // 2) for k in range(NUM_PIECES)]


def test_append_verify_serve_reopen(tmp_path: Path) -> None:
    with HistoryStore(tmp_path) as store:
        store.add_segment(_header(0), _pieces(0), verified=True)
        store.add_segment(_header(1), _pieces(1))
        assert store.segments == 2 and store.counts() == {"verified": 256, "unverified": 256, "bad": 0}
        assert store.get(5) == _pieces(0)[5] and store.get(NUM_PIECES + 5) is None  # unverified: not served
        store.mark_verified([(NUM_PIECES + 5, piece_digests(_pieces(1)[5])), (NUM_PIECES + 6, None)])
        assert store.get(NUM_PIECES + 5) == _pieces(1)[5]
        with pytest.raises(StoreError):
            store.add_segment(_header(3), _pieces(3))  # must follow
    with HistoryStore(tmp_path) as store:
        assert store.counts() == {"verified": 257, "unverified": 254, "bad": 1}
        assert list(store.contains_many([0, 255, 256, NUM_PIECES + 5, NUM_PIECES + 6, 10**6])) == [
            True, True, False, True, False, False]
        assert [int(i) for i in store.bad()] == [NUM_PIECES + 6]


def test_damaged_piece_is_dropped_and_repaired(tmp_path: Path) -> None:
    with HistoryStore(tmp_path) as store:
        store.add_segment(_header(0), _pieces(0), verified=True)
    path = tmp_path / SEGMENTS_DIR / segment_file_name(0)
    with open(path, "r+b") as f:
        f.seek(7 * PIECE_SIZE + 3)
        f.write(b"\xee")
    with HistoryStore(tmp_path) as store:
        assert store.get(7) is None and store.corrupt == 1 and list(store.bad()) == [7]
        store.write_piece(7, _pieces(0)[7])
        assert store.get(7) == _pieces(0)[7]
    with HistoryStore(tmp_path) as store:
        assert store.counts()["bad"] == 0 and store.get(7) == _pieces(0)[7]


def test_torn_header_line_and_missing_files(tmp_path: Path) -> None:
    with HistoryStore(tmp_path) as store:
        store.add_segment(_header(0), _pieces(0), verified=True)
    with open(tmp_path / HEADERS_FILE, "a") as f:
        f.write('{"v0": {"segmentIn')  # a crash in the middle of appending
    with HistoryStore(tmp_path) as store:
        assert store.segments == 1
        store.add_segment(_header(1), _pieces(1))
    lines = (tmp_path / HEADERS_FILE).read_text().splitlines()
    assert [SegmentHeader.from_json(json.loads(line)).segment_index for line in lines] == [0, 1]
    (tmp_path / SEGMENTS_DIR / segment_file_name(1)).unlink()
    with HistoryStore(tmp_path) as store:
        assert store.segments == 1 and store.pieces == NUM_PIECES


def test_not_an_export(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="autonomys-export-piece"):
        HistoryStore(tmp_path / "empty", create=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "export.json").write_text('{"kind": "something else"}')
    with pytest.raises(StoreError):
        HistoryStore(tmp_path / "other")
