"""The data-plane listener: typed routes, per-connection and per-peer limits, and bulk streams
sent at the pace the receiver reads.

    server = PeerServer(config.cluster_secret, limits=ServerLimits(), name="sharded-cache")
    server.route(PieceStats, stats_handler)        # returns a PieceStatsReply
    server.route(FetchPieces, fetch_handler)       # yields BulkItem / Missing
    await server.start("0.0.0.0", 9955)            # P2PConfigError off loopback without a secret
    member.endpoints = [server.endpoint(config.advertise_host)]
    ...
    await server.stop()

Handlers take the decoded request and may be plain functions or coroutines; a bulk handler may
also be an (async) generator. A handler's exception becomes an ERROR frame ("handler-failed")
at the caller, logged here; the connection and the server carry on. A client's CANCEL (its
timeout or cancellation) cancels the handler task and closes its generator.

Backpressure: before each bulk item the sender waits while the connection's write buffer is
above ``write_buffer_high`` (asyncio pause/resume_writing), so a slow reader stalls its own
stream — the generator is not pulled further — instead of growing this process's memory; the
buffered bytes of one connection stay below ``write_buffer_high`` + one frame per call in flight
(``stats["peak_write_buffer"]`` records the largest seen). A reader that takes nothing for
``send_timeout`` seconds is dropped, freeing its handlers.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from typing import Any, Callable

import blake3
import msgspec
import structlog

from services.p2p import frames
from services.p2p.connection import FrameConnection
from services.p2p.endpoints import advertised_endpoint, check_listen_host
from services.p2p.errors import HandshakeError, P2PConfigError, PeerError, PeerTimeout, ProtocolError
from services.p2p.frames import CLIENT_TO_SERVER, ErrorBody, Kind, RequestEnvelope, pack_item_header
from services.p2p.handshake import CLIENT_HELLO_SIZE, new_nonce, server_hello, server_proof, verify_client_hello
from services.p2p.limits import ServerLimits
from services.p2p.message import BulkItem, Missing, Request, check_request_type
from services.p2p.secret import ClusterSecret, as_secret
from services.p2p.stats import Counters

log = structlog.get_logger("p2p.server")

Handler = Callable[[Any], Any]
_MAX_ERROR_TEXT = 1000


class _Route(msgspec.Struct):
    request_type: Any
    handler: Any


class PeerServer:
    """One TCP listener serving the routes registered with :meth:`route`. ``hash_threads`` is
    BLAKE3's ``max_threads`` for digests of payloads sent without a stored one."""

    def __init__(self, secret: ClusterSecret | bytes | str | None = None, *, limits: ServerLimits | None = None,
                 name: str = "p2p", hash_threads: int = 1) -> None:
        self.secret = as_secret(secret)
        self.limits = limits or ServerLimits()
        self.name = name
        self.hash_threads = hash_threads
        self.counters = Counters()
        self.host: str | None = None
        self.port: int | None = None
        self._routes: dict[str, _Route] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[_ServerConnection] = set()
        self._per_peer: Counter[str] = Counter()

    @property
    def stats(self) -> dict[str, int]:
        """Counters (see :mod:`services.p2p.stats`) plus ``write_buffered``: bytes buffered now."""
        snapshot = self.counters.snapshot()
        snapshot["write_buffered"] = sum(c.buffered() for c in self._connections)
        return snapshot

    def route(self, request_type: type[Request], handler: Handler) -> None:
        """Serve ``request_type`` with ``handler(request)``; one handler per method."""
        check_request_type(request_type)
        if request_type.method in self._routes:
            raise ValueError(f"method {request_type.method!r} is already routed")
        self._routes[request_type.method] = _Route(request_type, handler)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (port 0: any free port, see :attr:`port`)."""
        check_listen_host(host, self.secret.is_set)
        if not self.secret.is_set:
            log.warning("p2p.no_cluster_secret", server=self.name,
                        detail="listening on loopback only; set --cluster-secret-file for other machines")
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: _ServerConnection(self), host, port, reuse_address=True,
                                                    backlog=min(self.limits.max_connections, 4096))
        except OSError as exc:
            raise P2PConfigError(f"{self.name}: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        bound = self._server.sockets[0].getsockname()
        self.host, self.port = host, bound[1]
        log.info("p2p.listening", server=self.name, host=host, port=self.port, secret=self.secret.is_set)

    def endpoint(self, advertise_host: str | None = None) -> str:
        """``tcp://HOST:PORT`` to advertise (see :func:`services.p2p.endpoints.advertised_endpoint`)."""
        if self.port is None:
            raise RuntimeError("server not started")
        return advertised_endpoint(self.host or "127.0.0.1", self.port, advertise_host)

    async def stop(self) -> None:
        """Stop listening, drop every connection and cancel the handlers still running."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close(abort=True)
        tasks = [task for connection in list(self._connections) for task in connection.tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> "PeerServer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- connection bookkeeping ------------------------------------------------------------

    def _admit(self, connection: "_ServerConnection", host: str) -> bool:
        if (len(self._connections) >= self.limits.max_connections
                or self._per_peer[host] >= self.limits.max_connections_per_peer):
            self.counters.connections_rejected += 1
            log.warning("p2p.connection_rejected", server=self.name, peer=host,
                        connections=len(self._connections), from_peer=self._per_peer[host])
            return False
        self._connections.add(connection)
        self._per_peer[host] += 1
        return True

    def _forget(self, connection: "_ServerConnection", host: str) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            self._per_peer[host] -= 1
            if self._per_peer[host] <= 0:
                del self._per_peer[host]


class _ServerConnection(FrameConnection):
    role = "p2p.server"

    def __init__(self, server: PeerServer) -> None:
        limits = server.limits
        super().__init__(server.counters, limits.write_buffer_high, limits.write_buffer_low)
        self.server = server
        self.limits = limits
        self.tasks: dict[int, asyncio.Task] = {}
        self.ready = False
        self.host = "?"
        self._hello = b""
        self._timer: asyncio.TimerHandle | None = None
        self._last_activity = self.loop.time()
        self._frame: tuple[int, int] = (0, 0)

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None and not self.closed else 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.host = peer[0] if peer else "?"
        if not self.server._admit(self, self.host):
            self.closed = True
            transport.abort()
            return
        super().connection_made(transport)
        self._hello = server_hello(new_nonce(), self.limits.max_in_flight, self.limits.max_request_size)
        self.write(self._hello)
        self.expect(CLIENT_HELLO_SIZE, self._on_client_hello)
        self._timer = self.loop.call_later(self.limits.handshake_timeout, self._handshake_expired)

    def on_closed(self, reason: PeerError) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in self.tasks.values():
            task.cancel()
        self.server._forget(self, self.host)

    # --- handshake and idle ----------------------------------------------------------------

    def _on_client_hello(self) -> None:
        try:
            client_nonce = verify_client_hello(self.server.secret.key, self._hello, bytes(self._small_view[:CLIENT_HELLO_SIZE]))
        except HandshakeError as exc:
            self.violation(exc, "handshake_failures")
            return
        self.write(server_proof(self.server.secret.key, self._hello, client_nonce))
        self.ready = True
        self._timer.cancel()  # type: ignore[union-attr]
        self._touch()
        self._timer = self.loop.call_later(self.limits.idle_timeout, self._idle_check)
        self.expect_header()

    def _handshake_expired(self) -> None:
        if not self.ready and not self.closed:
            self.counters.timeouts += 1
            self.violation(HandshakeError("handshake not completed in time"), "handshake_failures")

    def _touch(self) -> None:
        self._last_activity = self.loop.time()

    def _idle_check(self) -> None:
        if self.closed:
            return
        idle = self.loop.time() - self._last_activity
        if not self.tasks and idle >= self.limits.idle_timeout:
            log.debug("p2p.idle_close", server=self.server.name, peer=self.peer)
            self.close()
            return
        wait = self.limits.idle_timeout if self.tasks else self.limits.idle_timeout - idle
        self._timer = self.loop.call_later(wait, self._idle_check)

    # --- frames ----------------------------------------------------------------------------

    def on_header(self) -> None:
        kind, request_id, length = frames.unpack_header(self._small_view[:frames.HEADER_SIZE], CLIENT_TO_SERVER)
        self._touch()
        if kind is Kind.CANCEL:
            task = self.tasks.get(request_id)
            if task is not None:
                task.cancel()
            self.expect_header()
            return
        if not 0 < length <= self.limits.max_request_size:
            raise ProtocolError(f"request body of {length} bytes (limit {self.limits.max_request_size})")
        self._frame = (request_id, length)
        self.expect_body(length, self._on_request)

    def _on_request(self) -> None:
        request_id, _ = self._frame
        body, self._body = self._body, None
        self.expect_header()
        if request_id in self.tasks:
            raise ProtocolError(f"request id {request_id} reused while in flight")
        try:
            envelope = frames.decode(body, RequestEnvelope)  # type: ignore[arg-type]
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise ProtocolError("undecodable request envelope") from None
        self.counters.requests += 1
        route = self.server._routes.get(envelope.method)
        if route is None:
            self._reply_error(request_id, frames.UNKNOWN_METHOD, f"no handler for {envelope.method!r}")
            return
        if len(self.tasks) >= self.limits.max_in_flight:
            self._reply_error(request_id, frames.BUSY, f"more than {self.limits.max_in_flight} calls in flight")
            return
        try:
            request = frames.decode(envelope.body, route.request_type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._reply_error(request_id, frames.BAD_REQUEST, f"{envelope.method}: {exc}")
            return
        task = self.loop.create_task(self._serve(request_id, route, request))
        self.tasks[request_id] = task

    def _reply_error(self, request_id: int, code: str, message: str) -> None:
        self.counters.errors += 1
        if not self.closed:
            self.write_frame(Kind.ERROR, request_id, frames.encode(ErrorBody(code, message[:_MAX_ERROR_TEXT])))

    # --- handlers --------------------------------------------------------------------------

    async def _serve(self, request_id: int, route: _Route, request: Any) -> None:
        request_type = route.request_type
        try:
            result = route.handler(request)
            if inspect.isawaitable(result):
                result = await result
            if request_type.bulk:
                await self._send_stream(request_id, result)
            else:
                self._send_response(request_id, request_type, result)
        except asyncio.CancelledError:
            pass  # the client cancelled (or the connection went away): nothing more to send
        except PeerTimeout as exc:  # the reader stalled: free the handler and the buffers
            self.counters.timeouts += 1
            log.warning("p2p.reader_stalled", server=self.server.name, peer=self.peer, error=str(exc))
            self.close(exc, abort=True)
        except Exception as exc:
            if self.closed:
                return  # our connection closed under the handler: nobody to tell
            log.warning("p2p.handler_failed", server=self.server.name, method=request_type.method, peer=self.peer,
                        error=f"{type(exc).__name__}: {exc}", exc_info=not isinstance(exc, (ValueError, KeyError)))
            self._reply_error(request_id, frames.HANDLER_FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            self.tasks.pop(request_id, None)
            self._touch()

    def _send_response(self, request_id: int, request_type: type[Request], result: Any) -> None:
        expected = request_type.response
        if isinstance(expected, type) and not isinstance(result, expected):
            raise TypeError(f"handler of {request_type.method} returned {type(result).__name__}, "
                            f"expected {expected.__name__}")
        body = frames.encode(result)
        if len(body) > self.limits.max_response_size:
            self._reply_error(request_id, frames.BAD_RESPONSE,
                              f"response of {len(body)} bytes exceeds {self.limits.max_response_size}")
            return
        self.write_frame(Kind.RESPONSE, request_id, body)

    async def _send_stream(self, request_id: int, source: Any) -> None:
        max_item = self.limits.max_item_size
        counters = self.counters
        hash_threads = self.server.hash_threads
        if hasattr(source, "__aiter__"):
            iterator = source.__aiter__()
            is_async = True
        elif hasattr(source, "__iter__"):
            iterator = iter(source)
            is_async = False
        else:
            raise TypeError(f"bulk handler returned {type(source).__name__}, not an iterable of BulkItem/Missing")
        try:
            while True:
                try:
                    entry = await iterator.__anext__() if is_async else next(iterator)
                except (StopAsyncIteration, StopIteration):
                    break
                if self._write_paused:
                    await self.drain(self.limits.send_timeout)
                if isinstance(entry, BulkItem):
                    payload = memoryview(entry.payload)
                    size = payload.nbytes
                    if size > max_item:
                        raise ValueError(f"bulk item {entry.key} of {size} bytes exceeds {max_item}")
                    if not payload.c_contiguous:
                        raise ValueError(f"bulk item {entry.key} payload is not contiguous")
                    digest = entry.digest or blake3.blake3(payload, max_threads=hash_threads).digest()
                    self.write(pack_item_header(request_id, entry.key, digest, size), payload)
                    counters.items += 1
                elif isinstance(entry, Missing):
                    if entry.keys:
                        if not all(isinstance(k, int) and 0 <= k <= frames.MAX_KEY for k in entry.keys):
                            raise ValueError("Missing keys must be u64 integers")
                        self.write_frame(Kind.MISSING, request_id, frames.encode(entry.keys))
                        counters.missing += len(entry.keys)
                else:
                    raise TypeError(f"bulk handler yielded {type(entry).__name__}, not BulkItem or Missing")
            self.write_frame(Kind.END, request_id)
        finally:
            close = getattr(iterator, "aclose", None) if is_async else getattr(iterator, "close", None)
            if close is not None:
                result = close()
                if inspect.isawaitable(result):
                    await result
