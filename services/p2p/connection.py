"""The part of a data-plane connection both ends share: a receive state machine on
``asyncio.BufferedProtocol`` and frame writes that respect the transport's write-buffer limits.

Why a state machine over ``get_buffer``: the event loop (uvloop) asks the protocol where the next
bytes should go and the kernel copies them there. Each state names exactly how many bytes it
wants and where: a 12-byte header into a scratch buffer, a control body into its own bytearray,
a bulk payload straight into the caller's preallocated buffer (no intermediate ``bytes``, no
copies on the hot path), unwanted payloads into a reusable discard buffer. Reading exactly the
bytes a state wants keeps frame boundaries trivial.

Failure policy: any violation (ProtocolError, HandshakeError) or unexpected exception inside a
callback closes this connection with a logged reason and fails its calls; it never propagates
into the event loop, so one bad peer cannot take the process down.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Callable

import structlog

from services.p2p.errors import PeerClosed, PeerError, PeerTimeout, ProtocolError
from services.p2p.frames import HEADER_SIZE, Kind, pack_header
from services.p2p.stats import Counters

log = structlog.get_logger("p2p")

_DISCARD_CHUNK = 256 * 1024


class FrameConnection(asyncio.BufferedProtocol):
    """Base of the server and client connections; subclasses set the first expectation in
    ``connection_made`` and implement the frame callbacks."""

    role = "p2p"

    def __init__(self, counters: Counters, write_high: int, write_low: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.counters = counters
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.closed = False
        self.close_reason: PeerError | None = None
        self._write_limits = (write_high, write_low)
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future] = []
        self._small = bytearray(128)  # headers and handshake messages
        self._small_view = memoryview(self._small)
        self._target: memoryview | None = None
        self._filled = 0
        self._on_full: Callable[[], None] | None = None
        self._discard_buf: memoryview | None = None
        self._discard_left = 0
        self._discard_then: Callable[[], None] | None = None
        self._body: bytearray | None = None
        self._counted = False

    # --- lifecycle -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        high, low = self._write_limits
        transport.set_write_buffer_limits(high=high, low=low)  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):  # pragma: no cover - not TCP
                pass
        self.counters.connections_opened += 1
        self.counters.connections_active += 1
        self._counted = True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.counters.connections_active -= 1
        self.closed = True
        if self.close_reason is None:
            detail = f": {exc}" if exc else ""
            self.close_reason = PeerClosed(f"connection to {self.peer} closed{detail}")
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        self.on_closed(self.close_reason)

    def eof_received(self) -> bool:
        return False  # close our side too

    def on_closed(self, reason: PeerError) -> None:  # pragma: no cover - overridden
        pass

    def close(self, reason: PeerError | None = None, abort: bool = False) -> None:
        """Close the connection; ``abort`` drops unsent data (after a violation)."""
        if self.closed:
            return
        self.closed = True
        if reason is not None and self.close_reason is None:
            self.close_reason = reason
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def violation(self, exc: PeerError, what: str = "protocol_errors") -> None:
        """The peer broke the protocol: count, log, drop the connection."""
        setattr(self.counters, what, getattr(self.counters, what) + 1)
        log.warning(f"{self.role}.peer_dropped", peer=self.peer, reason=str(exc))
        self.close(exc, abort=True)

    # --- receiving -------------------------------------------------------------------------

    def expect(self, size: int, on_full: Callable[[], None]) -> None:
        """Next ``size`` (<= 128) bytes go to the scratch buffer, then ``on_full()``."""
        self._target = self._small_view[:size]
        self._filled = 0
        self._on_full = on_full

    def expect_header(self) -> None:
        self.expect(HEADER_SIZE, self.on_header)

    def expect_body(self, size: int, on_full: Callable[[], None]) -> None:
        """Next ``size`` bytes into a fresh bytearray ``self._body``, then ``on_full()``."""
        self._body = bytearray(size)
        self._target = memoryview(self._body)
        self._filled = 0
        self._on_full = on_full

    def expect_into(self, view: memoryview, on_full: Callable[[], None]) -> None:
        """Next ``len(view)`` bytes straight into ``view`` (a caller's buffer)."""
        self._target = view
        self._filled = 0
        self._on_full = on_full

    def discard(self, size: int, then: Callable[[], None]) -> None:
        """Read and drop ``size`` bytes (a payload nobody wants any more), then ``then()``."""
        if self._discard_buf is None:
            self._discard_buf = memoryview(bytearray(_DISCARD_CHUNK))
        self._discard_left = size
        self._discard_then = then
        self._discard_step()

    def _discard_step(self) -> None:
        if self._discard_left == 0:
            then, self._discard_then = self._discard_then, None
            then()  # type: ignore[misc]
            return
        chunk = min(self._discard_left, _DISCARD_CHUNK)
        self._discard_left -= chunk
        self.expect_into(self._discard_buf[:chunk], self._discard_step)  # type: ignore[index]

    def wait_without_target(self) -> None:
        """Stop reading until a subclass sets a new target and calls :meth:`resume`."""
        self._target = None
        self._on_full = None
        if self.transport is not None:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self.pump()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._target is None:  # never while reading is paused; refuse rather than lose bytes
            raise RuntimeError("data-plane connection read with no receive target")
        return self._target[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self.counters.bytes_received += nbytes
        self._filled += nbytes
        self.pump()

    def pump(self) -> None:
        """Run completion callbacks while the current target is full (a callback may set a
        zero-length target, e.g. an empty body)."""
        try:
            while not self.closed and self._target is not None and self._filled >= len(self._target):
                on_full = self._on_full
                on_full()  # type: ignore[misc]
        except PeerError as exc:
            self.violation(exc)
        except Exception as exc:  # a bug or a hostile input we did not foresee: drop the peer
            log.exception(f"{self.role}.receive_failed", peer=self.peer)
            self.violation(ProtocolError(f"receive failed: {type(exc).__name__}: {exc}"))

    def on_header(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # --- sending ---------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self._write_paused = True
        self.counters.write_pauses += 1

    def resume_writing(self) -> None:
        self._write_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait while the transport's write buffer is above its high-water mark; PeerTimeout when
        the peer reads nothing for ``timeout`` seconds."""
        deadline = None if timeout is None else self.loop.time() + timeout
        while self._write_paused and not self.closed:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            if deadline is None:
                await waiter
                continue
            try:
                await asyncio.wait_for(waiter, max(deadline - self.loop.time(), 0))
            except asyncio.TimeoutError:
                raise PeerTimeout(f"{self.peer} read nothing for {timeout:g} s") from None
        if self.closed:
            raise self.close_reason or PeerClosed(f"connection to {self.peer} closed")

    def write(self, *parts: bytes | memoryview) -> None:
        """Write one frame (its parts back to back, never interleaved with another frame)."""
        if self.closed:
            raise self.close_reason or PeerClosed(f"connection to {self.peer} closed")
        transport = self.transport
        transport.writelines(parts)  # type: ignore[union-attr]
        counters = self.counters
        counters.bytes_sent += sum(len(part) if isinstance(part, bytes) else memoryview(part).nbytes
                                   for part in parts)
        buffered = transport.get_write_buffer_size()  # type: ignore[union-attr]
        if buffered > counters.peak_write_buffer:
            counters.peak_write_buffer = buffered

    def write_frame(self, kind: Kind, request_id: int, body: bytes = b"") -> None:
        if body:
            self.write(pack_header(kind, request_id, len(body)), body)
        else:
            self.write(pack_header(kind, request_id, 0))
