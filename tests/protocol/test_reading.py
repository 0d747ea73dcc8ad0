"""Reading records and pieces back from a plotted sector (spec 03 sections 6-7)."""

from __future__ import annotations

import numpy as np
import pytest
from test_plotting import build_shim_sector

from services.protocol.plotting import shim_proofs_for_seed
from services.protocol.reading import (
    ReadingError,
    read_piece,
    read_record,
    read_record_extended,
    read_record_shards,
    record_chunk_locations,
    recover_record_polynomial,
)
from services.protocol.sector import (
    SectorContentsMap,
    SectorError,
    record_metadata_offset,
    sector_contents_map_size,
)


@pytest.mark.parametrize("sparse", [False, True])
def test_every_piece_reads_back_byte_identical(sparse: bool) -> None:
    shim = build_shim_sector(sparse=sparse)
    result = shim.result
    sector_id = result.plotted_sector.sector_id
    for offset, index in enumerate(result.plotted_sector.piece_indexes):
        piece = read_piece(result.sector, result.metadata, sector_id, offset, shim.erasure, shim.proofs_for_seed)
        assert bytes(piece) == shim.pieces[index]


def test_reading_from_a_memoryview_with_a_predecoded_map() -> None:
    shim = build_shim_sector()
    result = shim.result
    contents_map = SectorContentsMap.from_sector(result.sector, 3)
    view = memoryview(bytearray(result.sector))
    record = read_record(
        view, result.metadata, result.plotted_sector.sector_id, 2, shim.erasure, shim_proofs_for_seed, contents_map
    )
    assert record == shim.pieces[result.plotted_sector.piece_indexes[2]][: 1 << 20]


def test_chunk_locations_cover_each_record_once() -> None:
    shim = build_shim_sector()
    result = shim.result
    contents_map = SectorContentsMap.from_sector(result.sector, 3)
    seen = []
    for offset in range(3):
        locations = record_chunk_locations(contents_map, result.metadata.s_bucket_sizes, offset)
        offsets = locations.byte_offsets[locations.byte_offsets >= 0]
        assert offsets.size == 32768
        seen.append(offsets)
    everything = np.concatenate(seen)
    start = sector_contents_map_size(3)
    assert np.array_equal(np.sort(everything), start + 32 * np.arange(3 * 32768))


def test_unmasked_shards_are_extended_record_values() -> None:
    shim = build_shim_sector()
    result = shim.result
    shards = read_record_shards(result.sector, result.metadata, result.plotted_sector.sector_id, 0, shim_proofs_for_seed)
    record = np.frombuffer(shim.pieces[result.plotted_sector.piece_indexes[0]][: 1 << 20], dtype=np.uint8)
    record = record.reshape(32768, 32)
    even_present = np.flatnonzero(shards.present[0::2])
    assert even_present.size > 0
    assert np.array_equal(shards.values[0::2][even_present], record[even_present])


def test_recovered_polynomial_and_extended_record_match_the_source() -> None:
    """The proving path's shortcut (coefficients straight from the shards) equals the inverse
    DFT of the record, and the full extended record is the record's erasure extension."""
    from services.protocol import field, ntt

    shim = build_shim_sector()
    result = shim.result
    sector_id = result.plotted_sector.sector_id
    record = np.frombuffer(shim.pieces[result.plotted_sector.piece_indexes[1]][: 1 << 20], dtype=np.uint8)
    record = record.reshape(32768, 32)
    shards = read_record_shards(result.sector, result.metadata, sector_id, 1, shim_proofs_for_seed)
    coefficients = recover_record_polynomial(shim.erasure, shards)
    assert np.array_equal(coefficients, ntt.intt(field.bytes_to_limbs(record)))
    extended, _ = read_record_extended(result.sector, result.metadata, sector_id, 1, shim.erasure, shim_proofs_for_seed)
    assert np.array_equal(extended[0::2], record)
    assert np.array_equal(extended[1::2], shim.erasure.extend_array(record))


def test_non_canonical_chunk_is_rejected_by_recovery() -> None:
    """A record holds exactly n of 2n chunks, so a flipped bit is not detectable by recovery
    (the piece checksum catches it); an un-masked value >= r is."""
    shim = build_shim_sector()
    result = shim.result
    sector_id = result.plotted_sector.sector_id
    shards = read_record_shards(result.sector, result.metadata, sector_id, 0, shim_proofs_for_seed)
    values = shards.values.copy()
    s = int(np.flatnonzero(shards.present)[5])
    values[s] = 0xFF
    corrupt = type(shards)(values, shards.present, shards.encoded, shards.proofs_found, shards.proofs)
    with pytest.raises(ReadingError, match="cannot be recovered"):
        recover_record_polynomial(shim.erasure, corrupt)


