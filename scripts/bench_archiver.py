"""Archiver throughput: one full segment (128 MiB of history -> 256 pieces), stage by stage.

Usage: python scripts/bench_archiver.py [--kzg dev|mainnet|PATH] [--validate N]
Prints seconds per stage; uses the insecure dev KZG setup unless --kzg says otherwise (the dev
setup commits with one scalar multiplication per record, a real setup with an MSM).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.protocol import archiver as arch  # noqa: E402
from services.protocol.constants import (  # noqa: E402
    NUM_PIECES,
    NUM_RAW_RECORDS,
    RECORD_NUM_CHUNKS,
    RECORDED_HISTORY_SEGMENT_SIZE,
    SCALAR_FULL_BYTES,
    SCALAR_SAFE_BYTES,
)
from services.protocol.erasure import ErasureCoding  # noqa: E402
from services.kzg_setup import load_kzg  # noqa: E402


class Stopwatch:
    """Wall and process-CPU seconds per stage (CPU time shows the cost on a busy machine)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.last = self.start
        self.last_cpu = time.process_time()

    def lap(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        print(f"  {name:<44} {now - self.last:8.2f} s wall {cpu - self.last_cpu:8.2f} s cpu")
        self.last, self.last_cpu = now, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kzg", default="dev", help="trusted setup: dev (default), mainnet (packaged) or a path")
    parser.add_argument("--validate", type=int, default=4, help="pieces to check with is_piece_valid")
    parser.add_argument("--block-size", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--end-to-end", action="store_true", help="also time archive_segment_bytes in one call")
    args = parser.parse_args()

    print(f"cpus={os.cpu_count()} threads={arch._worker_count()}")
    watch = Stopwatch()
    kzg = load_kzg(args.kzg)
    erasure = ErasureCoding(16)
    watch.lap(f"KZG setup load ({kzg.source})")

    # Warm numba caches / extension matrix so stage timings reflect steady state.
    erasure.extend_array(np.zeros((4, NUM_RAW_RECORDS, SCALAR_FULL_BYTES), dtype=np.uint8))
    arch._parity_coefficients(erasure)
    kzg.poly(np.zeros((RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES), dtype=np.uint8))
    watch.lap("warm-up (numba, extension matrix)")

    rng = np.random.default_rng(7)
    block = rng.integers(0, 256, args.block_size, dtype=np.uint8).tobytes()
    archiver = arch.Archiver(kzg, erasure)
    packer = archiver._packer
    blocks = 0
    while (items := packer.produce_segment()) is None:
        packer.add_block(block)
        blocks += 1
    segment = arch.encode_segment(items)
    watch.lap(f"pack {blocks} blocks + encode segment")

    raw = np.frombuffer(segment, dtype=np.uint8).reshape(NUM_RAW_RECORDS, RECORD_NUM_CHUNKS, SCALAR_SAFE_BYTES)
    records = np.zeros((NUM_PIECES, RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES), dtype=np.uint8)
    records[0::2, :, 1:] = raw
    columns = np.ascontiguousarray(records[0::2].transpose(1, 0, 2))
    watch.lap("chunks -> scalars, column layout")
    parity = arch._extend_columns(erasure, columns)
    watch.lap("erasure extension (32768 columns 128->256)")
    records[1::2] = parity.transpose(1, 0, 2)
    del parity, columns
    watch.lap("parity back to record layout")
    source = arch._parallel_map(lambda i: arch._record_commitment(kzg, records[2 * i]), range(NUM_RAW_RECORDS))
    watch.lap("128 source record commitments (2^15 MSM)")
    commitments = arch.extend_commitments(erasure, source)
    watch.lap("extend_commitments (128 x 128-point MSM)")
    segment_commitment, pieces = arch._pieces_from_records(kzg, records, commitments, range(NUM_PIECES))
    watch.lap("segment commitment + 256 witnesses + pieces")
    staged = watch.last - watch.start
    print(f"segment archived: {len(pieces)} pieces, commitment {segment_commitment.hex()[:16]}…; "
          f"stages total {staged:.2f} s")

    if args.end_to_end:
        t0 = time.perf_counter()
        pieces, full_commitment = arch.archive_segment_bytes(kzg, erasure, segment)
        end_to_end = time.perf_counter() - t0
        assert full_commitment == segment_commitment
        print(f"archive_segment_bytes end to end: {end_to_end:.2f} s "
              f"({RECORDED_HISTORY_SEGMENT_SIZE / end_to_end / 2**20:.2f} MiB/s of history)")

    for position in range(0, NUM_PIECES, max(1, NUM_PIECES // max(1, args.validate)))[: args.validate]:
        t0 = time.perf_counter()
        ok = arch.is_piece_valid(kzg, pieces[position], segment_commitment, position)
        print(f"is_piece_valid(position {position}) = {ok} in {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
