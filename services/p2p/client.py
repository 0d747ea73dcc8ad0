"""The pooled data-plane client, safe to share between any number of tasks.

    client = PeerClient(config.cluster_secret, limits=ClientLimits(), name="plot-server")
    reply = await client.request("tcp://10.0.0.5:9955", PieceStats(cache_id="a"), timeout=5)
    sector = bytearray(1000 * PIECE_SIZE); view = memoryview(sector)
    slots = KeyedBuffers({index: view[i * PIECE_SIZE:(i + 1) * PIECE_SIZE] for i, index in enumerate(indices)})
    result = await client.fetch("tcp://10.0.0.5:9955", FetchPieces(piece_indices=indices), slots)
    result.received  # {index: view of its slot}, BLAKE3-verified
    result.failed    # missing + corrupt: fetch those from another source
    async with client.stream(endpoint, FetchPieces(piece_indices=indices), BufferPool(PIECE_SIZE, 8)) as items:
        async for index, view in items:           # as they arrive; give each buffer back
            ...; pool.release(view)
    await client.close()

Connections: up to ``connections_per_endpoint`` per ``tcp://HOST:PORT``, opened on demand
(connect + handshake), each carrying up to ``max_in_flight`` concurrent calls, closed after
``idle_timeout`` unused; a connection that fails is dropped and the next call dials a new one.
A call whose *reused* connection turns out to be closed before any reply arrived is sent once
more on a fresh connection (data-plane requests are reads; keep them idempotent).

Errors (``services.p2p.errors``): PeerUnreachable (connect failed), PeerTimeout (connect,
handshake or no progress for ``timeout`` s), PeerClosed, HandshakeError (secret mismatch),
ProtocolError (the peer broke the protocol or lied about keys), RemoteError (the peer's error
reply). None of them leaves bytes flowing into the caller's buffers afterwards.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from services.p2p.calls import BulkCall, UnaryCall
from services.p2p.client_connection import ClientConnection
from services.p2p.endpoints import parse_endpoint
from services.p2p.errors import PeerClosed, PeerTimeout, PeerUnreachable
from services.p2p.limits import ClientLimits
from services.p2p.message import Request, check_request_type
from services.p2p.secret import ClusterSecret, as_secret
from services.p2p.sinks import FetchResult
from services.p2p.stats import Counters


class PeerClient:
    """Client of any number of data-plane servers. ``hash_threads`` is BLAKE3's ``max_threads``
    for verifying payloads (1 = in the event-loop thread; more only pays on idle many-core hosts)."""

    def __init__(self, secret: ClusterSecret | bytes | str | None = None, *, limits: ClientLimits | None = None,
                 name: str = "p2p-client", hash_threads: int = 1) -> None:
        self.secret = as_secret(secret)
        self.limits = limits or ClientLimits()
        self.name = name
        self.hash_threads = hash_threads
        self.counters = Counters()
        self.closed = False
        self._pools: dict[str, _EndpointPool] = {}

    @property
    def stats(self) -> dict[str, int]:
        return self.counters.snapshot()

    async def request(self, endpoint: str, request: Request, *, timeout: float | None = None) -> Any:
        """Send a unary request; returns the decoded response (of ``type(request).response``)."""
        request_type = check_request_type(type(request))
        if request_type.bulk:
            raise TypeError(f"{request_type.__name__} is a bulk request: use fetch() or stream()")
        timeout = timeout or self.limits.request_timeout
        pool = self._pool(endpoint)
        for attempt in (0, 1):
            conn = await pool.acquire(timeout)
            reused = conn.calls_started > 0
            call = UnaryCall(conn, request, timeout)
            conn.start(call, request)
            try:
                return await call.future
            except asyncio.CancelledError:
                call.cancel()
                raise
            except PeerClosed as exc:
                if attempt == 0 and reused and exc.before_reply:
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def fetch(self, endpoint: str, request: Request, into: Any, *, timeout: float | None = None) -> FetchResult:
        """Run a bulk request to the end, payloads received into the sink ``into``
        (``KeyedBuffers``, ``BufferPool`` or your own, see :mod:`services.p2p.sinks`)."""
        received: dict[int, memoryview] = {}
        stream = self.stream(endpoint, request, into, timeout=timeout)
        try:
            async for key, view in stream:
                received[key] = view
        except BaseException:
            await stream.aclose()
            for key, view in received.items():
                into.give_back(key, view)
            raise
        return FetchResult(received, stream.missing, stream.corrupt, into)

    def stream(self, endpoint: str, request: Request, into: Any, *, timeout: float | None = None) -> "BulkStream":
        """A bulk request whose items are yielded as they arrive (use ``async with``, so leaving
        early cancels the call and hands unconsumed buffers back)."""
        request_type = check_request_type(type(request))
        if not request_type.bulk:
            raise TypeError(f"{request_type.__name__} is not a bulk request: use request()")
        return BulkStream(self, endpoint, request, into, timeout or self.limits.request_timeout)

    async def close(self) -> None:
        """Close every connection; calls in flight fail with PeerClosed."""
        self.closed = True
        for pool in list(self._pools.values()):
            pool.close()
        self._pools.clear()

    async def __aenter__(self) -> "PeerClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _pool(self, endpoint: str) -> "_EndpointPool":
        if self.closed:
            raise PeerClosed(f"{self.name}: client closed")
        pool = self._pools.get(endpoint)
        if pool is None:
            pool = self._pools[endpoint] = _EndpointPool(self, endpoint)
        return pool

    async def _open(self, pool: "_EndpointPool", timeout: float) -> ClientConnection:
        loop = asyncio.get_running_loop()
        limits = self.limits
        connect_timeout = min(limits.connect_timeout, timeout)
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: ClientConnection(self, pool), pool.host, pool.port),
                connect_timeout)
        except asyncio.TimeoutError:
            self.counters.timeouts += 1
            raise PeerTimeout(f"connect to {pool.endpoint} timed out after {connect_timeout:g} s") from None
        except OSError as exc:
            raise PeerUnreachable(f"cannot connect to {pool.endpoint}: {exc.strerror or exc}") from None
        try:
            await asyncio.wait_for(asyncio.shield(conn.ready), limits.handshake_timeout)
        except asyncio.TimeoutError:
            self.counters.timeouts += 1
            self.counters.handshake_failures += 1
            conn.close(abort=True)
            raise PeerTimeout(f"handshake with {pool.endpoint} timed out after {limits.handshake_timeout:g} s") from None
        return conn


class BulkStream:
    """Async iterator of ``(key, view)`` for one bulk call; ``missing`` / ``corrupt`` are
    complete once iteration ends."""

    def __init__(self, client: PeerClient, endpoint: str, request: Request, sink: Any, timeout: float) -> None:
        self._client = client
        self._endpoint = endpoint
        self._request = request
        self._sink = sink
        self._timeout = timeout
        self._call: BulkCall | None = None
        self._attempt = 0
        self._reused = False
        self._yielded = False

    @property
    def missing(self) -> list[int]:
        return self._call.missing if self._call is not None else []

    @property
    def corrupt(self) -> list[int]:
        return self._call.corrupt if self._call is not None else []

    async def _start(self) -> None:
        conn = await self._client._pool(self._endpoint).acquire(self._timeout)
        self._reused = conn.calls_started > 0
        self._call = BulkCall(conn, self._request, self._sink, self._timeout)
        conn.start(self._call, self._request)

    async def __aenter__(self) -> "BulkStream":
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> "BulkStream":
        return self

    async def __anext__(self) -> tuple[int, memoryview]:
        if self._call is None:
            await self._start()
        while True:
            try:
                item = await self._call.next_item()  # type: ignore[union-attr]
            except asyncio.CancelledError:
                await self.aclose()
                raise
            except PeerClosed as exc:
                if self._attempt == 0 and self._reused and exc.before_reply and not self._yielded:
                    self._attempt = 1
                    await self._start()
                    continue
                raise
            if item is None:
                raise StopAsyncIteration
            self._yielded = True
            return item

    async def aclose(self) -> None:
        """Cancel the call if it is still running; give unconsumed buffers back to the sink."""
        call = self._call
        if call is None:
            return
        if not call.done:
            call.cancel()
        call.give_back_unconsumed()


class _EndpointPool:
    """Connections to one endpoint and the tasks waiting for a free call slot."""

    def __init__(self, client: PeerClient, endpoint: str) -> None:
        self.client = client
        self.endpoint = endpoint
        self.host, self.port = parse_endpoint(endpoint)
        self.connections: list[ClientConnection] = []
        self.opening = 0
        self._waiters: deque[asyncio.Future] = deque()

    def _pick(self) -> ClientConnection | None:
        """An idle connection; else None when a new one should be dialled; else the least
        loaded one with a free slot (also while another task is dialling)."""
        best = None
        for conn in self.connections:
            if conn.usable and conn.active < conn.max_in_flight:
                if conn.active == 0:
                    return conn
                if best is None or conn.active < best.active:
                    best = conn
        room = len(self.connections) + self.opening < self.client.limits.connections_per_endpoint
        if best is not None and (not room or self.opening):
            return best
        return None

    async def acquire(self, timeout: float) -> ClientConnection:
        """A connection with a call slot reserved for the caller (``conn.active`` counts it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.client.closed:
                raise PeerClosed(f"{self.client.name}: client closed")
            conn = self._pick()
            if conn is not None:
                conn.active += 1
                return conn
            if len(self.connections) + self.opening < self.client.limits.connections_per_endpoint:
                self.opening += 1
                try:
                    conn = await self.client._open(self, max(deadline - loop.time(), 0.001))
                finally:
                    self.opening -= 1
                    self._wake(all_waiters=True)
                self.connections.append(conn)
                conn.active += 1
                return conn
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise PeerTimeout(f"no free call slot to {self.endpoint} within {timeout:g} s")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:
                self.client.counters.timeouts += 1
                raise PeerTimeout(f"no free call slot to {self.endpoint} within {timeout:g} s") from None

    def _wake(self, all_waiters: bool = False) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not all_waiters:
                    return

    def slot_freed(self, conn: ClientConnection) -> None:
        self._wake()

    def connection_lost(self, conn: ClientConnection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)
            self._wake(all_waiters=True)

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close(PeerClosed(f"{self.client.name}: client closed"), abort=True)
        self.connections.clear()
        self._wake(all_waiters=True)
