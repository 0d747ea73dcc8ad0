"""Farm directories: the official farm opened and farmed as it is, farms we create, crash safety.

All tests work on copies of ``vectors/official_farm/farm`` (written by the official farmer) or on
fresh directories.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from official_farm import FARM_FILES, accepted_blocks, copy_farm, genesis_hash, manifest_sha256, params

from services.farm import Farm, FarmError, FarmInfo, SectorState, space_distribution
from services.protocol.sector import (
    SectorMetadata,
    decode_plot_metadata_header,
    derive_piece_indexes,
    FarmerProtocolInfo,
    metadata_entry_offset,
    metadata_file_size,
    plot_file_size,
)
from shared_paths import REPO_ROOT

PROTOCOL = FarmerProtocolInfo(1, 4, 5, (1, 10), 4)


def _open(path, sectors: int = 2, **kwargs) -> Farm:
    return Farm.open(path, sectors=sectors, genesis_hash=genesis_hash(), max_pieces_in_sector=4, **kwargs)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- the official farm


def test_official_farm_opens_unchanged(tmp_path) -> None:
    path = copy_farm(tmp_path / "farm")
    with _open(path) as farm:
        assert farm.farm_id == params()["farmId"]
        assert farm.public_key.hex() == params()["publicKey"]
        assert farm.plotted_sectors() == [0, 1] and farm.sectors_to_replot() == [] == farm.missing_sectors()
        assert farm.interrupted_sectors == []
    assert {name: _sha256(path / name) for name in FARM_FILES} == manifest_sha256()
    assert sorted(p.name for p in path.iterdir()) == sorted(FARM_FILES)


def test_official_sectors_read_back(tmp_path) -> None:
    with _open(copy_farm(tmp_path / "farm")) as farm:
        expected_pieces = {0: [104, 65, 148, 99], 1: [209, 115, 179, 183]}  # README
        for index in (0, 1):
            metadata = farm.sector_metadata(index)
            assert metadata.history_size == 1 and metadata.pieces_in_sector == 4
            sector_id = farm.sector_id(index, metadata.history_size)
            assert derive_piece_indexes(sector_id, 4, 1, PROTOCOL) == expected_pieces[index]
            contents = farm.read_contents_map(index)
            assert np.array_equal(contents.s_bucket_sizes(), metadata.s_bucket_sizes)
            record = farm.read_record_metadata(index, 3)
            assert len(record.commitment) == 48 and len(record.witness) == 48


def test_wrong_chain_is_refused(tmp_path) -> None:
    path = copy_farm(tmp_path / "farm")
    with pytest.raises(FarmError, match=f"belongs to chain {params()['genesisHash']}, but the node is on chain 00"):
        Farm.open(path, sectors=2, genesis_hash=bytes(32), max_pieces_in_sector=4)


def test_a_farm_in_use_is_refused(tmp_path) -> None:
    path = copy_farm(tmp_path / "farm")
    with _open(path):
        with pytest.raises(FarmError, match="in use"):
            _open(path)
    _open(path).close()  # released on close


def test_fewer_sectors_than_plotted_is_refused(tmp_path) -> None:
    path = copy_farm(tmp_path / "farm")
    with pytest.raises(FarmError, match="would discard 1 of them"):
        _open(path, sectors=1)
    assert {name: _sha256(path / name) for name in FARM_FILES} == manifest_sha256()


def test_growing_a_farm_keeps_its_sectors(tmp_path) -> None:
    path = copy_farm(tmp_path / "farm")
    with _open(path, sectors=5) as farm:
        assert farm.plotted_sectors() == [0, 1] and farm.missing_sectors() == [2, 3, 4]
    info = FarmInfo.from_json_bytes((path / "single_disk_farm.json").read_bytes())
    assert space_distribution(info.allocated_space, 4).target_sector_count == 5
    assert (path / "plot.bin").stat().st_size == plot_file_size(5, 4)
    assert (path / "metadata.bin").stat().st_size == metadata_file_size(5)
    assert _sha256(path / "piece_cache.bin") == manifest_sha256()["piece_cache.bin"]
    with _open(path, sectors=5) as farm:
        assert farm.plotted_sectors() == [0, 1]


def test_a_farm_sized_with_a_piece_cache_keeps_its_info(tmp_path) -> None:
    """The official ``farm`` command sizes farms with a piece cache (1 % by default): at the cluster
    farmer's 0 % its allocatedSpace would give more sectors than the plot file holds."""
    path = copy_farm(tmp_path / "farm")
    info = FarmInfo.from_json_bytes((path / "single_disk_farm.json").read_bytes())
    roomy = FarmInfo(info.farm_id, info.genesis_hash, info.public_key, 4, info.allocated_space + 5_000_000)
    assert space_distribution(roomy.allocated_space, 4).target_sector_count == 3
    (path / "single_disk_farm.json").write_bytes(roomy.to_json_bytes())
    with _open(path, sectors=2) as farm:
        assert farm.plotted_sectors() == [0, 1]
    assert (path / "single_disk_farm.json").read_bytes() == roomy.to_json_bytes()


