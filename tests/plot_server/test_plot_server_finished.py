"""services.plot_server.finished: a finished sector becomes readable only once complete, any byte
range reads back, leftovers of a crashed run are cleared, and the waiting count (the job loop's
backpressure) follows writes and removals."""

from __future__ import annotations

import os

import pytest

from services.plot_server.finished import FinishedSectorError, FinishedSectors


def test_write_finish_read_remove(tmp_path):
    store = FinishedSectors(tmp_path)
    data = os.urandom(10_000)
    writer = store.writer("FARM-3-7", len(data))
    writer.write(data[:4000])
    assert store.waiting == 0 and store.size("FARM-3-7") is None  # not readable while partial
    with pytest.raises(FinishedSectorError):
        store.read("FARM-3-7", 0, 10)
    writer.write(memoryview(data)[4000:])
    with pytest.raises(FinishedSectorError):
        writer.write(b"x")  # beyond the sector
    writer.finish()
    assert store.waiting == 1 and store.waiting_bytes == len(data)
    assert store.read("FARM-3-7", 0, len(data)) == data
    assert store.read("FARM-3-7", 9_990, 10) == data[9_990:]
    with pytest.raises(FinishedSectorError):
        store.read("FARM-3-7", 9_995, 10)
    store.remove("FARM-3-7")
    assert store.waiting == 0 and list(tmp_path.iterdir()) == []


def test_incomplete_and_aborted_writes(tmp_path):
    store = FinishedSectors(tmp_path)
    writer = store.writer("job-1", 100)
    writer.write(b"a" * 50)
    with pytest.raises(FinishedSectorError):
        writer.finish()
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        store.writer("bad.id", 10)


def test_clear_removes_leftovers_only(tmp_path):
    (tmp_path / "a-1-2.partial").write_bytes(b"x")
    (tmp_path / "a-1-3.sector").write_bytes(b"y")
    (tmp_path / "unrelated.txt").write_bytes(b"z")
    store = FinishedSectors(tmp_path)
    assert sorted(store.clear()) == ["a-1-2.partial", "a-1-3.sector"]
    assert [p.name for p in tmp_path.iterdir()] == ["unrelated.txt"]


def test_one_plot_server_per_base_path(tmp_path):
    first, second = FinishedSectors(tmp_path), FinishedSectors(tmp_path)
    first.lock()
    with pytest.raises(FinishedSectorError, match="in use by another plot-server"):
        second.lock()
    first.unlock()
    second.lock()
    second.unlock()
