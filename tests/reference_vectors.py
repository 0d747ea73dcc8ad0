"""The reference vectors (``shared/vectors``) and the rules that rebuild their inputs.

Where an input is large (blocks, challenges, pieces) the reference files give a generation rule
instead of the bytes; this module rebuilds those inputs and nothing else: every expected value a
test compares with is read from a file, never computed here. Each file is opened through
``shared_paths.require_vectors`` on every use, so a missing file fails and a missing shared
folder skips loudly (and fails under CI).

Expensive shared inputs are cached for the whole session: the mainnet KZG setup, the K=20
proofs of space of each PoS seed the vectors use (one table build each, about a second), the
reference pieces and our plots of the reference sectors (checked against the reference's
sector hash before anyone uses them).

Main API: ``load_json``, ``vector_bytes``, ``farm_path``, ``xof``, ``challenge``,
``mainnet_kzg``, ``erasure_coding``, ``k20_proofs``, ``archiver_blocks``, ``segment_pieces``,
``solution_from_vector``, ``reference_sector`` (``"p4"``, ``"p8"``, ``"p6"``) -> ``ReferenceSector``
with ``pieces()``, ``sector_bytes()`` and ``metadata()``; ``plot`` / ``plot_matching_reference``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from blake3 import blake3
from shared_paths import require_mainnet_kzg, require_vectors

from services.protocol.archiver import SegmentPacker, encode_segment
from services.protocol.constants import (
    NUM_PIECES,
    NUM_RAW_RECORDS,
    PIECE_SIZE,
    RECORD_NUM_CHUNKS,
    SCALAR_FULL_BYTES,
    SCALAR_SAFE_BYTES,
)
from services.protocol.hashes import blake3_254_hash_to_scalar
from services.protocol.plotting import SBucketProofs
from services.protocol.sector import FarmerProtocolInfo, SectorMetadata
from services.protocol.segments import SegmentHeader

U64_MAX = (1 << 64) - 1


# --------------------------------------------------------------------------------------------
# Files


@functools.cache
def _parsed(name: str) -> object:
    return json.loads(require_vectors(name).read_text())


def load_json(name: str) -> object:
    """A vector file's JSON (parsed once; the file is required on every call)."""
    require_vectors(name)
    return _parsed(name)


def vector_bytes(name: str) -> bytes:
    return require_vectors(name).read_bytes()


def farm_path(name: str) -> Path:
    """A file of ``official_farm/`` (e.g. ``"farm/plot.bin"``, ``"segment_headers.json"``)."""
    return require_vectors(f"official_farm/{name}")


def accepted_blocks() -> list[dict]:
    """The 33 blocks of ``official_farm/accepted_blocks.jsonl``."""
    return [json.loads(line) for line in farm_path("accepted_blocks.jsonl").read_text().splitlines() if line]


# --------------------------------------------------------------------------------------------
# Generation rules stated in the files


def xof(label: str, index: int, size: int) -> bytes:
    """``XOFn(label, i)``: the first ``size`` bytes of BLAKE3-XOF(utf8(label) ‖ u32_le(i))."""
    return blake3(label.encode() + index.to_bytes(4, "little")).digest(length=size)


def challenge(set_name: str, i: int) -> tuple[bytes, int]:
    """``(pot_output_i, slot_i)`` of the sector vectors' challenge rule."""
    return xof(f"{set_name} pot", i, 32)[:16], 1000 + 7 * i


@functools.cache
def mainnet_kzg_cached():  # noqa: ANN201 - services.protocol.kzg.Kzg
    from services.kzg_setup import load_kzg_file

    return load_kzg_file(require_mainnet_kzg())


def mainnet_kzg():  # noqa: ANN201
    """The mainnet trusted setup (required on every call, loaded once)."""
    require_mainnet_kzg()
    return mainnet_kzg_cached()


@functools.cache
def erasure_coding():  # noqa: ANN201 - services.protocol.erasure.ErasureCoding
    from services.protocol.erasure import ErasureCoding

    return ErasureCoding(16)


@functools.cache
def _chia_proofs_for_seed():  # noqa: ANN202
    from services.protocol.plotting import chia_proofs_for_seed

    return chia_proofs_for_seed()


@functools.lru_cache(maxsize=None)
def k20_proofs(seed: bytes) -> SBucketProofs:
    """``ProofsForSeed`` with the real K=20 tables, each seed's tables built once per session."""
    return _chia_proofs_for_seed()(seed)


