"""Readiness of a GPU worker process: inventory + self-test run once at start, turned into the
membership capacity fields, metrics and the log line that says why work is refused.

Capacity keys (``Member.capacity``), for the scheduler, ``autonomys-farmer status`` and ``nats kv
get``: ``backend`` (gpu|cpu), ``gpu_model``, ``gpus``, ``vram_bytes``, ``tables_per_second``,
``hourly_cost`` (when given), ``self_test`` (``passed`` or ``failed: <reason>``) and
``accepting_work`` (1 or 0).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from services.gpu.inventory import Inventory, inventory
from services.gpu.known_answer import KNOWN_ANSWER, KnownAnswer, load_known_answer
from services.gpu.selftest import DEFAULT_VRAM_PER_TASK, SelfTestResult, run_self_test


class WorkerReadiness(msgspec.Struct, frozen=True):
    inventory: Inventory
    self_test: SelfTestResult
    hourly_cost: float | None = None

    @property
    def ok(self) -> bool:
        return self.self_test.ok

    @property
    def reason(self) -> str:
        return self.self_test.reason

    @property
    def capacity(self) -> dict[str, int | float | str]:
        fields: dict[str, int | float | str] = {
            "backend": self.self_test.backend,
            "gpu_model": self.inventory.model,
            "gpus": len(self.inventory.devices),
            "vram_bytes": self.inventory.vram_bytes,
            "tables_per_second": self.self_test.tables_per_second,
            "self_test": "passed" if self.ok else f"failed: {self.reason}"[:200],
            "accepting_work": 1 if self.ok else 0,
        }
        if self.hourly_cost is not None:
            fields["hourly_cost"] = self.hourly_cost
        return fields


async def prepare_worker(*, backend: str = "auto", hourly_cost: float | None = None, gpu_concurrency: int | None = None,
                         metrics: Any = None, log: Any = None, known_answer: KnownAnswer = KNOWN_ANSWER,
                         known_answer_file: str | None = None) -> WorkerReadiness:
    """Inventory and self-test in a worker thread (the event loop keeps serving); VRAM checked
    for ``gpu_concurrency`` tasks (2 GiB each). ``known_answer_file`` (a role's
    ``--self-test-known-answer``, checked at the command line) replaces ``known_answer``.
    Fills ``metrics.gpu()`` when given and logs the verdict: info when passed, error
    ``refusing work: ...`` otherwise."""
    if known_answer_file is not None:
        known_answer = await asyncio.to_thread(load_known_answer, known_answer_file)
    inv = await asyncio.to_thread(inventory)
    vram = DEFAULT_VRAM_PER_TASK * max(1, gpu_concurrency or 1)
    result = await asyncio.to_thread(run_self_test, backend, known_answer, vram, inv)
    readiness = WorkerReadiness(inventory=inv, self_test=result, hourly_cost=hourly_cost)
    if metrics is not None:
        gpu = metrics.gpu()
        gpu.self_test_passed.labels(result.backend).set(1 if result.ok else 0)
        gpu.tables_per_second.labels(result.backend).set(result.tables_per_second)
    if log is not None:
        if result.ok:
            log.info("self-test passed", backend=result.backend, model=inv.model, vram_gib=round(inv.vram_bytes / 2**30, 1),
                     tables_per_second=result.tables_per_second)
        else:
            log.error(f"refusing work: {result.reason}", backend=result.backend, model=inv.model)
    return readiness
