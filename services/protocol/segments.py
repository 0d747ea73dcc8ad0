"""Segment headers (spec 01 section 5; JSON shape spec 05 section 2).

A segment header commits to one archived segment (256 pieces) and links to the previous
header by hash, forming the chain farmers use to validate pieces.  The node hands headers out
over RPC as JSON and the cluster passes them over NATS as SCALE; both forms must be bit-exact
with the reference, since ``hash()`` is taken over the SCALE bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.protocol.constants import COMMITMENT_SIZE
from services.protocol.hashes import HASH_SIZE, blake3_hash
from services.protocol.scale import (
    ScaleError,
    ScaleReader,
    decode_all,
    encode_enum_index,
    encode_fixed,
    encode_u32,
    encode_u64,
)
from services.protocol.validation import U32_MAX, U64_MAX, check_uint, hex_to_bytes, json_field

# SCALE sizes: 1 + 8 + 48 + 32 + 4 + 1 (+ 4 for Partial).
SEGMENT_HEADER_SIZE_COMPLETE = 94
SEGMENT_HEADER_SIZE_PARTIAL = 98


def _json_single_key_map(value: object, where: str) -> tuple[str, object]:
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"{where} must be an object with exactly one variant key, got {value!r:.80}")
    ((key, inner),) = value.items()
    return key, inner


@dataclass(frozen=True)
class ArchivedBlockProgress:
    """``Complete`` (``partial_bytes is None``) or ``Partial(bytes of the block archived so far)``."""

    partial_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.partial_bytes is not None:
            check_uint(self.partial_bytes, U32_MAX, "archived progress partial bytes")

    @classmethod
    def complete(cls) -> ArchivedBlockProgress:
        return cls(None)

    @classmethod
    def partial(cls, archived_bytes: int) -> ArchivedBlockProgress:
        return cls(archived_bytes)

    @property
    def is_complete(self) -> bool:
        return self.partial_bytes is None

    def to_scale(self) -> bytes:
        if self.partial_bytes is None:
            return b"\x00"
        return b"\x01" + encode_u32(self.partial_bytes)

    @classmethod
    def decode(cls, reader: ScaleReader) -> ArchivedBlockProgress:
        if reader.enum_index("ArchivedBlockProgress", 2) == 0:
            return cls(None)
        return cls(reader.u32("partial archived bytes"))

    def to_json(self) -> object:
        return "complete" if self.partial_bytes is None else {"partial": self.partial_bytes}

    @classmethod
    def from_json(cls, value: object) -> ArchivedBlockProgress:
        if value == "complete":
            return cls(None)
        if isinstance(value, str):
            raise ValueError(f"unknown archivedProgress variant {value!r} (expected 'complete' or 'partial')")
        key, inner = _json_single_key_map(value, "archivedProgress")
        if key == "partial":
            return cls(check_uint(inner, U32_MAX, "archivedProgress.partial"))
        if key == "complete" and inner is None:  # serde also accepts a unit variant as {"complete": null}
            return cls(None)
        raise ValueError(f"unknown archivedProgress variant {key!r} with value {inner!r:.40}")


@dataclass(frozen=True)
class LastArchivedBlock:
    """Last block (number) that went into a segment and how much of it was archived."""

    number: int
    archived_progress: ArchivedBlockProgress

    def __post_init__(self) -> None:
        check_uint(self.number, U32_MAX, "last archived block number")
        if not isinstance(self.archived_progress, ArchivedBlockProgress):
            raise ValueError(f"archived_progress must be an ArchivedBlockProgress, got {self.archived_progress!r}")

    def to_scale(self) -> bytes:
        return encode_u32(self.number) + self.archived_progress.to_scale()

    @classmethod
    def decode(cls, reader: ScaleReader) -> LastArchivedBlock:
        number = reader.u32("last archived block number")
        return cls(number, ArchivedBlockProgress.decode(reader))

    def to_json(self) -> dict:
        return {"number": self.number, "archivedProgress": self.archived_progress.to_json()}

    @classmethod
    def from_json(cls, value: object) -> LastArchivedBlock:
        if not isinstance(value, dict):
            raise ValueError(f"lastArchivedBlock must be an object, got {value!r:.80}")
        number = check_uint(json_field(value, "number", "lastArchivedBlock"), U32_MAX, "lastArchivedBlock.number")
        progress = ArchivedBlockProgress.from_json(json_field(value, "archivedProgress", "lastArchivedBlock"))
        return cls(number, progress)


@dataclass(frozen=True)
class SegmentHeader:
    """``SegmentHeader::V0`` (the only version)."""

    segment_index: int
    segment_commitment: bytes
    prev_segment_header_hash: bytes
    last_archived_block: LastArchivedBlock

    def __post_init__(self) -> None:
        check_uint(self.segment_index, U64_MAX, "segment index")
        for name, size in (("segment_commitment", COMMITMENT_SIZE), ("prev_segment_header_hash", HASH_SIZE)):
            value = getattr(self, name)
            if not isinstance(value, bytes):
                raise ValueError(f"{name} must be bytes, got {type(value).__name__}")
            if len(value) != size:
                raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
        if not isinstance(self.last_archived_block, LastArchivedBlock):
            raise ValueError(f"last_archived_block must be a LastArchivedBlock, got {self.last_archived_block!r}")

    # ---- SCALE (also the hashed form)

    def to_scale(self) -> bytes:
        return b"".join(
            (
                encode_enum_index(0),
                encode_u64(self.segment_index),
                encode_fixed(self.segment_commitment, COMMITMENT_SIZE, "segment commitment"),
                encode_fixed(self.prev_segment_header_hash, HASH_SIZE, "previous segment header hash"),
                self.last_archived_block.to_scale(),
            )
        )

    @classmethod
    def decode(cls, reader: ScaleReader) -> SegmentHeader:
        reader.enum_index("SegmentHeader", 1)
        segment_index = reader.u64("segment index")
        commitment = reader.read(COMMITMENT_SIZE, "segment commitment")
        prev_hash = reader.read(HASH_SIZE, "previous segment header hash")
        return cls(segment_index, commitment, prev_hash, LastArchivedBlock.decode(reader))

    @classmethod
    def from_scale(cls, data: bytes | bytearray | memoryview) -> SegmentHeader:
        return decode_all(data, cls.decode, "SegmentHeader")

    def hash(self) -> bytes:
        """``blake3_hash(SCALE(header))``: the next header's ``prev_segment_header_hash``."""
        return blake3_hash(self.to_scale())

    # ---- JSON (serde: externally tagged, camelCase)

    def to_json(self) -> dict:
        return {
            "v0": {
                "segmentIndex": self.segment_index,
                "segmentCommitment": self.segment_commitment.hex(),
                "prevSegmentHeaderHash": self.prev_segment_header_hash.hex(),
                "lastArchivedBlock": self.last_archived_block.to_json(),
            }
        }

    @classmethod
    def from_json(cls, value: object) -> SegmentHeader:
        """Parse the JSON value (a dict as ``json.loads`` returns it)."""
        key, inner = _json_single_key_map(value, "SegmentHeader")
        if key != "v0":
            raise ValueError(f"unknown SegmentHeader variant {key!r} (only 'v0' exists)")
        if not isinstance(inner, dict):
            raise ValueError(f"SegmentHeader.v0 must be an object, got {inner!r:.80}")
        where = "SegmentHeader.v0"
        return cls(
            segment_index=check_uint(json_field(inner, "segmentIndex", where), U64_MAX, "segmentIndex"),
            segment_commitment=hex_to_bytes(
                json_field(inner, "segmentCommitment", where), COMMITMENT_SIZE, "segmentCommitment"
            ),
            prev_segment_header_hash=hex_to_bytes(
                json_field(inner, "prevSegmentHeaderHash", where), HASH_SIZE, "prevSegmentHeaderHash"
            ),
            last_archived_block=LastArchivedBlock.from_json(json_field(inner, "lastArchivedBlock", where)),
        )


__all__ = [
    "ArchivedBlockProgress",
    "LastArchivedBlock",
    "SegmentHeader",
    "ScaleError",
    "SEGMENT_HEADER_SIZE_COMPLETE",
    "SEGMENT_HEADER_SIZE_PARTIAL",
]
