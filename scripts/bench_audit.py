#!/usr/bin/env python3
"""Farming benchmark: audit time per slot for a plot of many 1000-piece sectors, and proving
latency through a real proof-server.

Audit (``--sectors 1000 10000``): the farm's batched audit (``services.farm.AuditTable``: one
s-bucket per sector, hashed in place in an mmap of the plot by a numba kernel, batches on a
thread pool, each batch's s-buckets requested with ``POSIX_FADV_WILLNEED`` first) over a plot
file of N sectors of 1000 pieces (1 056 896 064 bytes each). The plot file is sparse (10 000
sectors are 10.6 TB): by default the audited s-buckets are holes, so the kernel fills page-cache
pages with zeros: that measures page-cache reads plus that fill, not a disk. With ``--cached``
the s-buckets of the benchmark's slots are first written with random bytes (the file stays
sparse elsewhere) and read back from the page cache. Neither measures an NVMe: on a real disk
add its latency at the queue depth ``--threads`` gives. Sector metadata uses 64 distinct
s-bucket size profiles (binomial around 500 chunks per s-bucket, as in real sectors).

Proving (``--proofs N``, 0 to skip): starts a nats-server and a ``proof-server`` process, reads
records of a copy of the official farm (``vectors/official_farm``) and sends ``ProveRequest``s
one at a time; prints p50/p99 of the round trip (read + request + proof + answer).

usage: python scripts/bench_audit.py [--sectors 1000 10000] [--slots 10] [--threads N] [--cached]
                                     [--proofs 20] [--dir DIR]
"""

from __future__ import annotations

import argparse
import mmap
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.farm import AuditTable  # noqa: E402
from services.plot_client.config import DEFAULT_FARMING_THREADS  # noqa: E402
from services.protocol.constants import RECORD_NUM_CHUNKS, RECORD_NUM_S_BUCKETS, SCALAR_FULL_BYTES  # noqa: E402
from services.protocol.sector import sector_size  # noqa: E402

PIECES = 1000
PROFILES = 64
SOLUTION_RANGE = (1 << 64) // 500_000  # about one winning chunk per 1000 sectors per slot
SEED = 7


def _profiles(rng: np.random.Generator) -> np.ndarray:
    sizes = rng.binomial(PIECES, 0.5, (PROFILES, RECORD_NUM_S_BUCKETS)).astype(np.int64)
    for row in sizes:  # every record has exactly 32 768 chunks: the sizes add up to n * 32768
        excess = int(row.sum()) - PIECES * RECORD_NUM_CHUNKS
        idx = rng.choice(RECORD_NUM_S_BUCKETS, abs(excess), replace=False)
        row[idx] -= np.sign(excess)
    return sizes.astype(np.uint16)


