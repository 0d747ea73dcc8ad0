"""Piece checks for cache processes: segment commitments from the controller plus the batched
validity check of :mod:`services.protocol.piece_batch`, run off the event loop.

Every piece a cache stores (filled from another cache, the controller or an export directory)
goes through :meth:`PieceVerifier.verify` first; a piece that fails is never stored and is
counted. Segment headers are immutable, so commitments learnt once are kept for the process
lifetime (``SegmentCommitments``, 48 bytes per segment).

The trusted setup must be the chain's: ``--kzg-params mainnet|dev|PATH`` (the packaged mainnet
setup by default; ``dev`` for the dev node's insecure known-tau setup), loaded with
:func:`services.kzg_setup.load_kzg`.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Sequence

from services.protocol.constants import NUM_PIECES
from services.protocol.piece_batch import verify_pieces
from services.protocol.segments import SegmentHeader

VERIFY_BATCH = 256  # one 2^15-point MSM per batch (~0.3-0.5 s); ~2-5 ms per piece on top

HeaderFetcher = Callable[[list[int]], Awaitable[list[SegmentHeader | None]]]


class SegmentCommitments:
    """Segment headers known to this process, fetched on demand through ``fetch``."""

    def __init__(self, fetch: HeaderFetcher) -> None:
        self._fetch = fetch
        self.headers: dict[int, SegmentHeader] = {}
        self._lock = asyncio.Lock()

    def add(self, header: SegmentHeader) -> None:
        self.headers[header.segment_index] = header

    async def get(self, segment_indices: Sequence[int]) -> dict[int, bytes]:
        """Commitments of those of ``segment_indices`` that exist (unknown ones are left out)."""
        wanted = sorted({int(i) for i in segment_indices})
        async with self._lock:
            missing = [i for i in wanted if i not in self.headers]
            for start in range(0, len(missing), 1000):
                chunk = missing[start:start + 1000]
                for index, header in zip(chunk, await self._fetch(chunk)):
                    if header is not None and header.segment_index == index:
                        self.headers[index] = header
        return {i: self.headers[i].segment_commitment for i in wanted if i in self.headers}


class PieceVerifier:
    """``verify(items)``: validity of ``(piece_index, bytes)`` pairs against their segments."""

    def __init__(self, kzg, commitments: SegmentCommitments) -> None:  # noqa: ANN001
        self.kzg = kzg
        self.commitments = commitments
        self.checked = 0
        self.rejected = 0

    async def verify(self, items: Sequence[tuple[int, bytes | bytearray | memoryview]]) -> list[bool]:
        if not items:
            return []
        commitments = await self.commitments.get([int(i) // NUM_PIECES for i, _ in items])
        results: list[bool] = []
        for start in range(0, len(items), VERIFY_BATCH):
            chunk = list(items[start:start + VERIFY_BATCH])
            results += await asyncio.to_thread(verify_pieces, self.kzg, chunk, commitments)
        self.checked += len(results)
        self.rejected += results.count(False)
        return results
