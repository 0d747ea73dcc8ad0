"""The farmer-facing node RPC types in their JSON (spec 05 §2) and SCALE (spec 05 §4) forms.

The dev node serves these shapes, the RPC client parses them, and the controller re-encodes them
as SCALE for the cluster (spec 06), so one definition keeps the three in agreement. JSON values
are what ``json.loads`` produces (u64 fields may exceed 2^53: Python ints are exact). Parsing
errors are ``ValueError`` naming the bad field.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.node.multiaddr import multiaddr_from_bytes, multiaddr_to_bytes
from services.protocol.hashes import HASH_SIZE
from services.protocol.pieces import hex_to_bytes
from services.protocol.scale import (
    ScaleReader,
    decode_all,
    encode_bool,
    encode_bytes,
    encode_fixed,
    encode_option,
    encode_u32,
    encode_u64,
    encode_vec,
)
from services.protocol.sector import FarmerProtocolInfo  # one definition: spec 03 section 1
from services.protocol.solution import Solution
from services.protocol.validation import U64_MAX, check_uint, json_field

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
NODE_ERROR_CODE = 9001  # the node's own RPC errors: SUBSPACE_ERROR + 1 (spec 05)
MAX_SEGMENT_HEADERS_PER_REQUEST = 1000  # subspace_segmentHeaders / subspace_lastSegmentHeaders limit


def _check_bytes(value: object, size: int, name: str) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        got = len(value) if isinstance(value, bytes) else type(value).__name__
        raise ValueError(f"{name} must be {size} bytes, got {got}")


class _ScaleDecodable:
    """``from_scale``: the whole of ``data`` through the subclass's ``decode(ScaleReader)``."""

    @classmethod
    def from_scale(cls, data: bytes):  # noqa: ANN206 - the subclass
        return decode_all(data, cls.decode, cls.__name__)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SlotInfo(_ScaleDecodable):
    slot_number: int
    global_challenge: bytes
    solution_range: int
    voting_solution_range: int

    def __post_init__(self) -> None:
        check_uint(self.slot_number, U64_MAX, "slotNumber")
        _check_bytes(self.global_challenge, HASH_SIZE, "globalChallenge")
        check_uint(self.solution_range, U64_MAX, "solutionRange")
        check_uint(self.voting_solution_range, U64_MAX, "votingSolutionRange")

    def to_json(self) -> dict:
        return {
            "slotNumber": self.slot_number,
            "globalChallenge": self.global_challenge.hex(),
            "solutionRange": self.solution_range,
            "votingSolutionRange": self.voting_solution_range,
        }

    @classmethod
    def from_json(cls, value: object) -> SlotInfo:
        w = "SlotInfo"
        return cls(
            check_uint(json_field(value, "slotNumber", w), U64_MAX, "slotNumber"),
            hex_to_bytes(json_field(value, "globalChallenge", w), HASH_SIZE, "globalChallenge"),
            check_uint(json_field(value, "solutionRange", w), U64_MAX, "solutionRange"),
            check_uint(json_field(value, "votingSolutionRange", w), U64_MAX, "votingSolutionRange"),
        )

    def to_scale(self) -> bytes:
        return (
            encode_u64(self.slot_number)
            + self.global_challenge
            + encode_u64(self.solution_range)
            + encode_u64(self.voting_solution_range)
        )

    @classmethod
    def decode(cls, r: ScaleReader) -> SlotInfo:
        return cls(r.u64("slot number"), r.read(HASH_SIZE, "global challenge"), r.u64("solution range"), r.u64("voting solution range"))


@dataclass(frozen=True)
class SolutionResponse(_ScaleDecodable):
    slot_number: int
    solution: Solution

    def __post_init__(self) -> None:
        check_uint(self.slot_number, U64_MAX, "slotNumber")
        if not isinstance(self.solution, Solution):
            raise ValueError(f"solution must be a Solution, got {type(self.solution).__name__}")

    def to_json(self) -> dict:
        return {"slotNumber": self.slot_number, "solution": self.solution.to_json()}

    @classmethod
    def from_json(cls, value: object) -> SolutionResponse:
        w = "SolutionResponse"
        slot = check_uint(json_field(value, "slotNumber", w), U64_MAX, "slotNumber")
        return cls(slot, Solution.from_json(json_field(value, "solution", w)))

    def to_scale(self) -> bytes:
        return encode_u64(self.slot_number) + self.solution.to_scale()

    @classmethod
    def decode(cls, r: ScaleReader) -> SolutionResponse:
        slot = r.u64("slot number")
        return cls(slot, Solution.decode(r))


@dataclass(frozen=True)
class RewardSigningInfo(_ScaleDecodable):
    hash: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        _check_bytes(self.hash, HASH_SIZE, "hash")
        _check_bytes(self.public_key, PUBLIC_KEY_SIZE, "publicKey")

    def to_json(self) -> dict:
        return {"hash": self.hash.hex(), "publicKey": self.public_key.hex()}

    @classmethod
    def from_json(cls, value: object) -> RewardSigningInfo:
        w = "RewardSigningInfo"
        return cls(
            hex_to_bytes(json_field(value, "hash", w), HASH_SIZE, "hash"),
            hex_to_bytes(json_field(value, "publicKey", w), PUBLIC_KEY_SIZE, "publicKey"),
        )

    def to_scale(self) -> bytes:
        return self.hash + self.public_key

    @classmethod
    def decode(cls, r: ScaleReader) -> RewardSigningInfo:
        return cls(r.read(HASH_SIZE, "hash"), r.read(PUBLIC_KEY_SIZE, "public key"))


