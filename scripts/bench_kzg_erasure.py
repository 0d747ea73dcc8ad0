"""Benchmark erasure coding and KZG at record size (spec 01 §7-8); prints numbers, asserts nothing.

Usage: python3 scripts/bench_kzg_erasure.py [--kzg mainnet|dev|PATH] [--repeat N]
The setup defaults to the packaged mainnet one (services.kzg_setup). The MSM rows are also timed
split over 2 threads, and the dev setup's known-tau commitments and witnesses against its MSM.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from services.kzg_setup import load_kzg  # noqa: E402
from services.protocol import erasure as erasure_module, field, ntt  # noqa: E402
from services.protocol.erasure import ErasureCoding  # noqa: E402
from services.protocol.kzg import Kzg  # noqa: E402
from services.protocol.parallel import Workers  # noqa: E402

RECORD_CHUNKS = 1 << 15


def timed(label: str, fn, repeat: int):
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    print(f"{label:<48} median {statistics.median(times) * 1e3:9.2f} ms   min {min(times) * 1e3:9.2f} ms   (n={repeat})", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kzg", default="mainnet", help="mainnet (packaged, default), dev or a path")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pool = ThreadPoolExecutor(2)
    two = Workers(pool, 2)

    start = time.perf_counter()
    ec = ErasureCoding(16)
    warm = np.zeros((4, 32), np.uint8)
    ec.extend_array(warm)
    ec.recover_array(np.zeros((8, 32), np.uint8), np.array([1, 0] * 4, bool))
    dev = Kzg.dev()
    p = dev.poly([bytes(32)] * 4)
    dev.create_witness(p, 4, 1)
    print(f"{'warm-up (numba load/compile + dev setup)':<48} {(time.perf_counter() - start) * 1e3:9.2f} ms")

    rng = np.random.default_rng(0)
    record = np.zeros((RECORD_CHUNKS, 32), np.uint8)
    record[:, 1:] = rng.integers(0, 256, size=(RECORD_CHUNKS, 31), dtype=np.uint8)
    limbs = field.bytes_to_limbs(record)

    print("-- erasure coding (scale 16) --")
    parity = timed("extend_array one record 2^15 -> 2^16", lambda: ec.extend_array(record), args.repeat)
    timed("extend_limbs one record (no byte conversion)", lambda: ec.extend_limbs(limbs), args.repeat)
    full = np.empty((2 * RECORD_CHUNKS, 32), np.uint8)
    full[0::2] = record
    full[1::2] = parity
    present = np.zeros(2 * RECORD_CHUNKS, bool)
    present[rng.choice(2 * RECORD_CHUNKS, RECORD_CHUNKS, replace=False)] = True
    timed("recover_array 2^16 from a random half", lambda: ec.recover_array(full, present), args.repeat)
    known = field.bytes_to_limbs(np.where(present[:, None], full, 0))
    if hasattr(ec, "recover_poly_limbs"):
        timed("recover_poly_limbs (coefficients = poly)", lambda: ec.recover_poly_limbs(known, present), args.repeat)
        timed("recover_source_limbs (2^15 source values)", lambda: ec.recover_source_limbs(known, present), args.repeat)
        timed("  of which zero polynomial tables", lambda: erasure_module._zero_poly_tables(16, np.flatnonzero(~present), None), args.repeat)
        timed("recover_poly_limbs on 2 threads", lambda: ec.recover_poly_limbs(known, present, two), args.repeat)
        timed("ntt 2^16 (limbs) on 2 threads", lambda: ntt.ntt(known, two), args.repeat)
    segment_column = np.zeros((1024, 128, 32), np.uint8)
    segment_column[:, :, 1:] = rng.integers(0, 256, size=(1024, 128, 31), dtype=np.uint8)
    t = timed("extend_array batch 1024 x (128 -> 256)", lambda: ec.extend_array(segment_column), args.repeat)
    del t
    timed("ntt 2^16 (limbs)", lambda: ntt.ntt(np.zeros((1 << 16, 4), np.uint64)), args.repeat)

    print("-- KZG --")
    start = time.perf_counter()
    kzg = load_kzg(args.kzg)
    print(f"{'load_kzg ' + kzg.source:<48} {(time.perf_counter() - start) * 1e3:9.2f} ms")
    start = time.perf_counter()
    Kzg.dev(0x2_0003)
    print(f"{'Kzg.dev(tau) (G2 powers only)':<48} {(time.perf_counter() - start) * 1e3:9.2f} ms")
    start = time.perf_counter()
    msm_dev = Kzg.dev(shortcut=False)
    print(f"{'Kzg.dev(shortcut=False) (all G1 powers)':<48} {(time.perf_counter() - start) * 1e3:9.2f} ms")

    values = [record[i].tobytes() for i in range(RECORD_CHUNKS)]
    poly = timed("poly 2^15 (bytes list, iFFT)", lambda: kzg.poly(values), args.repeat)
    timed("poly_from_limbs 2^15 (iFFT only)", lambda: kzg.poly_from_limbs(limbs), args.repeat)
    commitment = timed("commit 2^15", lambda: kzg.commit(poly), args.repeat)
    timed("commit 2^15 split over 2 threads", lambda: kzg.commit(poly, two), args.repeat)
    witness = timed("create_witness 2^15 poly, 2^16 domain", lambda: kzg.create_witness(poly, 1 << 16, 12345), args.repeat)
    timed("create_witness 2^15 split over 2 threads", lambda: kzg.create_witness(poly, 1 << 16, 12345, two), args.repeat)
    value = poly.evaluate(pow(ntt.root_of_unity(16), 12345, field.R).to_bytes(32, "big"))
    timed("verify (2^16 domain)", lambda: kzg.verify(commitment, 1 << 16, 12345, value, witness), args.repeat * 4)
    segment_poly = kzg.poly(values[:256])
    timed("create_witness 256 poly (segment)", lambda: kzg.create_witness(segment_poly, 256, 7), args.repeat)

    print("-- dev setup: known tau vs MSM (same points) --")
    dev_poly = dev.poly(values)
    assert dev.commit(dev_poly) == msm_dev.commit(dev_poly)
    timed("dev commit 2^15, known tau", lambda: dev.commit(dev_poly), args.repeat)
    timed("dev commit 2^15, MSM", lambda: msm_dev.commit(dev_poly), args.repeat)
    timed("dev create_witness 2^15, known tau", lambda: dev.create_witness(dev_poly, 1 << 16, 12345), args.repeat)
    timed("dev create_witness 2^15, MSM", lambda: msm_dev.create_witness(dev_poly, 1 << 16, 12345), args.repeat)


    print(f"(machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
