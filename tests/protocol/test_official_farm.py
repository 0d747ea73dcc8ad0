"""A farm directory the official ``subspace-farmer`` wrote (``shared/vectors/official_farm``),
opened offline with our protocol core.

The farm holds 2 sectors of 4 pieces plotted at history size 1 on a dev chain whose solution
range is u64::MAX, and the 33 Solutions the official farmer got accepted there. Checked here:
the plot files' layout (``metadata.bin`` header and entries, sector offsets in ``plot.bin``,
file sizes), each sector's checksum, contents-map checksum and per-s-bucket counts against its
metadata, the sector ids and piece indexes, every record commitment opening the segment-0
commitment, the one-piece cache element, the farm identity (keypair from ``identity.bin``, the
reward signatures), auditing with the full range, and proving: our prover, given the official
farmer's sectors and each block's challenge, produces its Solution byte for byte, and our
verifier accepts it with the block's distance.

Each proof needs the K=20 tables of its record (built once per (sector, piece offset), 8 in
all) and a 2^15-point witness: the first block of each of the 8 pairs and the other 25 blocks
are two slow tests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pytest
from blake3 import blake3
from reference_vectors import accepted_blocks, erasure_coding, farm_path, k20_proofs, mainnet_kzg

from services.config import ss58_decode
from services.node.rpc_types import FarmerAppInfo
from services.protocol.archiver import is_piece_valid
from services.protocol.auditing import audit_plot, s_bucket_audit_index, sector_slot_challenge
from services.protocol.constants import PIECE_SIZE, REWARD_SIGNING_CONTEXT
from services.protocol.hashes import blake3_254_hash_to_scalar
from services.protocol.pieces import Piece
from services.protocol.proving import prove, resolve_candidates
from services.protocol.sector import (
    SECTOR_METADATA_CHECKSUMMED_SIZE,
    SectorContentsMap,
    SectorMetadata,
    decode_plot_metadata_header,
    derive_piece_indexes,
    derive_sector_id,
    metadata_entry_offset,
    metadata_file_size,
    plot_file_size,
    plot_sector_offset,
    read_record_metadata,
    sector_size,
    verify_sector_checksum,
)
from services.protocol.segments import SegmentHeader
from services.protocol.solution import Solution
from services.protocol.sr25519 import public_key_from_secret, sign, verify
from services.protocol.verification import PieceCheckParams, verify_solution_with_challenge

U64_MAX = 2**64 - 1
# From official_farm/README.md ("Derive the sector ids and piece indexes").
README_PIECE_INDEXES = {0: [104, 65, 148, 99], 1: [209, 115, 179, 183]}


@dataclass(frozen=True, eq=False)
class Farm:
    params: dict
    app_info: FarmerAppInfo
    farm_info: dict  # single_disk_farm.json "v0"
    metadata_file: bytes
    plot_file: bytes
    segment_headers: list[SegmentHeader]
    blocks: list[dict]

    @property
    def public_key(self) -> bytes:
        return bytes.fromhex(self.farm_info["publicKey"])

    @property
    def pieces_in_sector(self) -> int:
        return self.farm_info["piecesInSector"]

    def metadata(self, sector_index: int) -> SectorMetadata:
        start = metadata_entry_offset(sector_index)
        return SectorMetadata.from_checksummed_bytes(self.metadata_file[start : start + SECTOR_METADATA_CHECKSUMMED_SIZE])

    def sector(self, sector_index: int) -> memoryview:
        start = plot_sector_offset(sector_index, self.pieces_in_sector)
        return memoryview(self.plot_file)[start : start + sector_size(self.pieces_in_sector)]

    def sector_id(self, sector_index: int) -> bytes:
        return self.metadata(sector_index).sector_id(self.public_key)


@pytest.fixture(scope="module")
def farm() -> Farm:
    return Farm(
        params=json.loads(farm_path("params.json").read_text()),
        app_info=FarmerAppInfo.from_json(json.loads(farm_path("farmer_app_info.json").read_text())),
        farm_info=json.loads(farm_path("farm/single_disk_farm.json").read_text())["v0"],
        metadata_file=farm_path("farm/metadata.bin").read_bytes(),
        plot_file=farm_path("farm/plot.bin").read_bytes(),
        segment_headers=[SegmentHeader.from_json(h) for h in json.loads(farm_path("segment_headers.json").read_text())],
        blocks=accepted_blocks(),
    )


def test_plot_files_layout(farm: Farm) -> None:
    params = farm.params
    n = farm.pieces_in_sector
    assert (n, farm.farm_info["allocatedSpace"]) == (params["piecesInSector"], params["allocatedSpace"])
    assert sector_size(n) == 4_227_648  # README: 4 x 1 048 576 + 4 x 128 + 4 x 8 192 + 32 + 32
    target = params["targetSectorCount"]
    assert len(farm.plot_file) == plot_file_size(target, n) == 8_458_240
    assert len(farm.metadata_file) == metadata_file_size(target) == 1_314_816
    assert decode_plot_metadata_header(farm.metadata_file) == params["plottedSectorCount"] == 2
    assert [metadata_entry_offset(i) for i in range(2)] == [1_048_576, 1_179_692]
    assert [plot_sector_offset(i, n) for i in range(2)] == [0, 4_227_648]


@pytest.mark.parametrize("sector_index", [0, 1])
def test_sector_decodes_and_checks(farm: Farm, sector_index: int) -> None:
    n = farm.pieces_in_sector
    metadata = farm.metadata(sector_index)
    info = farm.app_info.protocol_info
    assert (metadata.sector_index, metadata.pieces_in_sector) == (sector_index, n)
    assert metadata.history_size == farm.params["historySizeAtPlotting"] == info.history_size
    sector = farm.sector(sector_index)
    verify_sector_checksum(sector, n)
    contents_map = SectorContentsMap.from_sector(sector, n)  # checks the contents-map checksum
    assert np.array_equal(contents_map.s_bucket_sizes(), metadata.s_bucket_sizes)

    sector_id = derive_sector_id(farm.public_key, sector_index, metadata.history_size)
    assert derive_piece_indexes(sector_id, n, metadata.history_size, info) == README_PIECE_INDEXES[sector_index]
    segment_commitment = farm.segment_headers[0].segment_commitment
    kzg = mainnet_kzg()
    for offset, piece_index in enumerate(README_PIECE_INDEXES[sector_index]):
        record = read_record_metadata(sector, n, offset)
        value = blake3_254_hash_to_scalar(record.commitment)
        assert kzg.verify(segment_commitment, 256, piece_index % 256, value, record.witness), (sector_index, offset)


def test_piece_cache_element(farm: Farm) -> None:
    """``piece_cache.bin``: piece index (u64 LE) ‖ piece ‖ blake3 of both; it holds piece 165."""
    data = farm_path("farm/piece_cache.bin").read_bytes()
    index = int.from_bytes(data[:8], "little")
    piece = Piece(data[8 : 8 + PIECE_SIZE])
    assert index == 165
    assert blake3(data[: 8 + PIECE_SIZE]).digest() == data[8 + PIECE_SIZE : 8 + PIECE_SIZE + 32]
    assert is_piece_valid(mainnet_kzg(), piece, farm.segment_headers[0].segment_commitment, index % 256)


def test_identity_and_reward_signatures(farm: Farm) -> None:
    """spec 03 §9: identity.bin = SCALE Vec of 32 entropy bytes -> PBKDF2-HMAC-SHA512(entropy,
    "mnemonic", 2048) -> mini secret -> sr25519 keypair (Ed25519 expansion)."""
    import sr25519  # the maintained binding does the mini-secret expansion

    identity = farm_path("farm/identity.bin").read_bytes()
    assert identity[0] == 32 << 2 and len(identity) == 33
    seed = hashlib.pbkdf2_hmac("sha512", identity[1:], b"mnemonic", 2048)[:32]
    public_key, secret_key = sr25519.pair_from_seed(seed)
    assert public_key == farm.public_key
    assert public_key_from_secret(secret_key) == farm.public_key
    for block in farm.blocks:  # signed by the official farmer over the block pre-hash
        message, signature = bytes.fromhex(block["hash"]), bytes.fromhex(block["rewardSignature"])
        assert verify(REWARD_SIGNING_CONTEXT, message, signature, farm.public_key), block["number"]
        assert not verify(REWARD_SIGNING_CONTEXT, message[::-1], signature, farm.public_key)
    ours = sign(REWARD_SIGNING_CONTEXT, bytes.fromhex(farm.blocks[0]["hash"]), public_key, secret_key)
    assert verify(REWARD_SIGNING_CONTEXT, bytes.fromhex(farm.blocks[0]["hash"]), ours, farm.public_key)
    _, reward_address = ss58_decode(farm.params["rewardAddressSs58"])
    assert reward_address.hex() == farm.params["rewardAddressHex"]
    assert all(block["solution"]["rewardAddress"] == reward_address.hex() for block in farm.blocks)


def test_audit_with_the_full_range(farm: Farm) -> None:
    """With solution range u64::MAX every chunk of the audited s-bucket is a candidate."""
    global_challenge = bytes.fromhex(farm.blocks[0]["globalChallenge"])
    sectors = [(farm.sector_id(i), farm.metadata(i)) for i in range(2)]
    results = audit_plot(memoryview(farm.plot_file), sectors, global_challenge, U64_MAX)
    for (sector_id, metadata), result in zip(sectors, results):
        s_bucket = s_bucket_audit_index(sector_slot_challenge(sector_id, global_challenge))
        assert result.s_bucket == s_bucket and result.sector_index == metadata.sector_index
        assert sorted(c.chunk_offset for c in result.candidates) == list(range(int(metadata.s_bucket_sizes[s_bucket])))


def _reproduce(farm: Farm, block: dict) -> None:
    """Audit both sectors with the block's challenge, prove the official solution's candidate,
    compare byte for byte, and verify it with the segment headers."""
    official = Solution.from_json(block["solution"])
    assert official.to_json() == block["solution"]
    global_challenge = bytes.fromhex(block["globalChallenge"])
    sectors = [(farm.sector_id(i), farm.metadata(i)) for i in range(2)]
    results = audit_plot(memoryview(farm.plot_file), sectors, global_challenge, block["votingSolutionRange"])
    result = results[official.sector_index]
    sector = farm.sector(official.sector_index)
    contents_map = SectorContentsMap.from_sector(sector, farm.pieces_in_sector)
    candidates = resolve_candidates(contents_map, result.s_bucket, result.candidates)
    (candidate,) = [c for c in candidates if c.piece_offset == official.piece_offset]
    assert candidate.distance == block["distance"]
    solution = prove(
        sector, farm.metadata(official.sector_index), farm.public_key, official.reward_address, candidate,
        mainnet_kzg(), erasure_coding(), k20_proofs, contents_map,
    )  # fmt: skip
    assert solution.to_scale() == official.to_scale(), block["number"]
    info = farm.app_info.protocol_info
    piece_check = PieceCheckParams(
        max_pieces_in_sector=info.max_pieces_in_sector,
        segment_commitment=farm.segment_headers[0].segment_commitment,
        recent_segments=info.recent_segments,
        recent_history_fraction=info.recent_history_fraction,
        min_sector_lifetime=info.min_sector_lifetime,
        current_history_size=block["historySize"],
        sector_expiration_check_segment_commitment=None,  # segment 4 is not archived yet
    )
    distance = verify_solution_with_challenge(solution, global_challenge, block["solutionRange"], mainnet_kzg(), piece_check)
    assert distance == block["distance"]


def _first_block_of_each_pair() -> list[int]:
    seen: dict[tuple[int, int], int] = {}
    for i, block in enumerate(accepted_blocks()):
        seen.setdefault((block["solution"]["sectorIndex"], block["solution"]["pieceOffset"]), i)
    return sorted(seen.values())


def test_blocks_cover_every_sector_and_piece_offset(farm: Farm) -> None:
    assert len(farm.blocks) == 33
    pairs = {(b["solution"]["sectorIndex"], b["solution"]["pieceOffset"]) for b in farm.blocks}
    assert pairs == {(s, p) for s in range(2) for p in range(4)}


@pytest.mark.slow
def test_official_solutions_one_per_sector_and_offset(farm: Farm) -> None:
    for i in _first_block_of_each_pair():
        _reproduce(farm, farm.blocks[i])


@pytest.mark.slow
def test_official_solutions_remaining_blocks(farm: Farm) -> None:
    first = set(_first_block_of_each_pair())
    for i, block in enumerate(farm.blocks):
        if i not in first:
            _reproduce(farm, block)
