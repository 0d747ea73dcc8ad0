"""State of one client call in flight: its reply future (unary) or its queue of received items
(bulk), and its progress timeout.

A call times out when nothing of its reply arrives for ``timeout`` seconds: no first frame, no
next frame of a bulk stream, no payload bytes of the item being received. Time the connection
spends paused because the caller's sink has no free buffer does not count (the caller is the one
who is slow). On timeout or cancellation the client sends CANCEL and the server stops.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from services.p2p.errors import PeerError, PeerTimeout, ProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from services.p2p.client_connection import ClientConnection


class Call:
    """Base: registration on a connection, the progress timer, completion."""

    bulk = False

    def __init__(self, conn: "ClientConnection", request: Any, timeout: float) -> None:
        self.conn = conn
        self.method = type(request).method
        self.request_id = 0
        self.timeout = timeout
        self.done = False
        self.replied = False
        self.error: PeerError | None = None
        self.last_progress = conn.loop.time()
        self._bytes_at_check = -1
        self._timer = conn.loop.call_later(timeout, self._check_timeout)

    def progress(self) -> None:
        self.replied = True
        self.last_progress = self.conn.loop.time()

    def _check_timeout(self) -> None:
        if self.done:
            return
        conn, now = self.conn, self.conn.loop.time()
        if conn.is_receiving_for(self) and conn.received != self._bytes_at_check:
            self._bytes_at_check = conn.received  # payload bytes are moving: that is progress
            self.last_progress = now
        elif conn.is_waiting_for(self):
            self.last_progress = now  # paused for the caller's own buffers
        idle = now - self.last_progress
        if idle >= self.timeout:
            conn.counters.timeouts += 1
            self.fail(PeerTimeout(f"{self.method} to {conn.endpoint}: no reply for {self.timeout:g} s"), cancel=True)
        else:
            self._timer = conn.loop.call_later(self.timeout - idle, self._check_timeout)

    def _finish(self) -> None:
        self.done = True
        self._timer.cancel()
        self.conn.call_done(self)

    def fail(self, exc: PeerError, cancel: bool = False, count: bool = True) -> None:
        """End the call with ``exc``; ``cancel`` tells the server to stop working on it."""
        if self.done:
            return
        self.error = exc
        if count:
            self.conn.counters.errors += 1
        if cancel:
            self.conn.send_cancel(self.request_id)
        self._finish()
        self._wake(exc)

    def cancel(self) -> None:
        """The caller gave up (task cancelled, stream closed early)."""
        self.fail(PeerError(f"{self.method} cancelled"), cancel=True, count=False)

    def _wake(self, exc: PeerError | None) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class UnaryCall(Call):
    def __init__(self, conn: "ClientConnection", request: Any, timeout: float) -> None:
        super().__init__(conn, request, timeout)
        self.response_type = type(request).response
        self.future: asyncio.Future = conn.loop.create_future()

    def complete(self, value: Any) -> None:
        if self.done:
            return
        self._finish()
        if not self.future.done():
            self.future.set_result(value)

    def _wake(self, exc: PeerError | None) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
            self.future.exception()  # retrieved: the awaiting caller may be gone (cancelled)


class BulkCall(Call):
    """Items land in the sink's buffers; ``ready`` holds those not yet taken by the consumer."""

    bulk = True

    def __init__(self, conn: "ClientConnection", request: Any, sink: Any, timeout: float) -> None:
        super().__init__(conn, request, timeout)
        self.sink = sink
        keys = request.expected_keys()
        self.expected: set[int] | None = None if keys is None else set(keys)
        self.answered: set[int] = set()
        self.ready: deque[tuple[int, memoryview]] = deque()
        self.missing: list[int] = []
        self.corrupt: list[int] = []
        self.ended = False
        self._waiter: asyncio.Future | None = None

    def check_key(self, key: int) -> None:
        """A key the request did not ask for, or one already answered, is a lie."""
        if self.expected is not None and key not in self.expected:
            raise ProtocolError(f"{self.conn.endpoint} sent key {key}, which {self.method} did not ask for")
        if key in self.answered:
            raise ProtocolError(f"{self.conn.endpoint} answered key {key} twice")
        self.answered.add(key)

    def push(self, key: int, view: memoryview) -> None:
        self.ready.append((key, view))
        self._wake(None)

    def add_corrupt(self, key: int) -> None:
        self.corrupt.append(key)

    def add_missing(self, keys: list[int]) -> None:
        for key in keys:
            self.check_key(key)
        self.missing.extend(keys)

    def end(self) -> None:
        if self.done:
            return
        if self.expected is not None:
            unanswered = sorted(self.expected - self.answered)
            self.missing.extend(unanswered)  # silently skipped keys count as missing
        self.ended = True
        self._finish()
        self._wake(None)

    def _wake(self, exc: PeerError | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_item(self) -> tuple[int, memoryview] | None:
        """The next received item, None at the end of the stream; raises the call's error."""
        while not self.ready:
            if self.error is not None:
                raise self.error
            if self.ended:
                return None
            self._waiter = self.conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.ready.popleft()

    def give_back_unconsumed(self) -> None:
        while self.ready:
            key, view = self.ready.popleft()
            self.sink.give_back(key, view)
