"""Cluster membership in a JetStream key-value bucket: who is alive, with which role, endpoints
and capacity — replacing the reference farmer's periodic "identify" broadcasts (spec 06 §3:
identify every 30 s, gone after 60 s) with one TTL'd record per process.

Each process ``register``\\ s a :class:`Member` under the key ``<role>.<instance>`` and re-puts it
every ``refresh_interval`` (30 s); the bucket's max age (``ttl``, 60 s) makes a silent member
disappear, and the server places a "MaxAge" delete marker so watchers see the departure.
A clean ``Registration.stop()`` deletes the key at once.

    membership = await Membership.open(bus)                 # bucket "autonomys-members", ttl 60 s
                                                            # (an existing bucket keeps its ttl)
    registration = await membership.register(Member(role="cache", instance=cache_id,
                                                    endpoints=["tcp://10.0.0.5:9500"],
                                                    capacity={"pieces": 100_000}, version="0.1.0"))
    watcher = await membership.watch()                      # snapshot loaded on return
    watcher.members                                         # {key: Member} right now
    async for event in watcher:                             # MemberEvent(kind, key, member)
        ...                                                 # kind: "join" | "update" | "leave"
    await watcher.stop(); await registration.stop()

Records are JSON (``nats kv get autonomys-members controller.<instance> --raw`` prints a
readable object; records written as msgpack by older builds are still read). ``capacity`` holds
numbers (pieces, free slots, measured throughput, hourly cost) and short strings (GPU model,
self-test verdict).

Watchers report existing members as "join" events first. "update" is only emitted when a member's
content changes (not for plain refreshes). If the server cannot place expiry markers (before
nats-server 2.11), watchers expire members locally ``1.5 × ttl`` after their last record.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Callable

import msgspec
import nats.errors
import nats.js.errors
import structlog

from services.bus.client import Bus
from services.bus.errors import BusError
from services.bus.message import decode


def encode_member(member: "Member") -> bytes:
    """A membership record as stored in the bucket (JSON, for ``nats kv get``)."""
    return msgspec.json.encode(member)


def decode_member(data: bytes) -> "Member":
    """A stored record: JSON, or the msgpack of builds before JSON records."""
    try:
        return msgspec.json.decode(data, type=Member)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return decode(data, Member)

log = structlog.get_logger("bus.membership")

DEFAULT_BUCKET = "autonomys-members"
MEMBER_TTL = 60.0  # spec 06: a member silent for 60 s is gone
REFRESH_INTERVAL = 30.0  # spec 06: identification every 30 s
CAPACITY_REFRESH_S = 5.0  # how often a daemon's record follows its counters
WATCH_ATTEMPTS = 3  # creating the watcher's consumer, each with nats-py's 5 s API timeout
_TOKEN = re.compile(r"^[-_=a-zA-Z0-9]+$")


class Member(msgspec.Struct, kw_only=True):
    """What one process tells the cluster about itself."""

    role: str
    instance: str
    endpoints: list[str] = []
    capacity: dict[str, int | float | str] = {}
    labels: dict[str, str] = {}  # role-defined attributes (e.g. a cache's group)
    version: str = ""
    started_at: float = 0.0  # unix time, set by register()
    updated_at: float = 0.0  # unix time of the latest refresh

    @property
    def key(self) -> str:
        return member_key(self.role, self.instance)

    def same_content(self, other: "Member") -> bool:
        return msgspec.structs.replace(self, updated_at=0.0) == msgspec.structs.replace(other, updated_at=0.0)


class MemberEvent(msgspec.Struct):
    kind: str  # "join" | "update" | "leave"
    key: str
    member: Member  # for "leave": the last known record


def member_key(role: str, instance: str) -> str:
    for name, value in (("role", role), ("instance", instance)):
        if not isinstance(value, str) or not _TOKEN.match(value):
            raise ValueError(f"member {name} {value!r} must be non-empty letters, digits, '-', '_' or '='")
    return f"{role}.{instance}"


class Registration:
    """A member record kept alive by periodic refreshes."""

    def __init__(self, membership: "Membership", member: Member, refresh_interval: float) -> None:
        self.membership = membership
        self.member = member
        self.refresh_interval = refresh_interval
        self.refreshes = 0
        self._task: asyncio.Task | None = None

    async def _put(self) -> None:
        self.member.updated_at = time.time()
        await self.membership.kv.put(self.member.key, encode_member(self.member))

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self._put()
                self.refreshes += 1
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                log.warning("membership.refresh_failed", key=self.member.key, error=str(exc) or type(exc).__name__)

    async def update(self, **changes: Any) -> None:
        """Change fields (e.g. ``capacity``) and publish them now."""
        self.member = msgspec.structs.replace(self.member, **changes)
        await self._put()

    async def follow(self, capacity: Callable[[], dict[str, Any]], interval: float = CAPACITY_REFRESH_S) -> None:
        """Forever: every ``interval`` s, publish ``capacity()`` when it differs from the record
        (what ``autonomys-farmer status`` reads); a failed put is logged and retried next round."""
        while True:
            await asyncio.sleep(interval)
            fields = capacity()
            if fields == self.member.capacity:
                continue
            try:
                await self.update(capacity=fields)
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                log.warning("membership.update_failed", key=self.member.key, error=str(exc) or type(exc).__name__)

    async def stop(self, leave: bool = True) -> None:
        """Stop refreshing; ``leave`` deletes the record now (else it expires after the TTL)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if leave:
            try:
                await self.membership.kv.delete(self.member.key)
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                log.warning("membership.leave_failed", key=self.member.key, error=str(exc) or type(exc).__name__)