def test_corrupt_contents_map_is_rejected() -> None:
    shim = build_shim_sector()
    result = shim.result
    corrupt = bytearray(result.sector)
    corrupt[10] ^= 0x40
    with pytest.raises(SectorError, match="contents map checksum"):
        read_piece(bytes(corrupt), result.metadata, result.plotted_sector.sector_id, 0, shim.erasure, shim_proofs_for_seed)


def test_truncated_sector_is_rejected() -> None:
    shim = build_shim_sector()
    result = shim.result
    with pytest.raises(SectorError, match="bytes"):
        read_piece(result.sector[:-1], result.metadata, result.plotted_sector.sector_id, 0, shim.erasure, shim_proofs_for_seed)


def test_corrupt_chunk_or_metadata_fails_checksum() -> None:
    shim = build_shim_sector()
    result = shim.result
    sector_id = result.plotted_sector.sector_id
    contents_map = SectorContentsMap.from_sector(result.sector, 3)
    locations = record_chunk_locations(contents_map, result.metadata.s_bucket_sizes, 1)
    position = int(locations.byte_offsets[np.flatnonzero(locations.byte_offsets >= 0)[0]])
    corrupt = bytearray(result.sector)
    corrupt[position + 31] ^= 0x01
    with pytest.raises(ReadingError, match="checksum"):
        read_piece(bytes(corrupt), result.metadata, sector_id, 1, shim.erasure, shim_proofs_for_seed)
    corrupt = bytearray(result.sector)
    corrupt[record_metadata_offset(3, 1) + 50] ^= 0x01  # inside the record witness
    with pytest.raises(ReadingError, match="checksum"):
        read_piece(bytes(corrupt), result.metadata, sector_id, 1, shim.erasure, shim_proofs_for_seed)


def test_wrong_tables_are_detected() -> None:
    shim = build_shim_sector()
    result = shim.result

    def no_proofs(seed: bytes):
        proofs = shim_proofs_for_seed(seed)
        return proofs._replace(found=np.zeros_like(proofs.found))

    with pytest.raises(ReadingError, match="no proof"):
        read_piece(result.sector, result.metadata, result.plotted_sector.sector_id, 0, shim.erasure, no_proofs)


def test_piece_offset_out_of_range() -> None:
    shim = build_shim_sector()
    result = shim.result
    with pytest.raises(ReadingError, match="piece offset 3"):
        read_piece(result.sector, result.metadata, result.plotted_sector.sector_id, 3, shim.erasure, shim_proofs_for_seed)


@pytest.mark.parametrize("sparse", [False, True])
def test_record_data_is_the_stored_record(sparse: bool) -> None:
    """``read_record_data`` gives back exactly what record encoding stored (chunks in stored
    order, bitfield, metadata), without PoS work, and survives its byte form."""
    from services.protocol.plotting import CpuRecordEncoder
    from services.protocol.reading import RecordData, read_record_data
    from services.protocol.sector import derive_evaluation_seed, read_record_metadata

    shim = build_shim_sector(sparse=sparse)
    result = shim.result
    encoder = CpuRecordEncoder(shim.erasure, shim.proofs_for_seed)
    for offset, index in enumerate(result.plotted_sector.piece_indexes):
        record = read_record_data(result.sector, result.metadata, offset)
        expected = encoder.encode(np.frombuffer(shim.pieces[index][: 1 << 20], np.uint8).reshape(-1, 32),
                                  derive_evaluation_seed(result.plotted_sector.sector_id, offset))
        assert np.array_equal(record.chunks, expected.chunks)
        assert np.array_equal(record.encoded_mask(), expected.encoded_mask)
        assert record.metadata == read_record_metadata(result.sector, 3, offset)
        again = RecordData.from_bytes(offset, record.to_bytes())
        assert again.to_bytes() == record.to_bytes() and len(record.to_bytes()) == RecordData.SIZE
    with pytest.raises(ReadingError, match="record data must be"):
        RecordData.from_bytes(0, b"\x00" * 100)
