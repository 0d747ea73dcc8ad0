"""The plot-server's ``--priority-cache``: pieces on the plot-server's own disk, consulted before
any shard.

Why: every sector a plot-server encodes reads ~1,000 pieces, and the odd offsets of the first
``max_pieces * recent_history_fraction * 2`` offsets come from the last ``recent_segments``
segments (spec 03 §3), so the same ~1,280 recent pieces are read by nearly every sector. Keeping
them (and whatever else was fetched lately) on local disk takes that traffic off the shards and
the network. It is a :class:`~services.cache.store.PieceStore` with least-recently-read
eviction: same crash safety, same per-read BLAKE3 check (a corrupt piece is dropped, the getter
falls back to the shards).

The plot-server (a later task) uses it like this::

    cache = PriorityCache(base_path / "priority-cache", size_bytes=None)   # default 2,048 pieces
    getter = await PieceGetter.connect(bus, client, priority=cache)       # read first, written back
    await cache.warm(getter, recent_piece_indices(history_size, recent_segments=5))
    sector, failed = await getter.fetch_sector(piece_indexes)
    cache.close()
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from services.cache.store import PieceStore
from services.protocol.constants import NUM_PIECES, PIECE_SIZE

DEFAULT_PRIORITY_PIECES = 2048  # the last 5 segments (1,280 pieces) and headroom
WARM_BATCH = 256


def recent_piece_indices(history_size: int, recent_segments: int) -> list[int]:
    """Piece indices of the last ``recent_segments`` segments of a history of ``history_size``."""
    first_segment = max(0, history_size - recent_segments)
    return list(range(first_segment * NUM_PIECES, history_size * NUM_PIECES))


class PriorityCache:
    def __init__(self, path: str | os.PathLike, size_bytes: int | None = None) -> None:
        capacity = DEFAULT_PRIORITY_PIECES if size_bytes is None else max(1, size_bytes // PIECE_SIZE)
        self._store = PieceStore(path, capacity)

    # the reader interface of PieceGetter / the data plane
    def read_into(self, piece_index: int, buffer: memoryview | bytearray) -> bool:
        return self._store.read_into(piece_index, buffer)

    def read_piece(self, piece_index: int, nowait: bool = False) -> tuple[bytearray, bytes] | None:
        return self._store.read_piece(piece_index, nowait)

    def contains_many(self, piece_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return self._store.contains_many(piece_indices)

    def __contains__(self, piece_index: int) -> bool:
        return piece_index in self._store

    def __len__(self) -> int:
        return len(self._store)

    @property
    def capacity(self) -> int:
        return self._store.capacity

    def store(self, items: Iterable[tuple[int, bytes | memoryview]]) -> list[int]:
        """Keep fetched pieces, evicting the least recently read ones when full."""
        return self._store.put_many(items, evict_lru=True)

    async def warm(self, getter, piece_indices: Sequence[int]) -> int:  # noqa: ANN001 - a PieceGetter
        """Fetch the given pieces (e.g. :func:`recent_piece_indices`) that are not held yet;
        returns how many were added."""
        import asyncio

        wanted = [int(i) for i, held in zip(piece_indices, self.contains_many(piece_indices)) if not held]
        added = 0
        for start in range(0, len(wanted), WARM_BATCH):
            part = wanted[start:start + WARM_BATCH]
            result = await getter.get_pieces(part)
            added += len(await asyncio.to_thread(self.store, list(result.pieces.items())))
        return added

    def close(self) -> None:
        self._store.close()
