#!/usr/bin/env python3
"""Proof-of-space benchmark: prints ms per K=20 table set (one core and all cores), find_proof
and verify cost, the all-s-bucket batch proof search, and peak memory, for every available
backend (cpu always; gpu when cupy sees a device).

usage: python scripts/bench_pos.py [--k 20] [--seeds 6] [--backend cpu|gpu|all]
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
from services.protocol.pos import available_backends, create_tables, verify  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_backend(backend: str, k: int, n_seeds: int) -> None:
    seeds = [blake3_hash(b"bench" + i.to_bytes(4, "little")) for i in range(n_seeds)]
    t = time.perf_counter()
    create_tables(seeds[0], k, backend=backend)  # warm-up: numba load/compile, GPU context
    print(f"[{backend}] K={k} warm-up (compile/load) {time.perf_counter() - t:.2f} s")
    rss_before = peak_rss_mib()
    times = []
    cpu_times = []
    tables = None
    for seed in seeds:
        t = time.perf_counter()
        c = time.thread_time()
        tables = create_tables(seed, k, backend=backend)
        cpu_times.append(time.thread_time() - c)
        times.append(time.perf_counter() - t)
    print(f"[{backend}] table set, one at a time: wall median {statistics.median(times) * 1e3:.0f} ms, "
          f"min {min(times) * 1e3:.0f} ms; thread CPU time median "
          f"{statistics.median(cpu_times) * 1e3:.0f} ms over {n_seeds} seeds (load average now "
          f"{os.getloadavg()[0]:.1f}: wall times include other processes' contention)")
    print(f"[{backend}] peak RSS after sequential builds: {peak_rss_mib():.0f} MiB "
          f"(was {rss_before:.0f} MiB before)")

    workers = os.cpu_count() or 1
    if backend == "cpu" and workers > 1:
        many = seeds * 2

        def build_and_drop(seed: bytes) -> None:  # keep only one table set per thread alive
            create_tables(seed, k, backend=backend)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(build_and_drop, seeds[:workers]))
            t = time.perf_counter()
            list(pool.map(build_and_drop, many))
            elapsed = time.perf_counter() - t
        print(f"[{backend}] all cores ({workers} threads): {elapsed / len(many) * 1e3:.0f} ms per "
              f"table set ({len(many) / elapsed:.2f} sets/s; load average now "
              f"{os.getloadavg()[0]:.1f})")
        print(f"[{backend}] peak RSS after threaded builds: {peak_rss_mib():.0f} MiB")

    assert tables is not None
    n_calls = 20000
    t = time.thread_time()
    found = 0
    for ci in range(n_calls):
        found += tables.find_proof(ci) is not None
    elapsed = time.thread_time() - t
    print(f"[{backend}] find_proof (CPU time): {elapsed / n_calls * 1e6:.2f} us per call "
          f"({found}/{n_calls} found)")

    t = time.thread_time()
    proofs, mask = tables.find_proofs_for_all_s_buckets()
    elapsed = time.thread_time() - t
    print(f"[{backend}] all 65536 s-buckets batch (CPU time): {elapsed * 1e3:.1f} ms "
          f"({int(mask.sum())} found)")

    seed = tables.seed
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
    for backend in backends:
        bench_backend(backend, args.k, args.seeds)


if __name__ == "__main__":
    main()
