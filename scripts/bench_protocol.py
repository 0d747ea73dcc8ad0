"""Benchmark the CPU protocol hot paths of plotting, auditing, proving and reading.

Prints one line per measurement.  Run from the repository root:
``python3 scripts/bench_protocol.py [--pieces N] [--audit-sectors M]``.
Numba compilation and the first K=20 table build are warmed up before timing. Each number is
the best of several runs (the machine may be shared); the load average is printed at the end.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.protocol.auditing import audit_sector, audit_sectors  # noqa: E402
from services.protocol.erasure import ErasureCoding  # noqa: E402
from services.protocol.hashes import blake3_hash  # noqa: E402
from services.protocol.kzg import Kzg  # noqa: E402
from services.protocol.plotting import (  # noqa: E402
    CpuRecordEncoder,
    chia_proofs_for_seed,
    plot_sector,
    sector_piece_indexes,
)
from services.protocol.proving import prove_audit_result  # noqa: E402
from services.protocol.reading import read_piece  # noqa: E402
from services.protocol.sector import FarmerProtocolInfo, SectorContentsMap  # noqa: E402
from services.protocol.auditing import audit_location  # noqa: E402

U64_MAX = 2**64 - 1


def timed(function, repeat: int = 1) -> tuple[float, object]:
    samples = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        samples.append(time.perf_counter() - start)
    return min(samples), result


def random_record(rng: np.random.Generator) -> np.ndarray:
    record = rng.integers(0, 256, (32768, 32), dtype=np.uint8)
    record[:, 0] = 0
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pieces", type=int, default=2, help="pieces in the benchmark sector (K=20 tables each)")
    parser.add_argument("--audit-sectors", type=int, default=1000, help="sectors audited in the vectorised run")
    parser.add_argument("--audit-pieces", type=int, default=1000, help="pieces_in_sector assumed for audit sizes")
    args = parser.parse_args()

    rng = np.random.default_rng(1)
    erasure = ErasureCoding(16)
    kzg = Kzg.dev()
    record = random_record(rng)

    erasure.extend_array(record)  # warm-up
    seconds, _ = timed(lambda: erasure.extend_array(record), repeat=5)
    print(f"erasure extend of one record (32768 -> 65536 chunks): {seconds * 1e3:.1f} ms")

    proofs_for_seed = chia_proofs_for_seed("cpu")
    encoder = CpuRecordEncoder(erasure, proofs_for_seed)
    encoder.encode(record, bytes(32))  # warm-up (numba compile / caches)
    seconds, _ = timed(lambda: encoder.encode(record, os.urandom(32)), repeat=3)
    print(f"record encoding end to end per piece (K=20 tables + extend + mask, CPU): {seconds:.2f} s")
    seed = os.urandom(32)
    seconds, _ = timed(lambda: proofs_for_seed(seed), repeat=2)
    print(f"  of which K=20 table build + first proofs of 65536 s-buckets + proof hashes: {seconds:.2f} s")

    # audit: one s-bucket holds ~pieces_in_sector / 2 chunks
    chunks_per_bucket = args.audit_pieces // 2
    global_challenge = os.urandom(32)
    sectors = [(i, os.urandom(32), rng.bytes(32 * chunks_per_bucket)) for i in range(args.audit_sectors)]
    audit_sectors(sectors[:2], global_challenge, 2**50)  # warm-up
    seconds, _ = timed(lambda: audit_sectors(sectors, global_challenge, 2**50), repeat=5)
    print(
        f"audit, vectorised over {args.audit_sectors} sectors of {args.audit_pieces} pieces "
        f"({chunks_per_bucket} chunks/s-bucket): {seconds / args.audit_sectors * 1e6:.1f} us per sector"
    )
    seconds, _ = timed(lambda: audit_sector(0, sectors[0][1], global_challenge, 2**50, sectors[0][2]), repeat=50)
    print(f"audit of one sector alone (same size): {seconds * 1e6:.1f} us")

    # a real K=20 sector for proving / reading
    public_key = os.urandom(32)
    info = FarmerProtocolInfo.test_runtime(1)
    indexes = sector_piece_indexes(public_key, 0, info, args.pieces)
    pieces = {}
    for index in set(indexes):
        rec = random_record(rng)
        commitment = kzg.commit(kzg.poly(rec))
        pieces[index] = rec.tobytes() + commitment + bytes(48)  # witness unused by these paths
    seconds, result = timed(lambda: plot_sector(public_key, 0, info, args.pieces, pieces, encoder))
    print(f"plot a {args.pieces}-piece sector (CPU): {seconds:.2f} s ({seconds / args.pieces:.2f} s per piece)")

    sector_id = result.plotted_sector.sector_id
    seconds, _ = timed(lambda: read_piece(result.sector, result.metadata, sector_id, 0, erasure, proofs_for_seed), 2)
    print(f"reading one piece (K=20 tables + unmask + erasure recovery + checksum): {seconds:.2f} s")

    contents_map = SectorContentsMap.from_sector(result.sector, args.pieces)
    for slot in range(1000):
        challenge = blake3_hash(slot.to_bytes(8, "little"))
        _, offset, size = audit_location(sector_id, challenge, result.metadata.s_bucket_sizes, args.pieces)
        audit = audit_sector(0, sector_id, challenge, U64_MAX, result.sector[offset : offset + size])
        if audit and any(e for _, e in contents_map.s_bucket_records(audit.s_bucket)):
            break

    def prove_one():
        return prove_audit_result(
            result.sector, result.metadata, public_key, public_key, audit, kzg, erasure, proofs_for_seed, max_solutions=1
        )

    seconds, solutions = timed(prove_one, repeat=3)
    assert solutions
    print(f"proving one solution (K=20 tables + read + recover + KZG witness): {seconds:.2f} s")

    # the same with the record's proofs precomputed, to separate table building from the rest
    cached = functools.cache(proofs_for_seed)
    prove_audit_result(result.sector, result.metadata, public_key, public_key, audit, kzg, erasure, cached, 1)
    seconds, _ = timed(
        lambda: prove_audit_result(result.sector, result.metadata, public_key, public_key, audit, kzg, erasure, cached, 1),
        repeat=2,
    )
    print(f"  of which without the table build (read + recover + poly + witness): {seconds:.2f} s")
    read_piece(result.sector, result.metadata, sector_id, 0, erasure, cached)
    seconds, _ = timed(lambda: read_piece(result.sector, result.metadata, sector_id, 0, erasure, cached), 2)
    print(f"reading one piece without the table build: {seconds:.2f} s")
    try:
        from services.protocol.reading import read_record_shards, recover_record_polynomial
    except ImportError:  # older tree (before/after comparisons)
        recover_record_polynomial = None
    if recover_record_polynomial is not None:
        shards = read_record_shards(result.sector, result.metadata, sector_id, 0, cached)
        seconds, _ = timed(lambda: recover_record_polynomial(erasure, shards), 5)
        print(f"  record polynomial from the stored chunks (erasure recovery + poly): {seconds * 1e3:.0f} ms")
    else:
        from services.protocol.reading import read_record_shards

        shards = read_record_shards(result.sector, result.metadata, sector_id, 0, cached)
        seconds, _ = timed(lambda: kzg.poly(erasure.recover_array(shards.values, shards.present)[0::2].copy()), 5)
        print(f"  record polynomial from the stored chunks (erasure recovery + poly): {seconds * 1e3:.0f} ms")
    print(f"(machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