def bench_audit(directory: Path, sectors: int, slots: int, threads: int, cached: bool) -> None:
    rng = np.random.default_rng(SEED)
    size = sector_size(PIECES)
    path = directory / f"plot-{sectors}.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, sectors * size)
        t = time.perf_counter()
        table = AuditTable(sectors, PIECES, size)
        profiles = _profiles(rng)
        for row in range(sectors):
            table.activate(row, rng.bytes(32), profiles[row % PROFILES])
        setup = time.perf_counter() - t
        challenges = [rng.bytes(32) for _ in range(slots)]
        written = 0
        if cached:
            written = _write_audited_buckets(fd, table, challenges, rng)
        plot_map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        words = np.frombuffer(plot_map, dtype="<u4")
        prefetch_fd = fd  # as the farm does: without it, faults on holes / uncached pages come one at a time
        with ThreadPoolExecutor(threads, thread_name_prefix="farming") as executor:
            table.audit(words, challenges[0], SOLUTION_RANGE, executor, prefetch_fd=prefetch_fd)  # warm-up
            times, winners = [], 0
            for challenge in challenges:
                t = time.perf_counter()
                found = table.audit(words, challenge, SOLUTION_RANGE, executor, prefetch_fd=prefetch_fd)
                times.append(time.perf_counter() - t)
                winners += len(found)
        read_mib = sectors * PIECES * RECORD_NUM_CHUNKS / RECORD_NUM_S_BUCKETS * SCALAR_FULL_BYTES / 2**20
        del words
        plot_map.close()
        kind = f"page cache, {written / 2**20:.0f} MiB of s-buckets written first" if cached else "sparse holes"
        print(f"audit {sectors:>6} sectors x {PIECES} pieces ({kind}, {threads} threads): "
              f"p50 {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms per slot over {slots} "
              f"slots; ~{read_mib:.0f} MiB read and hashed per slot; {winners} winning sectors in total; "
              f"table setup {setup:.1f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        os.close(fd)
        path.unlink()


def _write_audited_buckets(fd: int, table: AuditTable, challenges: list[bytes], rng: np.random.Generator) -> int:
    """Random bytes in exactly the s-buckets the benchmark's slots read."""
    written = 0
    rows = table.active_rows()
    for challenge in challenges:
        keys = table.sector_ids[rows] ^ np.frombuffer(challenge, dtype=np.uint8)
        s_buckets = keys[:, 0].astype(np.int64) | (keys[:, 1].astype(np.int64) << 8)
        for row, s in zip(rows.tolist(), s_buckets.tolist()):
            sizes = table.sizes[row]
            offset = row * table.sector_size + table.contents_map_size + SCALAR_FULL_BYTES * int(sizes[:s].sum())
            data = rng.bytes(SCALAR_FULL_BYTES * int(sizes[s]))
            os.pwrite(fd, data, offset)
            written += len(data)
    return written


def bench_proving(directory: Path, proofs: int) -> None:
    import asyncio

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "farm"))
    from official_farm import accepted_blocks, copy_farm, genesis_hash

    from services.bus.client import Bus
    from services.bus.server import NatsServer, NatsServerConfig
    from services.farm import Farm
    from services.plot_client.proof_servers import read_record
    from services.proof_server.messages import ProveRequest
    from services.protocol.proving import resolve_candidates

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
    from cluster_processes import ClusterProcess
    from shared_paths import require_mainnet_kzg

    server = NatsServer(NatsServerConfig()).start()
    farm = Farm.open(copy_farm(directory / "farm"), sectors=2, genesis_hash=genesis_hash(), max_pieces_in_sector=4)
    proof_server = ClusterProcess("proof-server", server.url, ["proof-server", "--backend", "auto", "--kzg-params",
                                                                str(require_mainnet_kzg()), "--instance", "bench"],
                                  directory / "proof-server.log")
    try:
        proof_server.wait_for("proof-server started", 300)
        blocks = accepted_blocks()

        async def run() -> list[float]:
            bus = await Bus.connect([server.url], name="bench-audit")
            times = []
            try:
                for i in range(proofs + 1):  # the first one warms numba caches and KZG tables up
                    block = blocks[i % len(blocks)]
                    audited = farm.audit(bytes.fromhex(block["globalChallenge"]), block["votingSolutionRange"])
                    result = audited[0].result
                    metadata = farm.sector_metadata(result.sector_index)
                    contents = farm.read_contents_map(result.sector_index)
                    candidate = resolve_candidates(contents, result.s_bucket, result.candidates)[0]
                    t = time.perf_counter()
                    record = read_record(farm, metadata, contents, candidate.piece_offset)
                    request = ProveRequest.build(record, deadline=time.time() + 600, public_key=farm.public_key,
                                                 reward_address=bytes(32), sector_index=result.sector_index,
                                                 history_size=metadata.history_size, s_bucket=candidate.s_bucket)
                    answer = await bus.request(request, timeout=600, retries=0)
                    assert answer.solution is not None, answer
                    if i:
                        times.append(time.perf_counter() - t)
            finally:
                await bus.close()
            return times

        times = sorted(asyncio.run(run()))
        p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
        backend = next((line for line in proof_server.text().splitlines() if "proof-server started" in line), "")
        print(f"proving through the proof-server ({'gpu' if 'backend=gpu' in backend else 'cpu'}), {len(times)} "
              f"proofs one at a time: p50 {statistics.median(times):.2f} s, p99 {p99:.2f} s, "
              f"min {times[0]:.2f} s (load average {os.getloadavg()[0]:.1f})")
    finally:
        proof_server.terminate()
        farm.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sectors", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--threads", type=int, default=DEFAULT_FARMING_THREADS)
    parser.add_argument("--cached", action="store_true", help="write the audited s-buckets first (page cache)")
    parser.add_argument("--proofs", type=int, default=20, help="proofs through a proof-server (0: skip)")
    parser.add_argument("--dir", default=None, help="where the sparse plot files go (default: a temp dir)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (figures are noisy on a loaded machine)")
    directory = Path(args.dir or tempfile.mkdtemp(prefix="bench-audit-"))
    try:
        for sectors in args.sectors:
            bench_audit(directory, sectors, args.slots, args.threads, args.cached)
        if args.proofs:
            bench_proving(directory, args.proofs)
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
