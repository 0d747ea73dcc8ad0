"""``sharded-cache path=DIR [path=DIR ...]``: one shard of the cluster's piece cache.

History is spread over every live shard of the cache group by weighted rendezvous hashing
(:mod:`services.cache.placement`, weight = a shard's slots): each shard owns the indices that
hash highest to it and fills them, newest history first, from the other caches (the previous
owner first, then full-piece caches) or through the controller (the node), checking every
piece against its segment commitment before storing it. When shards join or leave, ownership
is recomputed and each shard fills only what it gained; pieces it no longer owns are kept until
the space is needed. New archived segments are fetched at once (the controller acknowledges a
segment to the node only after the shards report holding it). Pieces are served over TCP
(``GetPieces``); the membership record advertises the endpoint, slots and fill.

Storage: one :class:`~services.cache.store.PieceStore` per ``path=`` (``size=`` or 90 % of the
free space), new pieces going to the store with the most free slots.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import AsyncIterator

import numpy as np

from services.cache.messages import SHARDED_CACHE_ROLE, CacheVerifyProgress
from services.cache.placement import Rendezvous
from services.cache.role import CacheRole
from services.cache.store import PieceStore, StoreError
from services.daemon import DaemonError
from services.protocol.constants import NUM_PIECES, PIECE_SIZE
from services.protocol.segments import SegmentHeader
from services.sharded_cache.config import ShardedCacheConfig

FILL_BATCH = 256  # one segment-commitment batch check (one MSM) per batch
FILL_PIPELINE = 2  # batches being fetched / checked while the previous one is written
PLACEMENT_CHUNK = 1 << 18
IDLE_RECHECK_S = 60.0
PROGRESS_EVERY_S = 5.0
REPORT_LIST_LIMIT = 50_000


class ShardedCacheService(CacheRole):
    name = "sharded-cache"
    role = SHARDED_CACHE_ROLE

    def __init__(self, config: ShardedCacheConfig) -> None:
        super().__init__(config)
        self.stores: list[PieceStore] = []
        self.history = 0
        self.owned = 0
        self.missing = 0
        self.fill_stats = {"filled": 0, "unavailable": 0}
        self._in_flight: set[int] = set()  # being fetched by the fill loop or for a new segment
        self._landed = asyncio.Event()  # set whenever in-flight pieces were stored

    # ---- storage

    async def open_storage(self) -> None:
        def open_all() -> list[PieceStore]:
            stores = []
            for data_dir in self.config.paths:
                capacity = None if data_dir.size_bytes is None else data_dir.size_bytes // PIECE_SIZE
                stores.append(PieceStore(data_dir.path, capacity))
            return stores

        try:
            self.stores = await asyncio.to_thread(open_all)
        except StoreError as exc:
            raise DaemonError(str(exc)) from None
        for store in self.stores:
            report = store.report
            self.log.info("piece store opened", path=str(store.path), slots=store.capacity, pieces=len(store),
                          bad_index_records=report.bad_records, torn_bytes=report.torn_bytes)

    async def close_storage(self) -> None:
        for store in self.stores:
            store.close()

    @property
    def slots(self) -> int:
        return sum(s.capacity for s in self.stores)

    @property
    def held(self) -> int:
        return sum(len(s) for s in self.stores)

    def holdings(self, piece_indices: list[int] | np.ndarray) -> np.ndarray:
        held = np.zeros(len(piece_indices), dtype=bool)
        for store in self.stores:
            held |= store.contains_many(piece_indices)
        return held

    def read_piece(self, piece_index: int, nowait: bool = False) -> tuple[bytearray, bytes] | None:
        for store in self.stores:
            if piece_index in store:
                found = store.read_piece(piece_index, nowait)
                if found is not None:
                    return found
                self.wake_fill()  # it was corrupt and is dropped now: refetch it
        return None

    def held_indices(self) -> np.ndarray:
        parts = [s.piece_indices() for s in self.stores]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def capacity_fields(self) -> dict[str, int | float]:
        return {"slots": self.slots, "pieces": self.held, "owned": self.owned, "missing": self.missing,
                "fill_percent": round(100.0 * (self.owned - self.missing) / self.owned, 2) if self.owned else 100.0}

    def _put(self, items: list[tuple[int, memoryview]]) -> int:
        stored = 0
        while items:
            store = max(self.stores, key=lambda s: s.free_slots)
            if store.free_slots == 0:
                break
            part, items = items[: store.free_slots], items[store.free_slots:]
            stored += len(store.put_many(part))
        self.count_written(stored)
        return stored

    # ---- ownership

    def placement(self) -> Rendezvous:
        weights = {m.instance: float(m.capacity.get("slots", 1) or 1) for m in self.shard_members(self.role)}
        weights[self.instance] = float(self.slots)
        return Rendezvous(weights)

    def owned_indices(self, placement: Rendezvous, first: int, end: int) -> np.ndarray:
        me = placement.shards.index(self.instance)
        out = []
        for start in range(first, end, PLACEMENT_CHUNK):
            chunk = np.arange(start, min(end, start + PLACEMENT_CHUNK), dtype=np.uint64)
            out.append(chunk[placement.owners(chunk) == me].astype(np.int64))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def _make_room(self, needed: int, keep: np.ndarray) -> None:
        """Free ``needed`` slots: first the oldest pieces outside ``keep`` (no longer owned, or
        beyond capacity), then the oldest of ``keep``."""
        free = sum(s.free_slots for s in self.stores)
        if free >= needed:
            return
        held = self.held_indices()
        not_owned = np.setdiff1d(held, keep, assume_unique=True)
        victims = list(not_owned[: needed - free])
        if len(victims) < needed - free:
            victims += list(np.intersect1d(held, keep)[: needed - free - len(victims)])
        for store in self.stores:
            store.remove_many(int(v) for v in victims)
        self.log.info("made room", evicted=len(victims), not_owned=int(len(not_owned)))

    # ---- filling

    async def fill(self) -> None:
        while not self.stop_event.is_set():
            self.start_planning()
            self.history = max(self.history, await self.history_size())
            placement = self.placement()
            owned = await asyncio.to_thread(self.owned_indices, placement, 0, self.history * NUM_PIECES)
            target = owned[-self.slots:] if len(owned) > self.slots else owned  # newest history first
            missing = target[~self.holdings(target)] if len(target) else target
            if self._in_flight and len(missing):
                missing = missing[~np.isin(missing, np.fromiter(self._in_flight, dtype=np.int64))]
            self.owned, self.missing = int(len(target)), int(len(missing))
            if len(missing) == 0:
                await self._publish_capacity()
                await self.wait_for_work(IDLE_RECHECK_S)
                continue
            await asyncio.to_thread(self._make_room, len(missing), target)
            await self._fill_indices([int(i) for i in missing[::-1]], len(target))

    async def _fill_indices(self, missing: list[int], owned: int) -> None:
        """Fetch (and verify) ``missing`` in batches, ``FILL_PIPELINE`` batches in flight, each
        stored as soon as it arrives: the network, the checks and the disk work at once."""
        started = time.monotonic()
        last_report = started
        done = unavailable = fetched = 0
        self.log.info("filling", missing=len(missing), owned=owned, shards=len(self.placement()))
        batches = [missing[i:i + FILL_BATCH] for i in range(0, len(missing), FILL_BATCH)]
        in_flight: collections.deque[asyncio.Task] = collections.deque()
        try:
            queued = 0
            while True:
                while queued < len(batches) and len(in_flight) < FILL_PIPELINE and not self.fill_interrupted:
                    batch = [i for i in batches[queued] if i not in self._in_flight]
                    self._in_flight.update(batch)
                    in_flight.append(asyncio.ensure_future(self._fetch_and_store(batch)))
                    queued += 1
                if not in_flight:
                    break
                result, stored = await in_flight.popleft()
                fetched += len(result.pieces) + len(result.missing)
                done += stored
                unavailable += len(result.missing)
                self.missing = max(0, self.missing - stored)
                self.fill_stats["filled"] += stored
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY_S or fetched >= len(missing):
                    last_report = now
                    rate = done / (now - started) if now > started else 0.0
                    self.log.info("fill progress", filled=done, of=len(missing),
                                  percent=round(100 * fetched / len(missing), 1),
                                  mib_s=round(rate * PIECE_SIZE / 2**20, 1),
                                  gbit_s=round(rate * PIECE_SIZE * 8 / 1e9, 3), unavailable=unavailable,
                                  sources=dict(result.sources), retries=self.getter.stats["retries"],
                                  stalls=self.getter.stats["stalls"], invalid=self.getter.stats["invalid"])
                    await self._publish_capacity()
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
        if self.fill_interrupted:
            self.log.info("fill interrupted: re-planning", done=done)
            return
        self.fill_stats["unavailable"] = unavailable
        if unavailable:  # nobody has them right now: try again later, not in a tight loop
            await self.wait_for_work(IDLE_RECHECK_S)

    async def _fetch_and_store(self, indices: list[int], controller_first: bool = False):  # noqa: ANN202
        """Fetch (verified) and store pieces this process marked in flight; unmarks them."""
        try:
            result = await self.getter.get_pieces(indices, controller_first=controller_first)
            stored = await asyncio.to_thread(self._put, list(result.pieces.items()))
            return result, stored
        finally:
            self._in_flight.difference_update(indices)
            self._landed.set()

    # ---- new segments

    async def take_segment(self, header: SegmentHeader) -> tuple[int, bool]:
        index = header.segment_index
        self.history = max(self.history, index + 1)
        placement = self.placement()
        owned = self.owned_indices(placement, index * NUM_PIECES, (index + 1) * NUM_PIECES)
        while any(int(i) in self._in_flight for i in owned):  # the fill loop is fetching some already
            self._landed.clear()
            await self._landed.wait()
        need = [int(i) for i, held in zip(owned, self.holdings(owned)) if not held]
        if need:
            await asyncio.to_thread(self._make_room, len(need), owned)
            self._in_flight.update(need)
            await self._fetch_and_store(need, controller_first=True)
        held = int(self.holdings(owned).sum()) if len(owned) else 0
        self.owned += len(owned)
        self.missing += len(owned) - held
        return held, held == len(owned)

    # ---- util verify-piece

    async def self_check(self, repair: bool) -> AsyncIterator[CacheVerifyProgress]:
        held = [int(i) for i in self.held_indices()]
        total = len(held)
        checked = 0
        for start in range(0, total, 64):
            batch = held[start:start + 64]
            reads = await asyncio.to_thread(lambda: [self.read_piece(i) for i in batch])
            present = [(i, r[0]) for i, r in zip(batch, reads) if r is not None]
            corrupt = [i for i, r in zip(batch, reads) if r is None]
            results = await self.verifier.verify(present)
            bad = corrupt + [i for (i, _), ok in zip(present, results) if not ok]
            for store in self.stores:
                store.remove_many(bad)
            repaired = await self._repair(bad) if repair and bad else []
            checked += len(batch)
            if bad or checked == total or start % 4096 == 0:
                yield CacheVerifyProgress(instance=self.instance, role=self.role, checked=checked, total=total,
                                          bad=bad, repaired=repaired)
        placement = self.placement()
        owned = await asyncio.to_thread(self.owned_indices, placement, 0, self.history * NUM_PIECES)
        owned = owned[-self.slots:] if len(owned) > self.slots else owned  # what fits: the newest
        missing = [int(i) for i in owned[~self.holdings(owned)]] if len(owned) else []
        repaired = await self._repair(missing) if repair and missing else []
        self.wake_fill()  # without --repair the fill loop still refetches what was dropped
        for start in range(0, max(len(missing), 1), REPORT_LIST_LIMIT):
            last = start + REPORT_LIST_LIMIT >= len(missing)
            yield CacheVerifyProgress(instance=self.instance, role=self.role, checked=checked, total=total,
                                      missing=missing[start:start + REPORT_LIST_LIMIT],
                                      repaired=repaired[start:start + REPORT_LIST_LIMIT], done=last)

    async def _repair(self, indices: list[int]) -> list[int]:
        repaired = []
        for start in range(0, len(indices), FILL_BATCH):
            result = await self.getter.get_pieces(indices[start:start + FILL_BATCH])
            items = list(result.pieces.items())
            await asyncio.to_thread(self._put, items)
            repaired += [i for i, _ in items]
        return repaired

    async def rebuild(self) -> None:
        """``util reinitialization-cache``: re-check every stored piece's bytes, then refill."""
        for store in self.stores:
            report = await asyncio.to_thread(store.scrub)
            self.log.info("store re-checked", path=str(store.path), checked=report.checked, corrupt=len(report.corrupt or []))
        self.wake_fill()
