"""PeerClient against real servers on loopback: batched fetches into preallocated buffers,
missing and corrupt items, lying servers, timeouts with no late writes, many concurrent tasks,
reconnects, and backpressure from a slow consumer."""

from __future__ import annotations

import asyncio
import socket

import msgspec
import pytest

from p2p_helpers import FakeServer, item_frame, wait_until
from p2p_messages import PIECE_SIZE, Echo, EchoReply, Fetch, echo, make_store, serve_store

from services.p2p import (
    BufferPool,
    BulkItem,
    ClientLimits,
    KeyedBuffers,
    Missing,
    PeerTimeout,
    PeerUnreachable,
    ProtocolError,
    RemoteError,
    ServerLimits,
    frames,
)


def slots_for(keys: list[int], size: int) -> tuple[bytearray, dict[int, memoryview]]:
    memory = bytearray(len(keys) * size)
    view = memoryview(memory)
    return memory, {key: view[i * size:(i + 1) * size] for i, key in enumerate(keys)}


async def test_batched_fetch_into_preallocated_buffers(servers, clients, rng):
    store = make_store(rng, 48, PIECE_SIZE)
    server = await servers({Fetch: serve_store(store)})
    client = clients()
    absent = [10_000, 2**64 - 1]
    keys = rng.sample(sorted(store), 40) + absent
    rng.shuffle(keys)
    memory, slots = slots_for(keys, PIECE_SIZE)
    result = await client.fetch(server.endpoint(), Fetch(keys=keys), KeyedBuffers(slots))
    assert sorted(result.missing) == sorted(absent) and result.corrupt == []
    assert set(result.received) == set(keys) - set(absent)
    for key, view in result.received.items():
        assert view.obj is memory  # landed in the caller's buffer, no copy
        assert view == store[key]
    assert client.stats["items"] == 40 and client.stats["integrity_failures"] == 0
    assert client.stats["missing"] == 2 and server.stats["missing"] == 2


async def test_stream_into_a_buffer_pool(servers, clients, rng):
    store = make_store(rng, 32, 64 * 1024)
    server = await servers({Fetch: serve_store(store)})
    client = clients()
    pool = BufferPool(64 * 1024, 2)
    seen = []
    async with client.stream(server.endpoint(), Fetch(keys=sorted(store)), pool) as items:
        async for key, view in items:
            assert view == store[key]
            seen.append(key)
            pool.release(view)
    assert seen == sorted(store) and items.missing == [] and pool.free == 2


async def test_lying_server_digest_is_caught(servers, clients, rng):
    store = make_store(rng, 8, 4096)
    liars = {2, 5}

    def handler(request: Fetch):
        for key in request.keys:
            yield BulkItem(key, store[key], digest=bytes(32) if key in liars else None)

    server = await servers({Fetch: handler})
    client = clients()
    _, slots = slots_for(sorted(store), 4096)
    result = await client.fetch(server.endpoint(), Fetch(keys=sorted(store)), KeyedBuffers(slots))
    assert sorted(result.corrupt) == sorted(liars) and sorted(result.failed) == sorted(liars)
    assert set(result.received) == set(store) - liars
    assert client.stats["integrity_failures"] == 2


async def test_bit_flipped_on_the_wire_is_caught(clients, rng):
    store = make_store(rng, 4, 8192)

    async def script(writer, request_id, envelope):
        for key in frames.decode(envelope.body, Fetch).keys:
            payload = store[key]
            frame = item_frame(request_id, key, payload)
            if key == 1:  # corrupt after hashing, as a bad NIC or cable would
                frame = bytearray(frame)
                frame[-100] ^= 0x10
            writer.write(bytes(frame))
        writer.write(frames.pack_header(frames.Kind.END, request_id, 0))

    fake = await FakeServer(script).start()
    try:
        _, slots = slots_for(sorted(store), 8192)
        result = await clients().fetch(fake.endpoint, Fetch(keys=sorted(store)), KeyedBuffers(slots))
        assert result.corrupt == [1] and set(result.received) == {0, 2, 3}
    finally:
        await fake.stop()


async def test_unrequested_key_is_a_protocol_error(servers, clients, rng):
    store = make_store(rng, 4, 1024)

    def handler(request: Fetch):
        yield BulkItem(request.keys[0], store[0])
        yield BulkItem(999, store[1])  # never asked for

    server = await servers({Fetch: handler, Echo: echo})
    client = clients()
    memory, slots = slots_for([0, 1], 1024)
    with pytest.raises(ProtocolError, match="did not ask for"):
        await client.fetch(server.endpoint(), Fetch(keys=[0, 1]), KeyedBuffers(slots))
    assert memory[1024:] == bytes(1024)
    assert (await client.request(server.endpoint(), Echo(text="ok"))).text == "ok"  # connection intact


