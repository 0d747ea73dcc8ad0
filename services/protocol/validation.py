"""Input checks shared by the protocol types: integer bounds and JSON object fields.

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


def json_field(obj: object, key: str, where: str) -> object:
    """``obj[key]`` of a JSON object; ValueError saying which object lacks which field."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ValueError(f"{where}: missing field {key!r}")
    return obj[key]
