"""One pooled client connection: the handshake from the client side, calls multiplexed by
request id, and bulk payloads received straight into the caller's sink buffers.

Receiving an item: the 12-byte frame header and the 40-byte item header (key, BLAKE3 digest) go
to scratch; the sink is asked for a buffer of the payload's size; the payload is read into it;
its digest is checked (a mismatch is counted and reported as ``corrupt``, the buffer handed
back). A sink with no free buffer pauses reading from this connection, which fills the TCP
window and stalls the server's sender: backpressure all the way to the source. Frames for calls
that already ended (timed out, cancelled) are read and dropped, never written into a buffer
the caller got back.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import blake3
import msgspec
import structlog

from services.p2p import frames
from services.p2p.calls import BulkCall, Call
from services.p2p.connection import FrameConnection
from services.p2p.errors import HandshakeError, PeerClosed, PeerError, ProtocolError, RemoteError
from services.p2p.frames import ITEM_HEADER, ITEM_HEADER_SIZE, SERVER_TO_CLIENT, ErrorBody, Kind, RequestEnvelope
from services.p2p.handshake import (
    SERVER_HELLO_SIZE,
    SERVER_PROOF_SIZE,
    client_hello,
    new_nonce,
    parse_server_hello,
    verify_server_proof,
)

if TYPE_CHECKING:  # pragma: no cover
    from services.p2p.client import PeerClient, _EndpointPool

log = structlog.get_logger("p2p.client")


class ClientConnection(FrameConnection):
    role = "p2p.client"

    def __init__(self, client: "PeerClient", pool: "_EndpointPool") -> None:
        limits = client.limits
        super().__init__(client.counters, limits.write_buffer_high, limits.write_buffer_low)
        self.client = client
        self.pool = pool
        self.endpoint = pool.endpoint
        self.limits = limits
        self.ready: asyncio.Future = self.loop.create_future()
        self.calls: dict[int, Call] = {}
        self.active = 0  # pool slots taken (calls starting or in flight)
        self.calls_started = 0
        self.max_in_flight = limits.max_in_flight
        self.max_request_size = limits.max_control_size
        self.received = 0  # bytes, for payload-progress checks
        self.idle_since = self.loop.time()
        self._next_id = 0
        self._hello: Any = None
        self._client_nonce = b""
        self._sent_proof = False
        self._frame_kind = Kind.END
        self._frame_id = 0
        self._frame_size = 0
        self._item: tuple[BulkCall, int, bytes, memoryview] | None = None
        self._waiting: tuple[BulkCall, int, bytes, int] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    @property
    def usable(self) -> bool:
        return not self.closed and self.ready.done() and self.ready.exception() is None

    # --- handshake -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.expect(SERVER_HELLO_SIZE, self._on_server_hello)

    def _on_server_hello(self) -> None:
        try:
            self._hello = parse_server_hello(bytes(self._small_view[:SERVER_HELLO_SIZE]))
        except HandshakeError as exc:
            self.violation(exc, "handshake_failures")
            return
        self._client_nonce = new_nonce()
        self.write(client_hello(self.client.secret.key, self._hello, self._client_nonce))
        self._sent_proof = True
        self.expect(SERVER_PROOF_SIZE, self._on_server_proof)

    def _on_server_proof(self) -> None:
        try:
            verify_server_proof(self.client.secret.key, self._hello, self._client_nonce,
                                self._small_view[:SERVER_PROOF_SIZE])
        except HandshakeError as exc:
            self.violation(exc, "handshake_failures")
            return
        self.max_in_flight = min(self.limits.max_in_flight, self._hello.max_in_flight)
        self.max_request_size = self._hello.max_request_size
        self.ready.set_result(None)
        self.expect_header()

    def on_closed(self, reason: PeerError) -> None:
        if not self.ready.done():
            if self._sent_proof and isinstance(reason, PeerClosed):
                self.counters.handshake_failures += 1
                reason = HandshakeError(f"{self.endpoint} closed the connection after our proof "
                                        "(wrong cluster secret?)")
            self.ready.set_exception(reason)
            self.ready.exception()  # retrieved: an abandoned connect must not log it
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for call in list(self.calls.values()):
            if isinstance(reason, PeerClosed):
                call.fail(PeerClosed(f"{call.method} to {self.endpoint}: {reason}", before_reply=not call.replied))
            else:
                call.fail(reason)
        self.pool.connection_lost(self)

    # --- calls -----------------------------------------------------------------------------

    def start(self, call: Call, request: Any) -> None:
        """Register ``call`` (its pool slot is already taken) and send its REQUEST frame."""
        body = frames.encode(RequestEnvelope(type(request).method, msgspec.Raw(frames.encode(request))))
        rid = self._next_id
        while True:
            rid = rid + 1 if rid < frames.MAX_REQUEST_ID else 1
            if rid not in self.calls:
                break
        self._next_id = rid
        call.request_id = rid
        self.calls[rid] = call
        self.calls_started += 1
        self.counters.requests += 1
        if len(body) > self.max_request_size:
            call.fail(ProtocolError(f"{call.method} request of {len(body)} bytes exceeds the server's limit "
                                    f"of {self.max_request_size}"))
            return
        try:
            self.write_frame(Kind.REQUEST, rid, body)
        except PeerError as exc:
            call.fail(PeerClosed(f"{call.method} to {self.endpoint}: {exc}", before_reply=True))

    def call_done(self, call: Call) -> None:
        """A call ended (any way): free its slot; stop writing into its buffers."""
        if self.calls.get(call.request_id) is call:
            del self.calls[call.request_id]
        self.active -= 1
        if self.active == 0:
            self.idle_since = self.loop.time()
            if self._idle_timer is None and not self.closed:
                self._idle_timer = self.loop.call_later(self.limits.idle_timeout, self._idle_check)
        if self._item is not None and self._item[0] is call:
            _, key, _, view = self._item
            self._item = None
            left = len(view) - self._filled
            call.sink.give_back(key, view)
            self.discard(left, self.expect_header)
        if self._waiting is not None and self._waiting[0] is call:
            size = self._waiting[3]
            self._waiting = None
            self.discard(size, self.expect_header)
            self.resume()
        self.pool.slot_freed(self)

    def send_cancel(self, request_id: int) -> None:
        if not self.closed and request_id:
            try:
                self.write_frame(Kind.CANCEL, request_id)
            except PeerError:
                pass

    def is_receiving_for(self, call: Call) -> bool:
        return self._item is not None and self._item[0] is call

    def is_waiting_for(self, call: Call) -> bool:
        return self._waiting is not None and self._waiting[0] is call

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self.closed:
            return
        idle = self.loop.time() - self.idle_since
        if self.active == 0 and idle >= self.limits.idle_timeout:
            self.close()
            self.pool.connection_lost(self)
        elif self.active == 0:
            self._idle_timer = self.loop.call_later(self.limits.idle_timeout - idle, self._idle_check)

    # --- frames ----------------------------------------------------------------------------

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes
        super().buffer_updated(nbytes)

    def on_header(self) -> None:
        kind, rid, length = frames.unpack_header(self._small_view[:frames.HEADER_SIZE], SERVER_TO_CLIENT)
        if kind is Kind.ITEM:
            size = length - ITEM_HEADER_SIZE
            if not 0 <= size <= self.limits.max_item_size:
                raise ProtocolError(f"bulk item frame of {length} bytes (item limit {self.limits.max_item_size})")
            self._frame_id, self._frame_size = rid, size
            self.expect(ITEM_HEADER_SIZE, self._on_item_header)
        elif kind is Kind.END:
            call = self.calls.get(rid)
            if call is not None:
                if not call.bulk:
                    raise ProtocolError(f"END frame for the unary call {call.method}")
                call.end()  # type: ignore[attr-defined]
            self.expect_header()
        else:
            if not 0 < length <= self.limits.max_control_size:
                raise ProtocolError(f"{kind.name} frame of {length} bytes (limit {self.limits.max_control_size})")
            self._frame_kind, self._frame_id = kind, rid
            self.expect_body(length, self._on_control)

    def _on_control(self) -> None:
        kind, rid = self._frame_kind, self._frame_id
        body, self._body = self._body, None
        self.expect_header()
        call = self.calls.get(rid)
        if call is None:
            return  # the reply of a call that already ended
        call.progress()
        if kind is Kind.ERROR:
            try:
                error = frames.decode(body, ErrorBody)  # type: ignore[arg-type]
            except (msgspec.DecodeError, msgspec.ValidationError):
                call.fail(ProtocolError(f"{self.endpoint} sent an undecodable error for {call.method}"))
                return
            call.fail(RemoteError(error.code, f"{call.method} at {self.endpoint}: {error.message}"))
        elif kind is Kind.RESPONSE:
            if call.bulk:
                raise ProtocolError(f"RESPONSE frame for the bulk call {call.method}")
            try:
                value = frames.decode(body, call.response_type)  # type: ignore[arg-type, attr-defined]
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                call.fail(ProtocolError(f"{call.method} response from {self.endpoint}: {exc}"), cancel=False)
                return
            call.complete(value)  # type: ignore[attr-defined]
        else:  # MISSING
            if not call.bulk:
                raise ProtocolError(f"MISSING frame for the unary call {call.method}")
            try:
                keys = frames.decode(body, list[int])  # type: ignore[arg-type]
                call.add_missing(keys)  # type: ignore[attr-defined]
            except (msgspec.DecodeError, msgspec.ValidationError, ProtocolError) as exc:
                call.fail(ProtocolError(f"{call.method} from {self.endpoint}: bad MISSING frame: {exc}"), cancel=True)
                return
            self.counters.missing += len(keys)

    def _on_item_header(self) -> None:
        rid, size = self._frame_id, self._frame_size
        key, digest = ITEM_HEADER.unpack_from(self._small, 0)
        call = self.calls.get(rid)
        if call is None:
            self.discard(size, self.expect_header)  # a late item of a call that ended
            return
        if not call.bulk:
            raise ProtocolError(f"ITEM frame for the unary call {call.method}")
        call.progress()
        try:
            call.check_key(key)  # type: ignore[attr-defined]
        except ProtocolError as exc:
            call.fail(exc, cancel=True)
            self.discard(size, self.expect_header)
            return
        self._start_payload(call, key, digest, size)  # type: ignore[arg-type]

    def _start_payload(self, call: BulkCall, key: int, digest: bytes, size: int) -> None:
        try:
            view = call.sink.buffer_for(key, size)
            if view is not None and len(view) != size:
                raise ValueError(f"sink gave {len(view)} bytes for a {size}-byte item")
        except (KeyError, ValueError) as exc:
            call.fail(ProtocolError(f"{call.method} from {self.endpoint}: item {key}: {exc}"), cancel=True)
            self.discard(size, self.expect_header)
            return
        if view is None:  # the caller's buffers are all taken: stop reading until one frees
            self._waiting = (call, key, digest, size)
            self.counters.read_pauses += 1
            self.wait_without_target()
            call.sink.notify_free(self._buffer_freed)
            return
        self._item = (call, key, digest, view)
        self.expect_into(view, self._on_payload)

    def _buffer_freed(self) -> None:
        self.loop.call_soon(self._resume_item)  # never re-enter the receive loop from a callback

    def _resume_item(self) -> None:
        if self.closed or self._waiting is None:
            return
        call, key, digest, size = self._waiting
        self._waiting = None
        if call.done:
            self.discard(size, self.expect_header)
        else:
            self._start_payload(call, key, digest, size)
        if self._waiting is None:
            self.resume()

    def _on_payload(self) -> None:
        call, key, digest, view = self._item  # type: ignore[misc]
        self._item = None
        self.expect_header()
        if blake3.blake3(view, max_threads=self.client.hash_threads).digest() == digest:
            self.counters.items += 1
            call.push(key, view)
        else:
            self.counters.integrity_failures += 1
            log.warning("p2p.corrupt_item", endpoint=self.endpoint, method=call.method, key=key)
            call.sink.give_back(key, view)
            call.add_corrupt(key)
