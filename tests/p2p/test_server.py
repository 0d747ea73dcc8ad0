"""PeerServer on real loopback sockets: typed round trips, handler errors, malformed frames and
handshakes (each closes only its own connection), connection limits, timeouts, backpressure."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from services.p2p import (
    BufferPool,
    BulkItem,
    HandshakeError,
    P2PConfigError,
    PeerClosed,
    PeerServer,
    PeerTimeout,
    RemoteError,
    Request,
    ServerLimits,
    frames,
)
from services.p2p.frames import HEADER, Kind, pack_header

from p2p_helpers import RawPeer, wait_until
from p2p_messages import Echo, EchoReply, Fetch, echo

EVENT_LOOPS = ("uvloop", "asyncio")


class Boom(Request):
    method = "test.boom"
    response = EchoReply
    why: str


class Hold(Request):
    method = "test.hold"
    response = EchoReply


def boom(request: Boom) -> EchoReply:
    raise ValueError(request.why)


async def test_typed_round_trip(servers, clients):
    server = await servers({Echo: echo})
    client = clients()
    reply = await client.request(server.endpoint(), Echo(text="hi", n=21))
    assert reply == EchoReply("hi", 42)
    assert server.stats["requests"] == 1 and client.stats["requests"] == 1
    assert server.stats["bytes_received"] == client.stats["bytes_sent"] > 0


async def test_async_handler_and_wrong_return_type(servers, clients):
    async def handler(request: Echo):
        await asyncio.sleep(0)
        return "not an EchoReply" if request.n < 0 else EchoReply(request.text, 1)

    server = await servers({Echo: handler})
    client = clients()
    assert (await client.request(server.endpoint(), Echo(text="a"))).n == 1
    with pytest.raises(RemoteError) as info:
        await client.request(server.endpoint(), Echo(text="a", n=-1))
    assert info.value.code == frames.HANDLER_FAILED and "expected EchoReply" in str(info.value)


async def test_handler_error_keeps_the_connection(servers, clients):
    server = await servers({Echo: echo, Boom: boom})
    client = clients()
    with pytest.raises(RemoteError) as info:
        await client.request(server.endpoint(), Boom(why="disk on fire"))
    assert info.value.code == frames.HANDLER_FAILED and "disk on fire" in str(info.value)
    assert (await client.request(server.endpoint(), Echo(text="still here"))).text == "still here"
    assert server.stats["connections_opened"] == 1 and server.stats["errors"] == 1


async def test_unknown_method_and_bad_request_are_error_replies(servers):
    server = await servers({Echo: echo})
    peer = await RawPeer.connect(server.port)
    await peer.handshake()

    class Other(Request):
        method = "test.nobody-serves-this"
        response = EchoReply

    kind, request_id, body = await peer.request(Other(), request_id=5)
    assert (kind, request_id) == (Kind.ERROR, 5)
    assert frames.decode(body, frames.ErrorBody).code == frames.UNKNOWN_METHOD

    class BadEcho(Request):  # same method, wrong field types
        method = Echo.method
        response = EchoReply
        text: int

    kind, _, body = await peer.request(BadEcho(text=3), request_id=6)
    assert kind is Kind.ERROR and frames.decode(body, frames.ErrorBody).code == frames.BAD_REQUEST
    kind, _, body = await peer.request(Echo(text="ok", n=1), request_id=7)
    assert kind is Kind.RESPONSE and frames.decode(body, EchoReply) == EchoReply("ok", 2)
    peer.close()


MALFORMED = {
    "unknown kind": HEADER.pack(99, 0, 0, 1, 0),
    "oversized length": pack_header(Kind.REQUEST, 1, 2**31),
    "nonzero flags": HEADER.pack(Kind.REQUEST, 1, 0, 1, 4) + b"\x92\xa0\xc0\x00",
    "server kind from a client": pack_header(Kind.ITEM, 1, 50) + bytes(50),
    "empty request": pack_header(Kind.REQUEST, 1, 0),
    "undecodable envelope": pack_header(Kind.REQUEST, 1, 4) + b"\xc1\xc1\xc1\xc1",
    "garbage": bytes(range(256)) * 4,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_frame_closes_only_that_connection(servers, clients, case):
    server = await servers({Echo: echo}, limits=ServerLimits(max_request_size=4096))
    client = clients()
    endpoint = server.endpoint()
    assert (await client.request(endpoint, Echo(text="before"))).text == "before"
    peer = await RawPeer.connect(server.port)
    await peer.handshake()
    peer.send(MALFORMED[case])
    assert await peer.closed_by_peer()
    assert server.stats["protocol_errors"] == 1
    assert (await client.request(endpoint, Echo(text="after"))).text == "after"
    assert client.stats["connections_opened"] == 1  # the good client's connection was never touched


async def test_garbage_before_handshake(servers, clients):
    server = await servers({Echo: echo})
    peer = await RawPeer.connect(server.port)
    peer.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00" * 64)
    assert await peer.closed_by_peer()
    assert server.stats["handshake_failures"] == 1
    assert (await clients().request(server.endpoint(), Echo(text="fine"))).text == "fine"


async def test_truncated_frames(servers, clients):
    server = await servers({Echo: echo}, limits=ServerLimits(idle_timeout=0.3))
    hangs_up = await RawPeer.connect(server.port)
    await hangs_up.handshake()
    hangs_up.send(pack_header(Kind.REQUEST, 1, 100) + b"\x92" * 10)
    hangs_up.writer.write_eof()
    assert await hangs_up.closed_by_peer()
    stalls = await RawPeer.connect(server.port)  # half a frame, then silence: the idle timeout ends it
    await stalls.handshake()
    stalls.send(pack_header(Kind.REQUEST, 1, 100) + b"\x92" * 10)
    assert await stalls.closed_by_peer()
    assert (await clients().request(server.endpoint(), Echo(text="ok"))).text == "ok"
    await wait_until(lambda: server.stats["connections_active"] <= 1, "truncated connections to be dropped")


async def test_handshake_timeout(servers):
    server = await servers({Echo: echo}, limits=ServerLimits(handshake_timeout=0.2))
    peer = await RawPeer.connect(server.port)
    await peer.reader.readexactly(48)  # the server hello; we never answer
    assert await peer.closed_by_peer()
    assert server.stats["timeouts"] == 1 and server.stats["handshake_failures"] == 1


async def test_peers_without_the_secret_are_refused(servers, clients):
    server = await servers({Echo: echo})
    for secret in (b"wrong-secret-0123456789abcdef", None):
        with pytest.raises(HandshakeError):
            await clients(secret=secret).request(server.endpoint(), Echo(text="let me in"))
    peer = await RawPeer.connect(server.port)
    with pytest.raises((HandshakeError, asyncio.IncompleteReadError, ConnectionError)):
        await peer.handshake(b"also-wrong")
    assert server.stats["handshake_failures"] == 3 and server.stats["requests"] == 0


async def test_no_secret_means_loopback_only(servers, clients):
    with pytest.raises(P2PConfigError, match="without a cluster secret"):
        await PeerServer(None).start("0.0.0.0", 0)
    server = await servers({Echo: echo}, secret=None)
    assert (await clients(secret=None).request(server.endpoint(), Echo(text="local"))).text == "local"
    with pytest.raises(HandshakeError):  # a client with a secret will not talk to an open server
        await clients().request(server.endpoint(), Echo(text="x"))


async def test_connections_per_peer_limit(servers):
    server = await servers({Echo: echo}, limits=ServerLimits(max_connections_per_peer=2))
    first, second = await RawPeer.connect(server.port), await RawPeer.connect(server.port)
    await first.handshake()
    await second.handshake()
    third = await RawPeer.connect(server.port)
    assert await third.closed_by_peer()
    assert server.stats["connections_rejected"] == 1
    first.close()
    await wait_until(lambda: server.stats["connections_active"] == 1, "the closed connection to be released")
    fourth = await RawPeer.connect(server.port)
    await fourth.handshake()
    kind, _, _ = await fourth.request(Echo(text="in"))
    assert kind is Kind.RESPONSE


async def test_busy_and_cancel(servers):
    release = asyncio.Event()
    cancelled = asyncio.Event()

    async def hold(request: Hold) -> EchoReply:
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return EchoReply("released", 0)

    server = await servers({Hold: hold}, limits=ServerLimits(max_in_flight=1))
    peer = await RawPeer.connect(server.port)
    await peer.handshake()
    body = frames.encode(frames.RequestEnvelope(Hold.method, msgspec.Raw(frames.encode(Hold()))))
    peer.send(pack_header(Kind.REQUEST, 1, len(body)) + body + pack_header(Kind.REQUEST, 2, len(body)) + body)
    kind, request_id, reply = await peer.read_frame()
    assert (kind, request_id) == (Kind.ERROR, 2) and frames.decode(reply, frames.ErrorBody).code == frames.BUSY
    peer.send(pack_header(Kind.CANCEL, 1, 0))
    await asyncio.wait_for(cancelled.wait(), 10)
    peer.send(pack_header(Kind.REQUEST, 3, len(body)) + body)
    await wait_until(lambda: len(next(iter(server._connections)).tasks) == 1, "the third call to start")
    release.set()
    kind, request_id, reply = await peer.read_frame()
    assert (kind, request_id) == (Kind.RESPONSE, 3) and frames.decode(reply, EchoReply).text == "released"


async def test_client_timeout_cancels_the_handler(servers, clients):
    cancelled = asyncio.Event()

    async def hold(request: Hold) -> EchoReply:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    server = await servers({Hold: hold})
    with pytest.raises(PeerTimeout, match="no reply"):
        await clients().request(server.endpoint(), Hold(), timeout=0.2)
    await asyncio.wait_for(cancelled.wait(), 10)


async def test_slow_reader_keeps_server_buffer_bounded(servers, clients):
    size, count = 1 << 20, 96
    payload = bytes(range(256)) * (size // 256)
    produced = []

    def fetch(request: Fetch):
        for key in request.keys:
            produced.append(key)
            yield BulkItem(key, payload)

    high = 1 << 20
    server = await servers({Fetch: fetch}, limits=ServerLimits(write_buffer_high=high, write_buffer_low=high // 4))
    client = clients()
    pool = BufferPool(size, 2)
    received = 0
    async with client.stream(server.endpoint(), Fetch(keys=list(range(count))), pool) as items:
        held = [await items.__anext__()]  # the consumer lags: it holds its buffers
        await wait_until(lambda: server.stats["write_pauses"] > 0 and client.stats["read_pauses"] > 0,
                         "the server to stop producing for the stalled reader")
        stalled_at = len(produced)
        assert stalled_at < count, "the generator ran ahead of the reader"
        assert server.stats["write_buffered"] <= high + size + 64
        for _, view in held:
            pool.release(view)
        received = 1
        async for _key, view in items:
            assert view == payload
            pool.release(view)
            received += 1
    assert received == count
    assert server.stats["peak_write_buffer"] <= high + size + 64


async def test_stalled_reader_is_dropped(servers, clients):
    size = 1 << 20
    payload = bytes(size)

    def fetch(request: Fetch):
        for key in request.keys:
            yield BulkItem(key, payload)

    server = await servers({Fetch: fetch}, limits=ServerLimits(write_buffer_high=size, write_buffer_low=size // 4,
                                                                send_timeout=0.3))
    client = clients()
    pool = BufferPool(size, 1)
    with pytest.raises(PeerClosed):
        async with client.stream(server.endpoint(), Fetch(keys=list(range(64))), pool) as items:
            _, view = await items.__anext__()  # and hold it: reading stops, the server's sender stalls
            await wait_until(lambda: server.stats["timeouts"] == 1, "the server to drop the stalled reader")
            pool.release(view)
            async for _, view in items:
                pool.release(view)
    assert server.stats["connections_active"] == 0
