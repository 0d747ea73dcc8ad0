"""Proving scheduler: newest slot first, deadlines, the per-slot cap, failures mark sectors for
replotting; and the real local prover reproduces an accepted official solution."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "farm"))
from official_farm import accepted_blocks, copy_farm, genesis_hash, params  # noqa: E402

from services.farm import Farm  # noqa: E402
from services.plot_client import proving as proving_module  # noqa: E402
from services.plot_client.proving import FarmContext, LocalProver, ProvingScheduler, SlotContext  # noqa: E402
from services.plot_client.stats import FarmingStats, ProvingResult  # noqa: E402
from services.protocol.proving import ProvingError, resolve_candidates  # noqa: E402
from services.protocol.solution import Solution  # noqa: E402

REWARD = bytes.fromhex(params()["rewardAddressHex"])
U64_MAX = (1 << 64) - 1


class ScriptedProver:
    """Stands in for LocalProver's ``prove`` (scheduling only: these tests do not check proofs)."""

    estimate_s = 0.0

    def __init__(self, *, fail: bool = False, delay: float = 0.0) -> None:
        self.fail = fail
        self.delay = delay
        self.calls: list[tuple[int, int]] = []

    async def prove(self, farm, metadata, contents_map, candidate, reward_address, deadline):  # noqa: ANN001, ANN201
        self.calls.append((metadata.sector_index, candidate.piece_offset))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ProvingError("corrupt record")
        record = farm.read_record_metadata(metadata.sector_index, candidate.piece_offset)
        return Solution(farm.public_key, reward_address, metadata.sector_index, metadata.history_size,
                        candidate.piece_offset, record.commitment, record.witness, bytes(32), bytes(48), bytes(160))


@pytest.fixture
def farm_context(tmp_path):
    farm = Farm.open(copy_farm(tmp_path / "farm"), sectors=2, genesis_hash=genesis_hash(), max_pieces_in_sector=4)
    yield FarmContext(farm, FarmingStats(farm.farm_id))
    farm.close()


def _slot(number: int, block: dict, deadline_in: float = 30.0) -> SlotContext:
    return SlotContext(number, "ctl", bytes.fromhex(block["globalChallenge"]), U64_MAX, time.time() + deadline_in)


async def _drain(scheduler: ProvingScheduler, submitted: list, expected: int, timeout: float = 10.0) -> None:
    worker = asyncio.ensure_future(scheduler.run())
    try:
        deadline = time.monotonic() + timeout
        await asyncio.sleep(0)
        while len(submitted) < expected or scheduler.pending or scheduler.active:
            assert time.monotonic() < deadline, f"{len(submitted)} of {expected} submitted"
            await asyncio.sleep(0.01)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


def _scheduler(prover, submitted: list) -> ProvingScheduler:
    async def submit(slot, solution) -> None:  # noqa: ANN001
        submitted.append((slot.slot_number, solution))

    return ProvingScheduler(prover, submit, REWARD, workers=1)


async def test_newest_slot_first_and_expired_jobs_dropped(farm_context) -> None:
    prover = ScriptedProver()
    submitted: list = []
    scheduler = _scheduler(prover, submitted)
    block = accepted_blocks()[0]
    farm = farm_context.farm
    encoded = 0
    for number in (10, 12, 11):
        slot = _slot(number, block)
        for audited in farm.audit(slot.global_challenge, U64_MAX):
            scheduler.submit(farm_context, slot, audited)
            result = audited.result
            encoded += len(resolve_candidates(farm.read_contents_map(result.sector_index), result.s_bucket,
                                              result.candidates))
    stale = _slot(13, block, deadline_in=-1)  # newest, but its deadline has passed
    for audited in farm_context.farm.audit(stale.global_challenge, U64_MAX):
        scheduler.submit(farm_context, stale, audited)
    await _drain(scheduler, submitted, encoded)  # every chunk wins at u64::MAX; unencoded ones are dropped
    slots = [number for number, _ in submitted]
    assert len(submitted) == encoded and slots == sorted(slots, reverse=True) and set(slots) == {10, 11, 12}
    assert scheduler.expired_jobs == 2
    assert farm_context.stats.solutions_submitted == len(submitted)
    assert farm_context.stats.proving_time[ProvingResult.SUCCESS].count == len(submitted)


async def test_at_most_the_nodes_channel_per_slot(farm_context, monkeypatch) -> None:
    monkeypatch.setattr(proving_module, "SOLUTIONS_PER_SLOT", 2)
    submitted: list = []
    scheduler = _scheduler(ScriptedProver(), submitted)
    slot = _slot(5, accepted_blocks()[0])
    for audited in farm_context.farm.audit(slot.global_challenge, U64_MAX):
        scheduler.submit(farm_context, slot, audited)
    await _drain(scheduler, submitted, 2)
    assert len(submitted) == 2 and slot.submitted == 2


async def test_a_failed_proof_marks_the_sector_for_replotting(farm_context) -> None:
    submitted: list = []
    scheduler = _scheduler(ScriptedProver(fail=True), submitted)
    block = accepted_blocks()[0]
    slot = _slot(5, block)
    audited = farm_context.farm.audit(slot.global_challenge, U64_MAX)
    first = audited[0].result.sector_index
    scheduler.submit(farm_context, slot, audited[0])
    await _drain(scheduler, submitted, 0)
    assert submitted == [] and farm_context.farm.sectors_to_replot() == [first]
    assert farm_context.stats.proving_time[ProvingResult.FAILED].count == 1
    assert farm_context.stats.sectors_marked_for_replot == 1


async def test_a_solution_past_the_deadline_is_not_submitted(farm_context) -> None:
    submitted: list = []
    prover = ScriptedProver(delay=0.3)
    scheduler = _scheduler(prover, submitted)
    slot = _slot(5, accepted_blocks()[0], deadline_in=0.2)
    scheduler.submit(farm_context, slot, farm_context.farm.audit(slot.global_challenge, U64_MAX)[0])
    await _drain(scheduler, submitted, 0)
    assert submitted == [] and len(prover.calls) == 1
    assert farm_context.stats.solutions_past_deadline == 1 and farm_context.stats.solutions_found == 1


@pytest.mark.slow
async def test_local_prover_submits_the_accepted_solution(farm_context) -> None:
    from services.plot_client.service import load_proving_backend
    from shared_paths import require_mainnet_kzg

    kzg, erasure, proofs_for_seed = load_proving_backend(str(require_mainnet_kzg()))
    local = LocalProver(kzg, erasure, proofs_for_seed, threads=1)
    submitted: list = []
    scheduler = _scheduler(local, submitted)
    block = accepted_blocks()[0]
    slot = _slot(block["slotNumber"], block, deadline_in=600)
    audited = farm_context.farm.audit(slot.global_challenge, block["votingSolutionRange"])
    mine = next(a for a in audited if a.result.sector_index == block["solution"]["sectorIndex"])
    scheduler.submit(farm_context, slot, mine)
    try:
        await _drain(scheduler, submitted, 1, timeout=600)
    finally:
        local.close()
    assert submitted[0][1].to_json() == block["solution"]
    assert farm_context.stats.proofs_local >= 1
