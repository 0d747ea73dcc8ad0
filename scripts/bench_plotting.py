#!/usr/bin/env python3
"""CPU plotting throughput and memory: seconds per sector of n pieces on 1 and 2 worker threads,
sectors per hour, peak RSS, and the ratio to the reference farmer measured on this machine.

usage: python3 scripts/bench_plotting.py [--pieces 4 32] [--workers 1 2] [--full-sector] [--pos chia|shim]

Each (pieces, workers) run is a child process (so its peak RSS is its own): warm-up (numba
cache, one K=20 table build) untimed, then the sector is encoded into one SectorBuffer by
``encode_records`` on a ThreadPoolExecutor and streamed to a temporary file by SectorWriter.
The 4-piece sector is the reference's (``sector_ref_p4.bin``: its pieces are read back out of
it first) and the result is compared with it byte for byte; other sizes use random records.
``--pos shim`` swaps the K=20 tables for the insecure shim table: a quick check of the sector
buffer and writer memory at 1,000 pieces (not a throughput figure).
Reference (``autonomys/subspace`` ``plot_sector``, CPU, same 2-core machine, quiet):
6.5 s per 4 pieces on 2 threads, 11.4 s on 1. Timings on a shared machine are noisy: the load
average is printed with every run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.protocol.constants import PIECE_SIZE  # noqa: E402
from services.protocol.erasure import ErasureCoding  # noqa: E402
from services.protocol.plotting import CpuRecordEncoder, SectorBuffer, encode_records  # noqa: E402
from services.protocol.s_bucket_proofs import chia_proofs_for_seed, shim_proofs_for_seed  # noqa: E402
from services.protocol.sector import FarmerProtocolInfo, SectorMetadata  # noqa: E402
from services.protocol.sector_writer import SectorWriter  # noqa: E402

REFERENCE_SECONDS_PER_PIECE = {1: 11.4 / 4, 2: 6.5 / 4}
SHARED = Path(os.environ.get("AUTONOMYS_SHARED_DIR", ROOT.parent / "shared"))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reference_case(proofs_for_seed, erasure):  # noqa: ANN001, ANN201
    """The reference's 4-piece sector: its parameters and its pieces read back out of it."""
    from services.protocol.reading import read_piece

    vectors = SHARED / "vectors"
    data = json.loads((vectors / "sector_ref.json").read_text())
    ref = data["sectors"][0]
    sector = (vectors / ref["sector_bin"]).read_bytes()
    metadata = SectorMetadata.from_checksummed_bytes(bytes.fromhex(ref["sector_metadata_checksummed"]))
    sector_id = bytes.fromhex(ref["sector_id"])
    pieces = [bytes(read_piece(sector, metadata, sector_id, p, erasure, proofs_for_seed)) for p in range(4)]
    info = FarmerProtocolInfo.from_scale(bytes.fromhex(data["farmer_protocol_info"]["scale"]))
    return bytes.fromhex(data["public_key"]), data["sector_index"], info, pieces, sector


def random_pieces(n: int):  # noqa: ANN201
    """``(offset, piece)`` for random records, made as they are asked for (as if arriving)."""
    rng = np.random.default_rng(n)
    for offset in range(n):
        record = rng.integers(0, 256, (32768, 32), dtype=np.uint8)
        record[:, 0] = 0
        yield offset, record.tobytes() + rng.bytes(PIECE_SIZE - (1 << 20))


def run_one(pieces_in_sector: int, workers: int, pos: str) -> dict:
    erasure = ErasureCoding(16)
    proofs_for_seed = chia_proofs_for_seed("cpu") if pos == "chia" else shim_proofs_for_seed
    encoder = CpuRecordEncoder(erasure, proofs_for_seed)
    expected = None
    if pos == "chia" and pieces_in_sector == 4 and (SHARED / "vectors" / "sector_ref_p4.bin").is_file():
        public_key, sector_index, info, pieces, expected = reference_case(proofs_for_seed, erasure)
        arriving = iter(list(enumerate(pieces)))
        del pieces
    else:
        public_key, sector_index, info = bytes(range(32)), 0, FarmerProtocolInfo.mainnet(1)
        arriving = random_pieces(pieces_in_sector)
        _, first = next(random_pieces(1))
        encoder.encode(np.frombuffer(first[: 1 << 20], np.uint8).reshape(-1, 32), bytes(32))  # warm-up
        del first
    baseline = current_rss_mib()
    sector = SectorBuffer(public_key, sector_index, info, pieces_in_sector)
    start = time.perf_counter()
    cpu = time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        encode_records(sector, arriving, encoder, pool, max_in_flight=2 * workers)
    encode_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sector.bin"
        write_start = time.perf_counter()
        writer = SectorWriter(sector)
        with path.open("wb") as file:
            writer.write_to(file.write)
        write_seconds = time.perf_counter() - write_start
        matches = None if expected is None else path.read_bytes() == expected
    total = time.perf_counter() - start
    return {
        "pieces": pieces_in_sector, "workers": workers, "encode_s": encode_seconds, "write_s": write_seconds,
        "total_s": total, "cpu_s": time.process_time() - cpu, "baseline_rss_mib": baseline, "peak_rss_mib": rss_mib(),
        "matches_reference": matches, "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pieces", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--full-sector", action="store_true", help="also plot a 1,000-piece sector (2 workers)")
    parser.add_argument("--pos", choices=("chia", "shim"), default="chia", help="PoS tables (shim: memory check only)")
    parser.add_argument("--child", nargs=2, type=int, metavar=("PIECES", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(*args.child, args.pos)))
        return
    runs = [(n, w) for n in args.pieces for w in args.workers]
    if args.full_sector:
        runs.append((1000, 2))
    print(f"{'pieces':>6} {'workers':>7} {'sector s':>9} {'encode s':>9} {'write s':>8} {'s/piece':>8} "
          f"{'sectors/h':>9} {'vs ref':>7} {'CPU s/pc':>8} {'peak RSS':>9} {'+RSS':>7} {'load':>5}  reference bytes")
    for n, workers in runs:
        child = subprocess.run([sys.executable, __file__, "--pos", args.pos, "--child", str(n), str(workers)],
                               capture_output=True, text=True, cwd=ROOT)
        if child.returncode != 0:
            print(f"{n:>6} {workers:>7} failed: {child.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(child.stdout.strip().splitlines()[-1])
        per_piece = r["total_s"] / n
        reference = REFERENCE_SECONDS_PER_PIECE.get(workers) if args.pos == "chia" else None
        ratio = f"{reference / per_piece:6.2f}x" if reference else "    -"
        same = {None: "-", True: "identical", False: "DIFFERENT"}[r["matches_reference"]]
        print(f"{n:>6} {workers:>7} {r['total_s']:9.2f} {r['encode_s']:9.2f} {r['write_s']:8.2f} {per_piece:8.3f} "
              f"{3600 / r['total_s']:9.1f} {ratio:>7} {r['cpu_s'] / n:8.3f} {r['peak_rss_mib']:7.0f}Mi {r['peak_rss_mib'] - r['baseline_rss_mib']:5.0f}Mi "
              f"{r['load']:5.1f}  {same}", flush=True)
    print("vs ref = reference seconds per piece on the same number of threads / ours (higher is better);"
          " CPU s/pc = process CPU time per piece (flat from 1 to 2 workers = the work scales; wall time then"
          " only depends on the free cores); +RSS = peak RSS above the process before plotting")


if __name__ == "__main__":
    main()