# --------------------------------------------------------------------------------------------
# Archiver inputs


@functools.cache
def _archiver_blocks() -> tuple[bytes, ...]:
    vectors = load_json("archiver_ref.json")
    seed = blake3(vectors["seed_label"].encode()).digest()
    assert seed.hex() == vectors["seed"], "archiver seed rule"
    blocks = []
    for block in vectors["blocks"]:
        data = blake3(seed + block["number"].to_bytes(4, "little")).digest(length=block["size"])
        assert blake3(data).hexdigest() == block["blake3"], f"block {block['number']} does not match its blake3"
        blocks.append(data)
    return tuple(blocks)


def archiver_blocks() -> tuple[bytes, ...]:
    """The 6 blocks of ``archiver_ref.json``, rebuilt by its rule and checked against their blake3."""
    load_json("archiver_ref.json")
    return _archiver_blocks()


@functools.cache
def _segment_records(segment_index: int) -> np.ndarray:
    """The 256 records of a reference segment ``(256, 32768, 32)``: source records from the
    segment stream (packed by ``SegmentPacker``, parent headers taken from the vectors), parity
    records by erasure extension."""
    vectors = load_json("archiver_ref.json")
    packer = SegmentPacker()
    produced = 0
    for number, block in enumerate(archiver_blocks()):
        packer.add_block(block, number)
        while (items := packer.produce_segment()) is not None:
            if produced == segment_index:
                return _records_of(bytes(encode_segment(items)))
            packer.push_parent_header(SegmentHeader.from_scale(bytes.fromhex(vectors["segments"][produced]["header"]["scale"])))
            produced += 1
    raise AssertionError(f"the archiver blocks do not fill segment {segment_index}")


def _records_of(segment: bytes) -> np.ndarray:
    raw = np.frombuffer(segment, dtype=np.uint8).reshape(NUM_RAW_RECORDS, RECORD_NUM_CHUNKS, SCALAR_SAFE_BYTES)
    records = np.zeros((NUM_PIECES, RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES), dtype=np.uint8)
    records[0::2, :, 1:] = raw
    columns = np.ascontiguousarray(records[0::2].transpose(1, 0, 2))
    records[1::2] = erasure_coding().extend_array(columns).transpose(1, 0, 2)
    return records


def segment_pieces(segment_index: int, positions: list[int] | tuple[int, ...]) -> dict[int, bytes]:
    """Reference pieces ``{position: piece}`` of ``archiver_ref.json`` segment ``segment_index``.

    An input builder for the plotting / reading tests, cheaper than archiving (no record
    commitment MSMs): records as the archiver lays them out, the reference's record commitments,
    witnesses against the segment polynomial of those commitments. Every piece is then checked
    against the reference ``piece_blake3``, so it is the reference piece byte for byte.
    """
    segment = load_json("archiver_ref.json")["segments"][segment_index]
    records = _segment_records(segment_index)
    commitments = [bytes.fromhex(c) for c in segment["piece_commitments"]]
    kzg = mainnet_kzg()
    polynomial = kzg.poly([blake3_254_hash_to_scalar(c) for c in commitments])
    pieces = {}
    for position in sorted(set(positions)):
        witness = kzg.create_witness(polynomial, NUM_PIECES, position)
        piece = records[position].tobytes() + commitments[position] + witness
        assert blake3(piece).hexdigest() == segment["piece_blake3"][position], f"piece {position} input"
        pieces[position] = piece
    return pieces


def solution_from_vector(vector: dict):  # noqa: ANN201 - services.protocol.solution.Solution
    """A ``Solution`` from the sector vectors' field-by-field form (hex strings)."""
    from services.protocol.solution import Solution

    return Solution(
        public_key=bytes.fromhex(vector["public_key"]),
        reward_address=bytes.fromhex(vector["reward_address"]),
        sector_index=vector["sector_index"],
        history_size=vector["history_size"],
        piece_offset=vector["piece_offset"],
        record_commitment=bytes.fromhex(vector["record_commitment"]),
        record_witness=bytes.fromhex(vector["record_witness"]),
        chunk=bytes.fromhex(vector["chunk"]),
        chunk_witness=bytes.fromhex(vector["chunk_witness"]),
        proof_of_space=bytes.fromhex(vector["proof_of_space"]),
    )


# --------------------------------------------------------------------------------------------
# Reference sectors


