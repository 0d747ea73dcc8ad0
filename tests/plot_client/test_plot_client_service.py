"""Plot-client start-up with farms that cannot be farmed: one clear line, nothing left open."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "farm"))
from official_farm import copy_farm, genesis_hash, params  # noqa: E402

from services.daemon import DaemonError  # noqa: E402
from services.farm import Farm  # noqa: E402
from services.node.rpc_types import FarmerAppInfo  # noqa: E402
from services.plot_client.config import FarmSpec, PlotClientConfig  # noqa: E402
from services.plot_client.service import PlotClientService  # noqa: E402
from services.protocol.sector import FarmerProtocolInfo  # noqa: E402


def _service(*farms: Path, genesis: bytes) -> PlotClientService:
    config = PlotClientConfig(nats_servers=("nats://127.0.0.1:1",), instance="pc-test",
                              reward_account_id=params()["rewardAddressHex"],
                              farms=tuple(FarmSpec(path=str(f), sectors=2) for f in farms))
    service = PlotClientService(config)
    service.app_info = FarmerAppInfo(genesis, (), False, 30_000, FarmerProtocolInfo(1, 4, 5, (1, 10), 4))
    return service


async def test_a_farm_of_another_chain_stops_the_start_with_one_line(tmp_path) -> None:
    official = copy_farm(tmp_path / "official")
    other = tmp_path / "fresh"
    service = _service(other, official, genesis=bytes(32))
    with pytest.raises(DaemonError) as failure:
        await service._open_farms()
    message = str(failure.value)
    assert "\n" not in message and f"belongs to chain {params()['genesisHash']}" in message
    assert service.farms == []
    Farm.open(other, sectors=2, genesis_hash=bytes(32), max_pieces_in_sector=4).close()  # its lock was released


async def test_two_copies_of_one_farm_are_refused(tmp_path) -> None:
    service = _service(copy_farm(tmp_path / "a"), copy_farm(tmp_path / "b"), genesis=genesis_hash())
    with pytest.raises(DaemonError, match="share one identity"):
        await service._open_farms()


async def test_farms_open_in_parallel_and_are_indexed_by_key(tmp_path) -> None:
    service = _service(copy_farm(tmp_path / "official"), tmp_path / "fresh", genesis=genesis_hash())
    await service._open_farms()
    try:
        assert [len(c.farm.plotted_sectors()) for c in service.farms] == [2, 0]
        assert bytes.fromhex(params()["publicKey"]) in service._by_public_key
        capacity = service._capacity()
        farm_id = params()["farmId"]
        assert capacity["farms"] == 2 and capacity["plotted"] == 2 and capacity["sectors"] == 4
        assert capacity[f"farm.{farm_id}.plotted"] == 2 and capacity[f"farm.{farm_id}.sectors"] == 2
    finally:
        for context in service.farms:
            context.farm.close()