class MembershipWatcher:
    """Current members plus an async iterator of join / update / leave events."""

    def __init__(self, membership: "Membership") -> None:
        self.membership = membership
        self.members: dict[str, Member] = {}
        self._last_seen: dict[str, float] = {}  # monotonic time of the latest record
        self._events: asyncio.Queue[MemberEvent | None] = asyncio.Queue()
        self._synced = asyncio.Event()
        self._caught_up = asyncio.Event()
        self._target_revision = 0
        self._max_revision = 0
        self._kv_watcher: Any = None
        self._tasks: list[asyncio.Task] = []

    async def _start(self, sync_timeout: float = 5.0) -> None:
        # nats-py's watcher can signal "end of snapshot" before an entry already delivered to it
        # is processed (seen with a watcher on another cluster node), so the snapshot is complete
        # only once the stream's last sequence at start has been seen.
        kv = self.membership.kv
        info = await self.membership.bus.js.stream_info(f"KV_{self.membership.bucket}")
        self._target_revision = info.state.last_seq or 0
        for attempt in range(WATCH_ATTEMPTS):  # a busy JetStream cluster can miss the 5 s API timeout
            try:
                self._kv_watcher = await kv.watchall()
                break
            except nats.errors.TimeoutError:
                if attempt == WATCH_ATTEMPTS - 1:
                    raise
        self._tasks.append(asyncio.ensure_future(self._follow()))
        self._tasks.append(asyncio.ensure_future(self._sweep()))
        await self._synced.wait()
        if self._max_revision < self._target_revision:
            try:
                await asyncio.wait_for(self._caught_up.wait(), sync_timeout)
            except asyncio.TimeoutError:  # that record expired meanwhile: nothing more to wait for
                pass

    async def _follow(self) -> None:
        try:
            async for entry in self._kv_watcher:
                if entry is None:  # end of the initial snapshot
                    self._synced.set()
                    continue
                self._apply(entry)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - surfaced to the iterator
            log.warning("membership.watch_failed", error=str(exc) or type(exc).__name__)
        finally:
            self._synced.set()
            self._events.put_nowait(None)

    def _apply(self, entry: Any) -> None:
        key = entry.key
        self._max_revision = max(self._max_revision, entry.revision or 0)
        if self._max_revision >= self._target_revision:
            self._caught_up.set()
        if entry.operation in ("DEL", "PURGE"):
            self._leave(key)
            return
        try:
            member = decode_member(entry.value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("membership.bad_record", key=key, error=str(exc))
            return
        age = 0.0
        if entry.created is not None:
            age = min(max(0.0, time.time() - entry.created.timestamp()), self.membership.ttl)
        self._last_seen[key] = time.monotonic() - age
        previous = self.members.get(key)
        self.members[key] = member
        if previous is None:
            self._events.put_nowait(MemberEvent("join", key, member))
        elif not previous.same_content(member):
            self._events.put_nowait(MemberEvent("update", key, member))

    def _leave(self, key: str) -> None:
        member = self.members.pop(key, None)
        self._last_seen.pop(key, None)
        if member is not None:
            self._events.put_nowait(MemberEvent("leave", key, member))

    async def _sweep(self) -> None:
        """Fallback expiry for servers that place no MaxAge markers."""
        limit = 1.5 * self.membership.ttl
        while True:
            await asyncio.sleep(max(0.1, self.membership.ttl / 4))
            now = time.monotonic()
            for key, seen in list(self._last_seen.items()):
                if now - seen > limit:
                    self._leave(key)

    def __aiter__(self) -> "MembershipWatcher":
        return self

    async def __anext__(self) -> MemberEvent:
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)
            raise StopAsyncIteration
        return event

    async def next(self, timeout: float | None = None) -> MemberEvent:
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._kv_watcher is not None:
            try:
                await self._kv_watcher.stop()
            except (nats.errors.Error, asyncio.TimeoutError):
                pass
            self._kv_watcher = None
        self._events.put_nowait(None)

    async def __aenter__(self) -> "MembershipWatcher":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()


