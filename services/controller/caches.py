"""The controller's view of the piece caches: who is alive (membership), where a piece is
(``find-piece(s)-in-cache``), and whether the caches hold a new segment yet (acknowledgement).

* Live caches are the membership records with a cache role whose ``cache_group`` label is one of
  the controller's groups.
* A lookup asks every live cache of the group which of the indices it holds
  (``CacheContainsRequest``, in parallel, a few seconds each) and answers, per index, the shard
  that owns it by rendezvous if it holds it, else another shard in rendezvous order, else a
  full-piece cache. A cache that does not answer is skipped (logged), never waited for long.
* :meth:`CacheDirectory.wait_segment_held` returns once every cache that was live when the
  segment was announced has reported it (``SegmentHeldNotification``) or left, or at the
  deadline; the controller then acknowledges the segment to the node, whose archiver waits at
  most 2 minutes (spec 05 §3).
"""

from __future__ import annotations

import asyncio
import time
from typing import Iterable

import structlog

from services.bus.client import Bus
from services.bus.errors import BusError
from services.bus.membership import Member, Membership
from services.cache.messages import (
    CACHE_GROUP_LABEL,
    CACHE_ROLES,
    SHARDED_CACHE_ROLE,
    CacheContainsRequest,
    SegmentHeldNotification,
)
from services.cache.placement import Rendezvous
from services.controller.messages import ANY_CACHE_GROUP, PieceLocation

CONTAINS_TIMEOUT_S = 5.0
CONTAINS_CHUNK = 50_000
log = structlog.get_logger("controller.caches")


def tcp_endpoint(member: Member) -> str | None:
    return next((e for e in member.endpoints if e.startswith("tcp://")), None)


class CacheDirectory:
    def __init__(self, bus: Bus, groups: Iterable[str]) -> None:
        self.bus = bus
        self.groups = tuple(groups)
        self._watcher = None
        self._held: dict[int, dict[str, SegmentHeldNotification]] = {}
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task] = []
        self._subscription = None

    async def start(self, membership: Membership) -> None:
        self._subscription = await self.bus.subscribe(SegmentHeldNotification)
        self._watcher = await membership.watch()
        self._tasks = [asyncio.ensure_future(self._follow_members()), asyncio.ensure_future(self._follow_held())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._watcher is not None:
            await self._watcher.stop()
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _follow_members(self) -> None:
        assert self._watcher is not None
        async for event in self._watcher:
            if event.member.role in CACHE_ROLES:
                log.info("cache membership", change=event.kind, cache=event.key,
                         endpoint=tcp_endpoint(event.member), capacity=dict(event.member.capacity))
                await self._notify()

    async def _follow_held(self) -> None:
        assert self._subscription is not None
        async for note in self._subscription:
            if note.cache_group not in self.groups:
                continue
            self._held.setdefault(note.segment_index, {})[f"{note.role}.{note.instance}"] = note
            for old in [i for i in self._held if i < note.segment_index - 16]:
                del self._held[old]
            await self._notify()

    def caches(self, group: str | None = None) -> list[Member]:
        """Live caches of ``group`` (None or ``_``: of every group of this controller)."""
        if self._watcher is None:
            return []
        groups = self.groups if group in (None, ANY_CACHE_GROUP) else (group,)
        return sorted((m for m in self._watcher.members.values()
                       if m.role in CACHE_ROLES and m.labels.get(CACHE_GROUP_LABEL, "default") in groups),
                      key=lambda m: m.key)

    # ---- lookups

    async def _holdings(self, member: Member, indices: list[int]) -> list[bool] | None:
        held: list[bool] = []
        try:
            for start in range(0, len(indices), CONTAINS_CHUNK):
                chunk = indices[start:start + CONTAINS_CHUNK]
                result = await self.bus.request(CacheContainsRequest(piece_indices=chunk), instance=member.instance,
                                                timeout=CONTAINS_TIMEOUT_S, retries=0)
                held += result.flags(len(chunk))
        except (BusError, ValueError) as exc:
            log.warning("cache did not answer a lookup", cache=member.key, error=str(exc))
            return None
        return held

    async def locate(self, piece_indices: list[int], group: str | None = None) -> list[PieceLocation]:
        """Best location of each index some live cache holds (request order; others left out)."""
        members = [m for m in self.caches(group) if tcp_endpoint(m)]
        if not members or not piece_indices:
            return []
        holdings = await asyncio.gather(*(self._holdings(m, piece_indices) for m in members))
        shards = {m.instance: m for m in members if m.role == SHARDED_CACHE_ROLE}
        placement = Rendezvous({i: float(m.capacity.get("slots", 1) or 1) for i, m in shards.items()})
        rankings = placement.rankings(piece_indices) if placement else None
        by_instance = {m.instance: (m, h) for m, h in zip(members, holdings) if h is not None}
        full = [(m, h) for m, h in by_instance.values() if m.role != SHARDED_CACHE_ROLE]
        out: list[PieceLocation] = []
        for n, index in enumerate(piece_indices):
            found: Member | None = None
            if rankings is not None:
                for k in rankings[n]:
                    entry = by_instance.get(placement.shards[int(k)])
                    if entry is not None and entry[1][n]:
                        found = entry[0]
                        break
            if found is None:
                found = next((m for m, h in full if h[n]), None)
            if found is not None:
                out.append(PieceLocation(piece_index=index, role=found.role, instance=found.instance,
                                         endpoint=tcp_endpoint(found) or ""))
        return out

    # ---- segment acknowledgement

    async def wait_segment_held(self, segment_index: int, timeout: float) -> tuple[list[str], list[str]]:
        """Wait until the caches live now have reported ``segment_index`` (or left); returns the
        keys that reported and those still missing at the deadline."""
        expected = {m.key for m in self.caches()}
        deadline = time.monotonic() + timeout

        def pending() -> set[str]:
            live = {m.key for m in self.caches()}
            reported = set(self._held.get(segment_index, {}))
            return {key for key in expected if key in live and key not in reported}

        async with self._changed:
            while pending():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except asyncio.TimeoutError:
                    break
        return sorted(self._held.get(segment_index, {})), sorted(pending())
