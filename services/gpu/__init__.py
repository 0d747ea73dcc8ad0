"""GPU inventory and self-test for the GPU roles (plot-server, proof-server): what the box has,
whether it computes the protocol right, and what it is worth to the cluster.

Why: a new GPU box (wrong driver, a flaky card, too little VRAM for ``GPU_CONCURRENCY``) must not
take sector or proof work until it has shown it produces the reference's bytes; and the cluster
schedules and operators pay by measured throughput and declared cost, so both are published in
the process's membership record (``services.bus.membership.Member.capacity``) and in metrics.

API::

    from services.gpu import inventory, run_self_test, prepare_worker

    inv = inventory()                       # Inventory(backend="gpu"|"cpu", devices=[GpuDevice...])
    result = run_self_test(backend="auto", vram_bytes=8 << 30)   # blocking, ~1-2 s on a GPU
    result.ok, result.reason                # False + "known-answer mismatch: ..." -> refuse work
    result.tables_per_second, result.checks # per check: name, ok, detail

    # in a daemon's start(): runs the above in a thread, logs, fills metrics, and returns what to
    # put into the membership record; take jobs only when readiness.ok
    readiness = await prepare_worker(backend=cfg.backend, hourly_cost=cfg.hourly_cost,
                                     gpu_concurrency=cfg.gpu_concurrency, metrics=self.metrics, log=self.log)
    Member(..., capacity={**readiness.capacity, "free_slots": 2})
    if not readiness.ok: ...                # serve nothing that is work; the reason is logged

The known answer is the reference's K=20 output for seed 0 of ``shared/vectors/pos_k20.json``
(table sizes and the proof hashes of challenges 0..15), embedded in :mod:`.known_answer` because
operators do not have ``shared/``. Without a GPU the CPU backend runs the same check (the VRAM
check is then skipped, and says so). No kernels live here: tables come from
``services.protocol.pos``.

``autonomys-farmer self-test [--backend auto|cpu|gpu] [--vram SIZE] [--json]`` runs it by hand
and exits 1 with the reason when the box must not get work.
"""

from services.gpu.inventory import GpuDevice, Inventory, inventory, read_device_usage
from services.gpu.known_answer import KNOWN_ANSWER, KnownAnswer
from services.gpu.selftest import Check, SelfTestResult, run_self_test
from services.gpu.worker import WorkerReadiness, prepare_worker

__all__ = [
    "KNOWN_ANSWER",
    "Check",
    "GpuDevice",
    "Inventory",
    "KnownAnswer",
    "SelfTestResult",
    "WorkerReadiness",
    "inventory",
    "prepare_worker",
    "read_device_usage",
    "run_self_test",
]
