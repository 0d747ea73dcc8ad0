"""One side of the cross-namespace data-plane test, run as ``python p2p_netns_peer.py serve|fetch``
inside a network namespace (``ip netns exec``).

serve: listen on ``--host`` with the secret from ``--secret-file`` (none with ``--no-secret``),
       serve ``--pieces`` seeded pieces, print the advertised endpoint, run until stdin closes.
fetch: fetch every piece (plus one absent key) from ``--endpoint`` into one preallocated buffer,
       check each against the same seeded pieces, print a JSON summary.
A failure prints ``error: <type>: <message>`` and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from p2p_messages import Fetch, make_store, serve_store  # noqa: E402

from services.p2p import KeyedBuffers, PeerClient, PeerError, PeerServer, load_cluster_secret  # noqa: E402

PIECE_SIZE = 1_048_672
ABSENT = 1 << 50


async def serve(args: argparse.Namespace) -> None:
    secret = load_cluster_secret(environ={}) if args.no_secret else load_cluster_secret(file=args.secret_file)
    server = PeerServer(secret, name="netns-server")
    server.route(Fetch, serve_store(make_store(random.Random(args.seed), args.pieces, PIECE_SIZE)))
    await server.start(args.host, 0)
    print(server.endpoint(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop()


async def fetch(args: argparse.Namespace) -> None:
    store = make_store(random.Random(args.seed), args.pieces, PIECE_SIZE)
    keys = sorted(store) + [ABSENT]
    memory = bytearray(len(keys) * PIECE_SIZE)
    view = memoryview(memory)
    sink = KeyedBuffers({k: view[i * PIECE_SIZE:(i + 1) * PIECE_SIZE] for i, k in enumerate(keys)})
    client = PeerClient(load_cluster_secret(file=args.secret_file), name="netns-client")
    try:
        result = await client.fetch(args.endpoint, Fetch(keys=keys), sink, timeout=30)
    finally:
        await client.close()
    print(json.dumps({
        "received": len(result.received),
        "intact": sum(result.received[k] == store[k] for k in result.received),
        "missing": result.missing,
        "corrupt": result.corrupt,
    }))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("serve", "fetch"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--endpoint")
    parser.add_argument("--secret-file")
    parser.add_argument("--no-secret", action="store_true")
    parser.add_argument("--pieces", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import uvloop

    from services.daemon import configure_logging

    configure_logging("warning")
    try:
        uvloop.run(serve(args) if args.mode == "serve" else fetch(args))
    except PeerError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
