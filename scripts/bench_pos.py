#!/usr/bin/env python3
"""Proof-of-space benchmark: ms per K=20 table set on one thread and on all cores, find_proof
and verify cost, the all-s-bucket batch proof search, and the memory one table build needs,
for every available backend (cpu always; gpu when cupy sees a device).

usage: python scripts/bench_pos.py [--k 20] [--seeds 6] [--backend cpu|gpu|all]

Memory figures (CPU): the warm-up builds at K=12 (numba load/compile), so the peak RSS growth
after it is what K=`k` builds cost: "one build" = peak RSS above the process before the first
K=`k` build (its thread arena + the tables it returns + the s-bucket search); "per thread" =
the same for `cores` threads at once, divided by the thread count. Arena and tables sizes are
what the objects hold. Timings are per table set: thread CPU time (robust on a shared machine)
and wall time; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.protocol.hashes import blake3_hash  # noqa: E402
from services.protocol.pos import available_backends, create_tables, thread_scratch, verify  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_and_search(seed: bytes, k: int, backend: str) -> tuple[float, float, float]:
    """(wall, thread CPU) seconds of one table build, and thread CPU of its s-bucket search."""
    t, c = time.perf_counter(), time.thread_time()
    tables = create_tables(seed, k, backend=backend)
    wall, cpu = time.perf_counter() - t, time.thread_time() - c
    c = time.thread_time()
    tables.find_proofs_for_all_s_buckets()
    return wall, cpu, time.thread_time() - c


def bench_memory_and_threads(backend: str, k: int, seeds: list[bytes]) -> None:
    warm = time.perf_counter()
    create_tables(seeds[0], 12, backend=backend).find_proofs_for_all_s_buckets()  # numba load/compile
    print(f"[{backend}] warm-up (compile/load, K=12) {time.perf_counter() - warm:.2f} s")
    before = current_rss_mib()
    tables = create_tables(seeds[0], k, backend=backend)
    tables.find_proofs_for_all_s_buckets()
    one_build = peak_rss_mib() - before
    arena = thread_scratch().nbytes / 2**20 if backend == "cpu" else 0.0
    print(f"[{backend}] memory of one K={k} build + s-bucket search: peak RSS +{one_build:.0f} MiB (arena "
          f"{arena:.0f} MiB, tables {tables.nbytes / 2**20:.0f} MiB; the arena stays with the thread)")
    del tables
    results = [build_and_search(seed, k, backend) for seed in seeds]
    walls, cpus, searches = zip(*results)
    print(f"[{backend}] 1 thread: table set CPU median {statistics.median(cpus) * 1e3:.0f} ms (min "
          f"{min(cpus) * 1e3:.0f}), wall median {statistics.median(walls) * 1e3:.0f} ms; s-bucket search "
          f"CPU median {statistics.median(searches) * 1e3:.1f} ms; {len(seeds)} seeds, load "
          f"{os.getloadavg()[0]:.1f}")
    threads = os.cpu_count() or 1
    if backend != "cpu" or threads < 2:
        return
    many = seeds * 2
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda s: create_tables(s, 12, backend=backend), seeds[:threads]))
        before = current_rss_mib()
        t = time.perf_counter()
        results = list(pool.map(lambda s: build_and_search(s, k, backend), many))
        elapsed = time.perf_counter() - t
        per_thread = (peak_rss_mib() - before) / threads
    cpus = [r[1] for r in results]
    print(f"[{backend}] {threads} threads: {elapsed / len(many) * 1e3:.0f} ms wall per table set "
          f"({len(many) / elapsed:.2f} sets/s), CPU median {statistics.median(cpus) * 1e3:.0f} ms per set; "
          f"peak RSS +{per_thread:.0f} MiB per thread; load {os.getloadavg()[0]:.1f}")


def bench_search(backend: str, k: int, seed: bytes) -> None:
    tables = create_tables(seed, k, backend=backend)
    n_calls = 20000
    t = time.thread_time()
    found = 0
    for ci in range(n_calls):
        found += tables.find_proof(ci) is not None
    elapsed = time.thread_time() - t
    print(f"[{backend}] find_proof (CPU time): {elapsed / n_calls * 1e6:.2f} us per call "
          f"({found}/{n_calls} found)")
    proofs, mask = tables.find_proofs_for_all_s_buckets()
    samples = [(ci, bytes(proofs[ci])) for ci in range(65536) if mask[ci]][:2000]
    verify(seed, samples[0][0], samples[0][1], k)
    t = time.thread_time()
    for ci, proof in samples:
        if not verify(seed, ci, proof, k):
            raise SystemExit(f"verify failed for challenge {ci}")
    elapsed = time.thread_time() - t
    print(f"[{backend}] verify (CPU time): {elapsed / len(samples) * 1e6:.1f} us per proof "
          f"({len(samples)} proofs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--backend", default="all", choices=["cpu", "gpu", "all"])
    args = parser.parse_args()
    backends = available_backends() if args.backend == "all" else [args.backend]
    print(f"backends available: {available_backends()}; cores: {os.cpu_count()}")
    seeds = [blake3_hash(b"bench" + i.to_bytes(4, "little")) for i in range(args.seeds)]
    for backend in backends:
        bench_memory_and_threads(backend, args.k, seeds)
        bench_search(backend, args.k, seeds[0])


if __name__ == "__main__":
    main()
