#!/usr/bin/env python3
"""Proving latency (p50/p99) on CPU and the dev KZG setup's known-tau shortcut.

usage: python3 scripts/bench_proving.py [--proofs 24] [--workers 1 2] [--skip-dev]

Proving: random encoded chunks (seeded) of the reference's 4- and 6-piece sectors
(``sector_ref_p4.bin``, ``sector_history_ref_p6.bin``), each proven the way a proof-server
does it: the read step (``read_record_data``: the record's stored chunks, bitfield, metadata;
no PoS work) then the prove step (``prove_record``: K=20 tables, un-mask, erasure recovery,
chunk witness on the packaged mainnet setup); every solution's chunk witness is verified.
``--workers 2`` splits the PoS table build, the erasure NTTs and the witness MSM over two threads
(what a proof-server does).
Dev setup: commit / witness of a 2^15 polynomial with the known tau vs the MSM (same points),
and one 128 MiB segment archived with it. The load average is printed: timings on a shared
machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.kzg_setup import mainnet_kzg  # noqa: E402
from services.protocol.erasure import ErasureCoding  # noqa: E402
from services.protocol.parallel import Workers  # noqa: E402
from services.protocol.proving import prove_record  # noqa: E402
from services.protocol.reading import read_record_data  # noqa: E402
from services.protocol.s_bucket_proofs import chia_proofs_for_seed  # noqa: E402
from services.protocol.sector import SectorContentsMap, SectorMetadata  # noqa: E402

SHARED = Path(os.environ.get("AUTONOMYS_SHARED_DIR", ROOT.parent / "shared"))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def load_sectors() -> list[tuple[bytes, bytes, SectorMetadata, SectorContentsMap]]:
    sectors = []
    for name in ("sector_ref.json", "sector_history_ref.json"):
        data = json.loads((SHARED / "vectors" / name).read_text())
        ref = data["sectors"][0]
        sector = (SHARED / "vectors" / ref["sector_bin"]).read_bytes()
        metadata = SectorMetadata.from_checksummed_bytes(bytes.fromhex(ref["sector_metadata_checksummed"]))
        sectors.append((bytes.fromhex(data["public_key"]), sector, metadata,
                        SectorContentsMap.from_sector(sector, metadata.pieces_in_sector)))
    return sectors


def bench_proving(proofs: int, worker_counts: list[int]) -> None:
    start = time.perf_counter()
    kzg = mainnet_kzg()
    print(f"mainnet setup loaded from the package in {time.perf_counter() - start:.2f} s")
    erasure = ErasureCoding(16)
    proofs_for_seed = chia_proofs_for_seed("cpu")
    sectors = load_sectors()
    rng = np.random.default_rng(2024)
    cases = []
    for i in range(proofs):
        public_key, sector, metadata, contents_map = sectors[i % len(sectors)]
        offset = int(rng.integers(0, metadata.pieces_in_sector))
        encoded = np.flatnonzero(contents_map.record_encoded_mask(offset))
        cases.append((public_key, sector, metadata, contents_map, offset, int(rng.choice(encoded))))
    warm = cases[0]
    prove_record(read_record_data(warm[1], warm[2], warm[4], warm[3]), warm[0], warm[0], warm[2].sector_index,
                 warm[2].history_size, warm[5], kzg, erasure, proofs_for_seed)  # numba / caches
    pool = ThreadPoolExecutor(max(worker_counts))
    for count in worker_counts:
        workers = Workers(pool, count) if count > 1 else None
        reads, proves = [], []
        for public_key, sector, metadata, contents_map, offset, s_bucket in cases:
            t0 = time.perf_counter()
            record = read_record_data(sector, metadata, offset, contents_map)
            t1 = time.perf_counter()
            # as a proof-server: the table build split over the same workers as the NTTs and the MSM
            solution = prove_record(record, public_key, public_key, metadata.sector_index, metadata.history_size,
                                    s_bucket, kzg, erasure, chia_proofs_for_seed("cpu", workers), workers)
            t2 = time.perf_counter()
            assert kzg.verify(solution.record_commitment, 65536, s_bucket, solution.chunk, solution.chunk_witness)
            reads.append(t1 - t0)
            proves.append(t2 - t1)
        totals = [a + b for a, b in zip(reads, proves)]
        print(f"proving one solution, {count} thread(s), {len(cases)} proofs: total p50 {percentile(totals, 50):.2f} s, "
              f"p99 {percentile(totals, 99):.2f} s, max {max(totals):.2f} s | read step p50 "
              f"{percentile(reads, 50) * 1e3:.1f} ms | prove step p50 {percentile(proves, 50):.2f} s "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    pool.shutdown()


def bench_dev_setup() -> None:
    from services.protocol import archiver
    from services.protocol.constants import RECORDED_HISTORY_SEGMENT_SIZE
    from services.protocol.kzg import Kzg

    rng = np.random.default_rng(7)
    record = np.zeros((1 << 15, 32), np.uint8)
    record[:, 1:] = rng.integers(0, 256, (1 << 15, 31), dtype=np.uint8)
    dev, msm = Kzg.dev(), Kzg.dev(shortcut=False)
    poly = dev.poly(record)
    assert dev.commit(poly) == msm.commit(poly) and dev.create_witness(poly, 1 << 16, 77) == msm.create_witness(poly, 1 << 16, 77)
    for label, function in (
        ("commit 2^15", lambda kzg: kzg.commit(poly)),
        ("create_witness 2^15 (2^16 domain)", lambda kzg: kzg.create_witness(poly, 1 << 16, 12345)),
    ):
        known = statistics.median(_timed(lambda: function(dev)) for _ in range(5))
        full = statistics.median(_timed(lambda: function(msm)) for _ in range(3))
        print(f"dev setup {label}: known tau {known * 1e3:.2f} ms, MSM {full * 1e3:.0f} ms ({full / known:.0f}x)")
    segment = rng.integers(0, 256, RECORDED_HISTORY_SEGMENT_SIZE, dtype=np.uint8).tobytes()
    erasure = ErasureCoding(16)
    threads = os.cpu_count() or 1
    with ThreadPoolExecutor(threads) as pool:
        workers = Workers(pool, threads)
        archiver.archive_segment_bytes(dev, erasure, segment[: RECORDED_HISTORY_SEGMENT_SIZE], workers)  # warm-up
        seconds = _timed(lambda: archiver.archive_segment_bytes(dev, erasure, segment, workers))
    print(f"one 128 MiB segment archived with the dev setup on {threads} threads: {seconds:.2f} s "
          f"(load {os.getloadavg()[0]:.1f})")


def _timed(function) -> float:  # noqa: ANN001
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proofs", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-dev", action="store_true", help="skip the dev-setup timings")
    args = parser.parse_args()
    bench_proving(args.proofs, args.workers)
    if not args.skip_dev:
        bench_dev_setup()


if __name__ == "__main__":
    main()
