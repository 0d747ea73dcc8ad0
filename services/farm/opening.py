"""Opening a farm directory: load or create the farm info and identity, take the farm lock,
record the farm's size, and prepare ``metadata.bin`` (see the package docstring for the rules).

Helpers of :meth:`services.farm.Farm.open`; blocking file I/O.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import structlog

from services.bus.message import new_ulid
from services.farm.files import atomic_write, read_exact_at, resize_file, write_all_at
from services.farm.identity import Identity, create_identity, load_identity
from services.farm.layout import (
    CREATABLE_WITH,
    FARM_INFO_FILE,
    METADATA_FILE,
    PLOT_FILE,
    FarmError,
    FarmInfo,
    allocated_space_for_sectors,
    space_distribution,
)
from services.protocol.scale import ScaleError
from services.protocol.sector import (
    decode_plot_metadata_header,
    encode_plot_metadata_header,
    metadata_file_size,
    plot_file_size,
)

log = structlog.get_logger("farm")


def load_or_create_info(directory: Path, sectors: int, genesis_hash: bytes, max_pieces_in_sector: int,
                         create: bool) -> tuple[FarmInfo, Identity]:
    info_path = directory / FARM_INFO_FILE
    if info_path.exists():
        info = FarmInfo.from_json_bytes(info_path.read_bytes(), str(info_path))
        identity = load_identity(directory)
        if identity is None:
            raise FarmError(f"farm {directory} has {FARM_INFO_FILE} but no identity.bin: the farm's key is missing")
        if info.genesis_hash != genesis_hash:
            raise FarmError(
                f"farm {directory} belongs to chain {info.genesis_hash.hex()}, but the node is on chain "
                f"{genesis_hash.hex()} (wrong network or wrong directory)"
            )
        if info.public_key != identity.public_key:
            raise FarmError(f"farm {directory}: identity.bin holds key {identity.public_key.hex()}, the farm "
                            f"was created with {info.public_key.hex()}")
        if info.pieces_in_sector > max_pieces_in_sector:
            raise FarmError(f"farm {directory} has {info.pieces_in_sector} pieces per sector, the chain allows at "
                            f"most {max_pieces_in_sector}")
        return info, identity
    if not create:
        raise FarmError(f"{directory} is not a farm (no {FARM_INFO_FILE})")
    ours = CREATABLE_WITH | {f".{name}.tmp" for name in CREATABLE_WITH | {FARM_INFO_FILE}}
    stray = sorted(entry.name for entry in directory.iterdir() if entry.name not in ours)
    if stray:
        shown = ", ".join(stray[:5]) + (", ..." if len(stray) > 5 else "")
        raise FarmError(f"{directory} is not a farm and not empty (holds {shown}); give an empty directory or a farm")
    identity = load_identity(directory) or create_identity(directory)
    info = FarmInfo(new_ulid(), genesis_hash, identity.public_key, max_pieces_in_sector,
                    allocated_space_for_sectors(sectors, max_pieces_in_sector))
    atomic_write(info_path, info.to_json_bytes())
    log.info("farm created", path=str(directory), farm=info.farm_id, public_key=identity.public_key.hex(),
             sectors=sectors, pieces_in_sector=max_pieces_in_sector)
    return info, identity


def lock_farm(directory: Path) -> int:
    """Exclusive ``flock`` on ``single_disk_farm.json``, the lock the reference farmer takes."""
    fd = os.open(directory / FARM_INFO_FILE, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FarmError(f"farm {directory} is in use by another farmer process") from None
    return fd


def fit_allocated_space(directory: Path, info: FarmInfo, sectors: int) -> FarmInfo:
    """Record an ``allocatedSpace`` from which the reference derives ``sectors`` sectors, unless
    the farm already has that many (its plot file is sized for them: a farm the official
    ``farm`` command sized with a piece cache keeps its info file as it is)."""
    try:
        plot_size = (directory / PLOT_FILE).stat().st_size
    except FileNotFoundError:
        plot_size = None
    if plot_size == plot_file_size(sectors, info.pieces_in_sector):
        return info
    try:
        current = space_distribution(info.allocated_space, info.pieces_in_sector).target_sector_count
    except FarmError:
        current = None
    if current == sectors:
        return info
    updated = FarmInfo(info.farm_id, info.genesis_hash, info.public_key, info.pieces_in_sector,
                       allocated_space_for_sectors(sectors, info.pieces_in_sector))
    atomic_write(directory / FARM_INFO_FILE, updated.to_json_bytes())
    log.info("farm size changed", farm=info.farm_id, sectors=sectors, allocated_space=updated.allocated_space)
    return updated


def plotted_sector_count(fd: int, sectors: int, directory: Path) -> int | None:
    """Plotted sector count from ``metadata.bin`` (None for a new, empty file)."""
    if os.fstat(fd).st_size == 0:
        return None
    try:
        plotted = decode_plot_metadata_header(read_exact_at(fd, 3, 0))
    except (ScaleError, EOFError) as exc:
        raise FarmError(f"{directory / METADATA_FILE}: {exc}") from None
    if plotted > sectors:
        raise FarmError(f"farm {directory} has {plotted} plotted sectors; sectors={sectors} would discard "
                        f"{plotted - sectors} of them (give sectors={plotted} or more)")
    return plotted


def prepare_metadata(fd: int, sectors: int, preallocate: bool, plotted: int | None) -> None:
    """Create (header with count 0) or resize ``metadata.bin`` for ``sectors`` sectors."""
    resize_file(fd, metadata_file_size(sectors), preallocate)
    if plotted is None:
        write_all_at(fd, encode_plot_metadata_header(0), 0)
        os.fsync(fd)
