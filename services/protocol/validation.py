"""Input checks shared by the protocol types: integer bounds, fixed-size bytes, serde hex strings
and JSON object fields.

One place for the rules serde applies to integers (no bools, floats or strings; in range) so
every decoder rejects bad input with the same clear message naming the field.
"""

from __future__ import annotations

import numpy as np

U16_MAX = (1 << 16) - 1
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1


def check_uint(value: object, maximum: int, name: str) -> int:
    """``value`` as an int in ``0..=maximum``; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__} {value!r:.60}")
    value = int(value)
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} out of range: {value} (allowed 0..={maximum})")
    return value


def check_bytes(value: object, size: int, name: str) -> bytes:
    """``value`` (bytes, bytearray or memoryview) as ``bytes`` of exactly ``size``; ValueError
    naming ``name`` otherwise."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
    return bytes(value)


def hex_to_bytes(value: object, size: int | None, name: str) -> bytes:
    """Decode a serde ``hex`` string (either case, no ``0x``), optionally of an exact size."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a hex string, got {type(value).__name__}")
    if value[:2] in ("0x", "0X"):
        raise ValueError(f"{name} hex must not start with 0x")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{name} is not valid hex: {value[:40]!r}") from None
    if len(data) * 2 != len(value):  # bytes.fromhex tolerates whitespace; serde does not
        raise ValueError(f"{name} hex contains whitespace or an odd number of digits")
    if size is not None and len(data) != size:
        raise ValueError(f"{name} must be {size} bytes ({2 * size} hex digits), got {len(data)} bytes")
    return data


def json_field(obj: object, key: str, where: str) -> object:
    """``obj[key]`` of a JSON object; ValueError saying which object lacks which field."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ValueError(f"{where}: missing field {key!r}")
    return obj[key]
