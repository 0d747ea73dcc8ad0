"""Child process for the store crash test: writes deterministic pieces and prints each
acknowledged index (``ack N``) once ``put_many`` returned; killed with SIGKILL by the test."""

from __future__ import annotations

import sys

from blake3 import blake3

from services.cache.store import PieceStore
from services.protocol.constants import PIECE_SIZE


def piece_bytes(index: int) -> bytes:
    return blake3(index.to_bytes(8, "little")).digest(length=PIECE_SIZE)


def main() -> None:
    store = PieceStore(sys.argv[1], int(sys.argv[2]))
    index = 0
    while True:
        batch = [(index + k, piece_bytes(index + k)) for k in range(3)]
        store.put_many(batch, evict_lru=True)
        for piece_index, _ in batch:
            print(f"ack {piece_index}", flush=True)
        index += 3


if __name__ == "__main__":
    main()
