"""Record encoding and sector assembly (spec 03 sections 6-7).

The sector layout is compared with a literal, loop-by-loop rendering of the spec written here;
the shim PoS table (spec 02 section 9) stands in for the K=20 tables (the round-trip test uses
the real ones).  ``build_shim_sector`` is shared with the reading / proving / verification tests.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import pytest
from blake3 import blake3

from services.protocol.constants import BLS12_381_R
from services.protocol.erasure import ErasureCoding
from services.protocol.hashes import blake3_254_hash_to_scalar
from services.protocol.kzg import Kzg
from services.protocol.plotting import (
    CpuRecordEncoder,
    EncodedRecord,
    PlottingError,
    PlottingResult,
    ProofsForSeed,
    SBucketProofs,
    assemble_sector,
    plot_sector,
    sector_piece_indexes,
    select_encoded_chunks,
    shim_proofs_for_seed,
)
from services.protocol.sector import (
    FarmerProtocolInfo,
    RecordMetadata,
    SectorContentsMap,
    derive_evaluation_seed,
    sector_size,
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


# ---- record encoding


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
def test_select_encoded_chunks_follows_spec(found_fraction: float) -> None:
    rng = np.random.default_rng(5)
    extended = rng.integers(0, 256, (65536, 32), dtype=np.uint8)
    hashes = rng.integers(0, 256, (65536, 32), dtype=np.uint8)
    found = rng.random(65536) < found_fraction
    zero_s = int(np.flatnonzero(found)[3])
    hashes[zero_s] = extended[zero_s]  # masked value all zero: treated as "no proof"
    record = select_encoded_chunks(extended, found, hashes)
    stored, bits = _naive_select(extended, found, hashes)
    assert not record.encoded_mask[zero_s]
    assert np.array_equal(record.encoded_mask, bits)
    assert record.chunks.tobytes() == b"".join(stored)
    assert int(bits.sum()) == min(32768, int(found.sum()) - 1)


def test_cpu_encoder_masks_extended_record_with_proof_hashes() -> None:
    rng = np.random.default_rng(6)
    record = random_source_record(rng)
    seed = bytes(range(32))
    encoder = CpuRecordEncoder(ErasureCoding(16), shim_proofs_for_seed)
    extended = encoder.extend(record)
    assert np.array_equal(extended[0::2], record)
    encoded = encoder.encode(record, seed)
    proofs = shim_proofs_for_seed(seed)
    encoded_s = np.flatnonzero(encoded.encoded_mask)
    for k in (0, 1, len(encoded_s) - 1):
        s = int(encoded_s[k])
        mask = blake3(proofs.proof(s)).digest()
        unmasked = bytes(a ^ b for a, b in zip(encoded.chunks[k].tobytes(), mask))
        assert unmasked == extended[s].tobytes()


def test_encoder_rejects_non_canonical_chunk() -> None:
    record = random_source_record(np.random.default_rng(8))
    record[17] = np.frombuffer(BLS12_381_R.to_bytes(32, "big"), dtype=np.uint8)
    with pytest.raises(PlottingError, match="erasure coded"):
        CpuRecordEncoder(ErasureCoding(16), shim_proofs_for_seed).encode(record, bytes(32))


# ---- sector assembly


def _naive_sector(records: list[EncodedRecord], metadata: list[RecordMetadata]) -> bytes:
    """Spec 03 section 7 written out with running cursors per record."""
    n = len(records)
    body = b"".join(np.packbits(r.encoded_mask, bitorder="little").tobytes() for r in records)
    out = [body, blake3(body).digest()]
    encoded_counts = [int(r.encoded_mask.sum()) for r in records]
    encoded_cursor = [0] * n
    unencoded_cursor = [0] * n
    masks = [r.encoded_mask.tolist() for r in records]
    chunks = [r.chunks.tobytes() for r in records]
    for s in range(65536):
        for p in range(n):
            if masks[p][s]:
                k = encoded_cursor[p]
                encoded_cursor[p] += 1
            elif unencoded_cursor[p] < 32768 - encoded_counts[p]:
                k = encoded_counts[p] + unencoded_cursor[p]
                unencoded_cursor[p] += 1
            else:
                continue
            out.append(chunks[p][32 * k : 32 * k + 32])
    out.extend(m.to_bytes() for m in metadata)
    sector = b"".join(out)
    return sector + blake3(sector).digest()


def test_assemble_sector_matches_literal_layout() -> None:
    rng = np.random.default_rng(9)
    records = []
    for density in (0.2, 0.5, 0.55):
        mask = rng.random(65536) < density
        mask[np.flatnonzero(mask)[32768:]] = False
        records.append(EncodedRecord(rng.integers(0, 256, (32768, 32), dtype=np.uint8), mask))
    metadata = [RecordMetadata(rng.bytes(48), rng.bytes(48), rng.bytes(32)) for _ in records]
    sector, sizes = assemble_sector(records, metadata)
    assert len(sector) == sector_size(3)
    assert sector == _naive_sector(records, metadata)
    contents_map = SectorContentsMap.from_sector(sector, 3)
    assert np.array_equal(sizes, contents_map.s_bucket_sizes())


# ---- whole-sector plotting


@pytest.mark.parametrize("sparse", [False, True])
def test_plot_sector_outputs_consistent_metadata(sparse: bool) -> None:
    shim = build_shim_sector(sparse=sparse)
    result = shim.result
    assert len(result.sector) == sector_size(3)
    assert result.sector[-32:] == blake3(result.sector[:-32]).digest()
    metadata = result.metadata
    assert metadata.history_size == 1 and metadata.pieces_in_sector == 3 and metadata.sector_index == 0
    assert int(metadata.s_bucket_sizes.sum(dtype=np.int64)) == 3 * 32768
    plotted = result.plotted_sector
    assert list(plotted.piece_indexes) == sector_piece_indexes(shim.public_key, 0, shim.protocol_info, 3)
    contents_map = SectorContentsMap.from_sector(result.sector, 3)
    assert np.array_equal(contents_map.s_bucket_sizes(), metadata.s_bucket_sizes)
    # per-record metadata holds commitment, witness and the piece checksum
    for offset, index in enumerate(plotted.piece_indexes):
        piece = shim.pieces[index]
        start = len(result.sector) - 32 - (3 - offset) * 128
        assert result.sector[start : start + 128] == piece[-96:] + blake3(piece).digest()
    assert derive_evaluation_seed(plotted.sector_id, 1) != derive_evaluation_seed(plotted.sector_id, 2)
    encoded_counts = contents_map.encoded_counts()
    if sparse:
        assert (encoded_counts < 32768).all()  # unencoded chunks present
    else:
        assert (encoded_counts == 32768).all()  # ~2/3 of shim s-buckets have proofs


def test_plot_sector_rejects_missing_and_malformed_pieces() -> None:
    shim = build_shim_sector()
    encoder = CpuRecordEncoder(shim.erasure, shim_proofs_for_seed)
    with pytest.raises(PlottingError, match="was not provided"):
        plot_sector(shim.public_key, 0, shim.protocol_info, 3, {}, encoder)
    some_index = next(iter(shim.pieces))
    short = {i: p[:-1] for i, p in shim.pieces.items()}
    with pytest.raises(PlottingError, match=f"piece {some_index}|must be 1048672 bytes"):
        plot_sector(shim.public_key, 0, shim.protocol_info, 3, short, encoder)
    bad = {i: b"\xff" * 32 + p[32:] for i, p in shim.pieces.items()}
    with pytest.raises(PlottingError, match="erasure coded"):
        plot_sector(shim.public_key, 0, shim.protocol_info, 3, bad, encoder)


def test_plot_sector_checks_pieces_in_sector_limit() -> None:
    shim = build_shim_sector()
    encoder = CpuRecordEncoder(shim.erasure, shim_proofs_for_seed)
    with pytest.raises(ValueError, match="max_pieces_in_sector"):
        plot_sector(os.urandom(32), 0, shim.protocol_info, 33, shim.pieces, encoder)
