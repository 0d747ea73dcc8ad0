"""``PieceGetter``: pieces for plot-servers, caches and tools, from the best source that has them.

Order per piece index (docs/ARCHITECTURE.md "Pieces for plotting"):

1. the priority cache (a local :class:`~services.cache.priority.PriorityCache`), if given;
2. the sharded-cache shard that owns the index by rendezvous over the live shards of the cache
   group (membership registry), then the next-ranked shard (the previous owner while a new
   shard fills), up to ``shard_depth`` shards;
3. the full-piece caches;
4. the controller's ``find-pieces-in-cache`` (it asks every live cache), then its
   ``subspace.controller.pieces`` stream over NATS (the node).

Batches go over TCP (``GetPieces``, :mod:`services.p2p`) straight into the caller's buffers,
``batch_size`` pieces per request and up to ``concurrency`` requests per source at once. The
data plane checks each payload against the BLAKE3 digest the serving cache stored when it
verified the piece; with a ``verifier`` (caches filling themselves, ``util verify-piece``) every
piece is also checked against its segment commitment. A piece a source lacks, sends corrupt or
fails to verify, and every piece of a source that errors or stalls (no progress for
``stall_timeout`` seconds), is retried from the next source; each retry is counted
(``stats``) and logged, so a dead or stuck shard costs one timeout, never a silent stall, and
it is then skipped by later calls for ``QUARANTINE_S`` seconds.
Only pieces no source could provide come back in ``GetResult.missing``.

    getter = await PieceGetter.connect(bus, PeerClient(secret), cache_group="default",
                                       priority=priority_cache)
    result = await getter.get_pieces(indices)            # or into={index: memoryview(slot)}
    result.pieces[index]                                 # memoryview of the piece bytes
    sector = await getter.fetch_sector(sector_indices)   # duplicates filled too
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Callable, Iterable, Sequence

import numpy as np
import structlog

from services.bus.client import Bus
from services.bus.errors import BusError
from services.bus.membership import Member, Membership, MembershipWatcher
from services.cache.messages import CACHE_GROUP_LABEL, FULL_PIECE_CACHE_ROLE, SHARDED_CACHE_ROLE, GetPieces
from services.cache.placement import Rendezvous
from services.controller.messages import ANY_CACHE_GROUP, FindPiecesInCacheRequest, PiecesRequest
from services.p2p.client import PeerClient
from services.p2p.errors import PeerError, PeerTimeout
from services.p2p.sinks import KeyedBuffers
from services.protocol.constants import PIECE_SIZE

log = structlog.get_logger("cache.getter")

CONTROLLER = "controller"
FIND = "controller-find"
CONTROLLER_TIMEOUT_S = 60.0
QUARANTINE_S = 30.0  # a source that stalled or failed is skipped by later calls for this long
WRITE_BACK_LIMIT = 256


def tcp_endpoint(member: Member) -> str | None:
    return next((e for e in member.endpoints if e.startswith("tcp://")), None)


class GetResult:
    """``pieces``: index -> memoryview of its bytes; ``missing``: indices nobody could give;
    ``sources``: pieces per source; ``retries``: re-requests made for this call."""

    __slots__ = ("pieces", "missing", "sources", "retries", "seconds")

    def __init__(self) -> None:
        self.pieces: dict[int, memoryview] = {}
        self.missing: list[int] = []
        self.sources: collections.Counter[str] = collections.Counter()
        self.retries = 0
        self.seconds = 0.0


class PieceGetter:
    def __init__(self, bus: Bus, client: PeerClient, members: Callable[[], Iterable[Member]], *,
                 cache_group: str | None = None, priority=None, verifier=None,  # noqa: ANN001
                 exclude: Iterable[str] = (), batch_size: int = 32, concurrency: int = 8,
                 stall_timeout: float = 10.0, shard_depth: int = 2, use_controller: bool = True,
                 write_back: bool = True, metrics=None) -> None:  # noqa: ANN001
        self.bus = bus
        self.client = client
        self._members = members
        self.cache_group = cache_group
        self.priority = priority
        self.verifier = verifier
        self.exclude = set(exclude)
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.stall_timeout = stall_timeout
        self.shard_depth = shard_depth
        self.use_controller = use_controller
        self.write_back = write_back and priority is not None
        self.stats: collections.Counter[str] = collections.Counter()
        self.source_counts: collections.Counter[str] = collections.Counter()  # pieces per source
        self.metrics = metrics  # services.metrics.cache.PieceGetterMetrics (prometheus), optional
        self._quarantine: dict[str, float] = {}  # source -> monotonic time it may be tried again
        self._watcher: MembershipWatcher | None = None
        self._write_back_task: asyncio.Task | None = None

    @classmethod
    async def connect(cls, bus: Bus, client: PeerClient, **options) -> "PieceGetter":  # noqa: ANN003
        """A getter following the membership registry with its own watcher (``close`` stops it)."""
        watcher = await (await Membership.open(bus)).watch()
        getter = cls(bus, client, lambda: watcher.members.values(), **options)
        getter._watcher = watcher
        return getter

    async def close(self) -> None:
        if self._write_back_task is not None:
            await asyncio.gather(self._write_back_task, return_exceptions=True)
        if self._watcher is not None:
            await self._watcher.stop()

    # ---- sources

    def _caches(self, role: str) -> list[Member]:
        out = []
        for member in self._members():
            if member.role != role or member.instance in self.exclude or not tcp_endpoint(member):
                continue
            group = member.labels.get(CACHE_GROUP_LABEL, "default")
            if self.cache_group in (None, ANY_CACHE_GROUP) or group == self.cache_group:
                out.append(member)
        return sorted(out, key=lambda m: m.instance)

    def _category(self, source: str) -> str:
        """The metrics ``source`` label of a source (an endpoint, or the controller)."""
        if source in (CONTROLLER, FIND):
            return "controller"
        for member in self._members():
            if source in member.endpoints:
                return "sharded-cache" if member.role == SHARDED_CACHE_ROLE else "full-piece-cache"
        return "sharded-cache"

    def _plan(self, indices: list[int]) -> list[list[str]]:
        """Source order per index: owner shard (and runners-up), full caches, controller."""
        shards = self._caches(SHARDED_CACHE_ROLE)
        fulls = [e for e in (tcp_endpoint(m) for m in self._caches(FULL_PIECE_CACHE_ROLE)) if e]
        last = [FIND, CONTROLLER] if self.use_controller else []

        def tail(n: int) -> list[str]:  # full caches rotated by index: several share the load
            k = n % len(fulls) if fulls else 0
            return fulls[k:] + fulls[:k] + last

        if not shards or not indices:
            return [tail(n) for n in range(len(indices))]
        placement = Rendezvous({m.instance: float(m.capacity.get("slots", 1) or 1) for m in shards})
        endpoints = {m.instance: tcp_endpoint(m) for m in shards}
        names = [endpoints[s] for s in placement.shards]
        ranked = placement.rankings(np.asarray(indices, dtype=np.uint64), depth=self.shard_depth)
        return [[names[int(k)] for k in row] + tail(n) for n, row in enumerate(ranked)]

    # ---- public API

    async def get_piece(self, piece_index: int) -> bytes | None:
        result = await self.get_pieces([piece_index])
        view = result.pieces.get(piece_index)
        return None if view is None else bytes(view)

    async def fetch_sector(self, piece_indices: Sequence[int],
                           out: bytearray | memoryview | None = None) -> tuple[bytearray | memoryview, list[int]]:
        """Piece ``k`` of ``piece_indices`` at ``out[k * PIECE_SIZE:]`` (duplicates copied) and
        the offsets that could not be filled. Pass ``out`` (``len * PIECE_SIZE`` bytes, reused from
        sector to sector) to avoid allocating and zeroing a fresh GiB per sector."""
        size = len(piece_indices) * PIECE_SIZE
        buffer = bytearray(size) if out is None else out
        whole = memoryview(buffer).cast("B")
        if len(whole) != size:
            raise ValueError(f"sector buffer has {len(whole)} bytes, {len(piece_indices)} pieces need {size}")
        first: dict[int, int] = {}
        for offset, index in enumerate(piece_indices):
            first.setdefault(int(index), offset)
        into = {index: whole[o * PIECE_SIZE:(o + 1) * PIECE_SIZE] for index, o in first.items()}
        result = await self.get_pieces(list(first), into)
        failed = []
        for offset, index in enumerate(piece_indices):
            source = first[int(index)]
            if int(index) not in result.pieces:
                failed.append(offset)
            elif source != offset:
                whole[offset * PIECE_SIZE:(offset + 1) * PIECE_SIZE] = whole[source * PIECE_SIZE:(source + 1) * PIECE_SIZE]
        return buffer, failed

    async def get_pieces(self, piece_indices: Iterable[int], into: dict[int, memoryview] | None = None, *,
                         controller_first: bool = False) -> GetResult:
        """Fetch ``piece_indices`` (into the caller's ``into`` buffers, else new ones).
        ``controller_first``: ask the controller before the caches (a segment just archived)."""
        started = time.monotonic()
        indices = list(dict.fromkeys(int(i) for i in piece_indices))
        if into is None:
            whole = memoryview(bytearray(len(indices) * PIECE_SIZE))
            into = {index: whole[n * PIECE_SIZE:(n + 1) * PIECE_SIZE] for n, index in enumerate(indices)}
        result = GetResult()
        pending = indices
        if self.priority is not None and pending:
            hits = await asyncio.to_thread(lambda: [self.priority.read_into(i, into[i]) for i in pending])
            for index, hit in zip(pending, hits):
                if hit:
                    result.pieces[index] = into[index]
                    result.sources["priority"] += 1
            if self.metrics is not None and result.sources["priority"]:
                self.metrics.pieces.labels("priority-cache").inc(result.sources["priority"])
            pending = [i for i, hit in zip(pending, hits) if not hit]
        rows = self._plan(pending)
        if controller_first and self.use_controller:
            rows = [[CONTROLLER] + [s for s in row if s != CONTROLLER] for row in rows]
        plan = dict(zip(pending, rows))
        attempt = dict.fromkeys(pending, 0)
        now = time.monotonic()
        bad_sources: set[str] = {s for s, until in self._quarantine.items() if until > now}
        while pending:
            groups: dict[str, list[int]] = collections.defaultdict(list)
            for index in pending:
                order = plan[index]
                while attempt[index] < len(order) and order[attempt[index]] in bad_sources:
                    attempt[index] += 1
                if attempt[index] < len(order):
                    groups[order[attempt[index]]].append(index)
                else:
                    result.missing.append(index)
            if not groups:
                break
            outcomes = await asyncio.gather(*(self._from_source(source, group, into, result, bad_sources)
                                              for source, group in groups.items()))
            pending = []
            for (source, group), received in zip(groups.items(), outcomes):
                for index in group:
                    if index in received:
                        result.pieces[index] = into[index]
                        result.sources[source] += 1
                    else:
                        attempt[index] += 1
                        pending.append(index)
            if pending:
                result.retries += len(pending)
                self.stats["retries"] += len(pending)
                if self.metrics is not None:
                    self.metrics.retries.inc(len(pending))
        if result.missing:
            self.stats["failures"] += len(result.missing)
            log.warning("pieces not found anywhere", count=len(result.missing), first=sorted(result.missing)[:8])
        self.stats["pieces"] += len(result.pieces)
        self.source_counts.update(result.sources)
        result.seconds = time.monotonic() - started
        if self.write_back:
            await self._write_back([(i, into[i]) for i in result.pieces])
        return result

    # ---- fetching from one source

    async def _from_source(self, source: str, indices: list[int], into: dict[int, memoryview],
                           result: GetResult, bad_sources: set[str]) -> set[int]:
        started = time.perf_counter()
        received = await self._fetch_from(source, indices, into, result, bad_sources)
        if self.metrics is not None:
            label = self._category(source)
            self.metrics.fetch_time.labels(label).observe(time.perf_counter() - started)
            self.metrics.pieces.labels(label).inc(len(received))
            if source in bad_sources:
                self.metrics.fetch_errors.labels(label).inc()
        return received

    async def _fetch_from(self, source: str, indices: list[int], into: dict[int, memoryview],
                          result: GetResult, bad_sources: set[str]) -> set[int]:
        if source == CONTROLLER:
            received = await self._from_controller(indices, into)
        elif source == FIND:
            received = await self._from_locations(indices, into, result, bad_sources)
        else:
            received = await self._from_endpoint(source, indices, into, bad_sources)
        if self.verifier is not None and received:
            verified = await self._verified(source, received, into)
            if len(verified) < len(received) and source not in (CONTROLLER, FIND):
                bad_sources.add(source)  # it sent pieces that fail the check: trust it no more
                self._quarantine[source] = time.monotonic() + QUARANTINE_S
            received = verified
        return received

    async def _from_endpoint(self, endpoint: str, indices: list[int], into: dict[int, memoryview],
                             bad_sources: set[str]) -> set[int]:
        received: set[int] = set()
        limit = asyncio.Semaphore(self.concurrency)

        async def chunk(part: list[int]) -> None:
            async with limit:
                if endpoint in bad_sources:
                    return
                sink = KeyedBuffers({i: into[i] for i in part})
                try:
                    async with self.client.stream(endpoint, GetPieces(piece_indices=part), sink,
                                                  timeout=self.stall_timeout) as items:
                        async for key, _ in items:
                            received.add(key)
                        if items.corrupt:
                            self.stats["corrupt"] += len(items.corrupt)
                            log.warning("corrupt pieces from a cache", source=endpoint, count=len(items.corrupt))
                        if items.missing:
                            self.stats["source_missing"] += len(items.missing)
                except PeerError as exc:
                    bad_sources.add(endpoint)
                    self._quarantine[endpoint] = time.monotonic() + QUARANTINE_S
                    kind = "stalls" if isinstance(exc, PeerTimeout) else "source_errors"
                    self.stats[kind] += 1
                    log.warning("cache source failed; retrying elsewhere", source=endpoint, error=str(exc),
                                kind=kind, pieces=len(part) - len(received.intersection(part)))

        parts = [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        await asyncio.gather(*(chunk(p) for p in parts))
        return received

    async def _from_locations(self, indices: list[int], into: dict[int, memoryview], result: GetResult,
                              bad_sources: set[str]) -> set[int]:
        group = self.cache_group or ANY_CACHE_GROUP
        by_endpoint: dict[str, list[int]] = collections.defaultdict(list)
        try:
            async for location in self.bus.stream_request(FindPiecesInCacheRequest(piece_indices=indices),
                                                          instance=group, timeout=CONTROLLER_TIMEOUT_S, retries=1):
                if location.instance not in self.exclude and location.endpoint not in bad_sources:
                    by_endpoint[location.endpoint].append(location.piece_index)
        except (BusError, ValueError) as exc:
            self.stats["controller_errors"] += 1
            log.warning("controller piece lookup failed", error=str(exc))
            return set()
        received: set[int] = set()
        for got in await asyncio.gather(*(self._from_endpoint(e, part, into, bad_sources)
                                          for e, part in by_endpoint.items())):
            received |= got
        return received

    async def _from_controller(self, indices: list[int], into: dict[int, memoryview]) -> set[int]:
        received: set[int] = set()
        wanted = set(indices)
        try:
            async for item in self.bus.stream_request(PiecesRequest(piece_indices=indices),
                                                      timeout=CONTROLLER_TIMEOUT_S, retries=1):
                if item.piece_index in wanted and len(item.piece) == PIECE_SIZE:
                    into[item.piece_index][:] = item.piece
                    received.add(item.piece_index)
        except (BusError, ValueError) as exc:
            self.stats["controller_errors"] += 1
            log.warning("controller piece request failed", error=str(exc), pieces=len(indices) - len(received))
        return received

    async def _verified(self, source: str, received: set[int], into: dict[int, memoryview]) -> set[int]:
        order = sorted(received)
        results = await self.verifier.verify([(i, into[i]) for i in order])
        bad = [i for i, ok in zip(order, results) if not ok]
        if bad:
            self.stats["invalid"] += len(bad)
            if self.metrics is not None:
                self.metrics.invalid_pieces.labels(self._category(source)).inc(len(bad))
            log.warning("pieces failed the segment-commitment check; retrying elsewhere", source=source,
                        count=len(bad), first=bad[:8])
        return {i for i, ok in zip(order, results) if ok}

    # ---- priority cache write-back

    async def _write_back(self, items: list[tuple[int, memoryview]]) -> None:
        """Copy up to ``WRITE_BACK_LIMIT`` newly fetched pieces (the caller may reuse its buffers
        once we return) and store them in the priority cache in the background; skipped while a
        previous write-back is still running (it is a cache, not a queue)."""
        if self._write_back_task is not None and not self._write_back_task.done():
            return
        fresh = [(i, v) for i, v in items if i not in self.priority][:WRITE_BACK_LIMIT]
        if not fresh:
            return
        copies = await asyncio.to_thread(lambda: [(i, bytes(v)) for i, v in fresh])

        async def write() -> None:
            try:
                await asyncio.to_thread(self.priority.store, copies)
                self.stats["written_back"] += len(copies)
            except Exception as exc:  # noqa: BLE001 - a cache write failing must not fail a download
                log.warning("priority cache write-back failed", error=str(exc))

        self._write_back_task = asyncio.ensure_future(write())
