"""``util sharded-cache-benchmark --sectors N --epoch E --cache-item-type T``: download sectors'
pieces from the live cache cluster the way plot-servers do, and report throughput and latency.

For every simulated sector a random public key (from ``--seed``, printed) gives the real piece
selection of spec 03 §2-3 (``derive_sector_id`` / ``derive_piece_indexes`` at the chain's
current history size and protocol parameters, from the controller's farmer app info); the
pieces are fetched with :class:`~services.cache.getter.PieceGetter` (owner shard by rendezvous,
fallbacks, retries) into one preallocated sector buffer. ``--cache-item-type``:

* ``piece``: the sector's pieces in offset order as one download;
* ``split-parity-piece``: the source-position (even index) and parity-position (odd index)
  pieces as two concurrent downloads (the recent-history parity offsets are the hot set every
  sector shares);
* ``segment``: whole segments of history in order (what a filling shard does); ``--sectors``
  then counts segments.

Printed: per epoch and in total, pieces/s, MiB/s, sector latency p50/p99 and failures (pieces no
source could give), plus where pieces came from and how many were retried. ``pieces`` counts
the sector pieces delivered (a sector holds some indices twice; a repeat is copied, not
fetched again); ``transferred`` counts the distinct pieces fetched from the caches. With ``--json`` the
last line of stdout is one JSON object with ``sectors``, ``pieces``, ``pieces_per_s``,
``mib_per_s``, ``p50_ms``, ``p99_ms``, ``failures`` and more.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import sys
import time

import numpy as np

from services.daemon import DaemonError
from services.protocol.constants import NUM_PIECES, PIECE_SIZE
from services.utils.config import ShardedCacheBenchmarkConfig


def _sector_indices(rng: random.Random, sector_index: int, info, pieces_in_sector: int) -> list[int]:  # noqa: ANN001
    from services.protocol.sector import FarmerProtocolInfo, derive_piece_indexes, derive_sector_id

    protocol = FarmerProtocolInfo(info.history_size, info.max_pieces_in_sector, info.recent_segments,
                                  tuple(info.recent_history_fraction), info.min_sector_lifetime)
    public_key = rng.randbytes(32)
    sector_id = derive_sector_id(public_key, sector_index % 65536, info.history_size)
    return derive_piece_indexes(sector_id, pieces_in_sector, info.history_size, protocol)


async def _download(getter, indices: list[int], item_type: str, buffer: memoryview) -> tuple[int, int]:  # noqa: ANN001
    """Fetch one sector's pieces into ``buffer`` (preallocated and reused, as a plot-server's
    sector buffer is); returns (pieces delivered, failures)."""
    if item_type != "split-parity-piece":
        _, failed = await getter.fetch_sector(indices, buffer[: len(indices) * PIECE_SIZE])
        return len(indices) - len(failed), len(failed)
    even = [i for i in indices if i % 2 == 0]
    odd = [i for i in indices if i % 2 == 1]
    split = len(even) * PIECE_SIZE
    results = await asyncio.gather(getter.fetch_sector(even, buffer[:split]),
                                   getter.fetch_sector(odd, buffer[split: split + len(odd) * PIECE_SIZE]))
    failed = sum(len(f) for _, f in results)
    return len(indices) - failed, failed


def _summary(label: str, sectors: int, pieces: int, failures: int, seconds: float, latencies: list[float],
             extra: dict) -> dict:
    lat = np.array(latencies or [0.0]) * 1000
    return {"label": label, "sectors": sectors, "pieces": pieces, "failures": failures, "seconds": round(seconds, 3),
            "pieces_per_s": round(pieces / seconds, 1) if seconds else 0.0,
            "mib_per_s": round(pieces * PIECE_SIZE / 2**20 / seconds, 1) if seconds else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
            **extra}


def _line(s: dict) -> str:
    return (f"{s['label']}: {s['sectors']} sectors, {s['pieces']} pieces in {s['seconds']:.2f} s: "
            f"{s['pieces_per_s']:.0f} pieces/s, {s['mib_per_s']:.1f} MiB/s, sector latency p50 {s['p50_ms']:.0f} ms "
            f"p99 {s['p99_ms']:.0f} ms, failures {s['failures']}")


async def benchmark(config: ShardedCacheBenchmarkConfig, out=sys.stdout) -> dict:  # noqa: ANN001
    from services.bus.client import Bus
    from services.cache.getter import PieceGetter
    from services.controller.messages import FarmerAppInfoRequest
    from services.p2p.client import PeerClient

    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    bus = await Bus.connect(list(config.nats_servers), name="util-sharded-cache-benchmark")
    client = PeerClient(config.cluster_secret, name="sharded-cache-benchmark")
    getter = None
    try:
        info = (await bus.request(FarmerAppInfoRequest(), timeout=30, retries=2)).unwrap().protocol_info
        pieces_in_sector = min(config.pieces_in_sector, info.max_pieces_in_sector)
        getter = await PieceGetter.connect(bus, client, cache_group=config.cache_group,
                                           use_controller=config.use_controller, stall_timeout=config.stall_timeout_s)
        caches = collections.Counter(m.role for m in getter._members() if m.role.endswith("cache"))
        print(f"seed {seed}; history {info.history_size} segments; {pieces_in_sector} pieces per sector; "
              f"caches {dict(caches)}; item type {config.cache_item_type}", file=out, flush=True)
        limit = asyncio.Semaphore(config.concurrency)
        per_sector = NUM_PIECES if config.cache_item_type == "segment" else pieces_in_sector
        free_buffers = [memoryview(bytearray(per_sector * PIECE_SIZE)) for _ in range(config.concurrency)]
        totals = {"sectors": 0, "pieces": 0, "failures": 0, "seconds": 0.0}
        all_latencies: list[float] = []
        for epoch in range(config.epochs):
            if config.cache_item_type == "segment":
                jobs = [list(range((s % info.history_size) * NUM_PIECES, (s % info.history_size + 1) * NUM_PIECES))
                        for s in range(config.sectors)]
            else:
                jobs = [_sector_indices(rng, s, info, pieces_in_sector) for s in range(config.sectors)]
            latencies: list[float] = []
            counts = {"pieces": 0, "failures": 0}

            async def one(indices: list[int]) -> None:
                async with limit:
                    buffer = free_buffers.pop()
                    started = time.monotonic()
                    try:
                        delivered, failed = await _download(getter, indices, config.cache_item_type, buffer)
                    finally:
                        free_buffers.append(buffer)
                    latencies.append(time.monotonic() - started)
                    counts["pieces"] += delivered
                    counts["failures"] += failed

            started = time.monotonic()
            await asyncio.gather(*(one(j) for j in jobs))
            seconds = time.monotonic() - started
            summary = _summary(f"epoch {epoch + 1}", len(jobs), counts["pieces"], counts["failures"], seconds, latencies, {})
            print(_line(summary), file=out, flush=True)
            totals["sectors"] += len(jobs)
            totals["pieces"] += counts["pieces"]
            totals["failures"] += counts["failures"]
            totals["seconds"] += seconds
            all_latencies += latencies
        stats = dict(getter.stats)
        result = _summary("total", totals["sectors"], totals["pieces"], totals["failures"], totals["seconds"],
                          all_latencies, {"epochs": config.epochs, "item_type": config.cache_item_type, "seed": seed,
                                          "retries": stats.get("retries", 0), "stalls": stats.get("stalls", 0),
                                          "source_errors": stats.get("source_errors", 0),
                                          "corrupt": stats.get("corrupt", 0), "pieces_in_sector": pieces_in_sector,
                                          "sources": dict(getter.source_counts),
                                          "transferred": sum(getter.source_counts.values()),
                                          "transferred_mib_per_s": round(sum(getter.source_counts.values()) * PIECE_SIZE
                                                                         / 2**20 / totals["seconds"], 1)
                                          if totals["seconds"] else 0.0})
        print(_line(result) + f", retries {result['retries']}, stalls {result['stalls']}", file=out, flush=True)
        return result
    finally:
        if getter is not None:
            await getter.close()
        await client.close()
        await bus.close()


def main(config: ShardedCacheBenchmarkConfig) -> int:
    from services.daemon import configure_logging

    configure_logging("warning" if config.log_level == "info" else config.log_level, config.json_logs)
    try:
        result = asyncio.run(benchmark(config))
    except (DaemonError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if config.json_output:
        print(json.dumps(result, separators=(",", ":")))
    return 0 if result["failures"] == 0 else 1
