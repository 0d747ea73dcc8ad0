"""What a farm directory holds and how big its files are, as the reference farmer decides it.

The reference ``subspace-farmer`` (``single_disk_farm.rs`` at 72a5aa6f) keeps a farm in one
directory: ``single_disk_farm.json`` (farm info), ``identity.bin`` (the farm's key),
``metadata.bin`` (plot metadata header and one checksummed sector metadata entry per sector),
``plot.bin`` (the sectors back to back) and, depending on how it was started,
``piece_cache.bin`` and ``known_addresses.bin``. It sizes the plot from the farm info's
``allocatedSpace`` (``AllocatedSpaceDistribution``):

* fixed overhead = 1 MiB reserved for plot metadata + 1 MiB reserved for farm info + the
  identity file (33 bytes) + the known-peers file for 100 peers (961 284 bytes, the size of the
  official farm's ``known_addresses.bin``);
* ``target_sector_count = ((allocated - fixed) / 100 * (100 - cache_percentage) - 4096)
  / (sector_size + 131 116)`` (integer operations, left to right); it must be below 65 535;
* ``plot.bin`` = ``target_sector_count * sector_size`` rounded up to 4096, ``metadata.bin`` =
  ``1 MiB + target_sector_count * 131 116`` rounded up to 4096, and the piece cache gets what is
  left, in elements of 8 + 1 048 672 + 32 bytes.

The official *cluster* farmer opens farms with ``cache_percentage = 0`` (no piece cache); our
plot-client is that role, so a farm we create for ``sectors=N`` records the smallest
``allocatedSpace`` from which the reference derives exactly N sectors at cache percentage 0.
Farms the official ``farm`` command wrote (cache percentage 1 by default, 5 for the shared
official farm) are opened as they are.

Main API: file-name constants, :class:`FarmInfo` (JSON of ``single_disk_farm.json``),
:class:`SpaceDistribution` / :func:`space_distribution`, :func:`allocated_space_for_sectors`,
:class:`FarmError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from services.protocol.sector import (
    PLOT_METADATA_RESERVED_SIZE,
    SECTOR_METADATA_CHECKSUMMED_SIZE,
    metadata_file_size,
    plot_file_size,
    sector_size,
)

FARM_INFO_FILE = "single_disk_farm.json"
IDENTITY_FILE = "identity.bin"
METADATA_FILE = "metadata.bin"
PLOT_FILE = "plot.bin"
PIECE_CACHE_FILE = "piece_cache.bin"
KNOWN_ADDRESSES_FILE = "known_addresses.bin"
JOURNAL_FILE = "sector_writes.journal"  # ours; the reference farmer ignores unknown files
# Files a directory may already hold and still be a farm being created (a half-created farm,
# a reused disk, the ext4 mount point's lost+found).
CREATABLE_WITH = frozenset(
    {IDENTITY_FILE, METADATA_FILE, PLOT_FILE, PIECE_CACHE_FILE, KNOWN_ADDRESSES_FILE, JOURNAL_FILE, "lost+found"}
)

RESERVED_FARM_INFO_SIZE = 1024 * 1024
IDENTITY_FILE_SIZE = 33  # SCALE Vec<u8> of 32 entropy bytes
KNOWN_PEERS_FILE_SIZE = 961_284  # KnownPeersManager::file_size(100)
DISK_SECTOR_SIZE = 4096
PIECE_CACHE_ELEMENT_SIZE = 8 + 1_048_672 + 32  # piece index, piece, blake3 checksum
FIXED_SPACE_USAGE = PLOT_METADATA_RESERVED_SIZE + RESERVED_FARM_INFO_SIZE + IDENTITY_FILE_SIZE + KNOWN_PEERS_FILE_SIZE
MAX_TARGET_SECTOR_COUNT = 65_534  # the reference keeps the count below u16::MAX (it is also an index)
CLUSTER_CACHE_PERCENTAGE = 0  # the official cluster farmer's farms have no piece cache

_ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class FarmError(Exception):
    """A farm directory cannot be used as asked; the message is one operator-facing line."""


# --------------------------------------------------------------------------------------------
# single_disk_farm.json


@dataclass(frozen=True)
class FarmInfo:
    """``SingleDiskFarmInfo::V0`` (JSON: ``{"v0": {id, genesisHash, publicKey, piecesInSector,
    allocatedSpace}}``, hex without ``0x``)."""

    farm_id: str
    genesis_hash: bytes
    public_key: bytes
    pieces_in_sector: int
    allocated_space: int

    def __post_init__(self) -> None:
        if not isinstance(self.farm_id, str) or not _ULID.match(self.farm_id):
            raise ValueError(f"farm id {self.farm_id!r} is not a ULID")
        for name in ("genesis_hash", "public_key"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise ValueError(f"farm {name} must be 32 bytes")
        if not isinstance(self.pieces_in_sector, int) or not 0 < self.pieces_in_sector <= 0xFFFF:
            raise ValueError(f"farm piecesInSector {self.pieces_in_sector!r} must be 1..65535")
        if not isinstance(self.allocated_space, int) or not 0 <= self.allocated_space < 1 << 64:
            raise ValueError(f"farm allocatedSpace {self.allocated_space!r} must be a u64")

    def to_json_bytes(self) -> bytes:
        """Compact JSON exactly as serde_json writes it (field order of the Rust struct)."""
        body = {
            "v0": {
                "id": self.farm_id,
                "genesisHash": self.genesis_hash.hex(),
                "publicKey": self.public_key.hex(),
                "piecesInSector": self.pieces_in_sector,
                "allocatedSpace": self.allocated_space,
            }
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json_bytes(cls, data: bytes, source: str = FARM_INFO_FILE) -> FarmInfo:
        try:
            value = json.loads(data)
            body = value["v0"]
            for key, pattern in (("genesisHash", _HEX64), ("publicKey", _HEX64)):
                if not isinstance(body[key], str) or not pattern.match(body[key]):
                    raise ValueError(f"{key} must be 64 hex digits")
            return cls(
                farm_id=body["id"],
                genesis_hash=bytes.fromhex(body["genesisHash"]),
                public_key=bytes.fromhex(body["publicKey"]),
                pieces_in_sector=body["piecesInSector"],
                allocated_space=body["allocatedSpace"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise FarmError(f"{source} is not a valid farm info file: {detail}") from None


# --------------------------------------------------------------------------------------------
# Sizing from allocated space


@dataclass(frozen=True)
class SpaceDistribution:
    """How the reference splits a farm's allocated space."""

    target_sector_count: int
    plot_file_size: int
    metadata_file_size: int
    piece_cache_capacity: int


