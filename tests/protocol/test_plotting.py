"""Record encoding and sector assembly (spec 03 sections 6-7) against the reference plots.

Our ``plot_sector`` with the real K=20 tables reproduces the sectors the reference
``plot_sector`` wrote (``sector_ref.json``: 4 and 8 pieces at history size 1, the 4-piece one in
full in ``sector_ref_p4.bin``; ``sector_history_ref.json``: 6 pieces at history size 64, in full
in ``sector_history_ref_p6.bin``) byte for byte, with every recorded field of their metadata.

Every reference record holds 32 768 encoded chunks, so the unencoded fill (records with fewer
proofs) and the all-zero masked chunk are checked against the spec's rule only
(``test_select_chunks_follows_spec`` here, ``test_sector_writer.py`` for the layout).
``build_shim_sector(sparse=True)`` (insecure shim PoS, proofs for a quarter of the s-buckets)
is shared with the reading and proving tests for that path.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import pytest
from blake3 import blake3
from reference_vectors import erasure_coding, k20_proofs, plot, reference_sector, vector_bytes

from services.protocol.constants import BLS12_381_R
from services.protocol.erasure import ErasureCoding
from services.protocol.hashes import blake3_254_hash_to_scalar
from services.protocol.kzg import Kzg
from services.protocol.plotting import (
    CpuRecordEncoder,
    PlottingError,
    PlottingResult,
    ProofsForSeed,
    SBucketProofs,
    plot_sector,
    sector_piece_indexes,
    _select_chunks,
    shim_proofs_for_seed,
)
from services.protocol.sector import (
    FarmerProtocolInfo,
    SectorContentsMap,
)


@dataclass
class ShimSector:
    kzg: Kzg
    erasure: ErasureCoding
    public_key: bytes
    protocol_info: FarmerProtocolInfo
    pieces: dict[int, bytes]
    segment_commitment: bytes
    result: PlottingResult
    proofs_for_seed: ProofsForSeed


def sparse_shim_proofs_for_seed(seed: bytes) -> SBucketProofs:
    """Shim proofs for only ~27% of s-buckets, so records keep unencoded chunks too (E < 32768)."""
    proofs = shim_proofs_for_seed(seed)
    keep = (np.arange(65536) % 5) < 2
    return SBucketProofs(proofs.found & keep, np.where(keep[:, None], proofs.proofs, 0).astype(np.uint8))


def random_source_record(rng: np.random.Generator) -> np.ndarray:
    record = rng.integers(0, 256, (32768, 32), dtype=np.uint8)
    record[:, 0] = 0  # source chunks are 0x00 ‖ 31 bytes
    return record


@functools.cache
def build_shim_sector(pieces_in_sector: int = 3, seed: int = 11, sparse: bool = False) -> ShimSector:
    """A sector plotted with the shim PoS from pieces of one hand-built segment (history size 1).

    Pieces whose index the sector uses get real record commitments; the other positions of the
    segment polynomial get random scalars, so record witnesses open a genuine segment commitment.
    """
    rng = np.random.default_rng(seed)
    kzg = Kzg.dev()
    erasure = ErasureCoding(16)
    public_key = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    info = FarmerProtocolInfo.test_runtime(1)
    indexes = sector_piece_indexes(public_key, 0, info, pieces_in_sector)
    records = {i: random_source_record(rng) for i in set(indexes)}
    commitments = {i: kzg.commit(kzg.poly(record)) for i, record in records.items()}
    hashes = [
        blake3_254_hash_to_scalar(commitments[j]) if j in commitments else b"\x00" + rng.bytes(31)
        for j in range(256)
    ]
    segment_poly = kzg.poly(hashes)
    segment_commitment = kzg.commit(segment_poly)
    pieces = {
        i: records[i].tobytes() + commitments[i] + kzg.create_witness(segment_poly, 256, i) for i in records
    }
    proofs_for_seed = sparse_shim_proofs_for_seed if sparse else shim_proofs_for_seed
    encoder = CpuRecordEncoder(erasure, proofs_for_seed)
    result = plot_sector(public_key, 0, info, pieces_in_sector, pieces, encoder)
    return ShimSector(kzg, erasure, public_key, info, pieces, segment_commitment, result, proofs_for_seed)


# ---- the reference plots


def _region(sector: bytes, region: dict) -> bytes:
    return sector[region["offset"] : region["offset"] + region["len"]]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["p4", "p8", "p6"])
def test_plot_sector_reproduces_the_reference(name: str) -> None:
    sector = reference_sector(name)
    vector, n = sector.vector, sector.pieces_in_sector
    assert sector_piece_indexes(sector.public_key, sector.sector_index, sector.protocol_info, n) == vector["piece_indexes"]
    result = plot(name)
    if vector["sector_bin"] is not None:
        assert result.sector == vector_bytes(vector["sector_bin"])
    assert len(result.sector) == vector["sector_len"]
    assert blake3(result.sector).hexdigest() == vector["sector_blake3"]
    regions = vector["regions"]
    for region in ("contents_map", "record_chunks"):
        assert blake3(_region(result.sector, regions[region])).hexdigest() == regions[region]["blake3"], region
    assert _region(result.sector, regions["record_metadata"]).hex() == regions["record_metadata"]["hex"]
    assert result.sector[-32:].hex() == regions["checksum"]
    for sample in vector["s_bucket_samples"]:
        chunks = result.sector[sample["offset"] : sample["offset"] + 32 * sample["size_chunks"]]
        assert blake3(chunks).hexdigest() == sample["blake3"], sample["s_bucket"]
    contents_map = SectorContentsMap.from_sector(result.sector, n)
    assert contents_map.encoded_counts().tolist() == vector["num_encoded_record_chunks"]

    assert result.metadata.to_checksummed_bytes().hex() == vector["sector_metadata_checksummed"]
    assert blake3(result.metadata.s_bucket_sizes.astype("<u2").tobytes()).hexdigest() == (
        vector["sector_metadata_s_bucket_sizes_blake3"]
    )
    plotted = result.plotted_sector
    assert plotted.sector_id.hex() == vector["sector_id"]
    assert plotted.sector_index == sector.sector_index
    assert list(plotted.piece_indexes) == vector["piece_indexes"]
    assert blake3(plotted.to_scale()).hexdigest() == vector["plotted_sector_scale_blake3"]


# ---- record encoding and assembly beyond the vectors


def _naive_select(extended: np.ndarray, found: np.ndarray, hashes: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    encoded_s = []
    for s in range(65536):
        if found[s]:
            value = bytes(a ^ b for a, b in zip(extended[s].tobytes(), hashes[s].tobytes()))
            if value != bytes(32) and len(encoded_s) < 32768:
                encoded_s.append((s, value))
    bits = np.zeros(65536, dtype=bool)
    for s, _ in encoded_s:
        bits[s] = True
    stored = [value for _, value in encoded_s]
    for s in range(65536):
        if len(stored) == 32768:
            break
        if not bits[s]:
            stored.append(extended[s].tobytes())
    return stored, bits


@pytest.mark.parametrize("found_fraction", [0.3, 0.7])
def test_select_chunks_follows_spec(found_fraction: float) -> None:
    rng = np.random.default_rng(5)
    source = rng.integers(0, 256, (32768, 32), dtype=np.uint8)
    parity = rng.integers(0, 256, (32768, 32), dtype=np.uint8)
    extended = np.empty((65536, 32), dtype=np.uint8)
    extended[0::2], extended[1::2] = source, parity
    hashes = rng.integers(0, 256, (65536, 32), dtype=np.uint8)
    found = rng.random(65536) < found_fraction
    zero_s = int(np.flatnonzero(found)[3])
    hashes[zero_s] = extended[zero_s]  # masked value all zero: treated as "no proof"
    chunks = np.full((32768, 32), 0xAA, dtype=np.uint8)
    bitfield = np.full(8192, 0xFF, dtype=np.uint8)  # stale contents must be overwritten
    count = _select_chunks(source, parity, found, hashes, chunks, bitfield)
    stored, bits = _naive_select(extended, found, hashes)
    mask = np.unpackbits(bitfield, bitorder="little").astype(bool)
    assert not mask[zero_s]
    assert np.array_equal(mask, bits)
    assert chunks.tobytes() == b"".join(stored)
    assert count == int(bits.sum()) == min(32768, int(found.sum()) - 1)


def test_encoder_rejects_non_canonical_chunk() -> None:
    record = random_source_record(np.random.default_rng(8))
    record[17] = np.frombuffer(BLS12_381_R.to_bytes(32, "big"), dtype=np.uint8)
    with pytest.raises(PlottingError, match="erasure coded"):
        CpuRecordEncoder(ErasureCoding(16), shim_proofs_for_seed).encode(record, bytes(32))


# ---- bad input


def test_plot_sector_rejects_missing_and_malformed_pieces() -> None:
    sector = reference_sector("p4")
    pieces = sector.pieces()
    encoder = CpuRecordEncoder(erasure_coding(), k20_proofs)  # every case fails before any table is built
    args = (sector.public_key, sector.sector_index, sector.protocol_info, 4)
    with pytest.raises(PlottingError, match="was not provided"):
        plot_sector(*args, {}, encoder)
    with pytest.raises(PlottingError, match="must be 1048672 bytes"):
        plot_sector(*args, {i: p[:-1] for i, p in pieces.items()}, encoder)
    with pytest.raises(PlottingError, match="erasure coded"):
        plot_sector(*args, {i: b"\xff" * 32 + p[32:] for i, p in pieces.items()}, encoder)


def test_plot_sector_checks_pieces_in_sector_limit() -> None:
    sector = reference_sector("p4")
    info = dataclasses.replace(sector.protocol_info, max_pieces_in_sector=3)
    encoder = CpuRecordEncoder(erasure_coding(), k20_proofs)
    with pytest.raises(ValueError, match="max_pieces_in_sector"):
        plot_sector(sector.public_key, sector.sector_index, info, 4, sector.pieces(), encoder)
