#!/usr/bin/env python3
"""Plot-server throughput and memory on the CPU, beside the reference CPU plotter.

Part 1 (always): the plot-server's sector pipeline (piece fetch into its buffers, record
encoding on ``--threads`` encoding threads with the real K=20 PoS, sector written to a BASE_PATH
file) for an ``--pieces``-piece sector, in a child process so its peak RSS is the plot-server's.
Pieces are the reference sector's own (vectors/sector_history_ref_pieces.bin), reused for
every index when the sector needs more (the work per record does not depend on the content).
Prints seconds per sector and per record, the 1,000-piece extrapolation (per-record time x
1,000 plus the measured per-sector overhead), sectors per hour beside the reference (a 4-piece
sector takes the reference ``plot_sector`` 6.5 s on 2 threads on this machine:
vectors/README.md), and peak memory.

Part 2 (``--cluster-sectors K``): a whole cluster on loopback (nats-server, dev node,
controller, plot-server, plot-client farming a K-sector farm): time until the K sectors are
plotted through the queue and the data plane, and the plot-client's skipped-slot counter while
it plotted (did farming on the same machine miss slots?).

    python3 scripts/bench_plot_server.py --pieces 6 --threads 2
    python3 scripts/bench_plot_server.py --pieces 1000 --threads 2      # one real 1,000-piece sector (~10 min)
    python3 scripts/bench_plot_server.py --cluster-sectors 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

REFERENCE_SECONDS_4_PIECES_2_THREADS = 6.5  # vectors/README.md, same machine
GIB = 1024**3


def child(pieces_in_sector: int, threads: int) -> dict:
    """Runs in the child process: plot one sector, report timings and peak RSS."""
    from services.plot_server.finished import FinishedSectors
    from services.plot_server.messages import PlotSectorJob
    from services.plot_server.pipeline import PieceResult, SectorPipeline, memory_per_sector
    from services.protocol.constants import PIECE_SIZE
    from services.protocol.plotting import chia_proofs_for_seed
    from services.protocol.sector import FarmerProtocolInfo
    from shared_paths import VECTORS_DIR

    meta = json.loads((VECTORS_DIR / "sector_history_ref.json").read_text())
    data = (VECTORS_DIR / meta["pieces_bin"]).read_bytes()
    vector_pieces = [data[k * PIECE_SIZE:(k + 1) * PIECE_SIZE] for k in range(len(data) // PIECE_SIZE)]
    info = FarmerProtocolInfo.from_scale(bytes.fromhex(meta["farmer_protocol_info"]["scale"]))
    job = PlotSectorJob.build("01J0BENCHPLOTSERVER0000000", bytes.fromhex(meta["public_key"]), meta["sector_index"],
                              info, pieces_in_sector, "bench")

    class Pieces:
        async def get_pieces(self, indices, into):  # noqa: ANN001, ANN202
            for index in indices:
                into[index][:] = vector_pieces[index % len(vector_pieces)]
            return PieceResult({i: into[i] for i in indices}, [])

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with tempfile.TemporaryDirectory(prefix="bench-plot-server-") as base, ThreadPoolExecutor(threads) as executor:
        pipeline = SectorPipeline(Pieces(), chia_proofs_for_seed("cpu"), executor, threads, FinishedSectors(base), "cpu")
        # warm up: numba kernels load, one record's tables
        warm = PlotSectorJob.build(job.farm_id, job.public_key, job.sector_index + 1, info, 1, "bench")
        asyncio.run(pipeline.plot(warm, threading.Event(), lambda *_: None))
        pipeline.store.remove(warm.job_id)
        marks: dict[str, float] = {}

        def progress(stage: str, done: int, total: int) -> None:
            marks.setdefault(stage, time.perf_counter())

        started = time.perf_counter()
        result = asyncio.run(pipeline.plot(job, threading.Event(), progress))
        total = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    writing = total - (marks.get("writing", started + total) - started)
    return {"pieces": pieces_in_sector, "threads": threads, "seconds": total, "writing_seconds": writing,
            "sector_bytes": result.size, "peak_rss": peak, "baseline_rss": baseline,
            "memory_per_sector_model": memory_per_sector(pieces_in_sector, threads),
            "memory_per_1000_model": memory_per_sector(1000, threads)}


def run_child(pieces: int, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, __file__, "--child", "--pieces", str(pieces), "--threads", str(threads)],
                         cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report_pipeline(result: dict) -> None:
    n, threads, seconds = result["pieces"], result["threads"], result["seconds"]
    per_record = (seconds - result["writing_seconds"]) / n
    extrapolated = per_record * 1000 + result["writing_seconds"] * 1000 / n
    reference_per_record = REFERENCE_SECONDS_4_PIECES_2_THREADS / 4
    print(f"plot-server pipeline, CPU, {threads} encoding threads, {n}-piece sector:")
    print(f"  {seconds:.2f} s per sector ({per_record:.3f} s per record; write + checksum {result['writing_seconds']:.2f} s)")
    print(f"  reference plot_sector, 4 pieces on 2 threads: {REFERENCE_SECONDS_4_PIECES_2_THREADS} s "
          f"({reference_per_record:.3f} s per record)")
    print(f"  ratio (records per hour, ours / reference): {reference_per_record / per_record:.2f}x")
    if n != 1000:
        print(f"  1,000-piece sector (extrapolated from {n} pieces): {extrapolated:.0f} s per sector, "
              f"{3600 / extrapolated:.2f} sectors/h (reference ~{3600 / (reference_per_record * 1000):.2f} sectors/h)")
    else:
        print(f"  1,000-piece sector (measured): {seconds:.0f} s, {3600 / seconds:.2f} sectors/h "
              f"(reference ~{3600 / (reference_per_record * 1000):.2f} sectors/h)")
    print(f"  peak RSS {result['peak_rss'] / GIB:.2f} GiB (process after imports {result['baseline_rss'] / GIB:.2f} GiB); "
          f"sector data in flight (model) {result['memory_per_sector_model'] / GIB:.3f} GiB for {n} pieces, "
          f"{result['memory_per_1000_model'] / GIB:.2f} GiB for a 1,000-piece sector, plus ~0.3 GiB of PoS tables "
          f"per encoding thread")


def run_cluster_benchmark(sectors: int, threads: int) -> None:
    """Part 2: the whole cluster plots a ``sectors``-sector farm while the plot-client farms it;
    then the same farm is farmed as long again without plotting, for the skipped-slot baseline."""
    sys.path.insert(0, str(REPO / "tests" / "plot_server"))
    import plot_cluster as pc
    from services.bus.server import NatsServer

    base = Path(tempfile.mkdtemp(prefix="bench-plot-cluster-"))
    template = pc.archived_template(base, *pc.TEMPLATE_FLAGS)  # $AUTONOMYS_TEST_DEV_NODE_TEMPLATE keeps it
    nats = NatsServer().start()
    node = pc.start_dev_node(template, base / "node", "--block-authoring-delay", "30",
                             "--solution-range", str(2**64 // 64))  # a few winners, not every slot
    processes: list = [node]
    alice = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"

    def client(name: str) -> "pc.RoleProcess":
        return pc.RoleProcess(name, nats.url, ["plot-client", "--reward-address", alice, "--kzg-params", "dev",
                                               "--instance", "pc-bench", "--plotting-concurrency", "2",
                                               f"path={base / 'farm'},sectors={sectors}"], base / f"{name}.log")

    try:
        processes.append(pc.start_controller(nats.url, node.wait_ready(), base))
        shard = pc.RoleProcess("shard", nats.url, ["sharded-cache", f"path={base / 'shard'},size=512MiB",
                                                   "--instance", "shard-bench", "--listen-on",
                                                   f"127.0.0.1:{pc.free_port()}", "--kzg-params", "dev"],
                               base / "shard.log")
        processes.append(shard)
        shard.wait_for("sharded-cache started", 300)
        server = pc.start_plot_server(nats.url, base / "plot-server", base, "ps-bench", "--priority-cache",
                                      "--record-encoding-concurrency", str(threads))
        processes.append(server)
        plotting = client("pc-plotting")
        started = time.monotonic()
        plotting.wait_for_event("sector written", 3600, count=sectors)
        plotting_s = time.monotonic() - started
        assert plotting.terminate() == 0
        idle = client("pc-idle")
        idle.wait_for_event("plot-client started", 300)
        time.sleep(plotting_s)  # farm as long again, nothing to plot
        assert idle.terminate() == 0
    finally:
        for process in reversed(processes):
            if isinstance(process, pc.RoleProcess):
                process.terminate()
        node.terminate()
        nats.stop()
    plotted = server.events("sector plotted")
    written = plotting.events("sector written")
    busy = sum(e["skipped_slots"] for e in plotting.events("farming stats"))
    busy_audits = sum(e["audits"] for e in plotting.events("farming stats"))
    calm = sum(e["skipped_slots"] for e in idle.events("farming stats"))
    calm_audits = sum(e["audits"] for e in idle.events("farming stats"))
    per_sector = sum(e["seconds"] for e in plotted) / len(plotted)
    print(f"cluster (nats, dev node, controller, sharded cache, plot-server x{threads} threads, plot-client), "
          f"{sectors} one-piece sectors:")
    print(f"  {plotting_s:.1f} s until all were written; plot-server {per_sector:.2f} s per sector; download + write "
          f"{sum(e['download_s'] for e in written) / len(written):.2f} s per sector")
    print(f"  plot-server peak RSS {max(e['peak_rss_mib'] for e in plotted)} MiB; piece sources "
          f"{sorted({k for e in plotted for k in e['piece_sources']})}")
    print(f"  farming while plotting: {busy} skipped slots in {busy_audits} audits; "
          f"farming without plotting: {calm} skipped in {calm_audits} audits")
    shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pieces", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cluster-sectors", type=int, default=0, help="also run the cluster part with K sectors")
    parser.add_argument("--cluster-only", action="store_true", help="skip part 1")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.pieces, args.threads)))
        return 0
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (others' work makes timings noisy)")
    if not args.cluster_only:
        report_pipeline(run_child(args.pieces, args.threads))
    if args.cluster_sectors:
        run_cluster_benchmark(args.cluster_sectors, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
