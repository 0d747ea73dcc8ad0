"""A 3-node NATS cluster on loopback ports: requests, stream requests and broadcasts cross
servers, and membership lives in a replicated JetStream KV bucket."""

from __future__ import annotations

import msgspec
import pytest

from services.bus import Bus, Message, RequestTimeout
from services.bus.membership import Member, Membership
from services.bus.server import start_cluster, stop_all

pytestmark = pytest.mark.integration


class Where(msgspec.Struct):
    server: str
    x: int


class WhoAnswers(Message):
    subject = "test.cluster.*.who"
    response = Where
    queue_group = "test.cluster"
    x: int


class Chunks(Message):
    subject = "test.cluster.chunks"
    response = bytes
    stream = True
    count: int


class Announce(Message):
    subject = "test.cluster.announce"
    text: str


@pytest.fixture(scope="module")
def cluster():
    servers = start_cluster(3)
    yield servers
    stop_all(servers)


async def test_cluster_routes(cluster):
    names = {s.varz()["server_name"] for s in cluster}
    assert names == {"n1", "n2", "n3"}
    for server in cluster:
        assert server.monitor("routez")["num_routes"] >= 2


async def test_request_stream_and_broadcast_cross_servers(cluster):
    responder = await Bus.connect([cluster[0].url], name="responder-on-n1")
    requester = await Bus.connect([cluster[2].url], name="requester-on-n3")
    listener = await Bus.connect([cluster[1].url], name="listener-on-n2")
    try:
        server_name = responder.nc._server_info["server_name"]
        assert server_name == "n1" and requester.nc._server_info["server_name"] == "n3"
        await responder.serve(WhoAnswers, lambda m: Where(server=server_name, x=m.x), instance="ctl")
        # interest propagates over routes asynchronously: retries cover the gap
        reply = await requester.request(WhoAnswers(x=7), instance="ctl", timeout=5, retries=10, initial_backoff=0.05)
        assert reply == Where(server="n1", x=7)

        payload = bytes(range(256)) * 4096  # 1 MiB items: several 3 MiB messages over the routes
        await responder.serve(Chunks, lambda m: (payload for _ in range(m.count)))
        items = [item async for item in requester.stream_request(Chunks(count=7), timeout=10, retries=10,
                                                                 initial_backoff=0.05)]
        assert len(items) == 7 and all(item == payload for item in items)

        sub = await listener.subscribe(Announce)
        # make sure n3 has learnt n2's interest before broadcasting: round trip a request through n2
        await listener.serve(WhoAnswers, lambda m: Where(server="n2", x=m.x), instance="probe")
        await requester.request(WhoAnswers(x=0), instance="probe", timeout=5, retries=10, initial_backoff=0.05)
        await requester.broadcast(Announce(text="segment 5"), dedup_id="archived-segment-5")
        await responder.broadcast(Announce(text="segment 5"), dedup_id="archived-segment-5")
        assert (await sub.next(5)).text == "segment 5"
        with pytest.raises(RequestTimeout):  # the duplicate from n1 was dropped
            await sub.next(0.3)
    finally:
        for b in (responder, requester, listener):
            await b.close()


async def test_membership_replicated_across_servers(cluster):
    writer = await Bus.connect([cluster[0].url])
    reader = await Bus.connect([cluster[2].url])
    try:
        membership = await Membership.open(writer, bucket="cluster-members", ttl=5.0, replicas=3)
        reg = await membership.register(Member(role="controller", instance="c1", endpoints=["n1"]),
                                        refresh_interval=1.0)
        observed = await Membership.open(reader, bucket="cluster-members")
        status = await observed.kv.status()
        assert status.stream_info.config.num_replicas == 3
        # a watcher on another server may start a moment behind the replicated write: wait for
        # the join event instead of asserting on the first snapshot
        async with await observed.watch() as watcher:
            joined = await watcher.next(10)
            assert (joined.kind, joined.key, joined.member.endpoints) == ("join", "controller.c1", ["n1"])
            await reg.stop()
            left = await watcher.next(10)
            assert (left.kind, left.key) == ("leave", "controller.c1")
            assert watcher.members == {}
    finally:
        await writer.close()
        await reader.close()
