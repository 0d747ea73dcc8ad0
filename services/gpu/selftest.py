"""The self-test a GPU role runs before it takes work, and ``autonomys-farmer self-test``.

Checks, in order (the first failure decides the reason):

1. ``known-answer``: build the K=20 tables of the known seed on the chosen backend and compare
   every table's size and the BLAKE3 of every proof of challenges 0..15 with the reference's
   (:mod:`.known_answer`); the build time gives ``tables_per_second``.
2. ``verify``: the first proof found verifies (``protocol.pos.verify``, CPU code path).
3. ``vram`` (GPU only): allocate ``vram_bytes`` on each visible device, write a pattern, read
   it back; skipped on the CPU backend, saying so.
"""

from __future__ import annotations

import argparse
import sys
import time

import msgspec

from services.config import ConfigError, JsonConfig, parse_backend, parse_size
from services.gpu.inventory import Inventory, inventory
from services.gpu.known_answer import KNOWN_ANSWER, KnownAnswer, load_known_answer

DEFAULT_VRAM_PER_TASK = 2 * 1024**3  # a K=20 table set with its sort buffers stays well under this


class Check(msgspec.Struct, frozen=True):
    name: str
    ok: bool
    detail: str
    skipped: bool = False


class SelfTestResult(msgspec.Struct, frozen=True):
    ok: bool
    reason: str  # "" when ok; else one line an operator can act on
    backend: str
    checks: tuple[Check, ...]
    tables_per_second: float = 0.0
    seconds: float = 0.0


def _known_answer_check(answer: KnownAnswer, backend: str) -> tuple[Check, float, tuple[int, bytes] | None]:
    from services.protocol.pos import create_tables, proof_hash

    seed = bytes.fromhex(answer.seed)
    tables = create_tables(seed, k=answer.k, backend=backend)  # the first build may include JIT compiles
    started = time.perf_counter()
    create_tables(seed, k=answer.k, backend=backend)
    build_seconds = time.perf_counter() - started  # timed on the second, warm build
    counts = tables.table_sizes
    if counts != tuple(answer.table_counts):
        bad = next(t for t in range(7) if counts[t] != answer.table_counts[t])
        return Check("known-answer", False, f"table {bad + 1} has {counts[bad]} entries, the reference "
                                            f"{answer.table_counts[bad]}"), build_seconds, None
    sample = None
    for challenge, expected in sorted(answer.proof_hashes.items()):
        proofs = tables.find_proofs(challenge)
        got = tuple(proof_hash(p).hex() for p in proofs)
        if got != tuple(expected):
            return Check("known-answer", False, f"challenge {challenge}: {len(got)} proof(s) "
                                                f"{', '.join(h[:16] for h in got) or '-'}, the reference "
                                                f"{len(expected)} {', '.join(h[:16] for h in expected) or '-'}"), \
                build_seconds, None
        if proofs and sample is None:
            sample = (challenge, proofs[0])
    return Check("known-answer", True, f"K={answer.k} tables and {len(answer.proof_hashes)} challenges match the "
                                       f"reference ({build_seconds:.2f} s)"), build_seconds, sample


def _verify_check(answer: KnownAnswer, sample: tuple[int, bytes] | None) -> Check:
    from services.protocol.pos import verify

    if sample is None:
        return Check("verify", True, "no proof among the known challenges to verify", skipped=True)
    challenge, proof = sample
    if not verify(bytes.fromhex(answer.seed), challenge, proof, k=answer.k):
        return Check("verify", False, f"the proof of challenge {challenge} does not verify")
    return Check("verify", True, f"proof of challenge {challenge} verifies")


def _vram_check(inv: Inventory, vram_bytes: int) -> Check:
    if inv.backend != "gpu":
        return Check("vram", True, f"skipped: no GPU ({inv.gpu_error})", skipped=True)
    import cupy as cp  # noqa: PLC0415 - only on the GPU path

    for device in inv.devices:
        try:
            with cp.cuda.Device(device.index):
                words = vram_bytes // 4
                block = cp.arange(words, dtype=cp.uint32)
                block ^= cp.uint32(0x5A5A5A5A)  # written as a pattern, then restored: in place
                block ^= cp.uint32(0x5A5A5A5A)
                total = int(block.sum(dtype=cp.uint64))
                del block
                cp.get_default_memory_pool().free_all_blocks()
        except cp.cuda.memory.OutOfMemoryError:
            return Check("vram", False, f"cannot allocate {vram_bytes / 2**30:.1f} GiB on GPU{device.index} "
                                        f"{device.name} ({device.memory_free / 2**30:.1f} GiB free): "
                                        f"lower GPU_CONCURRENCY or free the GPU")
        except Exception as exc:  # noqa: BLE001 - any CUDA error here is a broken device
            return Check("vram", False, f"GPU{device.index} {device.name}: {exc}")
        if total != words * (words - 1) // 2:
            return Check("vram", False, f"GPU{device.index} {device.name} returned wrong data from "
                                        f"{vram_bytes / 2**30:.1f} GiB: the memory is faulty")
    return Check("vram", True, f"{vram_bytes / 2**30:.1f} GiB allocated, written and read back on "
                               f"{len(inv.devices)} device(s)")


