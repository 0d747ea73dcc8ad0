"""Compile the numba kernels of the farming path into numba's on-disk cache, in parallel.

Why: on a cold cache (a fresh machine, a new numba or source version) the first K=20 table
build compiles for about a minute, most of it one function (the BLAKE3-based ``fn_into``). A
cluster started cold would have the plot-server, the proof-server and the plot-client each
compile the same kernels at once, on the same cores, on the critical path to the first block.
``python -m services.jit_warmup`` runs the code paths of plotting, auditing, reading, proving
and PoS verification once on throwaway inputs (nothing it computes is used or kept), split into
independent parts compiled in separate processes (numba compiles on one thread), so the
kernels land in the cache once and every role that starts afterwards only loads them. The
quickstart runs it beside the dev node's archiving and starts the PoS roles when it is done.

Parts (each runnable alone with ``--part NAME``), started in this order as workers free up
(``--jobs``, default the CPU count), a part after the parts it builds on:

* ``pos-fn``: the table-building ``fn_into`` kernel (the long one);
* ``pieces``: the caches' batched piece check (``piece_batch.verify_pieces``) on two pieces;
* ``pos-build``: the other table-building kernels (ChaCha8 f1, bucketing, matching, gathers);
* ``plot``: plotting a 2-piece sector with the dev KZG setup and the shim PoS on a thread pool
  (erasure extension, mask hashes, chunk selection, sector writer);
* ``pos-proofs`` (after pos-fn and pos-build): K=17 tables (the kernels take K at run time, so
  they are the K=20 kernels), first proofs of every s-bucket, proof search;
* ``prove`` (after plot): that sector written into a throwaway farm and audited there (the
  farm's mmap audit), a winner proven from the farm's view and from a copy of its record data,
  as the plot-client and the proof-server do (erasure recovery, NTTs split over threads, KZG
  witness);
* ``pos-verify``: proof verification (the dev node's; its own BLAKE3).

:data:`NEEDED_BY` says which parts a role needs before it starts (the quickstart starts the
plot-server when the plotting parts are done, not after the whole warm-up).

A part whose kernels are already in the cache for this CPU (numba's own cache index) is
skipped, so a warm start costs one short process. Where the cache lives is numba's rule: ``NUMBA_CACHE_DIR`` when set, else ``__pycache__``
beside the sources. Exit status 0 when every part ran; 1 with one ``error:`` line naming the
part that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent


def _k17_scratch():  # noqa: ANN202
    from services.protocol.pos.scratch import TableScratch

    scratch = TableScratch()
    scratch.prepare(17)  # the same dtypes as at K=20 (the kernels take K at run time)
    return scratch


def _warm_pos_fn() -> None:
    from services.protocol.pos.fn import fn_into
    from services.protocol.pos.layout import table_pair_bits

    # the arrays the table builder passes (services.protocol.pos.cpu_backend), one zero match
    s = _k17_scratch()
    s.pairs[:1] = 0
    fn_into(17, 2, s.y_parent, s.meta_parent_hi, s.meta_parent_lo, s.pairs, 1, table_pair_bits(17),
            s.y_new, s.meta_new_hi, s.meta_new_lo)


def _warm_pos_build() -> None:
    import numpy as np

    from services.protocol.pos import cpu_backend
    from services.protocol.pos.chacha8 import f1_into
    from services.protocol.pos.layout import table_pair_bits
    from services.protocol.pos.params import num_buckets

    # the table builder's steps but fn_into (part pos-fn), at K=17, same argument types
    k, s = 17, _k17_scratch()
    n_buckets = num_buckets(k)
    f1_into(np.frombuffer(bytes(range(32)), dtype=np.uint8), k, s.meta_new_lo.view(np.uint32), s.y_new)
    kept, bucket_start = cpu_backend.bucketize_into(s.y_new[:1 << k], n_buckets, s.y_new, s.order, s.y_parent,
                                                    s.meta_parent_lo.view(np.uint32))
    cpu_backend._table1_meta(s.order, kept, s.meta_parent_hi, s.meta_parent_lo)
    s.swap_ys()
    n = cpu_backend._match(s, kept, bucket_start, n_buckets, table_pair_bits(k))
    pairs = np.empty(n, dtype=s.pairs.dtype)
    cpu_backend._gather(s.pairs, s.order, n, pairs)
    cpu_backend._gather_meta(s.meta_new_hi, s.meta_new_lo, s.order, n, s.meta_parent_hi, s.meta_parent_lo)


def _warm_pos_verify() -> None:
    from services.protocol import pos
    from services.protocol.pos.params import proof_size

    # an all-zero proof is invalid, but the call compiles the whole verification kernel
    pos.verify(bytes(range(32)), 0, bytes(proof_size(17)), k=17)


def _warm_pos_proofs() -> None:
    from services.protocol import pos

    tables = pos.create_tables(bytes(range(32)), k=17, backend="cpu")
    tables.find_proofs_for_all_s_buckets()
    # the search only (verification is part pos-verify, compiled in parallel)
    if not any(tables.find_proofs(challenge_index) for challenge_index in range(64)):
        raise RuntimeError("no K=17 proof among 64 challenges")


def _dev_pieces(kzg, indexes) -> tuple[dict[int, bytes], bytes]:  # noqa: ANN001
    """Valid pieces at ``indexes`` of one synthetic segment 0 (dev KZG), and its commitment."""
    import numpy as np

    from services.protocol.hashes import blake3_254_hash_to_scalar

    rng = np.random.default_rng(1)
    records = {}
    for index in sorted(set(indexes)):
        record = rng.integers(0, 256, (32768, 32), dtype=np.uint8)
        record[:, 0] = 0  # source chunks are 0x00 || 31 bytes
        records[index] = record
    commitments = {i: kzg.commit(kzg.poly(r)) for i, r in records.items()}
    scalars = [blake3_254_hash_to_scalar(commitments[j]) if j in commitments else bytes(32) for j in range(256)]
    segment = kzg.poly(scalars)
    pieces = {i: records[i].tobytes() + commitments[i] + kzg.create_witness(segment, 256, i) for i in records}
    return pieces, kzg.commit(segment)


def _warm_pieces() -> None:
    from services.protocol.kzg import Kzg
    from services.protocol.piece_batch import verify_pieces

    kzg = Kzg.dev()
    pieces, segment_commitment = _dev_pieces(kzg, [3, 200])
    items = [(index, memoryview(piece)) for index, piece in pieces.items()]  # caches pass views of their buffers
    if verify_pieces(kzg, items, {0: segment_commitment}) != [True, True]:
        raise RuntimeError("the warm-up pieces do not verify")


def _plot_throwaway_sector(public_key: bytes, kzg, erasure, executor):  # noqa: ANN001, ANN202
    from services.protocol.plotting import CpuRecordEncoder, plot_sector, sector_piece_indexes
    from services.protocol.s_bucket_proofs import shim_proofs_for_seed
    from services.protocol.sector import FarmerProtocolInfo

    info = FarmerProtocolInfo(1, 2, 5, (1, 10), 4)
    pieces, _ = _dev_pieces(kzg, sector_piece_indexes(public_key, 0, info, 2))
    return plot_sector(public_key, 0, info, 2, pieces, CpuRecordEncoder(erasure, shim_proofs_for_seed),
                       executor=executor)


def _warm_plot() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from services.protocol.erasure import ErasureCoding
    from services.protocol.kzg import Kzg

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # a plot-server encodes records on threads
        _plot_throwaway_sector(bytes(range(32)), Kzg.dev(), ErasureCoding(16), pool)


def _warm_prove() -> None:
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from services.farm import Farm
    from services.protocol.erasure import ErasureCoding
    from services.protocol.kzg import Kzg
    from services.protocol.parallel import Workers
    from services.protocol.proving import prove, prove_record, resolve_candidates
    from services.protocol.reading import RecordData, read_record_data
    from services.protocol.s_bucket_proofs import shim_proofs_for_seed

    kzg, erasure = Kzg.dev(), ErasureCoding(16)
    cores = os.cpu_count() or 1
    pool = ThreadPoolExecutor(cores)
    workers = Workers(pool, cores)  # the plot-client and the proof-server split NTTs and MSMs like this
    with tempfile.TemporaryDirectory(prefix="jit-warmup-") as directory:
        farm = Farm.open(directory, sectors=1, genesis_hash=bytes(32), max_pieces_in_sector=2)
        try:
            result = _plot_throwaway_sector(farm.public_key, kzg, erasure, pool)
            farm.write_sector(0, result.sector, result.metadata)
            metadata = farm.sector_metadata(0)
            contents_map = farm.read_contents_map(0)
            candidate = None
            for n in range(256):  # every chunk wins at u64::MAX; the audited s-bucket may hold none
                audited = farm.audit(bytes([n]) * 32, (1 << 64) - 1, pool)
                resolved = resolve_candidates(contents_map, audited[0].result.s_bucket,
                                              audited[0].result.candidates) if audited else []
                if resolved:  # an encoded chunk: provable
                    candidate = resolved[0]
                    break
            if candidate is None:
                raise RuntimeError("no provable audit winner in the warm-up sector for 256 challenges")
            view = farm.sector_view(0)
            try:
                solution = prove(view, metadata, farm.public_key, farm.public_key, candidate, kzg, erasure,
                                 shim_proofs_for_seed, contents_map, workers)
                record = read_record_data(view, metadata, candidate.piece_offset, contents_map)
            finally:
                view.release()
            copy = RecordData.from_bytes(candidate.piece_offset, record.to_bytes())  # a proof-server's input
            prove_record(copy, farm.public_key, farm.public_key, 0, metadata.history_size, candidate.s_bucket,
                         kzg, erasure, shim_proofs_for_seed, workers)
        finally:
            farm.close()
            pool.shutdown()
    if not kzg.verify(solution.record_commitment, 65536, candidate.s_bucket, solution.chunk, solution.chunk_witness):
        raise RuntimeError("the warm-up solution's chunk witness does not verify")


class Part(NamedTuple):
    warm: Callable[[], None]
    probes: tuple[str, ...]  # kernels whose presence in the cache (for this CPU) means it ran here
    after: tuple[str, ...] = ()  # parts whose kernels it loads from the cache


PARTS: dict[str, Part] = {  # in start order
    "pos-fn": Part(_warm_pos_fn, ("services.protocol.pos.fn:fn_into",)),
    "pieces": Part(_warm_pieces, ("services.protocol.piece_batch:_accumulate_record",)),
    "pos-build": Part(_warm_pos_build, (
        "services.protocol.pos.chacha8:f1_into", "services.protocol.pos.matching:bucketize_into",
        "services.protocol.pos.matching:find_matches_into", "services.protocol.pos.cpu_backend:_gather_meta")),
    "plot": Part(_warm_plot, (
        "services.protocol.plotting:_select_chunks", "services.protocol.sector_writer:_gather_s_buckets",
        "services.protocol.auditing:_hash_messages_kernel")),
    "pos-proofs": Part(_warm_pos_proofs, ("services.protocol.pos.proofs:first_proofs_for_challenges",
                                          "services.protocol.pos.proofs:proofs_for_entries"),
                       after=("pos-fn", "pos-build")),
    "prove": Part(_warm_prove, (
        "services.protocol.auditing:_audit_ranges_kernel", "services.farm.audit:_locate_s_buckets",
        "services.protocol.reading:_chunks_before", "services.protocol.erasure:_fold_to_coset",
        "services.protocol.ntt:_ntt_batch"), after=("plot",)),
    "pos-verify": Part(_warm_pos_verify, ("services.protocol.pos.verify:verify_packed",)),
}
# what a role needs compiled before it starts (it would compile the rest itself, on its own)
NEEDED_BY: dict[str, tuple[str, ...]] = {
    "plot-server": ("pos-fn", "pos-build", "pos-proofs", "plot"),
    "proof-server": ("pos-fn", "pos-build", "pos-proofs", "plot", "prove"),
}
WARMERS: dict[str, Callable[[], None]] = {name: part.warm for name, part in PARTS.items()}


def _in_cache(probe: str) -> bool:
    """Whether numba's cache index of ``module:function`` holds an overload compiled for this
    CPU and numba build (numba's own index, read the way its dispatcher reads it)."""
    import importlib

    module, name = probe.split(":")
    dispatcher = getattr(importlib.import_module(module), name)
    try:
        magic = dispatcher.targetctx.codegen().magic_tuple()
        index = dispatcher._cache._cache_file._load_index()  # {} when missing or stale (source changed)
    except Exception:  # noqa: BLE001 - another numba layout: assume cold, compile
        return False
    return any(isinstance(key, tuple) and len(key) >= 2 and key[1] == magic for key in index)


def cold_parts() -> list[str]:
    """Parts with a kernel missing from the cache, in start order."""
    return [name for name, part in PARTS.items() if not all(_in_cache(p) for p in part.probes)]


def _emit(event: str, **fields: object) -> None:
    """One JSON line on stdout (the quickstart follows these in the program's log)."""
    print(json.dumps({"event": event, "component": "jit-warmup", **fields}), flush=True)


def run_part(name: str) -> float:
    started = time.monotonic()
    WARMERS[name]()
    return time.monotonic() - started


def run_parts(parts: list[str], jobs: int) -> int:
    """Each part in its own process, ``jobs`` at a time, in order, a part only once the parts it
    builds on are done; 0 when all ran. A part's output is passed through when it ends."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))

    def one(name: str) -> tuple[str, int, str]:
        proc = subprocess.run([sys.executable, "-m", "services.jit_warmup", "--part", name], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sys.stdout.write(proc.stdout)
        sys.stdout.flush()
        errors = [line[len("error: "):] for line in proc.stdout.splitlines() if line.startswith("error: ")]
        return name, proc.returncode, errors[-1] if errors else ""

    started = time.monotonic()
    pending = list(parts)
    done: set[str] = {name for name in PARTS if name not in parts}  # cached already
    failed: list[tuple[str, int, str]] = []
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        running = set()
        while pending or running:
            while not failed and len(running) < max(1, jobs):
                ready = next((n for n in pending if all(d in done for d in (PARTS[n].after if n in PARTS else ()))),
                             None)
                if ready is None:
                    break
                pending.remove(ready)
                running.add(pool.submit(one, ready))
            if not running:
                break
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name, code, reason = future.result()
                if code == 0:
                    done.add(name)
                else:
                    failed.append((name, code, reason))
    if failed or pending:
        reasons = "; ".join(reason or f"part {name} exited with status {code}" for name, code, reason in failed)
        print(f"error: jit warm-up failed: {reasons or 'parts left: ' + ', '.join(pending)}", file=sys.stderr,
              flush=True)
        return 1
    _emit("jit warm-up done", seconds=round(time.monotonic() - started, 1), jobs=jobs,
          cache_dir=os.environ.get("NUMBA_CACHE_DIR") or "__pycache__ beside the sources")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.jit_warmup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=tuple(WARMERS), help="run this part in this process only")
    parser.add_argument("--jobs", type=int, default=None, help="parts compiled at once (default: the CPU count)")
    args = parser.parse_args(argv)
    if args.part is not None:
        from services.logs import configure_logging

        configure_logging("warning", "json")  # library info lines (e.g. "farm created") stay out
        try:
            seconds = run_part(args.part)
        except Exception as exc:  # noqa: BLE001 - reported as one line; the caller names the part
            print(f"error: jit warm-up part {args.part}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return 1
        _emit("jit warm-up part done", part=args.part, seconds=round(seconds, 1))
        return 0
    jobs = args.jobs if args.jobs is not None else os.cpu_count() or 1
    if jobs < 1:
        parser.error("--jobs must be at least 1")
    started = time.monotonic()
    cold = cold_parts()
    if not cold:
        _emit("jit warm-up done", seconds=round(time.monotonic() - started, 1), cached=True,
              cache_dir=os.environ.get("NUMBA_CACHE_DIR") or "__pycache__ beside the sources")
        return 0
    _emit("jit warm-up started", parts=cold, jobs=jobs, cached=[name for name in PARTS if name not in cold])
    return run_parts(cold, jobs)


if __name__ == "__main__":
    sys.exit(main())
