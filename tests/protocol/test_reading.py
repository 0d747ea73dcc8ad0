"""Reading records and pieces back from a plotted sector (spec 03 sections 6-7).

The vectors hold the reference ``read_piece`` of every piece of each reference sector (its
blake3, and that it equals the piece plotted): ours must read the same bytes. Corruption is
detected (contents map, chunks, record metadata, wrong tables). Records with unencoded chunks
are not in the vectors; the shim-PoS sector with sparse proofs round-trips them.
"""

from __future__ import annotations

import numpy as np
import pytest
from blake3 import blake3
from reference_vectors import erasure_coding, k20_proofs, reference_sector
from test_plotting import build_shim_sector

from services.protocol.reading import (
    ReadingError,
    read_piece,
    read_record,
    read_record_shards,
    record_chunk_locations,
)
from services.protocol.sector import (
    SectorContentsMap,
    SectorError,
    record_metadata_offset,
    sector_contents_map_size,
)


@pytest.mark.parametrize("name", ["p4", pytest.param("p8", marks=pytest.mark.slow), "p6"])
def test_reference_pieces_read_back(name: str) -> None:
    sector = reference_sector(name)
    data, metadata = sector.sector_bytes(), sector.metadata()
    sector_id = bytes.fromhex(sector.vector["sector_id"])
    contents_map = SectorContentsMap.from_sector(data, sector.pieces_in_sector)
    pieces = sector.pieces()
    reading = sector.vector["reading"]
    assert [r["piece_offset"] for r in reading] == list(range(sector.pieces_in_sector))
    for entry in reading:
        piece = bytes(read_piece(data, metadata, sector_id, entry["piece_offset"], erasure_coding(), k20_proofs, contents_map))
        assert sector.vector["piece_indexes"][entry["piece_offset"]] == entry["piece_index"]
        assert blake3(piece).hexdigest() == entry["read_blake3"], entry["piece_offset"]
        assert (piece == pieces[entry["piece_index"]]) == entry["equals_original"], entry["piece_offset"]


# ---- properties


def test_reading_from_a_memoryview() -> None:
    sector = reference_sector("p4")
    view = memoryview(bytearray(sector.sector_bytes()))
    sector_id = bytes.fromhex(sector.vector["sector_id"])
    record = read_record(view, sector.metadata(), sector_id, 2, erasure_coding(), k20_proofs)
    assert record == sector.pieces()[sector.vector["piece_indexes"][2]][: 1 << 20]


def test_chunk_locations_cover_each_record_once() -> None:
    sector = reference_sector("p6")
    contents_map = SectorContentsMap.from_sector(sector.sector_bytes(), 6)
    seen = []
    for offset in range(6):
        locations = record_chunk_locations(contents_map, sector.metadata().s_bucket_sizes, offset)
        offsets = locations.byte_offsets[locations.byte_offsets >= 0]
        assert offsets.size == 32768
        seen.append(offsets)
    everything = np.concatenate(seen)
    assert np.array_equal(np.sort(everything), sector_contents_map_size(6) + 32 * np.arange(6 * 32768))


def test_unmasked_shards_are_the_pieces_source_chunks() -> None:
    sector = reference_sector("p4")
    sector_id = bytes.fromhex(sector.vector["sector_id"])
    shards = read_record_shards(sector.sector_bytes(), sector.metadata(), sector_id, 0, k20_proofs)
    record = np.frombuffer(sector.pieces()[sector.vector["piece_indexes"][0]][: 1 << 20], dtype=np.uint8)
    record = record.reshape(32768, 32)
    even_present = np.flatnonzero(shards.present[0::2])
    assert even_present.size > 0
    assert np.array_equal(shards.values[0::2][even_present], record[even_present])


def test_sparse_shim_sector_pieces_read_back() -> None:
    """Round trip of plotting and reading records with unencoded chunks (not in the vectors)."""
    shim = build_shim_sector(sparse=True)
    result = shim.result
    assert (SectorContentsMap.from_sector(result.sector, 3).encoded_counts() < 32768).all()
    sector_id = result.plotted_sector.sector_id
    for offset, index in enumerate(result.plotted_sector.piece_indexes):
        piece = read_piece(result.sector, result.metadata, sector_id, offset, shim.erasure, shim.proofs_for_seed)
        assert bytes(piece) == shim.pieces[index]


# ---- corruption


def _read(data: bytes, offset: int = 0, proofs=k20_proofs):  # noqa: ANN001, ANN202
    sector = reference_sector("p4")
    return read_piece(data, sector.metadata(), bytes.fromhex(sector.vector["sector_id"]), offset, erasure_coding(), proofs)


def test_corrupt_contents_map_is_rejected() -> None:
    corrupt = bytearray(reference_sector("p4").sector_bytes())
    corrupt[10] ^= 0x40
    with pytest.raises(SectorError, match="contents map checksum"):
        _read(bytes(corrupt))


def test_truncated_sector_is_rejected() -> None:
    with pytest.raises(SectorError, match="bytes"):
        _read(reference_sector("p4").sector_bytes()[:-1])


def test_piece_offset_out_of_range() -> None:
    with pytest.raises(ReadingError, match="piece offset 4"):
        _read(reference_sector("p4").sector_bytes(), 4)


def test_corrupt_chunk_or_record_metadata_fails_the_piece_checksum() -> None:
    sector = reference_sector("p4")
    data = sector.sector_bytes()
    contents_map = SectorContentsMap.from_sector(data, 4)
    locations = record_chunk_locations(contents_map, sector.metadata().s_bucket_sizes, 1)
    position = int(locations.byte_offsets[np.flatnonzero(locations.byte_offsets >= 0)[0]])
    corrupt = bytearray(data)
    corrupt[position + 31] ^= 0x01
    with pytest.raises(ReadingError, match="checksum"):
        _read(bytes(corrupt), 1)
    corrupt = bytearray(data)
    corrupt[record_metadata_offset(4, 1) + 50] ^= 0x01  # inside the record witness
    with pytest.raises(ReadingError, match="checksum"):
        _read(bytes(corrupt), 1)


def test_non_canonical_chunk_is_rejected_by_recovery() -> None:
    """A flipped bit is caught by the piece checksum; an un-masked value >= r by recovery."""
    from services.protocol.reading import recover_record_polynomial

    sector = reference_sector("p4")
    sector_id = bytes.fromhex(sector.vector["sector_id"])
    shards = read_record_shards(sector.sector_bytes(), sector.metadata(), sector_id, 0, k20_proofs)
    values = shards.values.copy()
    values[int(np.flatnonzero(shards.present)[5])] = 0xFF
    corrupt = type(shards)(values, shards.present, shards.encoded, shards.proofs_found, shards.proofs)
    with pytest.raises(ReadingError, match="cannot be recovered"):
        recover_record_polynomial(erasure_coding(), corrupt)


def test_wrong_tables_are_detected() -> None:
    def no_proofs(seed: bytes):  # noqa: ANN202
        proofs = k20_proofs(seed)
        return proofs._replace(found=np.zeros_like(proofs.found))

    with pytest.raises(ReadingError, match="no proof"):
        _read(reference_sector("p4").sector_bytes(), 0, no_proofs)
