"""The proof-server over a real nats-server: proves a record of the official farm into the
accepted Solution, answers ``expired`` without working past a deadline, ``busy`` when its
proving slots are taken, ``error`` for malformed record data."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "farm"))
from official_farm import accepted_blocks, copy_farm, genesis_hash  # noqa: E402

from services.bus.client import Bus  # noqa: E402
from services.farm import Farm  # noqa: E402
from services.plot_client.proof_servers import read_record  # noqa: E402
from services.proof_server.config import ProofServerConfig  # noqa: E402
from services.proof_server.messages import ProveRequest, ProveResult  # noqa: E402
from services.proof_server.service import ProofServerService  # noqa: E402
from services.protocol.proving import resolve_candidates  # noqa: E402
from shared_paths import require_mainnet_kzg  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _request(farm: Farm, block: dict, deadline: float) -> ProveRequest:
    audited = farm.audit(bytes.fromhex(block["globalChallenge"]), block["votingSolutionRange"])
    result = next(a.result for a in audited if a.result.sector_index == block["solution"]["sectorIndex"])
    metadata = farm.sector_metadata(result.sector_index)
    contents = farm.read_contents_map(result.sector_index)
    candidate = resolve_candidates(contents, result.s_bucket, result.candidates)[0]
    record = read_record(farm, metadata, contents, candidate.piece_offset)
    return ProveRequest.build(record, deadline=deadline, public_key=farm.public_key,
                              reward_address=bytes.fromhex(block["solution"]["rewardAddress"]),
                              sector_index=result.sector_index, history_size=metadata.history_size,
                              s_bucket=candidate.s_bucket)


def _gpu_missing() -> bool:
    from services.protocol.pos import available_backends

    return "gpu" not in available_backends()


@pytest.mark.parametrize("backend", [
    "cpu",
    pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(
        "_gpu_missing()", reason="no CUDA GPU visible to cupy (or cupy not installed): GPU proving NOT checked")]),
])
async def test_proof_server_over_the_bus(tmp_path, nats_server, backend: str) -> None:
    config = ProofServerConfig(nats_servers=(nats_server.url,), instance="ps-test", backend=backend, concurrency=1,
                               kzg_params=str(require_mainnet_kzg()))
    service = ProofServerService(config)
    farm = Farm.open(copy_farm(tmp_path / "farm"), sectors=2, genesis_hash=genesis_hash(), max_pieces_in_sector=4)
    await service.start()
    bus = await Bus.connect([nats_server.url], name="ps-test-client")
    try:
        block = accepted_blocks()[0]
        request = _request(farm, block, time.time() + 600)
        first = asyncio.ensure_future(bus.request(request, timeout=600, retries=0))
        while service._active == 0:  # the first request holds the only proving slot
            await asyncio.sleep(0.01)
        busy = await bus.request(request, timeout=60, retries=0)
        assert busy == ProveResult(busy=True)
        answer = await first
        assert answer.decoded().to_json() == block["solution"]

        late = _request(farm, block, time.time() - 1)
        assert await bus.request(late, timeout=60, retries=0) == ProveResult(expired=True)
        broken = ProveRequest(**{**{f: getattr(request, f) for f in request.__struct_fields__},
                                 "record": request.record[:-1]})
        error = await bus.request(broken, timeout=60, retries=0)
        assert error.solution is None and "record data must be" in error.error
        assert service.stats["proved"] == 1 and service.stats["busy"] == 1 and service.stats["expired"] == 1
        assert service.stats["failed"] == 1 and service.backend == backend
    finally:
        await bus.close()
        await service.stop()
        farm.close()