async def test_silently_skipped_keys_count_as_missing(servers, clients, rng):
    store = make_store(rng, 4, 1024)

    def handler(request: Fetch):
        yield BulkItem(0, store[0])
        yield Missing([1])  # and says nothing about 2

    server = await servers({Fetch: handler})
    _, slots = slots_for([0, 1, 2], 1024)
    result = await clients().fetch(server.endpoint(), Fetch(keys=[0, 1, 2]), KeyedBuffers(slots))
    assert list(result.received) == [0] and result.missing == [1, 2]


async def test_error_mid_stream(servers, clients, rng):
    store = make_store(rng, 4, 1024)

    def handler(request: Fetch):
        yield BulkItem(0, store[0])
        raise OSError("disk read failed")

    server = await servers({Fetch: handler})
    pool = BufferPool(1024, 4)
    with pytest.raises(RemoteError, match="disk read failed"):
        await clients().fetch(server.endpoint(), Fetch(keys=[0, 1]), pool)
    assert pool.free == 4  # the received buffer went back to the pool


async def test_timeout_leaves_no_late_writes(clients):
    release = asyncio.Event()
    payload = b"\xab" * 4096

    async def script(writer, request_id, envelope):
        await release.wait()  # answers only after the client gave up (ignoring its CANCEL)
        writer.write(item_frame(request_id, 0, payload) + frames.pack_header(frames.Kind.END, request_id, 0))

    fake = await FakeServer(script).start()
    try:
        client = clients()
        memory, slots = slots_for([0], 4096)
        with pytest.raises(PeerTimeout):
            await client.fetch(fake.endpoint, Fetch(keys=[0]), KeyedBuffers(slots), timeout=0.2)
        await wait_until(lambda: fake.cancels, "the CANCEL frame")
        before = client.stats["bytes_received"]
        release.set()
        await wait_until(lambda: client.stats["bytes_received"] >= before + 12 + 40 + 4096 + 12, "the late reply")
        assert memory == bytes(4096)
    finally:
        await fake.stop()


async def test_handshake_and_connect_failures(clients):
    silent = await FakeServer(None, send_hello=False).start()
    try:
        client = clients(limits=ClientLimits(handshake_timeout=0.2))
        with pytest.raises(PeerTimeout, match="handshake"):
            await client.request(silent.endpoint, Echo(text="x"))
    finally:
        await silent.stop()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(PeerUnreachable):
        await clients().request(f"tcp://127.0.0.1:{port}", Echo(text="x"))
    with socket.socket() as full:  # a listener whose accept queue is full drops new SYNs
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                try:
                    filler.connect(full.getsockname())
                except BlockingIOError:
                    pass
            client = clients(limits=ClientLimits(connect_timeout=0.2))
            with pytest.raises(PeerTimeout, match="connect"):
                await client.request(f"tcp://127.0.0.1:{full.getsockname()[1]}", Echo(text="x"))
        finally:
            for filler in fillers:
                filler.close()


async def test_many_concurrent_tasks(servers, clients, rng):
    store = make_store(rng, 64, 16 * 1024)
    server = await servers({Fetch: serve_store(store), Echo: echo})
    client = clients(limits=ClientLimits(connections_per_endpoint=2, max_in_flight=8))
    plans = [(i, rng.sample(sorted(store), rng.randint(1, 12))) for i in range(80)]

    async def task(i: int, keys: list[int]) -> None:
        if i % 3 == 0:
            assert await client.request(server.endpoint(), Echo(text=str(i), n=i)) == EchoReply(str(i), 2 * i)
            return
        _, slots = slots_for(keys, 16 * 1024)
        result = await client.fetch(server.endpoint(), Fetch(keys=keys), KeyedBuffers(slots))
        assert not result.failed
        assert all(result.received[k] == store[k] for k in keys)

    await asyncio.gather(*(task(i, keys) for i, keys in plans))
    assert client.stats["connections_opened"] <= 2
    assert client.stats["requests"] == 80 and client.stats["errors"] == 0


