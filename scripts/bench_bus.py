#!/usr/bin/env python3
"""Bus layer numbers on a local nats-server: request/reply latency and rate (small typed
messages), stream-request throughput with 1 MiB items (acked chunks, spec 06 §2), piece-sized
request throughput, and broadcast fan-in rate. Prints one line per measurement.

    python3 scripts/bench_bus.py [--url nats://...] [--requests 2000] [--stream-mib 512]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.bus import Bus, Message  # noqa: E402
from services.bus.server import NatsServer  # noqa: E402
from services.protocol.constants import PIECE_SIZE  # noqa: E402


class Ping(Message):
    subject = "bench.ping"
    response = int
    queue_group = "bench"
    n: int


class Chunk(msgspec.Struct):
    data: bytes


class Pieces(Message):
    subject = "bench.pieces"
    response = Chunk
    stream = True
    count: int


class GetPiece(Message):
    subject = "bench.piece"
    response = Chunk
    index: int


class Slot(Message):
    subject = "bench.slot"
    n: int


async def bench(url: str, requests: int, stream_mib: int) -> None:
    server_bus = await Bus.connect([url], name="bench-responder")
    client = await Bus.connect([url], name="bench-requester")
    piece = bytes(PIECE_SIZE)
    await server_bus.serve(Ping, lambda m: m.n)
    await server_bus.serve(Pieces, lambda m: (Chunk(piece) for _ in range(m.count)))
    await server_bus.serve(GetPiece, lambda m: Chunk(piece))

    for n in range(50):  # warm-up
        await client.request(Ping(n=n), timeout=5)
    latencies = []
    start = time.perf_counter()
    for n in range(requests):
        t0 = time.perf_counter()
        await client.request(Ping(n=n), timeout=5)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    latencies.sort()
    print(f"request/reply sequential: {requests / elapsed:,.0f} req/s, "
          f"p50 {statistics.median(latencies) * 1e6:.0f} us, p99 {latencies[int(0.99 * len(latencies))] * 1e6:.0f} us")

    start = time.perf_counter()
    await asyncio.gather(*(client.request(Ping(n=n), timeout=30) for n in range(requests)))
    elapsed = time.perf_counter() - start
    print(f"request/reply {requests} concurrent: {requests / elapsed:,.0f} req/s")

    count = 64
    start = time.perf_counter()
    for n in range(count):
        await client.request(GetPiece(index=n), timeout=30)
    elapsed = time.perf_counter() - start
    print(f"piece request (1 MiB + 96 B response): {count / elapsed:,.1f} pieces/s, "
          f"{count * PIECE_SIZE / elapsed / 1e6:,.0f} MB/s")

    count = max(1, stream_mib)
    start = time.perf_counter()
    received = 0
    async for item in client.stream_request(Pieces(count=count), timeout=60):
        received += len(item.data)
    elapsed = time.perf_counter() - start
    print(f"stream request {count} pieces (2 per message, acked): {received / elapsed / 1e6:,.0f} MB/s "
          f"({count / elapsed:,.1f} pieces/s)")

    sub = await server_bus.subscribe(Slot)
    n_msgs = requests * 5
    start = time.perf_counter()
    for n in range(n_msgs):
        await client.broadcast(Slot(n=n), dedup_id=f"slot-{n}")
    for _ in range(n_msgs):
        await sub.next(10)
    elapsed = time.perf_counter() - start
    print(f"broadcast with dedup ids: {n_msgs / elapsed:,.0f} msg/s end to end")
    await sub.unsubscribe()
    await client.close()
    await server_bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="existing NATS server (default: launch one)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--stream-mib", type=int, default=512)
    args = parser.parse_args()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    if args.url:
        runner(bench(args.url, args.requests, args.stream_mib))
    else:
        with NatsServer() as server:
            runner(bench(server.url, args.requests, args.stream_mib))


if __name__ == "__main__":
    main()
