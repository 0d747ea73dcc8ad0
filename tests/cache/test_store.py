"""The on-disk piece store: durability across SIGKILL, corruption never served, bounded index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from services.cache.store import LOG_FILE, RECORD_SIZE, PieceStore, StoreError, StoreFull
from services.protocol.constants import PIECE_SIZE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store_writer import piece_bytes  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_put_get_reopen(tmp_path: Path) -> None:
    with PieceStore(tmp_path, 4) as store:
        assert store.put_many([(i, piece_bytes(i)) for i in (3, 900, 7)]) == [3, 900, 7]
        assert store.put_many([(3, piece_bytes(3))]) == []  # already held
        assert len(store) == 3 and store.free_slots == 1
        assert list(store.contains_many([3, 4, 900, 7, 10**9, -1])) == [True, False, True, True, False, False]
    with PieceStore(tmp_path) as store:
        assert store.capacity == 4 and store.report.pieces == 3 and store.report.bad_records == 0
        assert store.get(900) == piece_bytes(900)
        assert list(store.piece_indices()) == [3, 7, 900]
        assert store.get(4) is None


def test_page_cache_only_reads(tmp_path: Path) -> None:
    with PieceStore(tmp_path, 2) as store:
        store.put_many([(1, piece_bytes(1))])
        with open(tmp_path / "pieces.dat", "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        try:  # cold: either still cached by the kernel, or "would block" (never wrong bytes)
            cold = store.read_piece(1, nowait=True)
            assert cold is not None and bytes(cold[0]) == piece_bytes(1)
        except BlockingIOError:
            pass
        buffer, digest = store.read_piece(1)  # a blocking read brings it into the page cache
        assert bytes(buffer) == piece_bytes(1) and len(digest) == 32
        hot = store.read_piece(1, nowait=True)
        assert hot is not None and bytes(hot[0]) == piece_bytes(1) and hot[1] == digest
        assert store.read_piece(2, nowait=True) is None


def test_full_store_refuses_or_evicts_least_recently_read(tmp_path: Path) -> None:
    with PieceStore(tmp_path, 2) as store:
        store.put_many([(1, piece_bytes(1)), (2, piece_bytes(2))])
        with pytest.raises(StoreFull):
            store.put_many([(3, piece_bytes(3))])
        assert store.get(1) == piece_bytes(1)  # 1 is now more recent than 2
        assert store.put_many([(3, piece_bytes(3))], evict_lru=True) == [3]
        assert 2 not in store and store.get(1) == piece_bytes(1) and store.get(3) == piece_bytes(3)
        assert store.remove_many([1, 99]) == 1 and len(store) == 1
    with PieceStore(tmp_path) as store:
        assert list(store.piece_indices()) == [3]


def test_corrupt_piece_is_never_served(tmp_path: Path) -> None:
    with PieceStore(tmp_path, 3) as store:
        store.put_many([(10, piece_bytes(10)), (11, piece_bytes(11))])
    with open(tmp_path / "pieces.dat", "r+b") as f:  # slot 1 holds piece 11
        f.seek(PIECE_SIZE + 12345)
        f.write(b"\xff")
    with PieceStore(tmp_path) as store:
        assert store.get(11) is None and store.corrupt == 1 and 11 not in store
        assert store.get(10) == piece_bytes(10)
    with PieceStore(tmp_path) as store:  # the drop was logged
        assert list(store.piece_indices()) == [10]


def test_scrub_finds_corruption(tmp_path: Path) -> None:
    with PieceStore(tmp_path, 3) as store:
        store.put_many([(i, piece_bytes(i)) for i in range(3)])
    with open(tmp_path / "pieces.dat", "r+b") as f:
        f.seek(2 * PIECE_SIZE + PIECE_SIZE - 1)
        f.write(b"\x00" if piece_bytes(2)[-1] else b"\x01")
    progress = []
    with PieceStore(tmp_path) as store:
        report = store.scrub(lambda done, total: progress.append((done, total)))
        assert report.checked == 3 and report.corrupt == [2] and progress[-1] == (3, 3)


def test_torn_and_bad_log_records(tmp_path: Path) -> None:
    with PieceStore(tmp_path, 4) as store:
        store.put_many([(i, piece_bytes(i)) for i in range(3)])
    log = tmp_path / LOG_FILE
    data = bytearray(log.read_bytes())
    data[32 + RECORD_SIZE + 9] ^= 0x01  # second record (piece 1): checksum no longer matches
    data += b"\x01\x02\x03"  # torn tail
    log.write_bytes(bytes(data))
    with PieceStore(tmp_path) as store:
        assert store.report.bad_records == 1 and store.report.torn_bytes == 3 and store.report.compacted
        assert list(store.piece_indices()) == [0, 2] and store.get(2) == piece_bytes(2)
    with PieceStore(tmp_path) as store:
        assert store.report.bad_records == 0 and store.report.torn_bytes == 0


def test_grow_and_refuse_to_shrink(tmp_path: Path) -> None:
    with PieceStore(tmp_path, 2) as store:
        store.put_many([(5, piece_bytes(5))])
    with PieceStore(tmp_path, 5) as store:
        assert store.capacity == 5 and store.free_slots == 4 and store.get(5) == piece_bytes(5)
    with pytest.raises(StoreError, match="shrinking"):
        PieceStore(tmp_path, 3)
    (tmp_path / LOG_FILE).write_bytes(b"not a log" * 10)
    with pytest.raises(StoreError, match="bad header"):
        PieceStore(tmp_path)


def test_index_memory_is_small(tmp_path: Path) -> None:
    with PieceStore(tmp_path, 100_000) as store:  # ~100 GiB of slots, sparse file
        store.put_many([(2_000_000, piece_bytes(1))])
        per_slot = store.memory_bytes() / store.capacity
        assert per_slot < 72 + 4 * 4_194_304 / store.capacity  # 68 B a slot + 4 B a history piece
        assert (tmp_path / "pieces.dat").stat().st_blocks * 512 < 4 * PIECE_SIZE


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    # The writer never stops on its own: it is killed in the middle of some put_many.
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "store_writer.py"), str(tmp_path), "100000"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    acked = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            acked.append(int(line.split()[1]))
            if len(acked) >= 60:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with PieceStore(tmp_path) as store:
        held = set(int(i) for i in store.piece_indices())
        assert set(acked) <= held, sorted(set(acked) - held)
        assert np.all(store.contains_many(acked))
        for index in sorted(held):  # acknowledged or not, nothing half-written is served
            assert store.get(index) == piece_bytes(index)