def run_self_test(backend: str = "auto", known_answer: KnownAnswer = KNOWN_ANSWER, vram_bytes: int | None = None,
                  inv: Inventory | None = None) -> SelfTestResult:
    """Run the checks (blocking: call it in a thread from asyncio). ``backend`` ``auto`` takes the
    GPU when one is usable; ``vram_bytes`` defaults to 2 GiB."""
    inv = inventory() if inv is None else inv
    chosen = inv.backend if backend == "auto" else backend
    started = time.perf_counter()
    checks: list[Check] = []
    tables_per_second = 0.0
    if chosen == "gpu" and inv.backend != "gpu":
        checks.append(Check("known-answer", False, f"backend gpu requested but {inv.gpu_error}"))
    else:
        try:
            check, build_seconds, sample = _known_answer_check(known_answer, chosen)
        except Exception as exc:  # noqa: BLE001 - a crashing backend is a failed self-test, not a crash
            check, build_seconds, sample = Check("known-answer", False, f"{type(exc).__name__}: {exc}"), 0.0, None
        checks.append(check)
        if check.ok:
            tables_per_second = 1.0 / build_seconds if build_seconds > 0 else 0.0
            checks.append(_verify_check(known_answer, sample))
    if chosen == "gpu" and all(c.ok for c in checks):
        checks.append(_vram_check(inv, vram_bytes or DEFAULT_VRAM_PER_TASK))
    failed = next((c for c in checks if not c.ok), None)
    return SelfTestResult(
        ok=failed is None,
        reason="" if failed is None else f"{failed.name} check failed on the {chosen} backend: {failed.detail}",
        backend=chosen,
        checks=tuple(checks),
        tables_per_second=round(tables_per_second, 3),
        seconds=round(time.perf_counter() - started, 3),
    )


# --- autonomys-farmer self-test ------------------------------------------------------------


class SelfTestConfig(JsonConfig, frozen=True, kw_only=True):
    command: str = "self-test"
    backend: str = "auto"
    vram_bytes: int | None = None
    known_answer_file: str | None = None
    json_output: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto", metavar="auto|cpu|gpu", help="backend to test (default auto)")
    parser.add_argument("--vram", default=None, metavar="SIZE", help="VRAM to allocate per GPU (default 2GiB)")
    parser.add_argument("--known-answer", default=None, metavar="FILE",
                        help="compare with this file (a reference pos_k20.json) instead of the built-in answer")
    parser.add_argument("--json", action="store_true", dest="json_output", help="print the result as JSON")


def parse_known_answer_file(path: str | None, flag: str = "--known-answer") -> str | None:
    """``path`` when it holds a usable known answer (``ConfigError`` naming ``flag`` otherwise)."""
    if path is not None:
        try:
            load_known_answer(path)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError, KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot use {flag} {path!r}: {exc}") from None
    return path


def from_args(args: argparse.Namespace) -> SelfTestConfig:
    known = parse_known_answer_file(args.known_answer)
    return SelfTestConfig(
        backend=parse_backend(args.backend),
        vram_bytes=None if args.vram is None else parse_size(args.vram, "--vram"),
        known_answer_file=known,
        json_output=bool(args.json_output),
    )


def main(config: SelfTestConfig) -> int:
    answer = KNOWN_ANSWER if config.known_answer_file is None else load_known_answer(config.known_answer_file)
    inv = inventory()
    result = run_self_test(config.backend, answer, config.vram_bytes, inv)
    if config.json_output:
        print(msgspec.json.format(msgspec.json.encode({"inventory": inv, "self_test": result}), indent=2).decode())
    else:
        devices = ", ".join(f"GPU{d.index} {d.name} {d.memory_total / 2**30:.0f} GiB" for d in inv.devices)
        print(f"backend {result.backend}: {devices or 'no GPU (' + inv.gpu_error + ')'}; "
              f"CPU {inv.cpu_model} x{inv.cpu_count}")
        for check in result.checks:
            print(f"  {'skip' if check.skipped else 'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
        if result.ok:
            print(f"self-test passed: {result.tables_per_second:.2f} K=20 table sets/s")
    if not result.ok:
        print(f"error: refusing work: {result.reason}", file=sys.stderr)
        return 1
    return 0