async def test_reconnects_after_idle_close_and_restart(servers, clients):
    server = await servers({Echo: echo}, limits=ServerLimits(idle_timeout=0.2))
    client = clients()
    endpoint = server.endpoint()
    assert (await client.request(endpoint, Echo(text="1"))).text == "1"
    await wait_until(lambda: client.stats["connections_active"] == 0, "the server's idle close")
    assert (await client.request(endpoint, Echo(text="2"))).text == "2"
    port = server.port
    await server.stop()
    with pytest.raises(PeerUnreachable):
        await client.request(endpoint, Echo(text="down"))
    await servers({Echo: echo}, port=port)  # back on the same port
    assert (await client.request(endpoint, Echo(text="3"))).text == "3"
    assert client.stats["connections_opened"] == 3


async def test_request_over_the_servers_limit_is_refused_locally(servers, clients):
    server = await servers({Echo: echo}, limits=ServerLimits(max_request_size=64))
    client = clients()
    with pytest.raises(ProtocolError, match="exceeds the server's limit"):
        await client.request(server.endpoint(), Echo(text="x" * 100))
    assert server.stats["requests"] == 0 and server.stats["protocol_errors"] == 0


async def test_cancelled_caller_stops_the_server(servers, clients, rng):
    cancelled = asyncio.Event()
    store = make_store(rng, 2, 1024)

    async def handler(request: Fetch):
        try:
            yield BulkItem(0, store[0])
            await asyncio.Event().wait()
            yield BulkItem(1, store[1])
        finally:
            cancelled.set()

    server = await servers({Fetch: handler})
    client = clients()
    pool = BufferPool(1024, 2)
    first = asyncio.get_running_loop().create_future()

    async def consumer():
        async with client.stream(server.endpoint(), Fetch(keys=[0, 1]), pool) as items:
            async for key, view in items:
                first.set_result(key)
                pool.release(view)

    task = asyncio.ensure_future(consumer())
    assert await first == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cancelled.wait(), 10)
    assert pool.free == 2


def test_requests_declare_their_shape():
    from services.p2p import PeerClient, Request

    class NoShape(Request):
        method = "test.noshape"

    client = PeerClient(None)
    with pytest.raises(ValueError, match="neither a response type nor bulk"):
        asyncio.run(client.request("tcp://127.0.0.1:1", NoShape()))
    with pytest.raises(TypeError, match="bulk request"):
        asyncio.run(client.request("tcp://127.0.0.1:1", Fetch(keys=[1])))
    with pytest.raises(TypeError, match="not a bulk request"):
        client.stream("tcp://127.0.0.1:1", Echo(text="x"), BufferPool(1, 1))
    assert msgspec.msgpack.decode(frames.encode(Echo(text="a")), type=Echo) == Echo(text="a")


async def test_timeout_mid_payload_stops_writing_into_the_buffer(clients):
    size = 64 * 1024
    payload = b"\x5a" * size
    release = asyncio.Event()

    async def script(writer, request_id, envelope):
        frame = item_frame(request_id, 0, payload)
        writer.write(frame[:-size // 2])  # header and half the payload, then a stall
        await release.wait()
        writer.write(frame[-size // 2:] + frames.pack_header(frames.Kind.END, request_id, 0))

    fake = await FakeServer(script).start()
    try:
        client = clients()
        memory, slots = slots_for([0], size)
        with pytest.raises(PeerTimeout):
            await client.fetch(fake.endpoint, Fetch(keys=[0]), KeyedBuffers(slots), timeout=0.2)
        before = client.stats["bytes_received"]
        release.set()
        await wait_until(lambda: client.stats["bytes_received"] >= before + size // 2 + 12, "the rest of the item")
        assert memory[size // 2:] == bytes(size // 2)  # the second half went to the discard buffer
        assert client.stats["connections_active"] == 1  # and the connection stays usable
    finally:
        await fake.stop()


async def test_leaving_a_stream_while_reading_is_paused(servers, clients, rng):
    store = make_store(rng, 64, 256 * 1024)
    server = await servers({Fetch: serve_store(store), Echo: echo})
    client = clients(limits=ClientLimits(connections_per_endpoint=1))
    pool = BufferPool(256 * 1024, 1)
    async with client.stream(server.endpoint(), Fetch(keys=sorted(store)), pool) as items:
        key, view = await items.__anext__()
        assert view == store[key]
        await wait_until(lambda: client.stats["read_pauses"] > 0, "reading to pause for a free buffer")
    pool.release(view)
    assert pool.free == 1
    assert (await client.request(server.endpoint(), Echo(text="same connection"))).text == "same connection"
    assert client.stats["connections_opened"] == 1
