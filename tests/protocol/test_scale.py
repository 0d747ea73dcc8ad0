"""SCALE toolkit: strict decoding, the encodings published in the parity-scale-codec
documentation, and ``Blake3Checksummed`` as the reference wrote it (``sector_ref.json``).

The SCALE forms of the protocol types themselves are checked against the reference vectors in
their own test modules (segment headers, solutions, sector metadata, plotted sectors, farmer
protocol info)."""

from __future__ import annotations

import pytest
from reference_vectors import reference_sector

from services.protocol.scale import (
    ScaleError,
    ScaleReader,
    compact_length,
    decode_all,
    decode_compact,
    encode_bool,
    encode_bytes,
    encode_checksummed,
    encode_compact,
    encode_enum_index,
    encode_fixed,
    encode_option,
    encode_u8,
    encode_u16,
    encode_u32,
    encode_u64,
    encode_u128,
    encode_vec,
)
from services.protocol.sector import SectorMetadata

# (value, encoding) pairs published in the SCALE codec documentation (docs.substrate.io /
# parity-scale-codec README), plus the mode boundaries.
COMPACT_VECTORS = [
    (0, "00"),
    (1, "04"),
    (42, "a8"),
    (63, "fc"),
    (64, "0101"),
    (69, "1501"),
    (16383, "fdff"),
    (16384, "02000100"),
    (65535, "feff0300"),
    (2**30 - 1, "feffffff"),
    (2**30, "0300000040"),
    (2**32 - 1, "03ffffffff"),
    (2**32, "070000000001"),
    (100000000000000, "0b00407a10f35a"),
    (2**64 - 1, "13ffffffffffffffff"),
]


@pytest.mark.parametrize(("value", "hex_encoding"), COMPACT_VECTORS)
def test_compact_known_encodings(value: int, hex_encoding: str) -> None:
    encoded = bytes.fromhex(hex_encoding)
    assert encode_compact(value) == encoded
    assert compact_length(value) == len(encoded)
    assert decode_compact(encoded) == (value, len(encoded))
    assert decode_all(encoded, lambda r: r.compact(), "compact") == value


@pytest.mark.parametrize(
    "non_canonical",
    [
        "0100",  # 0 in 2-byte form
        "fd00",  # 63 in 2-byte form
        "02000000",  # 0 in 4-byte form
        "feff0000",  # 16383 in 4-byte form
        "03ffffff3f",  # 2^30-1 in big form
        "07ffffffff00",  # value fits in 4 bytes but uses 5
    ],
)
def test_compact_rejects_non_canonical(non_canonical: str) -> None:
    with pytest.raises(ScaleError, match="non-canonical"):
        decode_compact(bytes.fromhex(non_canonical))


def test_compact_rejects_truncation_and_overflow() -> None:
    with pytest.raises(ScaleError, match="truncated"):
        decode_compact(bytes.fromhex("0b00407a"))
    reader = ScaleReader(encode_compact(2**32), "vec")
    with pytest.raises(ScaleError, match="does not fit in 32 bits"):
        reader.length("items")
    with pytest.raises(ScaleError):
        encode_compact(-1)
    with pytest.raises(ScaleError):
        encode_compact(True)


def test_fixed_width_integers_little_endian() -> None:
    assert encode_u8(0xAB) == b"\xab"
    assert encode_u16(0x0102) == b"\x02\x01"
    assert encode_u32(0x01020304) == b"\x04\x03\x02\x01"
    assert encode_u64(1) == b"\x01" + b"\x00" * 7
    assert encode_u128(2**128 - 1) == b"\xff" * 16
    data = encode_u8(7) + encode_u16(513) + encode_u32(70000) + encode_u64(2**63) + encode_u128(5)
    reader = ScaleReader(data, "ints")
    assert [reader.u8(), reader.u16(), reader.u32(), reader.u64(), reader.u128()] == [7, 513, 70000, 2**63, 5]
    reader.finish()


@pytest.mark.parametrize(("encoder", "bad"), [(encode_u8, 256), (encode_u16, -1), (encode_u32, 2**32), (encode_u64, 2**64)])
def test_fixed_width_out_of_range(encoder, bad: int) -> None:
    with pytest.raises(ScaleError, match="out of range"):
        encoder(bad)


def test_bool_option_enum() -> None:
    assert encode_bool(True) == b"\x01" and encode_bool(False) == b"\x00"
    assert decode_all(b"\x01", lambda r: r.bool(), "b") is True
    with pytest.raises(ScaleError, match="invalid bool byte 0x02"):
        decode_all(b"\x02", lambda r: r.bool(), "b")
    assert encode_option(None, encode_u32) == b"\x00"
    assert encode_option(5, encode_u32) == b"\x01\x05\x00\x00\x00"
    assert decode_all(b"\x01\x05\x00\x00\x00", lambda r: r.option(lambda rr: rr.u32()), "o") == 5
    assert decode_all(b"\x00", lambda r: r.option(lambda rr: rr.u32()), "o") is None
    with pytest.raises(ScaleError, match="invalid option tag 0x02"):
        decode_all(b"\x02", lambda r: r.option(lambda rr: rr.u32()), "o")
    assert encode_enum_index(3) == b"\x03"
    with pytest.raises(ScaleError, match="unknown Thing variant index 5"):
        decode_all(b"\x05", lambda r: r.enum_index("Thing", 2), "t")


def test_bytes_and_vec() -> None:
    payload = bytes(range(100))
    encoded = encode_bytes(payload)
    assert encoded == b"\x91\x01" + payload  # compact(100) = 0x0191
    assert decode_all(encoded, lambda r: r.bytes(), "v") == payload
    with pytest.raises(ScaleError, match="must be 99 bytes"):
        decode_all(encoded, lambda r: r.bytes("blob", expected_length=99), "v")
    with pytest.raises(ScaleError, match="truncated"):
        decode_all(encoded[:-1], lambda r: r.bytes(), "v")
    items = [1, 2, 3]
    encoded_vec = encode_vec(items, encode_u16)
    assert encoded_vec == b"\x0c\x01\x00\x02\x00\x03\x00"
    assert decode_all(encoded_vec, lambda r: r.vec(lambda rr: rr.u16()), "v") == items
    with pytest.raises(ScaleError, match="claims 63 items"):
        decode_all(b"\xfc\x00", lambda r: r.vec(lambda rr: rr.u8()), "v")
    assert encode_fixed(b"abc", 3, "x") == b"abc"
    with pytest.raises(ScaleError, match="x must be 4 bytes, got 3"):
        encode_fixed(b"abc", 4, "x")


def test_trailing_bytes_and_error_location() -> None:
    with pytest.raises(ScaleError, match=r"Thing: 1 trailing bytes after the encoded value at byte offset 4"):
        decode_all(b"\x01\x00\x00\x00\xff", lambda r: r.u32(), "Thing")


def test_blake3_checksummed_reference_sector_metadata() -> None:
    """``Blake3Checksummed<SectorMetadata>`` as the reference plotter wrote it."""
    wrapped = bytes.fromhex(reference_sector("p4").vector["sector_metadata_checksummed"])
    metadata = decode_all(wrapped, lambda r: r.checksummed(SectorMetadata.decode), "checksummed")
    assert encode_checksummed(metadata.to_scale()) == wrapped
    corrupted = bytearray(wrapped)
    corrupted[3] ^= 1
    with pytest.raises(ScaleError, match="checksum mismatch"):
        decode_all(bytes(corrupted), lambda r: r.checksummed(SectorMetadata.decode), "checksummed")
