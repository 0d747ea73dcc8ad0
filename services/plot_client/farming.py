"""Per-farm slot handling: audit the latest slot, hand winners to proving.

Each farm audits on its own (farms in parallel, sharing one pool of reading threads). A farm
audits one slot at a time; a slot that arrives while the farm's previous audit is still running
is skipped and counted, never queued (the reference farmer's "Slow farming, skipping slot",
without its one-slot buffer): the running audit finishes, its winners still have their whole
farming timeout, and the farm picks up the slot after the next one. Only the newest slot is
ever audited, so a farm slower than the slot rate audits every other slot instead of falling
further and further behind.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor

import structlog

from services.plot_client.proving import FarmContext, ProvingScheduler, SlotContext

log = structlog.get_logger("plot-client.farming")


class FarmFarming:
    def __init__(self, context: FarmContext, executor: Executor, scheduler: ProvingScheduler) -> None:
        self.context = context
        self.executor = executor
        self.scheduler = scheduler
        self._task: asyncio.Task | None = None

    @property
    def auditing(self) -> bool:
        return self._task is not None and not self._task.done()

    def on_slot(self, slot: SlotContext) -> None:
        """Start auditing ``slot`` unless the previous audit still runs (then skip it)."""
        if self.auditing:
            self.context.stats.count_skipped_slot()
            log.debug("Slow farming, skipping slot", slot=slot.slot_number, farm=self.context.stats.farm_id)
            return
        self._task = asyncio.ensure_future(self._audit(slot))

    async def _audit(self, slot: SlotContext) -> None:
        farm, stats = self.context.farm, self.context.stats
        start = time.monotonic()
        sectors = len(farm.table.active_rows())
        try:
            audited = await asyncio.to_thread(farm.audit, slot.global_challenge, slot.voting_solution_range,
                                              self.executor)
        except OSError as exc:
            stats.count_farming_error("LowLevelAuditing")  # the reference's FarmingError variant
            log.error("audit failed", slot=slot.slot_number, farm=stats.farm_id, error=str(exc))
            return
        elapsed = time.monotonic() - start
        stats.observe_audit(elapsed, sectors, sum(len(a.result.candidates) for a in audited))
        log.debug("audited", slot=slot.slot_number, farm=stats.farm_id, sectors=sectors,
                  winning_sectors=len(audited), time_s=round(elapsed, 4))
        for sector in audited:
            self.scheduler.submit(self.context, slot, sector)

    async def stop(self) -> None:
        """Let a running audit finish (it reads the farm's files from a thread)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
