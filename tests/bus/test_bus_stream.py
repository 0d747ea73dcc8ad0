"""Stream requests (spec 06 §2): Continue/Last chunks with indices, u32_le acks on the ack subject,
2 messages in flight, packing under approximate_max_message_size, empty streams, a consumer that
stops acking, errors."""

from __future__ import annotations

import asyncio
import struct

import msgspec
import pytest

from services.bus import Bus, Message, NoResponders, RemoteError
from services.bus.client import StreamContinue, StreamLast
from services.bus.message import decode

pytestmark = pytest.mark.integration

ITEM_SIZE = 100_000


class Blob(msgspec.Struct):
    index: int
    data: bytes


class Blobs(Message):
    subject = "test.*.blobs"
    response = Blob
    stream = True
    count: int
    size: int = ITEM_SIZE


class Dribble(Message):
    subject = "test.dribble"
    response = int
    stream = True


class Spy:
    """A raw NATS connection recording every stream chunk and ack on the wire."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []
        self.acks: list[tuple[str, bytes]] = []
        self.ack_subjects: set[str] = set()

    async def start(self, bus: Bus) -> None:
        async def on_chunk(msg):
            self.chunks.append((len(msg.data), msg.data))

        async def on_ack(msg):
            self.acks.append((msg.subject, msg.data))

        await bus.nc.subscribe("stream-response.*", cb=on_chunk)
        await bus.nc.subscribe("stream-response-ack.*", cb=on_ack)
        await bus.nc.flush()

    def decoded(self):
        return [decode(data, StreamContinue[Blob] | StreamLast[Blob]) for _, data in self.chunks]


def blobs(msg: Blobs):
    for i in range(msg.count):
        yield Blob(index=i, data=bytes([i % 251]) * msg.size)


@pytest.fixture
async def buses(nats_server):
    opened = [await Bus.connect([nats_server.url], name=n) for n in ("requester", "responder", "spy")]
    yield opened
    for b in opened:
        await b.close()


async def test_multi_chunk_stream_with_acks(buses):
    requester, responder, spy_bus = buses
    spy = Spy()
    await spy.start(spy_bus)
    svc = await responder.serve(Blobs, blobs, instance="farm-1")
    items = [item async for item in requester.stream_request(Blobs(count=100), instance="farm-1", timeout=10)]
    assert [b.index for b in items] == list(range(100))
    assert all(b.data == bytes([b.index % 251]) * ITEM_SIZE for b in items)
    await asyncio.sleep(0.1)  # let the spy catch up

    chunks = spy.decoded()
    per_message = requester.approximate_max_message_size // len(msgspec.msgpack.encode(Blob(0, bytes(ITEM_SIZE))))
    assert len(chunks) == -(-100 // per_message) >= 2
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(isinstance(c, StreamContinue) for c in chunks[:-1]) and isinstance(chunks[-1], StreamLast)
    assert all(size <= requester.max_payload for size, _ in spy.chunks)
    assert all(len(c.responses) == per_message for c in chunks[:-1])
    # every Continue acked with u32_le(index) on its ack subject, nothing else
    ack_subject = chunks[0].ack_subject
    assert ack_subject.startswith("stream-response-ack.") and len(ack_subject.split(".")[1]) == 26
    assert spy.acks == [(ack_subject, struct.pack("<I", i)) for i in range(len(chunks) - 1)]
    assert svc.handled == 1 and svc.stream_aborts == 0


async def test_empty_stream_is_last_0(buses):
    requester, responder, spy_bus = buses
    spy = Spy()
    await spy.start(spy_bus)
    await responder.serve(Blobs, blobs)
    assert [item async for item in requester.stream_request(Blobs(count=0), instance="x", timeout=5)] == []
    await asyncio.sleep(0.1)
    assert spy.decoded() == [StreamLast(index=0, responses=[])]
    assert spy.acks == []


async def test_ready_items_are_sent_without_waiting_for_a_full_chunk(buses):
    requester, responder, _ = buses
    release = asyncio.Event()

    async def dribble(_msg):
        yield 1  # like the plotter's progress messages: must reach the requester now
        await release.wait()
        yield 2

    await responder.serve(Dribble, dribble)
    stream = requester.stream_request(Dribble(), timeout=5)
    assert await asyncio.wait_for(stream.__anext__(), 5) == 1
    release.set()
    assert [item async for item in stream] == [2]


async def test_consumer_that_stops_acking_times_out_the_responder(buses):
    requester, responder, spy_bus = buses
    spy = Spy()
    await spy.start(spy_bus)
    produced = []
    closed = asyncio.Event()

    async def endless(msg: Blobs):
        try:
            i = 0
            while True:
                produced.append(i)
                yield Blob(index=i, data=bytes(msg.size))
                i += 1
        finally:
            closed.set()

    svc = await responder.serve(Blobs, endless, ack_timeout=0.5)
    stream = requester.stream_request(Blobs(count=0), instance="slow", timeout=5)
    first = await stream.__anext__()  # take one item, then stop consuming (no ack is ever sent)
    assert first.index == 0
    await asyncio.wait_for(closed.wait(), 5)  # the responder gave up and closed the generator
    await asyncio.sleep(0.1)
    assert svc.stream_aborts == 1
    assert len(spy.chunks) == 2  # exactly two messages in flight, then the wait for ack 0
    assert spy.acks == []
    per_message = requester.approximate_max_message_size // len(msgspec.msgpack.encode(Blob(0, bytes(ITEM_SIZE))))
    assert len(produced) <= 4 * per_message + 2  # bounded read-ahead, not an endless producer
    await stream.aclose()


async def test_handler_error_mid_stream_reaches_requester(buses):
    requester, responder, _ = buses

    async def failing(msg: Blobs):
        for i in range(msg.count):
            yield Blob(index=i, data=bytes(msg.size))
        raise OSError("plot file unreadable")

    await responder.serve(Blobs, failing)
    got = []
    with pytest.raises(RemoteError, match="OSError: plot file unreadable"):
        async for item in requester.stream_request(Blobs(count=50), instance="x", timeout=5):
            got.append(item.index)
    assert got == list(range(len(got)))  # whatever arrived before the error was in order


async def test_item_larger_than_max_payload_is_an_error(buses):
    requester, responder, _ = buses
    await responder.serve(Blobs, blobs)
    with pytest.raises(RemoteError, match="exceeds max_payload"):
        async for _ in requester.stream_request(Blobs(count=1, size=requester.max_payload), instance="x", timeout=5):
            pass


async def test_stream_no_responders(buses):
    requester, _, _ = buses
    with pytest.raises(NoResponders, match="test.nobody.blobs after 2 attempt"):
        async for _ in requester.stream_request(Blobs(count=1), instance="nobody", timeout=5, retries=1,
                                                initial_backoff=0.05):
            pass


async def test_stream_requests_are_shared_by_a_queue_group(nats_server):
    responders = [await Bus.connect([nats_server.url]) for _ in range(2)]
    requester = await Bus.connect([nats_server.url])
    try:
        services = [await r.serve(Blobs, blobs, queue_group="blobs") for r in responders]
        for _ in range(6):
            items = [b async for b in requester.stream_request(Blobs(count=3, size=10), instance="q", timeout=5)]
            assert [b.index for b in items] == [0, 1, 2]
        assert sum(s.handled for s in services) == 6
    finally:
        for b in (*responders, requester):
            await b.close()


class Progress(Message):
    """Plotter-like stream: a tiny first item, then sector chunks of about a piece each."""

    subject = "test.progress"
    response = bytes
    stream = True
    chunks: int


async def test_small_first_item_does_not_overfill_messages_or_memory(buses):
    requester, responder, spy_bus = buses
    spy = Spy()
    await spy.start(spy_bus)
    produced = []

    async def progress(msg: Progress):
        yield b"ping"
        for i in range(msg.chunks):
            produced.append(i)
            yield bytes([i]) * (1 << 20)

    await responder.serve(Progress, progress, ack_timeout=0.5)
    items = [item async for item in requester.stream_request(Progress(chunks=12), timeout=10)]
    assert items[0] == b"ping" and [it[0] for it in items[1:]] == list(range(12))
    await asyncio.sleep(0.1)
    assert all(size <= requester.max_payload for size, _ in spy.chunks)
    assert len(spy.chunks) >= 12 // (requester.approximate_max_message_size >> 20)

    # a stalled consumer: the responder reads ahead a bounded amount (2 messages queued plus
    # 2 in flight, ~2.7 MiB each), not the whole endless stream
    produced.clear()
    stream = requester.stream_request(Progress(chunks=10_000), timeout=10)
    assert await stream.__anext__() == b"ping"
    await asyncio.sleep(1.5)
    assert len(produced) <= 4 * (requester.approximate_max_message_size >> 20) + 4
    await stream.aclose()
