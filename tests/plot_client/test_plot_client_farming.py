"""Per-farm slot handling: a slot arriving while the farm's audit runs is skipped and counted."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "farm"))
from official_farm import accepted_blocks, copy_farm, genesis_hash  # noqa: E402

from services.farm import Farm  # noqa: E402
from services.plot_client.farming import FarmFarming  # noqa: E402
from services.plot_client.proving import FarmContext, ProvingScheduler, SlotContext  # noqa: E402
from services.plot_client.stats import FarmingStats  # noqa: E402


async def test_slots_during_an_audit_are_skipped_not_queued(tmp_path) -> None:
    farm = Farm.open(copy_farm(tmp_path / "farm"), sectors=2, genesis_hash=genesis_hash(), max_pieces_in_sector=4)
    context = FarmContext(farm, FarmingStats(farm.farm_id))

    async def submit(slot, solution) -> None:  # noqa: ANN001 - never called: the scheduler is not run
        raise AssertionError("no proving in this test")

    scheduler = ProvingScheduler(None, submit, bytes(32), workers=1)  # type: ignore[arg-type]
    blocks = accepted_blocks()
    with ThreadPoolExecutor(2) as executor:
        farming = FarmFarming(context, executor, scheduler)
        try:
            slots = [SlotContext(b["slotNumber"], "ctl", bytes.fromhex(b["globalChallenge"]), b["votingSolutionRange"],
                                 time.time() + 30) for b in blocks[:3]]
            farming.on_slot(slots[0])
            farming.on_slot(slots[1])  # the first audit has not finished: skipped
            assert farming.auditing
            await farming.stop()
            farming.on_slot(slots[2])
            await farming.stop()
        finally:
            farm.close()
    stats = context.stats
    assert stats.audits == 2 and stats.skipped_slots == 1 and stats.sectors_audited == 2
    assert {job.slot.slot_number for job in scheduler._heap} == {slots[0].slot_number, slots[2].slot_number}
    assert stats.candidates == sum(len(job.audited.result.candidates) for job in scheduler._heap)
