"""The farmer's solution for a slot (spec 04 section 4) in its SCALE and JSON (spec 05) forms.

A ``Solution`` is what a farmer submits when one of its sectors wins a slot: who farmed it
(public key, reward address), which sector and record, the record's commitment and witness
against the segment commitment, the winning chunk (un-masked scalar) with its KZG witness, and
the proof of space that unlocks the masking.  The node checks it with
``verification.verify_solution``.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.protocol.constants import (
    COMMITMENT_SIZE,
    POS_PROOF_SIZE,
    PUBLIC_KEY_SIZE,
    REWARD_SIGNATURE_SIZE,
    SCALAR_FULL_BYTES,
    WITNESS_SIZE,
)
from services.protocol.scale import ScaleReader, decode_all, encode_u16, encode_u64
from services.protocol.validation import U16_MAX, U64_MAX, check_bytes, check_uint, hex_to_bytes

SOLUTION_SIZE = 32 + 32 + 2 + 8 + 2 + COMMITMENT_SIZE + WITNESS_SIZE + SCALAR_FULL_BYTES + WITNESS_SIZE + POS_PROOF_SIZE


# (field, size) for the fixed-size byte fields, in SCALE order where they occur
_BYTE_FIELDS = {
    "public_key": PUBLIC_KEY_SIZE,
    "reward_address": PUBLIC_KEY_SIZE,
    "record_commitment": COMMITMENT_SIZE,
    "record_witness": WITNESS_SIZE,
    "chunk": SCALAR_FULL_BYTES,
    "chunk_witness": WITNESS_SIZE,
    "proof_of_space": POS_PROOF_SIZE,
}


@dataclass(frozen=True)
class Solution:
    """Farmer solution; ``chunk`` is the un-masked 32-byte big-endian scalar."""

    public_key: bytes
    reward_address: bytes
    sector_index: int
    history_size: int
    piece_offset: int
    record_commitment: bytes
    record_witness: bytes
    chunk: bytes
    chunk_witness: bytes
    proof_of_space: bytes

    def __post_init__(self) -> None:
        for name, size in _BYTE_FIELDS.items():
            object.__setattr__(self, name, check_bytes(getattr(self, name), size, f"solution {name}"))
        check_uint(self.sector_index, U16_MAX, "solution sector_index")
        check_uint(self.history_size, U64_MAX, "solution history_size")
        if self.history_size == 0:
            raise ValueError("solution history_size must be non-zero")
        check_uint(self.piece_offset, U16_MAX, "solution piece_offset")

    # SCALE: fields in struct order, all fixed size (412 bytes).
    def to_scale(self) -> bytes:
        return b"".join(
            (
                self.public_key,
                self.reward_address,
                encode_u16(self.sector_index),
                encode_u64(self.history_size),
                encode_u16(self.piece_offset),
                self.record_commitment,
                self.record_witness,
                self.chunk,
                self.chunk_witness,
                self.proof_of_space,
            )
        )

    @classmethod
    def decode(cls, reader: ScaleReader) -> Solution:
        public_key = reader.read(PUBLIC_KEY_SIZE, "public key")
        reward_address = reader.read(PUBLIC_KEY_SIZE, "reward address")
        sector_index = reader.u16("sector index")
        start = reader.offset
        history_size = reader.u64("history size")
        if history_size == 0:
            raise reader.error("history size must be non-zero", start)
        piece_offset = reader.u16("piece offset")
        return cls(
            public_key,
            reward_address,
            sector_index,
            history_size,
            piece_offset,
            reader.read(COMMITMENT_SIZE, "record commitment"),
            reader.read(WITNESS_SIZE, "record witness"),
            reader.read(SCALAR_FULL_BYTES, "chunk"),
            reader.read(WITNESS_SIZE, "chunk witness"),
            reader.read(POS_PROOF_SIZE, "proof of space"),
        )

    @classmethod
    def from_scale(cls, data: bytes | bytearray | memoryview) -> Solution:
        return decode_all(data, cls.decode, "Solution")

    # JSON (serde, camelCase): hex for byte fields except ``chunk`` (array of 32 numbers).
    def to_json(self) -> dict:
        return {
            "publicKey": self.public_key.hex(),
            "rewardAddress": self.reward_address.hex(),
            "sectorIndex": self.sector_index,
            "historySize": self.history_size,
            "pieceOffset": self.piece_offset,
            "recordCommitment": self.record_commitment.hex(),
            "recordWitness": self.record_witness.hex(),
            "chunk": list(self.chunk),
            "chunkWitness": self.chunk_witness.hex(),
            "proofOfSpace": self.proof_of_space.hex(),
        }

    @classmethod
    def from_json(cls, value: object) -> Solution:
        if not isinstance(value, dict):
            raise ValueError(f"solution JSON must be an object, got {type(value).__name__}")
        expected = {
            "publicKey", "rewardAddress", "sectorIndex", "historySize", "pieceOffset",
            "recordCommitment", "recordWitness", "chunk", "chunkWitness", "proofOfSpace",
        }  # fmt: skip
        missing = expected - value.keys()
        if missing:
            raise ValueError(f"solution JSON lacks fields {sorted(missing)}")
        return cls(
            public_key=hex_to_bytes(value["publicKey"], PUBLIC_KEY_SIZE, "publicKey"),
            reward_address=hex_to_bytes(value["rewardAddress"], PUBLIC_KEY_SIZE, "rewardAddress"),
            sector_index=check_uint(value["sectorIndex"], U16_MAX, "sectorIndex"),
            history_size=check_uint(value["historySize"], U64_MAX, "historySize"),
            piece_offset=check_uint(value["pieceOffset"], U16_MAX, "pieceOffset"),
            record_commitment=hex_to_bytes(value["recordCommitment"], COMMITMENT_SIZE, "recordCommitment"),
            record_witness=hex_to_bytes(value["recordWitness"], WITNESS_SIZE, "recordWitness"),
            chunk=_chunk_from_json(value["chunk"]),
            chunk_witness=hex_to_bytes(value["chunkWitness"], WITNESS_SIZE, "chunkWitness"),
            proof_of_space=hex_to_bytes(value["proofOfSpace"], POS_PROOF_SIZE, "proofOfSpace"),
        )


def _chunk_from_json(value: object) -> bytes:
    if not isinstance(value, list) or len(value) != SCALAR_FULL_BYTES:
        raise ValueError(f"chunk must be a JSON array of {SCALAR_FULL_BYTES} numbers, got {value!r:.80}")
    return bytes(check_uint(byte, 255, f"chunk[{i}]") for i, byte in enumerate(value))


@dataclass(frozen=True)
class RewardSignature:
    """64-byte sr25519 signature over a block/vote hash (context ``b"subspace_reward"``)."""

    signature: bytes

    def __post_init__(self) -> None:
        if len(self.signature) != REWARD_SIGNATURE_SIZE:
            raise ValueError(f"reward signature must be {REWARD_SIGNATURE_SIZE} bytes, got {len(self.signature)}")
        object.__setattr__(self, "signature", bytes(self.signature))

    def to_scale(self) -> bytes:
        return self.signature

    def to_json(self) -> str:
        return self.signature.hex()

    @classmethod
    def from_json(cls, value: object) -> RewardSignature:
        return cls(hex_to_bytes(value, REWARD_SIGNATURE_SIZE, "signature"))
