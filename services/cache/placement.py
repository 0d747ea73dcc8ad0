"""Which cache shard owns which piece: weighted rendezvous (highest-random-weight) hashing.

Why rendezvous: every process (shards, plot-servers, the controller, tools) computes the owner of
a piece index from nothing but the list of live shards in the membership registry, with no
coordination and no table to distribute; adding or losing a shard moves only the pieces that
shard gains or held (about ``1/N`` of history), every other piece keeps its owner. The ranking
of the other shards for a piece is also its natural fallback order: the second-ranked shard is
the one that owned the piece before the current owner joined.

Score of shard ``s`` for piece ``i``: ``u = mix64(i XOR seed_s)`` mapped into (0, 1), then
``-weight_s / ln(u)`` (weighted HRW: a shard's expected share is proportional to its weight,
here its capacity in pieces). ``seed_s`` is the first 8 bytes (LE) of ``blake3(shard id)``;
``mix64`` is the SplitMix64 finalizer, vectorised with numpy so a 1,000-piece sector is placed
in microseconds. Every process must compute identical owners, so all of this is fixed here.

    placement = Rendezvous({"cache-a": 100_000, "cache-b": 50_000})
    placement.owner(1234)                      # "cache-a"
    placement.owners(np.arange(256))           # array of shard positions (placement.shards[k])
    placement.ranking(1234)                    # ["cache-a", "cache-b"] best first
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from services.protocol.hashes import blake3_hash

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO_53 = float(1 << 53)


def shard_seed(shard_id: str) -> int:
    """The 64-bit seed of a shard (first 8 bytes of ``blake3(id)``, little endian)."""
    return int.from_bytes(blake3_hash(shard_id.encode())[:8], "little")


def _mix64(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = values.copy()
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def _scores(indices: np.ndarray, seed: int, weight: float) -> np.ndarray:
    mixed = _mix64(indices ^ np.uint64(seed))
    # top 53 bits -> uniform in (0, 1); never 0 (ln would be -inf) nor 1
    unit = ((mixed >> np.uint64(11)).astype(np.float64) + 0.5) / _TWO_53
    return -weight / np.log(unit)


class Rendezvous:
    """Weighted rendezvous placement over a fixed set of shards (rebuild it when they change)."""

    def __init__(self, shards: Mapping[str, float] | Sequence[str]) -> None:
        weights = dict(shards) if isinstance(shards, Mapping) else {s: 1.0 for s in shards}
        for shard, weight in weights.items():
            if not isinstance(shard, str) or not shard:
                raise ValueError(f"shard id must be a non-empty string, got {shard!r}")
            if not weight > 0:
                raise ValueError(f"shard {shard!r} weight must be positive, got {weight!r}")
        self.shards: tuple[str, ...] = tuple(sorted(weights))
        self._seeds = [shard_seed(s) for s in self.shards]
        self._weights = [float(weights[s]) for s in self.shards]

    def __len__(self) -> int:
        return len(self.shards)

    def __bool__(self) -> bool:
        return bool(self.shards)

    def score_matrix(self, piece_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """(len(piece_indices), len(shards)) scores; higher wins."""
        indices = np.asarray(piece_indices, dtype=np.uint64).reshape(-1)
        out = np.empty((indices.shape[0], len(self.shards)), dtype=np.float64)
        for k, (seed, weight) in enumerate(zip(self._seeds, self._weights)):
            out[:, k] = _scores(indices, seed, weight)
        return out

    def owners(self, piece_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Position in :attr:`shards` of each piece's owner (empty placement: ValueError)."""
        if not self.shards:
            raise ValueError("no shards to place pieces on")
        return np.argmax(self.score_matrix(piece_indices), axis=1)

    def rankings(self, piece_indices: Sequence[int] | np.ndarray, depth: int | None = None) -> np.ndarray:
        """(n, depth) shard positions per piece, best first (``depth`` defaults to all shards)."""
        depth = len(self.shards) if depth is None else min(depth, len(self.shards))
        return np.argsort(-self.score_matrix(piece_indices), axis=1, kind="stable")[:, :depth]

    def owner(self, piece_index: int) -> str | None:
        if not self.shards:
            return None
        return self.shards[int(self.owners([piece_index])[0])]

    def ranking(self, piece_index: int) -> list[str]:
        if not self.shards:
            return []
        return [self.shards[int(k)] for k in self.rankings([piece_index])[0]]

    def owned_mask(self, shard_id: str, piece_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Boolean mask of the pieces ``shard_id`` owns (all False if it is not a shard here)."""
        indices = np.asarray(piece_indices, dtype=np.uint64).reshape(-1)
        if shard_id not in self.shards:
            return np.zeros(indices.shape[0], dtype=bool)
        return self.owners(indices) == self.shards.index(shard_id)
