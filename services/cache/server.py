"""Serving pieces on the TCP data plane (``GetPieces``) from any store that can read a piece
and prove it intact: :class:`~services.cache.store.PieceStore` (sharded cache, priority cache)
and :class:`~services.cache.history_store.HistoryStore` (full-piece cache).

Each piece is read from disk and checked against its stored BLAKE3 just before it is sent (a
piece that fails is reported ``Missing`` and dropped from the store, so it gets refetched); the
digest travels with it, so the data plane does not hash again and the receiver checks the same
digest. Disk reads and hashing run on worker threads, a few pieces per hop, and the next batch
is read while the current one is being sent; backpressure comes from the data plane (a slow
reader stops the generator), so memory stays at a few pieces per stream.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Protocol

from services.cache.messages import MAX_PIECES_PER_REQUEST, GetPieces
from services.p2p.message import BulkItem, Missing

READ_BATCH = 4


class PieceReader(Protocol):
    def read_piece(self, piece_index: int) -> tuple[bytearray, bytes] | None: ...


def _read_batch(reader: PieceReader, indices: list[int]) -> list[tuple[bytearray, bytes] | None]:
    return [reader.read_piece(i) for i in indices]


def get_pieces_handler(reader: PieceReader, counters: dict[str, int] | None = None):  # noqa: ANN201
    """A ``GetPieces`` route handler reading from ``reader`` (``counters``: served / missing)."""
    stats = counters if counters is not None else {}
    stats.setdefault("served", 0)
    stats.setdefault("missing", 0)

    async def handler(request: GetPieces) -> AsyncIterator[BulkItem | Missing]:
        indices = list(request.piece_indices)
        if len(indices) > MAX_PIECES_PER_REQUEST:
            raise ValueError(f"at most {MAX_PIECES_PER_REQUEST} pieces per request, got {len(indices)}")
        batches = [indices[i:i + READ_BATCH] for i in range(0, len(indices), READ_BATCH)]
        pending = asyncio.ensure_future(asyncio.to_thread(_read_batch, reader, batches[0])) if batches else None
        try:
            for n, batch in enumerate(batches):
                assert pending is not None
                results = await pending
                pending = (asyncio.ensure_future(asyncio.to_thread(_read_batch, reader, batches[n + 1]))
                           if n + 1 < len(batches) else None)
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
        finally:
            if pending is not None:
                pending.cancel()

    return handler
