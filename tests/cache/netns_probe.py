"""Run inside a test network namespace: try the data plane of ``endpoint`` without the secret,
with a wrong one and with the right one (``secret_file``); print one JSON line of outcomes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from services.cache.messages import GetPieces
from services.p2p.client import PeerClient
from services.p2p.errors import PeerError
from services.p2p.sinks import KeyedBuffers
from services.protocol.constants import PIECE_SIZE


async def attempt(endpoint: str, secret: str | None) -> str:
    client = PeerClient(secret)
    buffers = {i: memoryview(bytearray(PIECE_SIZE)) for i in range(4)}
    try:
        result = await client.fetch(endpoint, GetPieces(piece_indices=list(buffers)), KeyedBuffers(buffers), timeout=10)
        return f"ok:{len(result.received)}+{len(result.missing)}"
    except PeerError as exc:
        return f"{type(exc).__name__}"
    finally:
        await client.close()


async def main() -> None:
    endpoint, secret_file = sys.argv[1], sys.argv[2]
    secret = Path(secret_file).read_text().strip()
    print(json.dumps({"none": await attempt(endpoint, None), "wrong": await attempt(endpoint, secret + "x"),
                      "right": await attempt(endpoint, secret)}))


if __name__ == "__main__":
    asyncio.run(main())