class Membership:
    """The membership bucket; create with :meth:`open`."""

    def __init__(self, bus: Bus, kv: Any, bucket: str, ttl: float) -> None:
        self.bus = bus
        self.kv = kv
        self.bucket = bucket
        self.ttl = ttl

    @classmethod
    async def open(cls, bus: Bus, *, bucket: str = DEFAULT_BUCKET, ttl: float | None = None,
                   replicas: int = 1) -> "Membership":
        """Open the bucket, creating it (max age ``ttl``, default 60 s, 1 value per key) when
        missing. An existing bucket keeps its own TTL (a warning is logged when ``ttl`` was given
        and differs)."""
        if ttl is not None and ttl <= 0:
            raise ValueError(f"membership ttl must be positive, got {ttl}")
        js = bus.js
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await cls._create(js, bucket, ttl or MEMBER_TTL, replicas)
        status = await kv.status()
        actual = status.ttl or ttl or MEMBER_TTL
        if ttl is not None and abs(actual - ttl) > 1e-3:
            log.warning("membership.bucket_ttl_differs", bucket=bucket, requested=ttl, actual=actual)
        return cls(bus, kv, bucket, actual)

    @staticmethod
    async def _create(js: Any, bucket: str, ttl: float, replicas: int) -> Any:
        common = dict(bucket=bucket, ttl=ttl, history=1, replicas=replicas,
                      description="autonomys cluster membership")
        try:
            try:
                return await js.create_key_value(**common, limit_marker_ttl=max(1.0, ttl))
            except nats.js.errors.KeyValueLimitMarkerTTLNotSupportedError:
                log.warning("membership.no_expiry_markers", bucket=bucket)
                return await js.create_key_value(**common)
        except nats.js.errors.BadRequestError:
            # created concurrently by another process: use theirs
            try:
                return await js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError:
                raise BusError(f"cannot create membership bucket {bucket!r}") from None

    async def register(self, member: Member, *, refresh_interval: float = REFRESH_INTERVAL) -> Registration:
        """Publish ``member`` now and keep refreshing it until ``Registration.stop()``."""
        member_key(member.role, member.instance)  # validate
        if not 0 < refresh_interval < self.ttl:
            raise ValueError(f"refresh_interval {refresh_interval} must be positive and below the ttl {self.ttl}")
        member = msgspec.structs.replace(member, started_at=member.started_at or time.time())
        registration = Registration(self, member, refresh_interval)
        await registration._put()
        registration._task = asyncio.ensure_future(registration._refresh_loop())
        return registration

    async def watch(self) -> MembershipWatcher:
        """A watcher whose ``members`` already hold the current snapshot."""
        watcher = MembershipWatcher(self)
        try:
            await watcher._start()
        except BaseException:
            await watcher.stop()
            raise
        return watcher

    async def members(self) -> dict[str, Member]:
        """One-shot snapshot of the current members."""
        watcher = await self.watch()
        try:
            return dict(watcher.members)
        finally:
            await watcher.stop()