@pytest.mark.slow
def test_reproduce_accepted_solutions_through_the_farm(tmp_path) -> None:
    from services.protocol.erasure import ErasureCoding
    from services.kzg_setup import load_kzg
    from services.protocol.plotting import chia_proofs_for_seed
    from services.protocol.proving import prove, resolve_candidates
    from shared_paths import require_mainnet_kzg

    kzg = load_kzg(str(require_mainnet_kzg()))
    erasure = ErasureCoding(16)
    proofs_for_seed = chia_proofs_for_seed("cpu")
    blocks = accepted_blocks()
    chosen = [blocks[0], next(b for b in blocks if b["solution"]["sectorIndex"] == 1)]
    with _open(copy_farm(tmp_path / "farm")) as farm:
        for block in chosen:
            expected = block["solution"]
            audited = farm.audit(bytes.fromhex(block["globalChallenge"]), block["votingSolutionRange"])
            mine = next(a for a in audited if a.result.sector_index == expected["sectorIndex"])
            candidates = resolve_candidates(farm.read_contents_map(mine.result.sector_index), mine.result.s_bucket,
                                            mine.result.candidates)
            assert candidates[0].piece_offset == expected["pieceOffset"]
            assert candidates[0].distance == block["distance"]
            solution = prove(farm.sector_view(mine.result.sector_index), farm.sector_metadata(mine.result.sector_index),
                             farm.public_key, bytes.fromhex(expected["rewardAddress"]), candidates[0], kzg, erasure,
                             proofs_for_seed)
            assert solution.to_json() == expected
            assert farm.is_current(mine.result.sector_index, mine.generation)


# ---- farms we create


def test_new_farm_is_what_the_official_farmer_expects(tmp_path) -> None:
    path = tmp_path / "new"
    with _open(path, sectors=3) as farm:
        assert farm.missing_sectors() == [0, 1, 2] and farm.plotted_sectors() == []
        public_key = farm.public_key
    assert sorted(p.name for p in path.iterdir()) == ["identity.bin", "metadata.bin", "plot.bin", "single_disk_farm.json"]
    assert stat.S_IMODE((path / "identity.bin").stat().st_mode) == 0o600
    info = json.loads((path / "single_disk_farm.json").read_text())
    assert list(info) == ["v0"] and list(info["v0"]) == ["id", "genesisHash", "publicKey", "piecesInSector",
                                                          "allocatedSpace"]
    parsed = FarmInfo.from_json_bytes((path / "single_disk_farm.json").read_bytes())
    assert parsed.genesis_hash == genesis_hash() and parsed.public_key == public_key and parsed.pieces_in_sector == 4
    dist = space_distribution(parsed.allocated_space, 4)  # what the official cluster farmer computes
    assert dist.target_sector_count == 3
    assert (path / "plot.bin").stat().st_size == dist.plot_file_size
    assert (path / "metadata.bin").stat().st_size == dist.metadata_file_size
    assert (path / "metadata.bin").read_bytes()[:3] == b"\x00\x00\x00"
    with _open(path, sectors=3) as farm:  # reopens as the same farm
        assert farm.public_key == public_key and farm.farm_id == parsed.farm_id


