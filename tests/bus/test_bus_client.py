"""services.bus.client against a real nats-server: request/reply with retries, no responders,
remote errors, queue groups, notifications, broadcast de-duplication, connect-time refusals."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from services.bus import Bus, BusConfigError, Message, NoResponders, RemoteError, RequestTimeout
from services.daemon import DaemonError

pytestmark = pytest.mark.integration


class Answer(msgspec.Struct):
    value: int
    by: str = ""


class Double(Message):
    subject = "test.*.double"
    response = Answer
    x: int


class Shared(Message):
    subject = "test.shared"
    response = Answer
    queue_group = "test.shared"
    x: int


class Tick(Message):
    subject = "test.tick"
    n: int


class Hello(Message):
    subject = "test.*.hello"
    who: str


class Slow(Message):
    subject = "test.slow"
    response = Answer
    delay: float


@pytest.fixture
async def bus(nats_server):
    b = await Bus.connect([nats_server.url], name="test")
    yield b
    await b.close()


@pytest.fixture
async def bus2(nats_server):
    b = await Bus.connect([nats_server.url], name="test2")
    yield b
    await b.close()


async def test_connect_reports_limits(bus, nats_server):
    assert bus.max_payload == nats_server.varz()["max_payload"] == 3 * 1024 * 1024
    assert bus.approximate_max_message_size == 3 * 1024 * 1024 * 9 // 10


async def test_request_reply_typed(bus, bus2):
    await bus2.serve(Double, lambda m: Answer(value=2 * m.x, by="a"), instance="a")

    async def other(m):
        return Answer(value=-m.x, by="b")

    await bus2.serve(Double, other, instance="b")
    assert await bus.request(Double(x=21), instance="a", timeout=5) == Answer(value=42, by="a")
    assert await bus.request(Double(x=21), instance="b", timeout=5) == Answer(value=-21, by="b")


async def test_wildcard_responder_sees_every_instance(bus, bus2):
    seen = []

    def handler(m):
        seen.append(m.x)
        return Answer(value=m.x)

    await bus2.serve(Double, handler)  # no instance: subject "test.*.double"
    for inst in ("x", "y"):
        assert (await bus.request(Double(x=len(seen)), instance=inst, timeout=5)).value == len(seen) - 1
    assert seen == [0, 1]


async def test_request_retries_until_responder_appears(bus, bus2):
    async def late_responder():
        await asyncio.sleep(0.4)
        await bus2.serve(Double, lambda m: Answer(value=m.x + 1), instance="late")

    task = asyncio.create_task(late_responder())
    answer = await bus.request(Double(x=1), instance="late", timeout=2, retries=6, initial_backoff=0.1)
    await task
    assert answer == Answer(value=2)


async def test_no_responders_raises_after_retries(bus):
    # NoResponders (not RequestTimeout): the server's 503 status is recognised on each attempt
    with pytest.raises(NoResponders, match="test.nobody.double after 3 attempt"):
        await bus.request(Double(x=1), instance="nobody", timeout=30, retries=2, initial_backoff=0.1)
    assert issubclass(NoResponders, DaemonError)


async def test_timeout_then_retry_then_error(bus, bus2):
    await bus2.serve(Slow, lambda m: asyncio.sleep(m.delay, result=Answer(value=1)))
    with pytest.raises(RequestTimeout, match="within 0.2 s after 2 attempt"):
        await bus.request(Slow(delay=2.0), timeout=0.2, retries=1, initial_backoff=0.05)
    assert await bus.request(Slow(delay=0.0), timeout=5) == Answer(value=1)


async def test_handler_exception_is_a_remote_error(bus, bus2):
    def broken(m):
        raise KeyError(f"piece {m.x} not cached")

    svc = await bus2.serve(Double, broken, instance="err")
    with pytest.raises(RemoteError, match="KeyError: 'piece 5 not cached'"):
        await bus.request(Double(x=5), instance="err", timeout=5, retries=3)
    assert svc.errors == 1  # a remote error is not retried


async def test_wrong_message_type_rejected(bus):
    with pytest.raises(ValueError, match="not a request type"):
        await bus.request(Tick(n=1), timeout=1)
    with pytest.raises(TypeError, match="expected a bus Message"):
        await bus.publish(Answer(value=1))  # type: ignore[arg-type]


async def test_oversized_message_rejected_before_sending(bus):
    class Big(Message):
        subject = "test.big"
        blob: bytes

    with pytest.raises(ValueError, match="over the server's max_payload"):
        await bus.publish(Big(blob=bytes(bus.max_payload + 1)))


async def test_queue_group_only_one_answers(nats_server):
    buses = [await Bus.connect([nats_server.url], name=f"r{i}") for i in range(3)]
    client = await Bus.connect([nats_server.url], name="client")
    try:
        services = []
        for i, b in enumerate(buses):
            services.append(await b.serve(Shared, lambda m, i=i: Answer(value=m.x, by=f"r{i}")))
        answers = [await client.request(Shared(x=n), timeout=5) for n in range(30)]
        assert [a.value for a in answers] == list(range(30))
        assert sum(s.handled for s in services) == 30  # each request handled exactly once
        assert len({a.by for a in answers}) >= 2  # and spread over the group
    finally:
        await client.close()
        for b in buses:
            await b.close()


async def test_notification_reaches_all_plain_subscribers(bus, bus2):
    sub_a = await bus2.subscribe(Tick)
    sub_b = await bus2.subscribe(Tick)
    for n in range(3):
        await bus.publish(Tick(n=n))
    assert [(await sub_a.next(5)).n for _ in range(3)] == [0, 1, 2]
    assert [(await sub_b.next(5)).n for _ in range(3)] == [0, 1, 2]
    await sub_a.unsubscribe()
    await sub_b.unsubscribe()


async def test_subscribe_with_subject_and_instance_wildcard(bus, bus2):
    async with await bus2.subscribe(Hello, with_subject=True) as sub:
        await bus.publish(Hello(who="f1"), instance="farmer-1")
        await bus.publish(Hello(who="f2"), instance="farmer-2")
        got = [await sub.next(5), await sub.next(5)]
    assert got == [("test.farmer-1.hello", Hello(who="f1")), ("test.farmer-2.hello", Hello(who="f2"))]


async def test_broadcast_dedup_on_receiving_side(bus, bus2):
    received = []
    await bus2.serve(Tick, lambda m: received.append(m.n))
    sub = await bus2.subscribe(Tick)
    # two "controller instances" broadcasting the same slot, plus a distinct one and an un-tagged one
    await bus.broadcast(Tick(n=100), dedup_id="slot-info-100")
    await bus2.broadcast(Tick(n=100), dedup_id="slot-info-100")
    await bus.broadcast(Tick(n=101), dedup_id="slot-info-101")
    await bus.broadcast(Tick(n=0))
    await bus.broadcast(Tick(n=0))
    got = [(await sub.next(5)).n for _ in range(4)]
    assert got == [100, 101, 0, 0]
    with pytest.raises(RequestTimeout):
        await sub.next(0.3)
    assert received == [100, 101, 0, 0]


async def test_bad_payload_is_skipped_by_subscribers(bus, bus2):
    sub = await bus2.subscribe(Tick)
    await bus.nc.publish("test.tick", b"\xc1not msgpack")
    await bus.publish(Tick(n=9))
    assert (await sub.next(5)).n == 9


async def test_refuses_server_with_small_max_payload(nats_server_factory):
    server = nats_server_factory(max_payload=1024 * 1024)
    with pytest.raises(BusConfigError, match=r"max_payload 1048576 bytes \(1.0 MiB\).*>= 2097152") as info:
        await Bus.connect([server.url])
    assert "\n" not in str(info.value)


async def test_refuses_server_without_jetstream(nats_server_factory):
    server = nats_server_factory(jetstream=False)
    with pytest.raises(BusConfigError, match="does not have JetStream enabled") as info:
        await Bus.connect([server.url])
    assert "\n" not in str(info.value)
    # the same server is fine for a caller that does not need JetStream
    bus = await Bus.connect([server.url], require_jetstream=False)
    await bus.close()


async def test_unreachable_server_is_a_clear_error():
    from services.bus.server import free_port

    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(BusConfigError, match=f"cannot connect to NATS at {url}"):
        await Bus.connect([url], connect_timeout=0.5, connect_attempts=1)


async def test_reconnects_after_server_restart(nats_server_factory):
    from services.bus.server import NatsServer, NatsServerConfig

    first = nats_server_factory()
    port = first.port
    bus = await Bus.connect([first.url])
    await bus.serve(Double, lambda m: Answer(value=m.x), instance="r")
    first.stop()
    second = NatsServer(NatsServerConfig(port=port)).start()
    try:
        # the client reconnects and re-subscribes; request retries cover the gap
        assert await bus.request(Double(x=3), instance="r", timeout=1, retries=20, initial_backoff=0.1) == Answer(value=3)
    finally:
        await bus.close()
        second.stop()


async def test_unsubscribe_and_close_end_iteration(bus, bus2):
    sub = await bus2.subscribe(Tick)
    consumer = asyncio.create_task(_collect(sub))
    await bus.publish(Tick(n=1))
    await bus.publish(Tick(n=2))
    await asyncio.sleep(0.2)
    await sub.unsubscribe()
    assert await asyncio.wait_for(consumer, 5) == [1, 2]

    other = await bus2.subscribe(Tick)
    waiter = asyncio.create_task(_collect(other))
    await asyncio.sleep(0.1)
    await bus2.close()
    assert await asyncio.wait_for(waiter, 5) == []


async def _collect(sub) -> list[int]:
    return [msg.n async for msg in sub]