def _single_sector_overhead(pieces_in_sector: int) -> int:
    return sector_size(pieces_in_sector) + SECTOR_METADATA_CHECKSUMMED_SIZE


def space_distribution(allocated_space: int, pieces_in_sector: int, cache_percentage: int = CLUSTER_CACHE_PERCENTAGE) -> SpaceDistribution:
    """``AllocatedSpaceDistribution::new`` of the reference (raises FarmError where it errs)."""
    if not 0 <= cache_percentage <= 99:
        raise ValueError(f"cache percentage {cache_percentage} must be 0..99")
    overhead = _single_sector_overhead(pieces_in_sector)
    plottable = max(0, allocated_space - FIXED_SPACE_USAGE) // 100 * (100 - cache_percentage)
    count = max(0, plottable - DISK_SECTOR_SIZE) // overhead
    if count == 0:
        raise FarmError(f"allocated space {allocated_space} bytes is too small for one sector of {pieces_in_sector} pieces")
    if count > MAX_TARGET_SECTOR_COUNT:
        raise FarmError(f"allocated space {allocated_space} bytes gives {count} sectors, more than {MAX_TARGET_SECTOR_COUNT}")
    plot_size = plot_file_size(count, pieces_in_sector)
    capacity = 0
    if cache_percentage > 0:
        cache_space = allocated_space - FIXED_SPACE_USAGE - plot_size - SECTOR_METADATA_CHECKSUMMED_SIZE * count
        capacity = max(0, cache_space) // PIECE_CACHE_ELEMENT_SIZE
    return SpaceDistribution(count, plot_size, metadata_file_size(count), capacity)


def allocated_space_for_sectors(target_sector_count: int, pieces_in_sector: int) -> int:
    """Smallest ``allocatedSpace`` from which the reference (cache percentage 0) derives exactly
    ``target_sector_count`` sectors."""
    if not 0 < target_sector_count <= MAX_TARGET_SECTOR_COUNT:
        raise FarmError(f"a farm holds 1..{MAX_TARGET_SECTOR_COUNT} sectors, not {target_sector_count}")
    needed = target_sector_count * _single_sector_overhead(pieces_in_sector) + DISK_SECTOR_SIZE
    return FIXED_SPACE_USAGE + -(-needed // 100) * 100
