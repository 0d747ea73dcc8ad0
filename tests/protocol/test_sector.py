"""Sector id, piece selection, expiry, seeds and byte layouts (spec 03).

Expected values are recomputed here from the spec's formulas with plain BLAKE3 calls
(independently of the module), and sizes are checked against the spec's worked numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from blake3 import blake3

from services.protocol.scale import ScaleError
from services.protocol.sector import (
    SECTOR_METADATA_CHECKSUMMED_SIZE,
    FarmerProtocolInfo,
    PlottedSector,
    RecordMetadata,
    SectorContentsMap,
    SectorError,
    SectorMetadata,
    decode_metadata_entry_or_dummy,
    decode_plot_metadata_header,
    derive_evaluation_seed,
    derive_expiration_history_size,
    derive_piece_index,
    derive_piece_indexes,
    derive_sector_id,
    encode_plot_metadata_header,
    expiration_check_segment_index,
    metadata_entry_offset,
    metadata_file_size,
    plot_file_size,
    plot_sector_offset,
    read_record_metadata,
    record_chunk_slots,
    record_metadata_offset,
    s_bucket_offsets,
    sector_contents_map_size,
    sector_record_chunks_size,
    sector_record_metadata_size,
    sector_size,
    should_replot_sector,
    is_sector_expired,
    verify_sector_checksum,
)

PUBLIC_KEY = bytes(range(32))


# ---- sizes (spec 03 sections 7-9 worked numbers)


def test_sector_size_matches_spec_worked_number() -> None:
    assert sector_size(1000) == 1_056_896_064
    assert sector_size(1) == 1_048_576 + 128 + 8192 + 32 + 32
    assert sector_contents_map_size(1000) == 1000 * 8192 + 32
    assert sector_record_chunks_size(1000) == 1000 * 1_048_576
    assert sector_record_metadata_size(1000) == 128_000


def test_sector_size_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="pieces in sector"):
        sector_size(0)
    with pytest.raises(ValueError, match="pieces in sector"):
        sector_size(65536)


def test_metadata_size_matches_spec() -> None:
    assert SECTOR_METADATA_CHECKSUMMED_SIZE == 131_116
    metadata = SectorMetadata(3, 1000, np.arange(65536) % 1001, 7)
    assert len(metadata.to_checksummed_bytes()) == 131_116


# ---- sector id, seeds, piece indexes


def test_sector_id_is_keyed_blake3_of_index_and_history_size() -> None:
    key = blake3(PUBLIC_KEY).digest()
    expected = blake3((5).to_bytes(2, "little") + (42).to_bytes(8, "little"), key=key).digest()
    assert derive_sector_id(PUBLIC_KEY, 5, 42) == expected


def test_sector_id_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="public key"):
        derive_sector_id(b"short", 0, 1)
    with pytest.raises(ValueError, match="history size"):
        derive_sector_id(PUBLIC_KEY, 0, 0)
    with pytest.raises(ValueError, match="sector index"):
        derive_sector_id(PUBLIC_KEY, 70000, 1)


def test_evaluation_seed_is_plain_blake3_of_sector_id_and_offset() -> None:
    sector_id = derive_sector_id(PUBLIC_KEY, 1, 1)
    assert derive_evaluation_seed(sector_id, 258) == blake3(sector_id + (258).to_bytes(2, "little")).digest()


def _input_hash(sector_id: bytes, offset: int) -> int:
    key = offset.to_bytes(2, "little") + bytes(30)
    return int.from_bytes(blake3(sector_id, key=key).digest(), "little")


def test_piece_index_small_history_is_uniform_over_history() -> None:
    sector_id = derive_sector_id(PUBLIC_KEY, 0, 3)
    for offset in range(40):
        expected = _input_hash(sector_id, offset) % (3 * 256)
        assert derive_piece_index(sector_id, offset, 3, 1000, 5, (1, 10)) == expected


def test_piece_index_large_history_interleaves_recent_segments() -> None:
    # mainnet: min history 12 800 pieces (> 50 segments), 200 interleaved offsets
    history_size = 60
    sector_id = derive_sector_id(PUBLIC_KEY, 9, history_size)
    in_pieces = history_size * 256
    for offset in range(0, 260):
        h = _input_hash(sector_id, offset)
        if offset < 200 and offset % 2 == 1:
            expected = h % 1280 + (in_pieces - 1280)
            assert expected >= in_pieces - 1280
        else:
            expected = h % in_pieces
        assert derive_piece_index(sector_id, offset, history_size, 1000, 5, (1, 10)) == expected


def test_piece_index_at_threshold_is_not_interleaved() -> None:
    history_size = 50  # exactly 12 800 pieces: not greater than the minimum
    sector_id = derive_sector_id(PUBLIC_KEY, 0, history_size)
    assert derive_piece_index(sector_id, 1, history_size, 1000, 5, (1, 10)) == _input_hash(sector_id, 1) % 12800


def test_derive_piece_indexes_checks_pieces_in_sector() -> None:
    info = FarmerProtocolInfo.test_runtime(2)
    sector_id = derive_sector_id(PUBLIC_KEY, 0, 2)
    assert len(derive_piece_indexes(sector_id, 32, 2, info)) == 32
    with pytest.raises(ValueError, match="max_pieces_in_sector"):
        derive_piece_indexes(sector_id, 33, 2, info)


def test_expiration_history_size() -> None:
    commitment = bytes(range(48))
    for history_size in (1, 7, 1000):
        sector_id = derive_sector_id(PUBLIC_KEY, 0, history_size)
        h = int.from_bytes(blake3(sector_id + commitment).digest(), "little")
        expected = history_size + 4 + h % (3 * history_size)
        got = derive_expiration_history_size(sector_id, history_size, commitment, 4)
        assert got == expected
        assert history_size + 4 <= got < 4 * history_size + 4
    assert expiration_check_segment_index(10, 4) == 13


def test_expiry_rules() -> None:
    # expiration history size 10: expired for the verifier from history size 10 (segment 9)
    assert not is_sector_expired(10, 9) and is_sector_expired(10, 10)
    # farmer: expires_at = segment 9; replot on segment 8 (about to expire) or later
    assert not should_replot_sector(10, 7)
    assert should_replot_sector(10, 8) and should_replot_sector(10, 9)


def test_expiration_overflow_is_none() -> None:
    sector_id = derive_sector_id(PUBLIC_KEY, 0, 1)
    assert derive_expiration_history_size(sector_id, 2**62, bytes(48), 4) is None


# ---- protocol info


def test_farmer_protocol_info_scale_and_json() -> None:
    info = FarmerProtocolInfo.mainnet(123)
    encoded = info.to_scale()
    assert encoded == (
        (123).to_bytes(8, "little") + (1000).to_bytes(2, "little") + (5).to_bytes(8, "little")
        + (1).to_bytes(8, "little") + (10).to_bytes(8, "little") + (4).to_bytes(8, "little")
    )  # fmt: skip
    assert FarmerProtocolInfo.from_scale(encoded) == info
    assert info.to_json() == {
        "historySize": 123,
        "maxPiecesInSector": 1000,
        "recentSegments": 5,
        "recentHistoryFraction": [1, 10],
        "minSectorLifetime": 4,
    }
    assert FarmerProtocolInfo.from_json(info.to_json()) == info
    with pytest.raises(ScaleError):
        FarmerProtocolInfo.from_scale(encoded[:-1])
    with pytest.raises(ValueError, match="lacks field"):
        FarmerProtocolInfo.from_json({"historySize": 1})


# ---- contents map


def _random_bitfields(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    fields = []
    for p in range(n):
        density = [0.3, 0.49, 0.62][p % 3]
        bitfield = rng.random(65536) < density
        bitfield[np.flatnonzero(bitfield)[32768:]] = False  # at most 32 768 encoded chunks
        fields.append(bitfield)
    return fields


def _naive_has_chunk(bitfield: np.ndarray, s: int) -> bool:
    """spec 03 section 6 ``record_has_s_bucket_chunk`` written out literally."""
    encoded_count = int(bitfield.sum())
    if bitfield[s]:
        return True
    if encoded_count == 32768:
        return False
    unencoded_before = s - int(bitfield[:s].sum())
    return unencoded_before < 32768 - encoded_count


def test_contents_map_round_trip_and_bit_order() -> None:
    fields = _random_bitfields(3, 1)
    contents_map = SectorContentsMap.from_record_bitfields(fields)
    raw = contents_map.to_bytes()
    assert len(raw) == sector_contents_map_size(3)
    # LSB-first: bit s is byte s/8, mask 1 << (s % 8)
    for s in (0, 1, 7, 8, 65535):
        assert bool(raw[s // 8] & (1 << (s % 8))) == bool(fields[0][s])
    assert raw[-32:] == blake3(raw[:-32]).digest()
    decoded = SectorContentsMap.from_bytes(raw, 3)
    assert np.array_equal(decoded.bits, contents_map.bits)


def test_contents_map_rejects_bad_checksum_and_too_many_bits() -> None:
    raw = bytearray(SectorContentsMap.from_record_bitfields(_random_bitfields(2, 2)).to_bytes())
    raw[5] ^= 1
    with pytest.raises(SectorError, match="checksum"):
        SectorContentsMap.from_bytes(bytes(raw), 2)
    with pytest.raises(SectorError, match="must be"):
        SectorContentsMap.from_bytes(bytes(raw[:-1]), 2)
    full = np.ones(65536, dtype=bool)
    full[:32767] = False  # 32 769 bits set
    body = np.packbits(full, bitorder="little").tobytes()
    with pytest.raises(SectorError, match="more than 32768"):
        SectorContentsMap.from_bytes(body + blake3(body).digest(), 1)


def test_record_chunk_slots_follow_the_spec_rule() -> None:
    rng = np.random.default_rng(3)
    for density in (0.1, 0.5, 0.6):
        bitfield = rng.random(65536) < density
        if bitfield.sum() > 32768:
            bitfield[np.flatnonzero(bitfield)[32768:]] = False
        slots, encoded = record_chunk_slots(bitfield)
        assert (slots >= 0).sum() == 32768
        sample = rng.integers(0, 65536, 400)
        for s in sample:
            assert (slots[s] >= 0) == _naive_has_chunk(bitfield, int(s))
        # encoded chunks first, ascending; then unencoded ones ascending
        encoded_count = int(bitfield.sum())
        assert np.array_equal(slots[bitfield], np.arange(encoded_count))
        unencoded_slots = slots[(slots >= 0) & ~bitfield]
        assert np.array_equal(unencoded_slots, np.arange(encoded_count, 32768))


def test_record_with_full_encoding_has_no_unencoded_chunks() -> None:
    bitfield = np.zeros(65536, dtype=bool)
    bitfield[1::2] = True  # exactly 32 768
    slots, _ = record_chunk_slots(bitfield)
    assert np.array_equal(slots >= 0, bitfield)


def test_s_bucket_records_and_sizes_agree_with_rule() -> None:
    fields = _random_bitfields(4, 4)
    contents_map = SectorContentsMap.from_record_bitfields(fields)
    sizes = contents_map.s_bucket_sizes()
    assert int(sizes.sum(dtype=np.int64)) == 4 * 32768
    for s in (0, 3, 1000, 40000, 65535):
        expected = [(p, bool(fields[p][s])) for p in range(4) if _naive_has_chunk(fields[p], s)]
        assert contents_map.s_bucket_records(s) == expected
        assert sizes[s] == len(expected)


# ---- metadata


def test_sector_metadata_layout_and_checksum() -> None:
    sizes = (np.arange(65536) % 5).astype(np.uint16)
    metadata = SectorMetadata(0x0102, 4, sizes, 0x1122334455)
    encoded = metadata.to_checksummed_bytes()
    assert encoded[:2] == b"\x02\x01"
    assert encoded[2:4] == b"\x04\x00"
    assert encoded[4:6] == b"\x00\x00" and encoded[6:8] == b"\x01\x00"
    assert encoded[131_076:131_084] == (0x1122334455).to_bytes(8, "little")
    assert encoded[131_084:] == blake3(encoded[:131_084]).digest()
    assert SectorMetadata.from_checksummed_bytes(encoded) == metadata
    corrupt = bytearray(encoded)
    corrupt[100] ^= 0xFF
    with pytest.raises(ScaleError, match="checksum mismatch"):
        SectorMetadata.from_checksummed_bytes(bytes(corrupt))
    with pytest.raises(ScaleError, match="131116"):
        SectorMetadata.from_checksummed_bytes(encoded[:-1])


def test_sector_metadata_validation() -> None:
    with pytest.raises(ValueError, match="history size"):
        SectorMetadata(0, 1, np.zeros(65536), 0)
    with pytest.raises(ValueError, match="s_bucket_sizes"):
        SectorMetadata(0, 1, np.zeros(10), 1)
    with pytest.raises(ValueError, match="within"):
        SectorMetadata(0, 1, np.full(65536, 2), 1)


def test_s_bucket_offsets_and_byte_range() -> None:
    sizes = np.full(65536, 3, dtype=np.uint16)
    metadata = SectorMetadata(0, 3, sizes, 1)
    offsets = s_bucket_offsets(sizes)
    assert offsets[0] == 0 and offsets[10] == 30
    assert metadata.s_bucket_byte_range(10) == (sector_contents_map_size(3) + 32 * 30, 96)


def test_plotted_sector_round_trip() -> None:
    metadata = SectorMetadata(2, 3, np.full(65536, 1, dtype=np.uint16), 9)
    plotted = PlottedSector(bytes(range(32)), 2, metadata, (5, 5, 2**40))
    encoded = plotted.to_scale()
    assert len(encoded) == 32 + 2 + 131_116 + 1 + 3 * 8
    assert encoded[34 + 131_116] == 3 << 2
    decoded = PlottedSector.from_scale(encoded)
    assert decoded.sector_metadata == metadata and decoded.piece_indexes == (5, 5, 2**40)


def test_record_metadata_layout() -> None:
    piece = bytes(range(256)) * 4096 + bytes([1]) * 48 + bytes([2]) * 48
    metadata = RecordMetadata.from_piece(piece)
    assert metadata.to_bytes() == bytes([1]) * 48 + bytes([2]) * 48 + blake3(piece).digest()
    assert RecordMetadata.from_bytes(metadata.to_bytes()) == metadata
    assert record_metadata_offset(2, 1) == sector_contents_map_size(2) + 2 * 1_048_576 + 128
    with pytest.raises(ValueError, match="piece offset"):
        record_metadata_offset(2, 2)
    with pytest.raises(SectorError, match="truncated"):
        read_record_metadata(bytes(100), 2, 1)


def test_verify_sector_checksum() -> None:
    body = bytes(sector_size(1) - 32)
    sector = body + blake3(body).digest()
    verify_sector_checksum(sector, 1)
    with pytest.raises(SectorError, match="checksum"):
        verify_sector_checksum(b"\x01" + sector[1:], 1)
    with pytest.raises(SectorError, match="bytes"):
        verify_sector_checksum(sector[:-1], 1)


# ---- plot files (spec 03 section 9)


def test_plot_file_layout() -> None:
    assert plot_sector_offset(3, 1000) == 3 * 1_056_896_064
    assert plot_file_size(1, 1) % 4096 == 0 and plot_file_size(1, 1) >= sector_size(1)
    assert metadata_entry_offset(0) == 1_048_576
    assert metadata_entry_offset(2) == 1_048_576 + 2 * 131_116
    assert metadata_file_size(10) == ((1_048_576 + 10 * 131_116 + 4095) // 4096) * 4096
    assert encode_plot_metadata_header(258) == b"\x00\x02\x01"
    assert decode_plot_metadata_header(b"\x00\x02\x01rest") == 258
    with pytest.raises(ScaleError, match="version"):
        decode_plot_metadata_header(b"\x01\x00\x00")
    with pytest.raises(ScaleError, match="3 bytes"):
        decode_plot_metadata_header(b"\x00")


def test_undecodable_metadata_entry_becomes_dummy() -> None:
    metadata, ok = decode_metadata_entry_or_dummy(bytes(SECTOR_METADATA_CHECKSUMMED_SIZE), 7, 1000)
    assert not ok
    assert metadata.history_size == 1 and metadata.sector_index == 7 and not metadata.s_bucket_sizes.any()
    good = SectorMetadata(7, 1000, np.zeros(65536), 3)
    decoded, ok = decode_metadata_entry_or_dummy(good.to_checksummed_bytes(), 7, 1000)
    assert ok and decoded == good