@dataclass(frozen=True)
class RewardSignatureResponse(_ScaleDecodable):
    hash: bytes
    signature: bytes | None

    def __post_init__(self) -> None:
        _check_bytes(self.hash, HASH_SIZE, "hash")
        if self.signature is not None:
            _check_bytes(self.signature, SIGNATURE_SIZE, "signature")

    def to_json(self) -> dict:
        return {"hash": self.hash.hex(), "signature": None if self.signature is None else self.signature.hex()}

    @classmethod
    def from_json(cls, value: object) -> RewardSignatureResponse:
        w = "RewardSignatureResponse"
        sig = json_field(value, "signature", w)
        return cls(
            hex_to_bytes(json_field(value, "hash", w), HASH_SIZE, "hash"),
            None if sig is None else hex_to_bytes(sig, SIGNATURE_SIZE, "signature"),
        )

    def to_scale(self) -> bytes:
        return self.hash + encode_option(self.signature, lambda s: encode_fixed(s, SIGNATURE_SIZE, "signature"))

    @classmethod
    def decode(cls, r: ScaleReader) -> RewardSignatureResponse:
        h = r.read(HASH_SIZE, "hash")
        return cls(h, r.option(lambda rr: rr.read(SIGNATURE_SIZE, "signature"), "signature"))


@dataclass(frozen=True)
class FarmerAppInfo(_ScaleDecodable):
    genesis_hash: bytes
    dsn_bootstrap_nodes: tuple[str, ...]
    syncing: bool
    farming_timeout_ms: int
    protocol_info: FarmerProtocolInfo

    def __post_init__(self) -> None:
        _check_bytes(self.genesis_hash, HASH_SIZE, "genesisHash")
        if not isinstance(self.syncing, bool):
            raise ValueError(f"syncing must be a bool, got {self.syncing!r}")
        check_uint(self.farming_timeout_ms, U64_MAX, "farmingTimeout")

    def to_json(self) -> dict:
        secs, ms = divmod(self.farming_timeout_ms, 1000)
        return {
            "genesisHash": self.genesis_hash.hex(),
            "dsnBootstrapNodes": list(self.dsn_bootstrap_nodes),
            "syncing": self.syncing,
            "farmingTimeout": {"secs": secs, "nanos": ms * 1_000_000},
            "protocolInfo": self.protocol_info.to_json(),
        }

    @classmethod
    def from_json(cls, value: object) -> FarmerAppInfo:
        w = "FarmerAppInfo"
        nodes = json_field(value, "dsnBootstrapNodes", w)
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise ValueError(f"dsnBootstrapNodes must be an array of multiaddr strings, got {nodes!r:.80}")
        syncing = json_field(value, "syncing", w)
        if not isinstance(syncing, bool):
            raise ValueError(f"syncing must be a bool, got {syncing!r:.40}")
        timeout = json_field(value, "farmingTimeout", w)
        secs = check_uint(json_field(timeout, "secs", "farmingTimeout"), U64_MAX, "farmingTimeout.secs")
        nanos = check_uint(json_field(timeout, "nanos", "farmingTimeout"), 999_999_999, "farmingTimeout.nanos")
        return cls(
            hex_to_bytes(json_field(value, "genesisHash", w), HASH_SIZE, "genesisHash"),
            tuple(nodes),
            syncing,
            secs * 1000 + nanos // 1_000_000,
            FarmerProtocolInfo.from_json(json_field(value, "protocolInfo", w)),
        )

    def to_scale(self) -> bytes:
        secs, ms = divmod(self.farming_timeout_ms, 1000)
        return (
            self.genesis_hash
            + encode_vec([multiaddr_to_bytes(n) for n in self.dsn_bootstrap_nodes], encode_bytes)
            + encode_bool(self.syncing)
            + encode_u64(secs)
            + encode_u32(ms * 1_000_000)
            + self.protocol_info.to_scale()
        )

    @classmethod
    def decode(cls, r: ScaleReader) -> FarmerAppInfo:
        genesis = r.read(HASH_SIZE, "genesis hash")
        nodes = tuple(multiaddr_from_bytes(b) for b in r.vec(lambda rr: rr.bytes("multiaddr"), "bootstrap nodes"))
        syncing = r.bool("syncing")
        secs = r.u64("farming timeout secs")
        nanos = r.u32("farming timeout nanos")
        if nanos >= 1_000_000_000:
            raise ValueError(f"farming timeout nanos {nanos} >= 1e9")
        return cls(genesis, nodes, syncing, secs * 1000 + nanos // 1_000_000, FarmerProtocolInfo.decode(r))
