"""Sinks: keyed slots refuse unknown, duplicate and wrongly sized items; the pool recycles."""

from __future__ import annotations

import pytest

from services.p2p import BufferPool, KeyedBuffers


def test_keyed_buffers():
    memory = bytearray(30)
    view = memoryview(memory)
    sink = KeyedBuffers({5: view[0:10], 9: view[10:20], 2: view[20:30]})
    slot = sink.buffer_for(9, 10)
    slot[:] = b"x" * 10
    assert memory[10:20] == b"x" * 10
    with pytest.raises(ValueError, match="twice"):
        sink.buffer_for(9, 10)
    with pytest.raises(KeyError):
        sink.buffer_for(7, 10)
    with pytest.raises(ValueError, match="bytes"):
        sink.buffer_for(5, 9)
    sink.give_back(9, slot)
    assert len(sink.buffer_for(9, 10)) == 10
    with pytest.raises(ValueError, match="writable"):
        KeyedBuffers({1: b"readonly"})


def test_buffer_pool_recycles_and_notifies():
    pool = BufferPool(item_size=8, count=2)
    a, b = pool.buffer_for(1, 8), pool.buffer_for(2, 5)
    assert len(a) == 8 and len(b) == 5 and pool.free == 0
    assert pool.buffer_for(3, 8) is None
    woken: list[int] = []
    pool.notify_free(lambda: woken.append(1))
    pool.release(b)
    assert woken == [1] and pool.free == 1
    with pytest.raises(ValueError):
        pool.release(b)
    with pytest.raises(ValueError, match="pool buffers"):
        pool.buffer_for(4, 9)