@dataclass(frozen=True, eq=False)
class ReferenceSector:
    """One plotted sector of ``sector_ref.json`` / ``sector_history_ref.json`` and its inputs."""

    name: str
    file: dict = field(repr=False)  # the whole vector file
    vector: dict = field(repr=False)  # its ``sectors[i]`` entry

    @property
    def set_name(self) -> str:
        return self.file["set"]

    @property
    def public_key(self) -> bytes:
        return bytes.fromhex(self.file["public_key"])

    @property
    def reward_address(self) -> bytes:
        return bytes.fromhex(self.file["reward_address"])

    @property
    def sector_index(self) -> int:
        return self.file["sector_index"]

    @property
    def pieces_in_sector(self) -> int:
        return self.vector["pieces_in_sector"]

    @property
    def protocol_info(self) -> FarmerProtocolInfo:
        info = self.file["farmer_protocol_info"]
        return FarmerProtocolInfo(
            info["history_size"],
            info["max_pieces_in_sector"],
            info["recent_segments"],
            tuple(info["recent_history_fraction"]),
            info["min_sector_lifetime"],
        )

    def metadata(self) -> SectorMetadata:
        """The reference's checksummed sector metadata, decoded."""
        return SectorMetadata.from_checksummed_bytes(bytes.fromhex(self.vector["sector_metadata_checksummed"]))

    def pieces(self) -> dict[int, bytes]:
        """The reference pieces the sector was plotted from, by piece index."""
        return _sector_pieces(self.name)

    def sector_bytes(self) -> bytes:
        """The reference sector: its ``.bin`` where the vectors hold one, else our plot (which
        ``_plot`` has checked against the reference's sector blake3)."""
        if self.vector["sector_bin"] is not None:
            return vector_bytes(self.vector["sector_bin"])
        return plot_matching_reference(self.name).sector


_SECTORS = {"p4": ("sector_ref.json", 0), "p8": ("sector_ref.json", 1), "p6": ("sector_history_ref.json", 0)}


def reference_sector(name: str) -> ReferenceSector:
    """``"p4"`` / ``"p8"``: the 4- and 8-piece sectors of ``sector_ref.json`` (history size 1);
    ``"p6"``: the 6-piece sector of ``sector_history_ref.json`` (history size 64)."""
    file_name, index = _SECTORS[name]
    data = load_json(file_name)
    return ReferenceSector(name, data, data["sectors"][index])


@functools.cache
def _sector_pieces(name: str) -> dict[int, bytes]:
    sector = reference_sector(name)
    indexes = sector.vector["piece_indexes"]
    if name == "p6":  # the pieces, in piece-offset order, in a file of their own
        data = vector_bytes(sector.file["pieces_bin"])
        assert len(data) == len(indexes) * PIECE_SIZE
        pieces = {index: data[i * PIECE_SIZE : (i + 1) * PIECE_SIZE] for i, index in enumerate(indexes)}
        used = {p["piece_index"]: p["blake3"] for segment in sector.file["segments"] for p in segment["pieces_used"]}
        for index, piece in pieces.items():
            assert blake3(piece).hexdigest() == used[index], f"piece {index} of {sector.file['pieces_bin']}"
        return pieces
    assert all(index < NUM_PIECES for index in indexes)  # history size 1: segment 0 only
    return segment_pieces(0, indexes)


@functools.cache
def _plot(name: str):  # noqa: ANN202 - services.protocol.plotting.PlottingResult
    from services.protocol.plotting import CpuRecordEncoder, plot_sector

    sector = reference_sector(name)
    result = plot_sector(
        sector.public_key,
        sector.sector_index,
        sector.protocol_info,
        sector.pieces_in_sector,
        sector.pieces(),
        CpuRecordEncoder(erasure_coding(), k20_proofs),
    )
    return result


def plot(name: str):  # noqa: ANN201 - services.protocol.plotting.PlottingResult
    """Our plot of a reference sector (real K=20 tables), once per session."""
    reference_sector(name)
    return _plot(name)


def plot_matching_reference(name: str):  # noqa: ANN201
    """Our plot, asserted equal to the reference sector (its blake3) before it is used as input."""
    result = plot(name)
    assert blake3(result.sector).hexdigest() == reference_sector(name).vector["sector_blake3"], (
        f"our plot of sector {name} differs from the reference (see test_plotting)"
    )
    return result
