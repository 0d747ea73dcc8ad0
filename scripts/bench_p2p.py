"""Data-plane throughput and latency (services.p2p) on loopback, servers in their own processes.

Usage: python scripts/bench_p2p.py [--pieces 1000] [--batch 100] [--depth 4] [--rounds 5]
                                   [--stored-digests] [--latency-requests 2000]

Prints, for one downloader fetching ``--pieces`` pieces of 1,048,672 bytes into one preallocated
sector buffer (``KeyedBuffers``), in batches of ``--batch`` keys with ``--depth`` batches in
flight per server:
  * from one server process, then from two (keys split between them): GB/s and pieces/s
    (best and median of ``--rounds``), every payload BLAKE3-checked at the client;
  * request/response latency p50/p99 of a small typed request (one caller, then 16 at once).
Servers keep ``--distinct`` pieces in memory and serve key k as piece k mod distinct; they hash
each payload as they send it unless ``--stored-digests`` (a cache that stores digests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.p2p import BulkItem, KeyedBuffers, Missing, PeerClient, PeerServer, Request  # noqa: E402

PIECE_SIZE = 1_048_672
SECRET = b"bench-cluster-secret-0123456789"


class Pong(msgspec.Struct):
    value: int


class Ping(Request):
    method = "bench.ping"
    response = Pong
    value: int


class FetchPieces(Request):
    method = "bench.fetch-pieces"
    bulk = True
    piece_indices: list[int]

    def expected_keys(self) -> list[int]:
        return self.piece_indices


def make_pieces(distinct: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(PIECE_SIZE) for _ in range(distinct)]


# --- server process -------------------------------------------------------------------------


async def serve(distinct: int, seed: int, stored_digests: bool) -> None:
    import blake3

    pieces = make_pieces(distinct, seed)
    digests = [blake3.blake3(p).digest() if stored_digests else None for p in pieces]
    server = PeerServer(SECRET, name="bench")

    def fetch(request: FetchPieces):
        for key in request.piece_indices:
            if key >= 1 << 40:
                yield Missing([key])
            else:
                slot = key % distinct
                yield BulkItem(key, pieces[slot], digests[slot])

    server.route(Ping, lambda request: Pong(request.value))
    server.route(FetchPieces, fetch)
    await server.start("127.0.0.1", 0)
    print(server.endpoint(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await server.stop()


# --- downloader -----------------------------------------------------------------------------


async def fetch_sector(client: PeerClient, endpoints: list[str], view: memoryview, pieces: int, batch: int,
                       depth: int) -> float:
    keys = list(range(pieces))
    slots = {k: view[k * PIECE_SIZE:(k + 1) * PIECE_SIZE] for k in keys}
    per_endpoint = [keys[i::len(endpoints)] for i in range(len(endpoints))]

    async def worker(endpoint: str, batches: list[list[int]]) -> int:
        got = 0
        while batches:
            chunk = batches.pop()
            result = await client.fetch(endpoint, FetchPieces(piece_indices=chunk),
                                        KeyedBuffers({k: slots[k] for k in chunk}), timeout=60)
            if result.failed:
                raise SystemExit(f"bench: {endpoint} failed keys {result.failed[:5]}...")
            got += len(result.received)
        return got

    tasks = []
    start = time.perf_counter()
    for endpoint, own in zip(endpoints, per_endpoint):
        batches = [own[i:i + batch] for i in range(0, len(own), batch)]
        tasks += [worker(endpoint, batches) for _ in range(depth)]
    received = sum(await asyncio.gather(*tasks))
    elapsed = time.perf_counter() - start
    assert received == pieces
    return elapsed


async def throughput(endpoints: list[str], args: argparse.Namespace, sector: bytearray) -> None:
    client = PeerClient(SECRET, name="bench")
    view = memoryview(sector)
    await fetch_sector(client, endpoints, view, min(args.pieces, 64), args.batch, args.depth)  # connect, warm up
    times = [await fetch_sector(client, endpoints, view, args.pieces, args.batch, args.depth)
             for _ in range(args.rounds)]
    expected = make_pieces(min(args.distinct, 4), args.seed)
    for k in range(min(args.distinct, 4)):  # spot-check content, not just digests
        assert view[k * PIECE_SIZE:(k + 1) * PIECE_SIZE] == expected[k], f"piece {k} differs"
    total = args.pieces * PIECE_SIZE
    best, median = min(times), statistics.median(times)
    print(f"  {len(endpoints)} server(s): best {total / best / 1e9:5.2f} GB/s ({args.pieces / best:6.0f} pieces/s), "
          f"median {total / median / 1e9:5.2f} GB/s ({args.pieces / median:6.0f} pieces/s) "
          f"over {args.rounds} rounds of {args.pieces} pieces")
    stats = client.stats
    print(f"    client: {stats['items']} items, {stats['integrity_failures']} integrity failures, "
          f"{stats['connections_opened']} connections")
    await client.close()


async def latency(endpoint: str, n: int) -> None:
    client = PeerClient(SECRET, name="bench")
    await client.request(endpoint, Ping(value=0))
    samples = []
    for i in range(n):
        t = time.perf_counter()
        await client.request(endpoint, Ping(value=i))
        samples.append(time.perf_counter() - t)
    samples.sort()
    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
    print(f"  1 caller:   p50 {p50 * 1e6:6.0f} us, p99 {p99 * 1e6:6.0f} us ({n} requests)")

    async def caller(count: int) -> list[float]:
        out = []
        for i in range(count):
            t = time.perf_counter()
            await client.request(endpoint, Ping(value=i))
            out.append(time.perf_counter() - t)
        return out

    start = time.perf_counter()
    parts = await asyncio.gather(*(caller(n // 16) for _ in range(16)))
    elapsed = time.perf_counter() - start
    samples = sorted(s for part in parts for s in part)
    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
    print(f"  16 callers: p50 {p50 * 1e6:6.0f} us, p99 {p99 * 1e6:6.0f} us, {len(samples) / elapsed:6.0f} requests/s")
    await client.close()


def start_server(args: argparse.Namespace, seed: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", "--distinct", str(args.distinct),
           "--seed", str(seed)] + (["--stored-digests"] if args.stored_digests else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    line = proc.stdout.readline().strip()  # type: ignore[union-attr]
    if not line.startswith("tcp://"):
        proc.kill()
        raise SystemExit(f"bench: server did not start ({line!r})")
    return proc, line


async def run(args: argparse.Namespace) -> None:
    procs = []
    try:
        first, endpoint_a = start_server(args, args.seed)
        procs.append(first)
        second, endpoint_b = start_server(args, args.seed)
        procs.append(second)
        sector = bytearray(args.pieces * PIECE_SIZE)
        mode = "stored digests" if args.stored_digests else "servers hash every payload"
        print(f"p2p bulk fetch, pieces of {PIECE_SIZE} bytes, batch {args.batch}, depth {args.depth}, "
              f"client verifies BLAKE3; {mode}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
        await throughput([endpoint_a], args, sector)
        await throughput([endpoint_a, endpoint_b], args, sector)
        print("p2p request/response latency (small typed request, one server)")
        await latency(endpoint_a, args.latency_requests)
    finally:
        for proc in procs:
            proc.stdin.close()  # type: ignore[union-attr]
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100, help="keys per fetch request")
    parser.add_argument("--depth", type=int, default=4, help="fetch requests in flight per server")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--distinct", type=int, default=128, help="distinct pieces each server holds")
    parser.add_argument("--stored-digests", action="store_true", help="servers send stored digests")
    parser.add_argument("--latency-requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    from services.daemon import configure_logging

    configure_logging("warning")  # logs to stderr; a server's stdout carries its endpoint
    if args.serve:
        uvloop.run(serve(args.distinct, args.seed, args.stored_digests))
    else:
        uvloop.run(run(args))


if __name__ == "__main__":
    main()
