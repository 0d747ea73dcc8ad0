#!/usr/bin/env python3
"""Time to the first block of ``quickstart --exit-after-blocks 1``, cold and warm, phase by phase.

usage: python3 scripts/bench_quickstart.py [--variants cold warm] [--timeout 1500] [--keep DIR]

Variants (each a new data dir; the quickstart is run as a user runs it):
  cold            an empty numba cache (NUMBA_CACHE_DIR = a new directory): every kernel compiles
  cold-no-warmup  the same without the JIT warm-up (the PoS roles compile on their own)
  warm            the cache the previous cold run filled (or $NUMBA_CACHE_DIR when run alone)

For each run it prints the seconds at which each milestone line appeared (the quickstart's own
``[ t s] ...`` lines), the total, the CPU seconds all its processes used (a figure a busy
machine inflates less than wall time), and the load average before and after: wall times from a
busy machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MILESTONE = re.compile(r"^\[\s*([0-9.]+)s\] (?!\|)(.*)$")
SHOWN = ("nats-server accepts", "dev node RPC listens", "segment 0 archived", "numba kernels", "started plot-server",
         "started proof-server",
         "caches hold", "self-test", "plot-server ready", "is being plotted", "first sector plotted", "first audit",
         "submitted its first solution", "first solution received", "block 1 authored", "first block of this run")


def run_once(label: str, numba_cache: Path, work: Path, timeout_s: int, extra: list[str]) -> dict:
    data = work / f"data-{label}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(numba_cache)}
    load_before = os.getloadavg()[0]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "services", "quickstart", "--data-dir", str(data),
                           "--exit-after-blocks", "1", "--timeout", str(timeout_s), "--progress-interval", "30", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s + 300)
    total = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # every process of the run, reaped by its parent
    cpu_s = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    milestones = []
    for line in proc.stdout.splitlines():
        m = MILESTONE.match(line)
        if m and any(key in m.group(2) for key in SHOWN):
            milestones.append((float(m.group(1)), m.group(2)))
    return {"label": label, "code": proc.returncode, "total_s": total, "milestones": milestones, "cpu_s": cpu_s,
            "load": (load_before, os.getloadavg()[0]), "stderr": proc.stderr.strip().splitlines()[-3:]}


def report(result: dict) -> None:
    first = next((t for t, text in result["milestones"] if "first block of this run" in text), None)
    print(f"== {result['label']}: exit {result['code']}, first block at "
          f"{'-' if first is None else f'{first:.1f} s'}, process {result['total_s']:.1f} s (stop included), "
          f"CPU {result['cpu_s']:.0f} s in all processes (/{os.cpu_count()} cores = "
          f"{result['cpu_s'] / (os.cpu_count() or 1):.0f} s), load {result['load'][0]:.1f} -> {result['load'][1]:.1f}")
    for t, text in result["milestones"]:
        print(f"  {t:7.1f} s  {text[:110]}")
    if result["code"] != 0:
        for line in result["stderr"]:
            print(f"  stderr: {line[:200]}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["cold", "warm"], choices=["cold", "cold-no-warmup", "warm"])
    parser.add_argument("--timeout", type=int, default=1500)
    parser.add_argument("--keep", default=None, metavar="DIR", help="keep data dirs and caches under DIR")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-quickstart-"))
    work.mkdir(parents=True, exist_ok=True)
    last_cache = Path(os.environ["NUMBA_CACHE_DIR"]) if os.environ.get("NUMBA_CACHE_DIR") else None
    print(f"work dir {work}; {os.cpu_count()} CPUs")
    for variant in args.variants:
        extra: list[str] = []
        if variant.startswith("cold"):
            cache = work / f"numba-{variant}"
            if variant == "cold-no-warmup":
                extra = ["--no-jit-warmup"]
            else:
                last_cache = cache
        else:
            if last_cache is None:
                parser.error("warm needs a cold run first or NUMBA_CACHE_DIR")
            cache = last_cache
        report(run_once(variant, cache, work, args.timeout, extra))
    if not args.keep:
        print(f"(data left in {work}; remove it when done)")


if __name__ == "__main__":
    main()
