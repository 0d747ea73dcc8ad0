"""A small SCALE codec toolkit (Parity SCALE, spec 01 conventions, spec 05 section 4).

Every wire type of the protocol (segment headers, pieces, cluster NATS payloads) is SCALE
encoded.  This module holds the building blocks: fixed-width little-endian integers, ``bool``,
compact integers, ``Option``, byte vectors / vectors with a compact length prefix, enum index
bytes and the ``Blake3Checksummed`` wrapper.  Encoders are plain functions returning ``bytes``;
decoding goes through :class:`ScaleReader`, which tracks the offset so that every
:class:`ScaleError` says *what* was being decoded and *where* it failed.

Decoding is strict the way ``parity-scale-codec`` is: compact integers must use their shortest
form, booleans must be 0 or 1, option tags 0 or 1, and :meth:`ScaleReader.finish` rejects
trailing bytes.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from services.protocol.hashes import HASH_SIZE, blake3_hash

T = TypeVar("T")

# Largest value a compact integer can hold (big-integer mode: up to 67 LE bytes).
_COMPACT_MAX_BYTES = 67
# ``Vec`` / ``String`` lengths are ``Compact<u32>`` in parity-scale-codec.
_VEC_LENGTH_BITS = 32


class ScaleError(ValueError):
    """Malformed SCALE input (or a value that cannot be SCALE encoded)."""


# --------------------------------------------------------------------------------------------
# Encoding


def _encode_uint(value: int, size: int, name: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScaleError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 0 or value >> (8 * size):
        raise ScaleError(f"{name} out of range: {value} does not fit in {8 * size} bits")
    return value.to_bytes(size, "little")


def encode_u8(value: int) -> bytes:
    return _encode_uint(value, 1, "u8")


def encode_u16(value: int) -> bytes:
    return _encode_uint(value, 2, "u16")


def encode_u32(value: int) -> bytes:
    return _encode_uint(value, 4, "u32")


def encode_u64(value: int) -> bytes:
    return _encode_uint(value, 8, "u64")


def encode_u128(value: int) -> bytes:
    return _encode_uint(value, 16, "u128")


def encode_bool(value: bool) -> bytes:
    if not isinstance(value, bool):
        raise ScaleError(f"bool expected, got {type(value).__name__} {value!r}")
    return b"\x01" if value else b"\x00"


def encode_compact(value: int) -> bytes:
    """SCALE compact integer (shortest form, as parity-scale-codec writes it)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScaleError(f"compact integer must be an int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ScaleError(f"compact integer must be non-negative, got {value}")
    if value < 1 << 6:
        return bytes([value << 2])
    if value < 1 << 14:
        return ((value << 2) | 0b01).to_bytes(2, "little")
    if value < 1 << 30:
        return ((value << 2) | 0b10).to_bytes(4, "little")
    num_bytes = max(4, (value.bit_length() + 7) // 8)
    if num_bytes > _COMPACT_MAX_BYTES:
        raise ScaleError(f"compact integer too large: {value.bit_length()} bits")
    return bytes([((num_bytes - 4) << 2) | 0b11]) + value.to_bytes(num_bytes, "little")


def compact_length(value: int) -> int:
    """Number of bytes ``encode_compact(value)`` produces."""
    if value < 1 << 6:
        return 1
    if value < 1 << 14:
        return 2
    if value < 1 << 30:
        return 4
    return 1 + max(4, (value.bit_length() + 7) // 8)


def encode_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """``Vec<u8>``: compact length prefix followed by the bytes."""
    return encode_compact(len(data)) + bytes(data)


def encode_vec(items: list[T] | tuple[T, ...], encode_item: Callable[[T], bytes]) -> bytes:
    """``Vec<T>``: compact item count followed by the encoded items."""
    return encode_compact(len(items)) + b"".join(encode_item(item) for item in items)


def encode_option(value: T | None, encode_value: Callable[[T], bytes]) -> bytes:
    """``Option<T>``: ``0x00`` for None, ``0x01`` followed by the value otherwise."""
    if value is None:
        return b"\x00"
    return b"\x01" + encode_value(value)


def encode_enum_index(index: int) -> bytes:
    """The index byte that starts every enum variant."""
    return _encode_uint(index, 1, "enum index")


def encode_fixed(data: bytes | bytearray | memoryview, size: int, name: str) -> bytes:
    """A fixed-size byte array ``[u8; size]`` (no prefix); the length is checked."""
    if len(data) != size:
        raise ScaleError(f"{name} must be {size} bytes, got {len(data)}")
    return bytes(data)


def encode_checksummed(encoded: bytes) -> bytes:
    """``Blake3Checksummed<T>``: ``scale(T) ‖ blake3_hash(scale(T))`` given ``scale(T)``."""
    return encoded + blake3_hash(encoded)


# --------------------------------------------------------------------------------------------
# Decoding


class ScaleReader:
    """Cursor over SCALE bytes; each method decodes one value and advances.

    ``what`` names the top-level thing being decoded and prefixes every error message.
    """

    __slots__ = ("_data", "_offset", "_what")

    def __init__(self, data: bytes | bytearray | memoryview, what: str = "SCALE value") -> None:
        self._data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self._offset = 0
        self._what = what

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def error(self, message: str, offset: int | None = None) -> ScaleError:
        at = self._offset if offset is None else offset
        return ScaleError(f"{self._what}: {message} at byte offset {at}")

    def read(self, size: int, name: str = "bytes") -> bytes:
        """``size`` raw bytes (a fixed-size array)."""
        if size < 0:
            raise self.error(f"negative length {size} for {name}")
        if self.remaining < size:
            raise self.error(f"truncated {name}: need {size} bytes, only {self.remaining} left")
        start = self._offset
        self._offset += size
        return bytes(self._data[start : start + size])

    def skip(self, size: int, name: str = "bytes") -> None:
        """Advance over ``size`` bytes without copying them."""
        if not 0 <= size <= self.remaining:
            raise self.error(f"cannot skip {size} bytes of {name}, only {self.remaining} left")
        self._offset += size

    def _uint(self, size: int, name: str) -> int:
        return int.from_bytes(self.read(size, name), "little")

    def u8(self, name: str = "u8") -> int:
        return self._uint(1, name)

    def u16(self, name: str = "u16") -> int:
        return self._uint(2, name)

    def u32(self, name: str = "u32") -> int:
        return self._uint(4, name)

    def u64(self, name: str = "u64") -> int:
        return self._uint(8, name)

    def u128(self, name: str = "u128") -> int:
        return self._uint(16, name)

    def bool(self, name: str = "bool") -> bool:
        start = self._offset
        byte = self.u8(name)
        if byte > 1:
            raise self.error(f"invalid {name} byte {byte:#04x} (must be 0 or 1)", start)
        return byte == 1

    def compact(self, name: str = "compact integer", max_bits: int = 128) -> int:
        """A compact integer; non-shortest encodings and values over ``max_bits`` are errors."""
        start = self._offset
        first = self.u8(name)
        mode = first & 0b11
        if mode == 0b00:
            value = first >> 2
        elif mode == 0b01:
            value = (first | (self.u8(name) << 8)) >> 2
            if value < 1 << 6:
                raise self.error(f"non-canonical {name} {value} (2-byte form)", start)
        elif mode == 0b10:
            value = (first | (int.from_bytes(self.read(3, name), "little") << 8)) >> 2
            if value < 1 << 14:
                raise self.error(f"non-canonical {name} {value} (4-byte form)", start)
        else:
            num_bytes = (first >> 2) + 4
            value = int.from_bytes(self.read(num_bytes, name), "little")
            shortest = max(4, (value.bit_length() + 7) // 8)
            if value < 1 << 30 or shortest != num_bytes:
                raise self.error(f"non-canonical {name} {value} ({num_bytes}-byte big form)", start)
        if value >> max_bits:
            raise self.error(f"{name} {value} does not fit in {max_bits} bits", start)
        return value

    def length(self, name: str) -> int:
        """A ``Vec`` length prefix (``Compact<u32>``)."""
        return self.compact(f"{name} length", _VEC_LENGTH_BITS)

    def bytes(self, name: str = "byte vector", expected_length: int | None = None) -> bytes:
        """``Vec<u8>``: compact length then bytes; optionally require an exact length."""
        start = self._offset
        length = self.length(name)
        if expected_length is not None and length != expected_length:
            raise self.error(f"{name} must be {expected_length} bytes, length prefix says {length}", start)
        return self.read(length, name)

    def vec(self, decode_item: Callable[[ScaleReader], T], name: str = "vector") -> list[T]:
        """``Vec<T>`` with ``decode_item(reader)`` decoding one item."""
        count = self.length(name)
        # Every item takes at least one byte, so a count beyond the input is malformed.
        if count > self.remaining:
            raise self.error(f"{name} claims {count} items but only {self.remaining} bytes left")
        return [decode_item(self) for _ in range(count)]

    def option(self, decode_value: Callable[[ScaleReader], T], name: str = "option") -> T | None:
        start = self._offset
        tag = self.u8(f"{name} tag")
        if tag == 0:
            return None
        if tag == 1:
            return decode_value(self)
        raise self.error(f"invalid {name} tag {tag:#04x} (must be 0 or 1)", start)

    def enum_index(self, name: str, num_variants: int) -> int:
        start = self._offset
        index = self.u8(f"{name} variant index")
        if index >= num_variants:
            raise self.error(f"unknown {name} variant index {index}", start)
        return index

    def checksummed(self, decode_value: Callable[[ScaleReader], T], name: str = "checksummed value") -> T:
        """``Blake3Checksummed<T>``: decode T, then check the 32-byte BLAKE3 of its bytes."""
        start = self._offset
        value = decode_value(self)
        digest = blake3_hash(self._data[start : self._offset])
        checksum_offset = self._offset
        if self.read(HASH_SIZE, f"{name} checksum") != digest:
            raise self.error(f"{name} checksum mismatch", checksum_offset)
        return value

    def finish(self) -> None:
        """Require that every byte was consumed."""
        if self.remaining:
            raise self.error(f"{self.remaining} trailing bytes after the encoded value")


def decode_all(data: bytes | bytearray | memoryview, decode: Callable[[ScaleReader], T], what: str) -> T:
    """Decode exactly one value from ``data`` (trailing bytes are an error)."""
    reader = ScaleReader(data, what)
    value = decode(reader)
    reader.finish()
    return value


def decode_compact(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode a compact integer at ``offset``; returns ``(value, offset_after)``."""
    reader = ScaleReader(memoryview(data)[offset:], "compact integer")
    value = reader.compact()
    return value, offset + reader.offset
