"""Where bulk payloads land: buffers the caller owns, written by the socket read itself.

A plot-server assembling a sector wants piece ``i`` to arrive straight in slot ``i`` of its
sector buffer; a cache re-distributing pieces wants a fixed pool of piece-sized buffers it
recycles. Both are *sinks*; the client asks the sink for a buffer when an item's header arrives
and the kernel copies the payload into it (``BufferedProtocol``), no intermediate ``bytes``.

Sink protocol (duck-typed; write your own for other layouts, e.g. a byte range of a file map):

    buffer_for(key, size) -> memoryview | None
        a writable, contiguous memoryview of exactly ``size`` bytes for item ``key``; None when
        no buffer is free right now (reading from that connection pauses until the sink calls
        back the function given to ``notify_free``); raise KeyError / ValueError to refuse the
        key or size (the call fails with ProtocolError).
    give_back(key, view)
        an item the call will not deliver after all (corrupt, cancelled, never consumed).
    notify_free(callback)
        call ``callback()`` once, the next time a buffer becomes free (only needed when
        ``buffer_for`` can return None).

A buffer handed out may be written until the item completes or the call ends; after the call
returns (or raises) no more bytes are written into any buffer of that call.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping


def _byte_view(buffer: Any) -> memoryview:
    view = memoryview(buffer)
    if view.readonly:
        raise ValueError("sink buffers must be writable")
    if not view.c_contiguous:
        raise ValueError("sink buffers must be C-contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class KeyedBuffers:
    """One preallocated buffer per expected key (``{piece_index: sector_buffer[slot]}``).
    With ``exact`` an item must fill its buffer exactly; each key is accepted once."""

    def __init__(self, buffers: Mapping[int, Any], exact: bool = True) -> None:
        self._views = {key: _byte_view(buf) for key, buf in buffers.items()}
        self._taken: set[int] = set()
        self.exact = exact

    def buffer_for(self, key: int, size: int) -> memoryview:
        view = self._views.get(key)
        if view is None:
            raise KeyError(f"no buffer for key {key}")
        if key in self._taken:
            raise ValueError(f"key {key} sent twice")
        if size > len(view) or (self.exact and size != len(view)):
            raise ValueError(f"item {key} has {size} bytes, its buffer {len(view)}")
        self._taken.add(key)
        return view if size == len(view) else view[:size]

    def give_back(self, key: int, view: memoryview) -> None:
        self._taken.discard(key)

    def notify_free(self, callback: Callable[[], None]) -> None:  # buffers are never short
        callback()


class BufferPool:
    """``count`` buffers of ``item_size`` bytes carved from one allocation. Items received into
    it are the caller's until :meth:`release`; when all are out, reading pauses (backpressure on
    the sending server) until one is released."""

    def __init__(self, item_size: int, count: int) -> None:
        if item_size <= 0 or count <= 0:
            raise ValueError("BufferPool needs item_size > 0 and count > 0")
        self.item_size = item_size
        self.count = count
        self._memory = bytearray(item_size * count)
        whole = memoryview(self._memory)
        self._slots = [whole[i * item_size:(i + 1) * item_size] for i in range(count)]
        self._free = list(range(count - 1, -1, -1))
        self._out: dict[int, int] = {}  # id(view handed out) -> slot
        self._waiters: list[Callable[[], None]] = []

    @property
    def free(self) -> int:
        return len(self._free)

    def buffer_for(self, key: int, size: int) -> memoryview | None:
        if size > self.item_size:
            raise ValueError(f"item {key} has {size} bytes, pool buffers {self.item_size}")
        if not self._free:
            return None
        slot = self._free.pop()
        view = self._slots[slot] if size == self.item_size else self._slots[slot][:size]
        self._out[id(view)] = slot
        return view

    def release(self, view: memoryview) -> None:
        """Return a buffer received from this pool."""
        slot = self._out.pop(id(view), None)
        if slot is None:
            raise ValueError("buffer was not handed out by this pool (or released twice)")
        self._free.append(slot)
        waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback()

    def give_back(self, key: int, view: memoryview) -> None:
        self.release(view)

    def notify_free(self, callback: Callable[[], None]) -> None:
        if self._free:
            callback()
        else:
            self._waiters.append(callback)


class FetchResult:
    """Outcome of one bulk call. ``received``: key -> filled view (in the sink's buffers);
    ``missing``: keys the server said it lacks, plus expected keys it never answered;
    ``corrupt``: keys whose payload failed the BLAKE3 check (fetch them elsewhere)."""

    __slots__ = ("received", "missing", "corrupt", "_sink")

    def __init__(self, received: dict[int, memoryview], missing: list[int], corrupt: list[int], sink: Any) -> None:
        self.received = received
        self.missing = missing
        self.corrupt = corrupt
        self._sink = sink

    @property
    def failed(self) -> list[int]:
        """Keys to fetch from another source."""
        return self.missing + self.corrupt

    @property
    def nbytes(self) -> int:
        return sum(len(view) for view in self.received.values())

    def release(self) -> None:
        """Give every received buffer back to the sink (a pool's buffers become free)."""
        for key, view in self.received.items():
            self._sink.give_back(key, view)
        self.received = {}

    def __repr__(self) -> str:
        return f"FetchResult({len(self.received)} received, {len(self.missing)} missing, {len(self.corrupt)} corrupt)"
