"""BLAKE3 hashing as the protocol uses it (spec 01 section 1).

Thin wrappers over the maintained ``blake3`` package so every call site names the protocol
operation rather than the library call.
"""

from __future__ import annotations

from blake3 import blake3

HASH_SIZE = 32


def blake3_hash(data: bytes | bytearray | memoryview) -> bytes:
    """Plain 32-byte BLAKE3 digest."""
    return blake3(data).digest()


def blake3_hash_list(parts: list[bytes] | tuple[bytes, ...]) -> bytes:
    """BLAKE3 of the concatenation of ``parts`` (streamed)."""
    h = blake3()
    for part in parts:
        h.update(part)
    return h.digest()


def blake3_hash_with_key(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """Keyed BLAKE3 (32-byte key)."""
    return blake3_hash_list_with_key(key, (data,))


def blake3_hash_list_with_key(key: bytes, parts: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Keyed BLAKE3 of the concatenation of ``parts``."""
    if len(key) != 32:
        raise ValueError(f"keyed BLAKE3 needs a 32-byte key, got {len(key)} bytes")
    h = blake3(key=key)
    for part in parts:
        h.update(part)
    return h.digest()


def blake3_254_hash_to_scalar(data: bytes | bytearray | memoryview) -> bytes:
    """BLAKE3 with the two most significant bits cleared: a big-endian scalar always < r."""
    h = bytearray(blake3(data).digest())
    h[0] &= 0x3F
    return bytes(h)
