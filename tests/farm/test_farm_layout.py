"""Farm sizing and farm info against the official farm the reference farmer wrote."""

from __future__ import annotations

import pytest
from official_farm import params, vector_dir

from services.farm.layout import (
    FarmError,
    FarmInfo,
    allocated_space_for_sectors,
    space_distribution,
)
from services.protocol.sector import sector_size


def test_space_distribution_reproduces_the_official_farm_files() -> None:
    p = params()
    farm = vector_dir() / "farm"
    dist = space_distribution(p["allocatedSpace"], p["piecesInSector"], p["cachePercentage"])
    assert dist.target_sector_count == p["targetSectorCount"] == 2
    assert dist.plot_file_size == (farm / "plot.bin").stat().st_size
    assert dist.metadata_file_size == (farm / "metadata.bin").stat().st_size
    assert dist.piece_cache_capacity == 1  # README: room for one element
    element = 8 + 1_048_672 + 32
    assert (farm / "piece_cache.bin").stat().st_size == -(-element // 4096) * 4096
    assert sector_size(p["piecesInSector"]) == 4_227_648


def test_official_farm_at_cluster_cache_percentage_keeps_its_sector_count() -> None:
    p = params()
    assert space_distribution(p["allocatedSpace"], p["piecesInSector"], 0).target_sector_count == 2


@pytest.mark.parametrize("sectors,pieces", [(1, 1), (2, 4), (7, 32), (1000, 1000), (65_534, 1)])
def test_allocated_space_for_sectors_is_the_smallest_that_gives_them(sectors: int, pieces: int) -> None:
    space = allocated_space_for_sectors(sectors, pieces)
    assert space_distribution(space, pieces).target_sector_count == sectors
    try:
        fewer = space_distribution(space - 100, pieces).target_sector_count
    except FarmError:
        fewer = 0
    assert fewer == sectors - 1


def test_allocated_space_bounds() -> None:
    with pytest.raises(FarmError, match="1..65534"):
        allocated_space_for_sectors(65_535, 1)
    with pytest.raises(FarmError, match="too small"):
        space_distribution(3_000_000, 4)


def test_farm_info_json_is_byte_identical_to_the_official_file() -> None:
    raw = (vector_dir() / "farm" / "single_disk_farm.json").read_bytes()
    info = FarmInfo.from_json_bytes(raw)
    p = params()
    assert info.farm_id == p["farmId"] and info.public_key.hex() == p["publicKey"]
    assert info.genesis_hash.hex() == p["genesisHash"]
    assert (info.pieces_in_sector, info.allocated_space) == (p["piecesInSector"], p["allocatedSpace"])
    assert info.to_json_bytes() == raw


@pytest.mark.parametrize(
    "text,needle",
    [
        (b"not json", "not a valid farm info"),
        (b'{"v1": {}}', "missing field"),
        (b'{"v0": {"id": "x", "genesisHash": "00", "publicKey": "00", "piecesInSector": 1, "allocatedSpace": 1}}',
         "64 hex"),
    ],
)
def test_bad_farm_info_is_one_clear_error(text: bytes, needle: str) -> None:
    with pytest.raises(FarmError, match=needle):
        FarmInfo.from_json_bytes(text)
