"""``full-piece-sharded-cache path=DIR``: a complete copy of history, served like a shard.

``DIR`` is what ``autonomys-export-piece`` wrote (``full-cache-tmp/``, a
:class:`~services.cache.history_store.HistoryStore`); an empty directory works too and is
filled from the cluster. On start it is verified before anything is served:

* every exported segment header must equal the chain's (controller ``SegmentHeadersRequest``);
  a segment that does not is never served (its pieces are marked bad and refetched);
* pieces with a verified record (the exporter checks every piece it writes) are served after a
  per-read BLAKE3 check; pieces without one are checked against their segment commitment in the
  background, in batches, with progress, and served once they pass. Bad pieces are reported
  (log, ``util verify-piece``) and replaced from another source.

Staying complete: the cache follows the archived-segment broadcasts and appends each new
segment (256 pieces, verified) as soon as it is announced, fetching it from the controller
while the node still holds it (the controller waits for this cache before acknowledging). Any
gap, from being down or from an export older than the chain, is filled segment by segment from
the shards, other full caches or the controller, so the copy converges to the whole history
and stays there.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import numpy as np

from services.cache.history_store import HistoryStore
from services.cache.messages import FULL_PIECE_CACHE_ROLE, CacheVerifyProgress
from services.cache.role import CacheRole
from services.cache.store import StoreError, piece_digests
from services.daemon import DaemonError
from services.full_piece_cache.config import FullPieceCacheConfig
from services.protocol.constants import NUM_PIECES, PIECE_SIZE
from services.protocol.segments import SegmentHeader

VERIFY_BATCH = 64
PROGRESS_EVERY_S = 5.0
IDLE_RECHECK_S = 60.0


class FullPieceCacheService(CacheRole):
    name = "full-piece-sharded-cache"
    role = FULL_PIECE_CACHE_ROLE

    def __init__(self, config: FullPieceCacheConfig) -> None:
        super().__init__(config)
        self.history: HistoryStore | None = None
        self.chain_segments = 0
        self._append_lock = asyncio.Lock()

    # ---- storage

    async def open_storage(self) -> None:
        if len(self.config.paths) != 1:
            raise DaemonError(f"{self.role} takes exactly one path=DIR (the exported history), got {len(self.config.paths)}")
        path = self.config.paths[0].path
        try:
            self.history = await asyncio.to_thread(HistoryStore, path)
        except StoreError as exc:
            raise DaemonError(str(exc)) from None
        counts = self.history.counts()
        self.log.info("history opened", path=path, segments=self.history.segments, **counts)

    async def close_storage(self) -> None:
        if self.history is not None:
            self.history.close()

    def holdings(self, piece_indices) -> np.ndarray:  # noqa: ANN001
        assert self.history is not None
        return self.history.contains_many(piece_indices)

    def read_piece(self, piece_index: int, nowait: bool = False) -> tuple[bytearray, bytes] | None:
        assert self.history is not None
        found = self.history.read_piece(piece_index, nowait)
        if found is None and 0 <= piece_index < self.history.pieces:
            self.wake_fill()  # bad or not verified yet: the fill loop takes care of it
        return found

    def capacity_fields(self) -> dict[str, int | float]:
        assert self.history is not None
        counts = self.history.counts()
        owned = max(self.chain_segments, self.history.segments) * NUM_PIECES
        return {"slots": owned, "pieces": counts["verified"], "owned": owned, "missing": owned - counts["verified"],
                "segments": self.history.segments, "unverified": counts["unverified"], "bad": counts["bad"],
                "fill_percent": round(100.0 * counts["verified"] / owned, 2) if owned else 100.0}

    # ---- verification on load

    async def _check_headers(self) -> None:
        """Mark every piece of an exported segment whose header differs from the chain's bad."""
        assert self.history is not None and self.commitments is not None
        exported = list(self.history.headers[: self.history.segments])
        for start in range(0, len(exported), 1000):
            part = exported[start:start + 1000]
            chain = await self._fetch_headers([h.segment_index for h in part])
            for mine, theirs in zip(part, chain):
                if theirs is not None:
                    self.commitments.add(theirs)
                if theirs is None or theirs.to_scale() != mine.to_scale():
                    first = mine.segment_index * NUM_PIECES
                    self.log.error("exported segment does not match the chain: not served, refetching",
                                   segment_index=mine.segment_index, chain_has_it=theirs is not None)
                    await asyncio.to_thread(self.history.mark_verified, [(first + k, None) for k in range(NUM_PIECES)])

    async def _verify_unverified(self) -> None:
        assert self.history is not None
        todo = [int(i) for i in self.history.unverified()]
        if not todo:
            return
        self.log.info("verifying exported pieces", pieces=len(todo))
        started = last = time.monotonic()
        bad_total = 0
        buffer_pool = [bytearray(PIECE_SIZE) for _ in range(VERIFY_BATCH)]
        for start in range(0, len(todo), VERIFY_BATCH):
            if self.stop_event.is_set():
                return
            batch = todo[start:start + VERIFY_BATCH]
            ok_read = await asyncio.to_thread(lambda: [self.history.read_raw(i, b) for i, b in zip(batch, buffer_pool)])
            items = [(i, memoryview(b)) for i, b, ok in zip(batch, buffer_pool, ok_read) if ok]
            results = await self.verifier.verify(items)
            marks = [(i, piece_digests(v) if ok else None) for (i, v), ok in zip(items, results)]
            bad = [i for i, c in marks if c is None] + [i for i, ok in zip(batch, ok_read) if not ok]
            marks += [(i, None) for i, ok in zip(batch, ok_read) if not ok]
            await asyncio.to_thread(self.history.mark_verified, marks)
            if bad:
                bad_total += len(bad)
                self.log.error("bad pieces in the exported history: not served, refetching", count=len(bad), first=bad[:8])
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S or start + VERIFY_BATCH >= len(todo):
                last = now
                done = start + len(batch)
                rate = done / (now - started) if now > started else 0.0
                self.log.info("verify progress", verified=done, of=len(todo), percent=round(100 * done / len(todo), 1),
                              pieces_s=round(rate, 1), bad=bad_total)
                await self._publish_capacity()

    # ---- filling: bad pieces, gaps, new segments

    async def fill(self) -> None:
        assert self.history is not None
        await self._check_headers()
        await self._verify_unverified()
        while not self.stop_event.is_set():
            self.chain_segments = max(self.chain_segments, await self.history_size())
            await self._repair_bad()
            while self.history.segments < self.chain_segments and not self.stop_event.is_set():
                if not await self._append_segment(self.history.segments, controller_first=False):
                    break
            await self._publish_capacity()
            await self.wait_for_work(IDLE_RECHECK_S)

    async def _repair_bad(self) -> None:
        assert self.history is not None
        bad = [int(i) for i in self.history.bad()]
        for start in range(0, len(bad), VERIFY_BATCH):
            result = await self.getter.get_pieces(bad[start:start + VERIFY_BATCH])
            for index, view in result.pieces.items():
                await asyncio.to_thread(self.history.write_piece, index, view)
            if result.pieces:
                self.log.info("repaired pieces", count=len(result.pieces), still_bad=len(result.missing))

    async def _append_segment(self, segment_index: int, controller_first: bool) -> bool:
        """Fetch, verify and append segment ``segment_index`` (the next one); False if incomplete."""
        assert self.history is not None
        async with self._append_lock:
            if self.history.segments != segment_index:
                return self.history.segments > segment_index
            (header,) = await self._fetch_headers([segment_index])
            if header is None:
                return False
            self.commitments.add(header)
            first = segment_index * NUM_PIECES
            result = await self.getter.get_pieces(range(first, first + NUM_PIECES), controller_first=controller_first)
            if result.missing:
                self.log.warning("segment not complete anywhere yet", segment_index=segment_index,
                                 missing=len(result.missing))
                return False
            pieces = [result.pieces[first + k] for k in range(NUM_PIECES)]
            await asyncio.to_thread(self.history.add_segment, header, pieces, True)
            self.count_written(NUM_PIECES)
            self.log.info("segment appended", segment_index=segment_index, sources=dict(result.sources))
            return True

    async def take_segment(self, header: SegmentHeader) -> tuple[int, bool]:
        assert self.history is not None
        self.chain_segments = max(self.chain_segments, header.segment_index + 1)
        if self.history.segments == header.segment_index:
            await self._append_segment(header.segment_index, controller_first=True)
        else:
            self.wake_fill()  # a gap first: do not hold the controller's acknowledgement for it
        first = header.segment_index * NUM_PIECES
        held = int(self.history.contains_many(range(first, first + NUM_PIECES)).sum())
        return held, held == NUM_PIECES

    # ---- util verify-piece

    async def self_check(self, repair: bool) -> AsyncIterator[CacheVerifyProgress]:
        assert self.history is not None
        total = self.history.pieces
        checked = 0
        buffers = [bytearray(PIECE_SIZE) for _ in range(VERIFY_BATCH)]
        for start in range(0, total, VERIFY_BATCH):
            batch = [i for i in range(start, min(total, start + VERIFY_BATCH))]
            ok_read = await asyncio.to_thread(lambda: [self.history.read_raw(i, b) for i, b in zip(batch, buffers)])
            items = [(i, memoryview(b)) for i, b, ok in zip(batch, buffers, ok_read) if ok]
            results = await self.verifier.verify(items)
            good = {i for (i, _), ok in zip(items, results) if ok}
            bad = [i for i in batch if i not in good]
            await asyncio.to_thread(self.history.mark_verified,
                                    [(i, piece_digests(v) if i in good else None) for i, v in items]
                                    + [(i, None) for i, ok in zip(batch, ok_read) if not ok])
            repaired: list[int] = []
            if repair and bad:
                result = await self.getter.get_pieces(bad)
                for index, view in result.pieces.items():
                    await asyncio.to_thread(self.history.write_piece, index, view)
                repaired = sorted(result.pieces)
            checked += len(batch)
            if bad or checked == total or start % 4096 == 0:
                yield CacheVerifyProgress(instance=self.instance, role=self.role, checked=checked, total=total,
                                          bad=bad, repaired=repaired)
        missing_segments = max(0, self.chain_segments - self.history.segments)
        missing = list(range(self.history.pieces, self.history.pieces + missing_segments * NUM_PIECES))[:50_000]
        if repair and missing_segments:
            self.wake_fill()
        yield CacheVerifyProgress(instance=self.instance, role=self.role, checked=checked, total=total,
                                  missing=missing, done=True)

    async def rebuild(self) -> None:
        """``util reinitialization-cache``: re-check headers and unverified pieces, fill gaps."""
        await self._check_headers()
        await self._verify_unverified()
        self.wake_fill()
