"""The plot-client's proof-server client over a real nats-server, against a scripted responder:
busy answers are retried, anything else that is not a solution for this record means "prove
locally" (never "give the sector up")."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "farm"))
from official_farm import accepted_blocks, copy_farm, genesis_hash  # noqa: E402

from services.bus.client import Bus  # noqa: E402
from services.farm import Farm  # noqa: E402
from services.plot_client.proof_servers import BUSY_ATTEMPTS, ProofServers  # noqa: E402
from services.plot_client.proving import RemoteUnavailable, SlotContext  # noqa: E402
from services.proof_server.messages import ProveRequest, ProveResult  # noqa: E402
from services.protocol.proving import resolve_candidates  # noqa: E402
from services.protocol.solution import Solution  # noqa: E402

REWARD = bytes(range(32))


def _solution_for(request: ProveRequest, piece_offset: int | None = None) -> bytes:
    record = request.record_data()
    return Solution(request.public_key, request.reward_address, request.sector_index, request.history_size,
                    record.piece_offset if piece_offset is None else piece_offset, record.metadata.commitment,
                    record.metadata.witness, bytes(32), bytes(48), bytes(160)).to_scale()


@pytest.fixture
def farm(tmp_path):
    opened = Farm.open(copy_farm(tmp_path / "farm"), sectors=2, genesis_hash=genesis_hash(), max_pieces_in_sector=4)
    yield opened
    opened.close()


async def _prove(bus: Bus, farm: Farm):  # noqa: ANN202
    block = accepted_blocks()[0]
    slot = SlotContext(1, "ctl", bytes.fromhex(block["globalChallenge"]), block["votingSolutionRange"], time.time() + 60)
    result = farm.audit(slot.global_challenge, slot.voting_solution_range)[0].result
    contents = farm.read_contents_map(result.sector_index)
    candidate = resolve_candidates(contents, result.s_bucket, result.candidates)[0]
    metadata = farm.sector_metadata(result.sector_index)
    return await ProofServers(bus).prove(farm, metadata, contents, candidate, REWARD, slot, timeout=10)


@pytest.mark.parametrize("script,outcome", [
    (["busy", "busy", "solution"], "solution"),
    (["busy"] * BUSY_ATTEMPTS, "local"),
    (["expired"], "local"),
    (["error"], "local"),
    (["other-record"], "local"),
])
async def test_answers(nats_server, farm, script, outcome) -> None:
    bus = await Bus.connect([nats_server.url], name="pc-test")
    answers = iter(script)
    seen: list[ProveRequest] = []

    def respond(request: ProveRequest) -> ProveResult:
        seen.append(request)
        kind = next(answers)
        if kind == "solution":
            return ProveResult(solution=_solution_for(request))
        if kind == "other-record":
            return ProveResult(solution=_solution_for(request, piece_offset=request.piece_offset ^ 1))
        return ProveResult(busy=kind == "busy", expired=kind == "expired",
                           error="cannot prove" if kind == "error" else None)

    await bus.serve(ProveRequest, respond)
    try:
        if outcome == "solution":
            solution = await _prove(bus, farm)
            assert solution.reward_address == REWARD and solution.public_key == farm.public_key
        else:
            with pytest.raises(RemoteUnavailable):
                await _prove(bus, farm)
        assert len(seen) == len(script)
        assert all(r.deadline > time.time() and len(r.record) == 1_056_896 for r in seen)
    finally:
        await bus.close()


async def test_no_proof_server(nats_server, farm) -> None:
    bus = await Bus.connect([nats_server.url], name="pc-test")
    try:
        with pytest.raises(RemoteUnavailable, match="no responders"):
            await _prove(bus, farm)
    finally:
        await bus.close()
