"""Record encoding into the sector buffer, parallel/abortable encoding (spec 03 sections 6-8).

Record selection is compared with a literal, loop-by-loop rendering of the spec written here;
the shim PoS table (spec 02 section 9) stands in for the K=20 tables, except in the conformance
tests at the end, which plot the reference's pieces with real K=20 tables and compare the sector
bytes with the reference's. The sector layout itself is tested in ``test_sector_writer.py``.
``build_shim_sector`` is shared with the reading / proving / verification tests.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
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
    PlottingAborted,
    PlottingError,
    PlottingResult,
    SectorBuffer,
    _select_chunks,
    encode_records,
    plot_sector,
    sector_piece_indexes,
)
from services.protocol.s_bucket_proofs import (
    ProofsForSeed,
    SBucketProofs,
    chia_proofs_for_seed,
    shim_proofs_for_seed,
)
from services.protocol.sector import FarmerProtocolInfo, SectorContentsMap, derive_evaluation_seed, sector_size
from services.protocol.sector_writer import SectorWriter
from shared_paths import require_vectors


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


def test_cpu_encoder_masks_extended_record_with_proof_hashes() -> None:
    rng = np.random.default_rng(6)
    record = random_source_record(rng)
    seed = bytes(range(32))
    encoder = CpuRecordEncoder(ErasureCoding(16), shim_proofs_for_seed)
    extended = np.empty((65536, 32), dtype=np.uint8)
    extended[0::2], extended[1::2] = record, encoder.parity(record)
    assert extended[1::2].tobytes() == b"".join(ErasureCoding(16).extend([r.tobytes() for r in record]))
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


# ---- parallel, incremental, abortable encoding


def _pieces_of(shim: ShimSector, sector: SectorBuffer, order=None):  # noqa: ANN001, ANN202
    offsets = range(sector.pieces_in_sector) if order is None else order
    return [(p, shim.pieces[sector.piece_indexes[p]]) for p in offsets]


def test_parallel_out_of_order_encoding_is_byte_identical() -> None:
    shim = build_shim_sector(sparse=True)
    sector = SectorBuffer(shim.public_key, 0, shim.protocol_info, 3)
    seen = []
    with ThreadPoolExecutor(2) as pool:
        encode_records(sector, _pieces_of(shim, sector, [2, 0, 1]), CpuRecordEncoder(shim.erasure, shim.proofs_for_seed),
                       pool, on_record=seen.append, max_in_flight=2)
    assert sorted(seen) == [0, 1, 2] and sector.complete
    assert SectorWriter(sector).to_bytes() == shim.result.sector


def test_pieces_are_pulled_lazily_within_the_in_flight_bound() -> None:
    shim = build_shim_sector()
    sector = SectorBuffer(shim.public_key, 0, shim.protocol_info, 3)
    pulled = []
    done = []

    def pieces():
        for offset, piece in _pieces_of(shim, sector):
            assert len(pulled) == len(done), "a piece pulled while another is still in flight"
            pulled.append(offset)
            yield offset, piece

    with ThreadPoolExecutor(2) as pool:
        encode_records(sector, pieces(), CpuRecordEncoder(shim.erasure, shim_proofs_for_seed), pool,
                       on_record=done.append, max_in_flight=1)
    assert done == [0, 1, 2]


@pytest.mark.parametrize("use_executor", [False, True])
def test_abort_stops_between_records(use_executor: bool) -> None:
    shim = build_shim_sector()
    sector = SectorBuffer(shim.public_key, 0, shim.protocol_info, 3)
    abort = threading.Event()
    done = []

    def on_record(offset: int) -> None:
        done.append(offset)
        abort.set()  # the job was cancelled while its first record was encoding

    with ThreadPoolExecutor(1) as pool, pytest.raises(PlottingAborted):
        encode_records(sector, _pieces_of(shim, sector), CpuRecordEncoder(shim.erasure, shim_proofs_for_seed),
                       pool if use_executor else None, abort=abort, on_record=on_record, max_in_flight=1)
    assert done == [0]
    assert sector.missing_offsets() == [1, 2] and not sector.complete


def test_a_failing_record_names_its_piece_and_stops_the_rest() -> None:
    shim = build_shim_sector()
    sector = SectorBuffer(shim.public_key, 0, shim.protocol_info, 3)
    pieces = _pieces_of(shim, sector)
    offset, piece = pieces[1]
    pieces[1] = (offset, b"\xff" * 32 + piece[32:])
    with ThreadPoolExecutor(2) as pool, pytest.raises(PlottingError, match=f"piece offset {offset}.*erasure coded"):
        encode_records(sector, pieces, CpuRecordEncoder(shim.erasure, shim_proofs_for_seed), pool)
    assert not sector.complete


def test_caller_supplied_records_buffer_is_used_in_place() -> None:
    shim = build_shim_sector()
    buffer = np.zeros((3, 32768, 32), dtype=np.uint8)
    sector = SectorBuffer(shim.public_key, 0, shim.protocol_info, 3, records=buffer)
    encode_records(sector, _pieces_of(shim, sector), CpuRecordEncoder(shim.erasure, shim_proofs_for_seed))
    assert sector.records is buffer and buffer.any()
    assert SectorWriter(sector).to_bytes() == shim.result.sector
    with pytest.raises(ValueError, match="records buffer"):
        SectorBuffer(shim.public_key, 0, shim.protocol_info, 3, records=np.zeros((2, 32768, 32), np.uint8))


# ---- conformance: the reference's sectors, plotted with real K=20 tables


def _reference_sector(name: str, index: int = 0) -> tuple[dict, dict]:
    data = json.loads(require_vectors(name).read_text())
    return data, data["sectors"][index]


def _gpu_missing() -> bool:
    from services.protocol.pos import available_backends

    return "gpu" not in available_backends()


@pytest.mark.slow
@pytest.mark.parametrize("backend", [
    "cpu",
    pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(
        "_gpu_missing()", reason="no CUDA GPU visible to cupy (or cupy not installed): GPU plotting NOT checked")]),
])
def test_history_sector_bytes_equal_the_reference(backend: str) -> None:
    """The reference's 6-piece sector at history size 64 (recent-history branch), plotted from
    its pieces on two threads (PoS tables on the CPU, or on the GPU behind the same encoder):
    byte for byte the reference sector."""
    data, ref = _reference_sector("sector_history_ref.json")
    info = FarmerProtocolInfo.from_scale(bytes.fromhex(data["farmer_protocol_info"]["scale"]))
    public_key = bytes.fromhex(data["public_key"])
    raw = require_vectors(data["pieces_bin"]).read_bytes()
    n = ref["pieces_in_sector"]
    sector = SectorBuffer(public_key, data["sector_index"], info, n)
    assert list(sector.piece_indexes) == ref["piece_indexes"]
    assert sector.sector_id.hex() == ref["sector_id"]
    pieces = [(p, memoryview(raw)[p * 1048672 : (p + 1) * 1048672]) for p in range(n)]
    with ThreadPoolExecutor(2) as pool:
        encode_records(sector, pieces, CpuRecordEncoder(ErasureCoding(16), chia_proofs_for_seed(backend)), pool)
    assert list(sector.encoded_counts) == ref["num_encoded_record_chunks"]
    writer = SectorWriter(sector)
    expected = require_vectors(ref["sector_bin"]).read_bytes()
    assert writer.size == len(expected) == ref["sector_len"]
    assert writer.metadata.to_checksummed_bytes().hex() == ref["sector_metadata_checksummed"]
    assert blake3(writer.plotted_sector.to_scale()).hexdigest() == ref["plotted_sector_scale_blake3"]
    assert writer.to_bytes() == expected
