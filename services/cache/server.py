"""Serving pieces on the TCP data plane (``GetPieces``) from any store that can read a piece
and prove it intact: :class:`~services.cache.store.PieceStore` (sharded cache, priority cache)
and :class:`~services.cache.history_store.HistoryStore` (full-piece cache).

Each piece is read and checked against its stored xxh3 just before it is sent (a piece that
fails is reported ``Missing`` and dropped from the store, so it gets refetched); its stored
BLAKE3 travels with it, so the data plane does not hash it and the receiver checks that digest.
Pieces in the page cache are read on the event loop (``RWF_NOWAIT``); those that would wait for
the disk are read on a worker thread. Backpressure comes from the data plane (a slow reader
stops the generator), so memory stays at a few pieces per stream.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Protocol

from services.cache.messages import MAX_PIECES_PER_REQUEST, GetPieces
from services.p2p.message import BulkItem, Missing

READ_BATCH = 8
_COLD = object()


class PieceReader(Protocol):
    def read_piece(self, piece_index: int, nowait: bool = False) -> tuple[bytearray, bytes] | None: ...


def _read_cached(reader: PieceReader, index: int):  # noqa: ANN202
    try:
        return reader.read_piece(index, nowait=True)
    except BlockingIOError:
        return _COLD


def _read_batch(reader: PieceReader, indices: list[int]) -> list[tuple[bytearray, bytes] | None]:
    return [reader.read_piece(i) for i in indices]


def get_pieces_handler(reader: PieceReader, counters: dict[str, int] | None = None):  # noqa: ANN201
    """A ``GetPieces`` route handler reading from ``reader`` (``counters``: served / missing /
    cold, the last being pieces that had to be read from disk on a worker thread)."""
    stats = counters if counters is not None else {}
    for key in ("served", "missing", "cold"):
        stats.setdefault(key, 0)

    async def handler(request: GetPieces) -> AsyncIterator[BulkItem | Missing]:
        indices = list(request.piece_indices)
        if len(indices) > MAX_PIECES_PER_REQUEST:
            raise ValueError(f"at most {MAX_PIECES_PER_REQUEST} pieces per request, got {len(indices)}")
        for start in range(0, len(indices), READ_BATCH):
            batch = indices[start:start + READ_BATCH]
            # page-cache hits are read right here (a copy and an xxh3, no thread hop); pieces that
            # would wait for the disk are read on a worker thread
            results = [_read_cached(reader, i) for i in batch]
            cold = [i for i, r in zip(batch, results) if r is _COLD]
            if cold:
                stats["cold"] += len(cold)
                from_disk = iter(await asyncio.to_thread(_read_batch, reader, cold))
                results = [next(from_disk) if r is _COLD else r for r in results]
            missing = []
            for index, result in zip(batch, results):
                if result is None:
                    missing.append(index)
                else:
                    stats["served"] += 1
                    yield BulkItem(index, result[0], result[1])
            if missing:
                stats["missing"] += len(missing)
                yield Missing(missing)

    return handler