def test_a_non_empty_directory_that_is_not_a_farm_is_refused(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FarmError, match=r"not a farm and not empty \(holds notes.txt\)"):
        _open(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    mount = tmp_path / "mnt"
    (mount / "lost+found").mkdir(parents=True)  # a fresh ext4 mount point is fine
    _open(mount).close()


def _official_sector(tmp_path, index: int) -> tuple[bytes, SectorMetadata]:
    with _open(copy_farm(tmp_path / "source")) as farm:
        return bytes(farm.sector_view(index)), farm.sector_metadata(index)


def test_written_sectors_are_farmed_and_survive_a_restart(tmp_path) -> None:
    sector, metadata = _official_sector(tmp_path, 1)
    path = tmp_path / "new"
    with _open(path, sectors=3) as farm:
        relabelled = SectorMetadata(2, 4, metadata.s_bucket_sizes, metadata.history_size)
        with pytest.raises(FarmError, match="corrupt"):
            farm.write_sector(2, sector[:-1] + b"\x00", relabelled)
        assert farm.missing_sectors() == [0, 1, 2]
        farm.write_sector(2, sector, relabelled)  # beyond the plotted count: 0 and 1 become dummies
        assert farm.plotted_sectors() == [2] and farm.sectors_to_replot() == [0, 1]
        assert farm.table.active_rows().tolist() == [2]
    assert decode_plot_metadata_header((path / "metadata.bin").read_bytes()) == 3
    assert not (path / "sector_writes.journal").exists()
    with _open(path, sectors=3) as farm:
        assert farm.plotted_sectors() == [2] and farm.sectors_to_replot() == [0, 1]
        assert bytes(farm.sector_view(2)) == sector and farm.sector_metadata(2) == relabelled


def test_resumed_writes_by_offset(tmp_path) -> None:
    sector, metadata = _official_sector(tmp_path, 0)
    with _open(tmp_path / "new", sectors=1) as farm:
        with farm.begin_sector_write(0) as writer:
            half = len(sector) // 2
            writer.write(half, sector[half:])
            writer.write(0, sector[:half])
            writer.commit(metadata)
        assert farm.plotted_sectors() == [0]


def _crash_while_writing(path, index: int) -> None:
    script = textwrap.dedent(f"""
        import os
        from services.farm import Farm
        farm = Farm.open({str(path)!r}, sectors=2, genesis_hash=bytes.fromhex({genesis_hash().hex()!r}),
                         max_pieces_in_sector=4)
        writer = farm.begin_sector_write({index})
        writer.write(0, b"\\xee" * 100_000)
        os._exit(3)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 3, result.stderr


def test_a_half_written_sector_becomes_a_sector_to_replot(tmp_path) -> None:
    path = copy_farm(tmp_path / "farm")
    _crash_while_writing(path, 0)
    assert json.loads((path / "sector_writes.journal").read_text()) == {"version": 1, "writing": [0]}
    entry = (path / "metadata.bin").read_bytes()[metadata_entry_offset(0):metadata_entry_offset(1)]
    assert SectorMetadata.from_checksummed_bytes(entry) == SectorMetadata.dummy(0, 4)  # the reference sees it expired
    with _open(path) as farm:
        assert farm.interrupted_sectors == [0]
        assert farm.sectors_to_replot() == [0] and farm.plotted_sectors() == [1]
        assert farm.table.active_rows().tolist() == [1]
    assert not (path / "sector_writes.journal").exists()


def test_a_completed_write_with_a_stale_journal_is_kept(tmp_path) -> None:
    path = copy_farm(tmp_path / "farm")
    (path / "sector_writes.journal").write_text('{"version": 1, "writing": [1]}')
    with _open(path) as farm:
        assert farm.plotted_sectors() == [0, 1] and farm.interrupted_sectors == []
    assert _sha256(path / "metadata.bin") == manifest_sha256()["metadata.bin"]


def test_undecodable_metadata_becomes_a_dummy_entry(tmp_path) -> None:
    path = copy_farm(tmp_path / "farm")
    with open(path / "metadata.bin", "r+b") as f:
        f.seek(metadata_entry_offset(1) + 100)
        f.write(b"\xff\xff")
    with _open(path) as farm:
        assert farm.plotted_sectors() == [0] and farm.sectors_to_replot() == [1]
    entry = (path / "metadata.bin").read_bytes()[metadata_entry_offset(1):metadata_entry_offset(2)]
    assert SectorMetadata.from_checksummed_bytes(entry) == SectorMetadata.dummy(1, 4)


def test_failed_proof_marks_for_replot_only_the_audited_sector(tmp_path) -> None:
    with _open(copy_farm(tmp_path / "farm")) as farm:
        generation = farm.table.generation(0)
        farm.write_sector(0, bytes(farm.sector_view(0)), farm.sector_metadata(0))  # replotted meanwhile
        assert not farm.is_current(0, generation)
        assert not farm.mark_for_replot(0, generation)
        assert farm.mark_for_replot(1, farm.table.generation(1))
        assert farm.sectors_to_replot() == [1] and farm.states[0] == SectorState.PLOTTED
