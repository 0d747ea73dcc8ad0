"""services.bus.membership on a real JetStream server: join, refresh keeps a member alive past
the TTL, silent members expire (server MaxAge marker), clean leave, content updates, snapshots."""

from __future__ import annotations

import asyncio

import pytest

from services.bus import Bus
from services.bus.membership import Member, MemberEvent, Membership, member_key

pytestmark = pytest.mark.integration

TTL = 3.0
REFRESH = 0.5


@pytest.fixture
async def buses(nats_server):
    opened = [await Bus.connect([nats_server.url], name=f"p{i}") for i in range(3)]
    yield opened
    for b in opened:
        await b.close()


def cache_member(instance: str, pieces: int = 1000) -> Member:
    return Member(role="cache", instance=instance, endpoints=[f"tcp://127.0.0.1:{9500 + len(instance)}"],
                  capacity={"pieces": pieces}, version="0.1.0")


async def next_event(watcher, timeout: float = 10.0) -> MemberEvent:
    return await watcher.next(timeout)


async def test_join_refresh_expiry_and_leave(buses):
    observer_bus, bus_a, bus_b = buses
    membership_a = await Membership.open(bus_a, bucket="members-t1", ttl=TTL)
    membership_b = await Membership.open(bus_b, bucket="members-t1", ttl=TTL)
    observer = await Membership.open(observer_bus, bucket="members-t1", ttl=TTL)
    assert observer.ttl == TTL

    reg_a = await membership_a.register(cache_member("a"), refresh_interval=REFRESH)
    watcher = await observer.watch()
    # the snapshot is loaded when watch() returns, and reported as a join
    assert list(watcher.members) == ["cache.a"]
    first = await next_event(watcher)
    assert (first.kind, first.key, first.member.capacity) == ("join", "cache.a", {"pieces": 1000})
    assert first.member.started_at > 0 and first.member.updated_at >= first.member.started_at

    reg_b = await membership_b.register(cache_member("b"), refresh_interval=REFRESH)
    joined = await next_event(watcher)
    assert (joined.kind, joined.key) == ("join", "cache.b")

    # refreshes keep both alive well past the TTL, without update events
    await asyncio.sleep(2.5 * TTL)
    assert set(watcher.members) == {"cache.a", "cache.b"}
    assert reg_a.refreshes >= 3 and reg_b.refreshes >= 3
    assert watcher._events.empty()

    # b goes silent (crash): it expires after the TTL
    await reg_b.stop(leave=False)
    left = await next_event(watcher, timeout=4 * TTL)
    assert (left.kind, left.key, left.member.instance) == ("leave", "cache.b", "b")
    assert set(watcher.members) == {"cache.a"}

    # a capacity change is an update
    await reg_a.update(capacity={"pieces": 5})
    updated = await next_event(watcher)
    assert (updated.kind, updated.member.capacity) == ("update", {"pieces": 5})

    # a clean stop leaves at once
    await reg_a.stop()
    left = await next_event(watcher, timeout=TTL / 2)
    assert (left.kind, left.key) == ("leave", "cache.a")
    assert watcher.members == {}
    assert await observer.members() == {}
    await watcher.stop()


async def test_snapshot_from_another_process(buses):
    bus_a, bus_b, _ = buses
    membership = await Membership.open(bus_a, bucket="members-t2", ttl=TTL)
    regs = [
        await membership.register(Member(role="plotter", instance=f"p{i}", capacity={"slots": i}),
                                  refresh_interval=REFRESH)
        for i in range(3)
    ]
    other = await Membership.open(bus_b, bucket="members-t2", ttl=30.0)  # existing bucket keeps its TTL
    assert other.ttl == TTL
    members = await other.members()
    assert sorted(members) == ["plotter.p0", "plotter.p1", "plotter.p2"]
    assert members["plotter.p2"].capacity == {"slots": 2}
    for reg in regs:
        await reg.stop()
    assert await other.members() == {}


async def test_expired_members_absent_from_new_watchers(buses):
    bus_a, bus_b, _ = buses
    membership = await Membership.open(bus_a, bucket="members-t3", ttl=1.0)
    reg = await membership.register(cache_member("gone"), refresh_interval=0.3)
    await reg.stop(leave=False)
    await asyncio.sleep(2.0)
    observer = await Membership.open(bus_b, bucket="members-t3")
    assert await observer.members() == {}


def test_member_key_validation():
    assert member_key("farmer", "01HZX3") == "farmer.01HZX3"
    for role, instance in (("cache", "a.b"), ("", "x"), ("cache", "a b"), ("cache", "*")):
        with pytest.raises(ValueError, match="must be non-empty letters"):
            member_key(role, instance)


async def test_register_rejects_bad_refresh_interval(buses):
    membership = await Membership.open(buses[0], bucket="members-t4", ttl=TTL)
    with pytest.raises(ValueError, match="below the ttl"):
        await membership.register(cache_member("x"), refresh_interval=TTL)
    with pytest.raises(ValueError, match="ttl must be positive"):
        await Membership.open(buses[0], bucket="members-t5", ttl=0)
