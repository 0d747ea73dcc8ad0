#!/usr/bin/env python3
"""Cache cluster numbers on loopback, with real processes: piece delivery from two shards to one
downloader (``util sharded-cache-benchmark``), a 1,000-piece sector's latency, the fill rate of
a shard joining the cluster (with every piece checked against its segment commitment), a stalled
shard during downloads, and the resident memory of each cache process with its index full.

History: a dev-node data directory with ``--segments`` segments archived with the dev KZG setup
from all-zero blocks (fast to archive: zero records commit in milliseconds), chain parameter
``max_pieces_in_sector = 1000``, built once into ``--work`` and reused. Zero records also make
the fill's segment-commitment checks cheap, so the fill rate is also measured on real random
history: the dev chain's own segment 0 (``--real-segment DIR``, a dev-node data dir, optional).

    python3 scripts/bench_cache.py [--segments 8] [--sectors 8] [--work /tmp/bench-cache]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "cache"))
sys.path.insert(0, str(REPO / "tests" / "node"))

from cache_processes import export_from_dev_chain, filled, start_cache, start_controller, wait_member  # noqa: E402
from dev_node_process import DevNodeProcess  # noqa: E402

from services.bus.client import Bus  # noqa: E402
from services.protocol.constants import NUM_PIECES, PIECE_SIZE  # noqa: E402

BLOCK_SIZE = 1 << 20
PIECES_IN_SECTOR = 1000


def build_history(node_dir: Path, segments: int) -> None:
    """Archive ``segments`` segments of zero blocks into a dev-node data directory."""
    from services.protocol.archiver import Archiver
    from services.protocol.erasure import ErasureCoding
    from services.protocol.kzg import Kzg

    headers_file = node_dir / "segment-headers.jsonl"
    if headers_file.exists() and len(headers_file.read_text().splitlines()) >= segments:
        return
    (node_dir / "segments").mkdir(parents=True, exist_ok=True)
    archiver = Archiver(Kzg.dev(), ErasureCoding(16))
    lines, number, started = [], 0, time.monotonic()
    while len(lines) < segments:
        for segment in archiver.add_block(bytes(BLOCK_SIZE), number):
            index = segment.header.segment_index
            (node_dir / "segments" / f"{index:08d}.pieces").write_bytes(b"".join(bytes(p) for p in segment.pieces))
            lines.append(json.dumps(segment.header.to_json(), separators=(",", ":")))
            print(f"archived synthetic segment {index} ({time.monotonic() - started:.0f} s)", flush=True)
        number += 1
    headers_file.write_text("\n".join(lines[:segments]) + "\n")
    (node_dir / "archiver.state").write_bytes(archiver.to_state())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def util(nats_url: str, *args: str, procs: dict | None = None) -> dict:
    """Run the benchmark utility; adds the CPU seconds it and each cache process used."""
    import resource

    before = {name: cpu_seconds(p.pid) for name, p in (procs or {}).items() if name != "controller"}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "services", "util", "sharded-cache-benchmark", "--nats-servers",
                           nats_url, "--json", *args], cwd=REPO, capture_output=True, text=True, timeout=1800)
    print(proc.stdout.strip())
    if proc.returncode != 0:
        print(proc.stderr[-2000:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["cpu_s"] = {"downloader": round(after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime, 1),
                       **{name: round(cpu_seconds(p.pid) - before[name], 1) for name, p in (procs or {}).items()
                          if name in before}}
    return result


def fill_rates(log: str) -> list[float]:
    return [float(m) for m in re.findall(r'"gbit_s": ([0-9.]+)', log)]


async def wait_filled(nats_url: str, keys: list[str], procs, timeout: float = 1800) -> None:  # noqa: ANN001
    bus = await Bus.connect([nats_url])
    try:
        for key in keys:
            await wait_member(bus, key, filled, timeout, "filled", procs)
    finally:
        await bus.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--sectors", type=int, default=8)
    parser.add_argument("--work", default="/tmp/bench-cache")
    parser.add_argument("--real-segment", default=None, metavar="DEV_NODE_DIR",
                        help="also measure a fill on this dev chain's random history (its segment files)")
    args = parser.parse_args()
    from services.bus.server import NatsServer, NatsServerConfig

    work = Path(args.work)
    run = work / f"run-{int(time.time())}"
    run.mkdir(parents=True)
    node_dir = work / "node"
    build_history(node_dir, args.segments)
    for stale in ("rpc-url", "blocks.jsonl"):
        (node_dir / stale).unlink(missing_ok=True)
    export = work / "export"
    export_from_dev_chain(node_dir, export)
    nats = NatsServer(NatsServerConfig()).start()
    node = DevNodeProcess(node_dir, "--pieces-in-sector", str(PIECES_IN_SECTOR), log_path=run / "node.log")
    procs = {}
    results: dict = {"segments": args.segments, "history_pieces": args.segments * NUM_PIECES}
    shard_size = f"{(args.segments * NUM_PIECES // 2 + 256) * PIECE_SIZE}"
    try:
        url = node.wait_ready()
        procs["controller"] = start_controller(nats.url, url, run / "controller.log")
        procs["full"] = start_cache("full-piece-sharded-cache", nats.url, f"path={export}", "bench-full", run / "full.log")
        asyncio.run(wait_filled(nats.url, ["full-piece-sharded-cache.bench-full"], tuple(procs.values())))
        for name in ("shard-a", "shard-b"):
            procs[name] = start_cache("sharded-cache", nats.url, f"path={run / name},size={shard_size}", f"bench-{name}",
                                      run / f"{name}.log")
        started = time.monotonic()
        asyncio.run(wait_filled(nats.url, ["sharded-cache.bench-shard-a", "sharded-cache.bench-shard-b"],
                                tuple(procs.values())))
        results["two_shards_fill_s"] = round(time.monotonic() - started, 1)
        results["fill_gbit_s_from_full_cache"] = max(fill_rates(procs["shard-a"].log_text()) or [0])
        results["rss_mib"] = {name: round(rss_mib(p.pid), 1) for name, p in procs.items() if name != "controller"}

        for item in ("piece", "split-parity-piece"):
            results[f"delivery_{item}"] = util(nats.url, "--sectors", str(args.sectors), "--epoch", "2",
                                               "--cache-item-type", item, "--seed", "1", "--no-controller",
                                               procs=procs)
        results["delivery_concurrent_4"] = util(nats.url, "--sectors", str(args.sectors), "--epoch", "1",
                                                "--cache-item-type", "piece", "--seed", "2", "--concurrency", "4",
                                                "--no-controller")

        # a shard joins: it takes a third of history from the previous owners (verified)
        procs["shard-c"] = start_cache("sharded-cache", nats.url, f"path={run / 'shard-c'},size={shard_size}",
                                       "bench-shard-c", run / "shard-c.log")
        started = time.monotonic()
        asyncio.run(wait_filled(nats.url, ["sharded-cache.bench-shard-c"], tuple(procs.values())))
        results["join_fill_s"] = round(time.monotonic() - started, 1)
        results["join_fill_gbit_s"] = max(fill_rates(procs["shard-c"].log_text()) or [0])

        # a stalled shard (SIGSTOP): downloads retry elsewhere after the stall timeout
        os.kill(procs["shard-b"].pid, signal.SIGSTOP)
        try:
            results["delivery_with_stalled_shard"] = util(nats.url, "--sectors", "2", "--epoch", "1",
                                                          "--cache-item-type", "piece", "--seed", "3",
                                                          "--stall-timeout", "2", "--no-controller")
        finally:
            os.kill(procs["shard-b"].pid, signal.SIGCONT)
        results["rss_mib_after"] = {name: round(rss_mib(p.pid), 1) for name, p in procs.items() if name != "controller"}
    finally:
        for proc in procs.values():
            proc.terminate()
        node.terminate()
        nats.stop()
    if args.real_segment:
        results["real_history_verify"] = verify_rate(Path(args.real_segment))
    print(json.dumps(results, indent=2))
    return 0


def verify_rate(dev_dir: Path) -> dict:
    """Batched segment-commitment checks on random (real dev chain) pieces: the fill's CPU cost."""
    from services.protocol.kzg import Kzg
    from services.protocol.piece_batch import verify_pieces
    from services.protocol.segments import SegmentHeader

    header = SegmentHeader.from_json(json.loads((dev_dir / "segment-headers.jsonl").read_text().splitlines()[0]))
    data = (dev_dir / "segments" / "00000000.pieces").read_bytes()
    items = [(i, memoryview(data)[i * PIECE_SIZE:(i + 1) * PIECE_SIZE]) for i in range(NUM_PIECES)]
    out = {}
    # shortcut: the dev setup commits by its known tau; msm: the multi-scalar multiplication every
    # real setup (mainnet) needs, i.e. the cost a mainnet cache pays
    for label, kzg in (("dev_shortcut", Kzg.dev()), ("msm_like_mainnet", Kzg.dev(shortcut=False))):
        verify_pieces(kzg, items[:2], {0: header.segment_commitment})  # warm up (numba, caches)
        for batch in (64, 256):
            started = time.monotonic()
            ok = verify_pieces(kzg, items[:batch], {0: header.segment_commitment})
            seconds = time.monotonic() - started
            out[f"{label}_batch_{batch}_pieces_s"] = round(batch / seconds, 1)
            out[f"{label}_batch_{batch}_gbit_s"] = round(batch * PIECE_SIZE * 8 / seconds / 1e9, 3)
            assert all(ok)
    return out


if __name__ == "__main__":
    sys.exit(main())
