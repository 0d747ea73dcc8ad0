"""One farm directory in the reference layout: open or create it, audit it, read sectors for
proving, and write new or replotted sectors crash-safely (see the package docstring).

Blocking API (file I/O, fsync, checksums): call it from threads, not from an event loop.
"""

from __future__ import annotations

import enum
import mmap
import os
import threading
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import structlog

from services.farm.audit import AuditedSector, AuditTable
from services.farm.files import read_exact_at, resize_file, write_all_at
from services.farm.identity import Identity
from services.farm.journal import SectorWriteJournal
from services.farm.layout import MAX_TARGET_SECTOR_COUNT, METADATA_FILE, PLOT_FILE, FarmError, FarmInfo
from services.farm.opening import (
    fit_allocated_space,
    load_or_create_info,
    lock_farm,
    plotted_sector_count,
    prepare_metadata,
)
from services.protocol.constants import RECORD_NUM_CHUNKS
from services.protocol.hashes import blake3_hash
from services.protocol.sector import (
    SECTOR_METADATA_CHECKSUMMED_SIZE,
    RecordMetadata,
    SectorContentsMap,
    SectorError,
    SectorMetadata,
    decode_metadata_entry_or_dummy,
    derive_sector_id_from_key_hash,
    encode_plot_metadata_header,
    metadata_entry_offset,
    plot_file_size,
    read_record_metadata,
    sector_size,
    verify_sector_checksum,
)

log = structlog.get_logger("farm")


class SectorState(enum.IntEnum):
    MISSING = 0  # never plotted: index at or beyond the plotted sector count
    PLOTTED = 1  # audited and proven
    NEEDS_REPLOT = 2  # dummy metadata: undecodable entry, interrupted write, failed proof
    WRITING = 3  # a new sector is being written into this slot


def _is_dummy(metadata: SectorMetadata) -> bool:
    return metadata.history_size == 1 and not metadata.s_bucket_sizes.any()


class Farm:
    """An open farm; build it with :meth:`open`, release it with :meth:`close`."""

    def __init__(self, directory: Path, info: FarmInfo, identity: Identity, target_sector_count: int,
                 lock_fd: int, metadata_fd: int, plot_fd: int) -> None:
        self.directory = directory
        self.info = info
        self.identity = identity
        self.target_sector_count = target_sector_count
        self.pieces_in_sector = info.pieces_in_sector
        self.sector_size = sector_size(info.pieces_in_sector)
        self._lock_fd = lock_fd
        self._metadata_fd = metadata_fd
        self._plot_fd = plot_fd
        self._lock = threading.Lock()
        self._public_key_hash = blake3_hash(identity.public_key)
        self.states = np.full(target_sector_count, SectorState.MISSING, dtype=np.uint8)
        self.history_sizes = np.zeros(target_sector_count, dtype=np.uint64)
        self.plotted_sector_count = 0
        self.interrupted_sectors: list[int] = []  # found half-written at open
        self.table = AuditTable(target_sector_count, self.pieces_in_sector, self.sector_size)
        self.journal = SectorWriteJournal(directory)
        self._plot_map = mmap.mmap(plot_fd, 0, access=mmap.ACCESS_READ)
        self._plot_words = np.frombuffer(self._plot_map, dtype="<u4")  # audits hash the page cache in place

    # ---- opening

    @classmethod
    def open(cls, directory: str | Path, *, sectors: int, genesis_hash: bytes, max_pieces_in_sector: int,
             create: bool = True, preallocate: bool = True) -> Farm:
        """Open the farm in ``directory`` (creating it when allowed) for ``sectors`` sectors.

        Raises :class:`FarmError` for a directory that is neither a farm nor empty, a farm of
        another chain (genesis hash) or key, a farm in use by another process, and a sector
        count below the number of sectors already plotted (that would discard them).
        """
        directory = Path(directory).expanduser().absolute()
        if not 0 < sectors <= MAX_TARGET_SECTOR_COUNT:
            raise FarmError(f"farm {directory}: sectors must be 1..{MAX_TARGET_SECTOR_COUNT}, got {sectors}")
        try:
            if create:
                directory.mkdir(parents=True, exist_ok=True)
            elif not directory.is_dir():
                raise FarmError(f"farm directory {directory} does not exist")
            info, identity = load_or_create_info(directory, sectors, genesis_hash, max_pieces_in_sector, create)
            lock_fd = lock_farm(directory)
        except OSError as exc:
            raise FarmError(f"farm {directory}: {exc.strerror or exc}") from None
        fds = [lock_fd]
        try:
            metadata_fd = os.open(directory / METADATA_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            fds.append(metadata_fd)
            plotted = plotted_sector_count(metadata_fd, sectors, directory)  # refuses before any change
            fitted = fit_allocated_space(directory, info, sectors)
            if fitted is not info:  # the info file was replaced: lock the new one
                fds[0] = lock_farm(directory)
                os.close(lock_fd)
                lock_fd, info = fds[0], fitted
            prepare_metadata(metadata_fd, sectors, preallocate, plotted)
            plot_fd = os.open(directory / PLOT_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            fds.append(plot_fd)
            resize_file(plot_fd, plot_file_size(sectors, info.pieces_in_sector), preallocate)
            farm = cls(directory, info, identity, sectors, lock_fd, metadata_fd, plot_fd)
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise FarmError(f"farm {directory}: {exc.strerror or exc}") from None
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        try:
            farm._load_sectors(plotted or 0)
            farm._recover_interrupted_writes()
        except BaseException:
            farm.close()
            raise
        return farm

    def _load_sectors(self, plotted: int) -> None:
        self.plotted_sector_count = plotted
        size = SECTOR_METADATA_CHECKSUMMED_SIZE
        data = read_exact_at(self._metadata_fd, plotted * size, metadata_entry_offset(0)) if plotted else b""
        replaced = []
        for index in range(plotted):
            entry = data[index * size : (index + 1) * size]
            metadata, ok = decode_metadata_entry_or_dummy(entry, index, self.pieces_in_sector)
            if ok and not _is_dummy(metadata) and not self._consistent(index, metadata):
                metadata, ok = SectorMetadata.dummy(index, self.pieces_in_sector), False
            if not ok:  # what the reference does: a dummy, expired entry in its place
                self._write_metadata_entry(index, metadata)
                replaced.append(index)
            if _is_dummy(metadata):
                self.states[index] = SectorState.NEEDS_REPLOT
            else:
                self._activate(index, metadata)
        if replaced:
            os.fsync(self._metadata_fd)
            log.warning("undecodable sector metadata replaced by expired entries", farm=self.info.farm_id,
                        sectors=replaced)

    def _consistent(self, index: int, metadata: SectorMetadata) -> bool:
        return (
            metadata.sector_index == index
            and metadata.pieces_in_sector == self.pieces_in_sector
            and int(metadata.s_bucket_sizes.sum(dtype=np.int64)) == self.pieces_in_sector * RECORD_NUM_CHUNKS
        )

    def _recover_interrupted_writes(self) -> None:
        for index in sorted(self.journal.load()):
            if index >= self.plotted_sector_count or index >= self.target_sector_count:
                self.interrupted_sectors.append(index)  # never committed: still missing
                continue
            if self.states[index] == SectorState.PLOTTED and self._sector_checksum_ok(index):
                continue  # the write had completed; only the journal update was lost
            self.table.deactivate(index)
            self._write_metadata_entry(index, SectorMetadata.dummy(index, self.pieces_in_sector))
            os.fsync(self._metadata_fd)
            self.states[index] = SectorState.NEEDS_REPLOT
            self.interrupted_sectors.append(index)
        self.journal.clear()
        if self.interrupted_sectors:
            log.warning("sector writes interrupted by a crash; those sectors will be plotted again",
                        farm=self.info.farm_id, sectors=self.interrupted_sectors)

    def _sector_checksum_ok(self, index: int) -> bool:
        try:
            verify_sector_checksum(self.sector_view(index), self.pieces_in_sector)
            return True
        except SectorError:
            return False

    def close(self) -> None:
        """Release the files and the farm lock (idempotent)."""
        if self._plot_fd < 0:
            return
        self.table.active[:] = False
        self._plot_words = None
        try:
            self._plot_map.close()
        except BufferError:  # a caller still holds a view; the mapping goes with the process
            pass
        for fd in (self._plot_fd, self._metadata_fd, self._lock_fd):
            os.close(fd)
        self._plot_fd = self._metadata_fd = self._lock_fd = -1

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- what the farm holds

    @property
    def farm_id(self) -> str:
        return self.info.farm_id

    @property
    def public_key(self) -> bytes:
        return self.identity.public_key

    def sectors_in_state(self, state: SectorState) -> list[int]:
        with self._lock:
            return np.flatnonzero(self.states == state).tolist()

    def plotted_sectors(self) -> list[int]:
        return self.sectors_in_state(SectorState.PLOTTED)

    def sectors_to_replot(self) -> list[int]:
        """Sectors with dummy metadata (undecodable, interrupted or failed): plot them again."""
        return self.sectors_in_state(SectorState.NEEDS_REPLOT)

    def missing_sectors(self) -> list[int]:
        return self.sectors_in_state(SectorState.MISSING)

    def sector_metadata(self, index: int) -> SectorMetadata | None:
        """Metadata of a plotted sector (None otherwise)."""
        with self._lock:
            if self.states[index] != SectorState.PLOTTED:
                return None
            sizes = self.table.sizes[index].copy()
            history_size = int(self.history_sizes[index])
        return SectorMetadata(index, self.pieces_in_sector, sizes, history_size)

    def sector_id(self, index: int, history_size: int) -> bytes:
        return derive_sector_id_from_key_hash(self._public_key_hash, index, history_size)

    # ---- reading

    def audit(self, global_challenge: bytes, solution_range: int, executor: Executor | None = None) -> list[AuditedSector]:
        """Audit every plotted sector (spec 04 §2, voting solution range); winners best first."""
        return self.table.audit(self._plot_words, global_challenge, solution_range, executor,
                                prefetch_fd=self._plot_fd)

    def is_current(self, index: int, generation: int) -> bool:
        """True while sector ``index`` still holds what an audit at ``generation`` read."""
        return self.table.generation(index) == generation

    def sector_view(self, index: int) -> memoryview:
        """Read-only view of sector ``index`` in ``plot.bin`` (an mmap: pages load on access)."""
        if not 0 <= index < self.target_sector_count:
            raise IndexError(f"sector {index} outside farm of {self.target_sector_count} sectors")
        start = index * self.sector_size
        return memoryview(self._plot_map)[start : start + self.sector_size]

    def read_contents_map(self, index: int) -> SectorContentsMap:
        """The sector's contents map, checksum verified (raises SectorError)."""
        return SectorContentsMap.from_sector(self.sector_view(index), self.pieces_in_sector)

    def read_record_metadata(self, index: int, piece_offset: int) -> RecordMetadata:
        return read_record_metadata(self.sector_view(index), self.pieces_in_sector, piece_offset)

    def mark_for_replot(self, index: int, generation: int) -> bool:
        """Proving failed on this sector: give it dummy metadata (the reference's reaction) unless
        it changed since the audit at ``generation``. True when it was marked."""
        with self._lock:
            if self.states[index] != SectorState.PLOTTED or not self.is_current(index, generation):
                return False
            self.table.deactivate(index)
            self._write_metadata_entry(index, SectorMetadata.dummy(index, self.pieces_in_sector))
            os.fsync(self._metadata_fd)
            self.states[index] = SectorState.NEEDS_REPLOT
        return True

    # ---- writing (the plotting side)

    def begin_sector_write(self, index: int) -> FarmSectorWriter:
        """Start writing sector ``index`` (new, or replacing the sector there); see FarmSectorWriter."""
        if not 0 <= index < self.target_sector_count:
            raise FarmError(f"sector {index} outside farm of {self.target_sector_count} sectors")
        with self._lock:
            if self.states[index] == SectorState.WRITING:
                raise FarmError(f"sector {index} of farm {self.farm_id} is already being written")
            self.journal.begin(index)
            replacing = index < self.plotted_sector_count
            self.table.deactivate(index)
            self.states[index] = SectorState.WRITING
            if replacing:  # the old sector stops being valid before its first byte is overwritten
                self._write_metadata_entry(index, SectorMetadata.dummy(index, self.pieces_in_sector))
                os.fsync(self._metadata_fd)
        return FarmSectorWriter(self, index)

    def write_sector(self, index: int, sector: bytes | bytearray | memoryview, metadata: SectorMetadata) -> None:
        """Write a whole sector and its metadata (begin, write, commit)."""
        with self.begin_sector_write(index) as writer:
            writer.write(0, sector)
            writer.commit(metadata)

    def _commit(self, index: int, metadata: SectorMetadata) -> None:
        if metadata.sector_index != index or metadata.pieces_in_sector != self.pieces_in_sector:
            raise FarmError(
                f"metadata is for sector {metadata.sector_index} of {metadata.pieces_in_sector} pieces, "
                f"not sector {index} of {self.pieces_in_sector}"
            )
        if not self._consistent(index, metadata):
            raise FarmError(f"sector {index} metadata s-bucket sizes do not add up to a full sector")
        os.fdatasync(self._plot_fd)
        view = self.sector_view(index)
        try:
            verify_sector_checksum(view, self.pieces_in_sector)
            contents = SectorContentsMap.from_sector(view, self.pieces_in_sector)
        except SectorError as exc:
            raise FarmError(f"sector {index} written to farm {self.farm_id} is corrupt: {exc}") from None
        del contents, view
        with self._lock:
            count = self.plotted_sector_count
            gap = range(count, index)
            for missing in gap:  # the reference keeps plotted sectors contiguous: fill with dummies
                self._write_metadata_entry(missing, SectorMetadata.dummy(missing, self.pieces_in_sector))
            self._write_metadata_entry(index, metadata)
            os.fsync(self._metadata_fd)
            if index >= count:
                write_all_at(self._metadata_fd, encode_plot_metadata_header(index + 1), 0)
                os.fsync(self._metadata_fd)
                self.plotted_sector_count = index + 1
                self.states[list(gap)] = SectorState.NEEDS_REPLOT
            self.journal.end(index)
            self._activate(index, metadata)

    def _abort(self, index: int) -> None:
        with self._lock:
            self.journal.end(index)
            replacing = index < self.plotted_sector_count
            self.states[index] = SectorState.NEEDS_REPLOT if replacing else SectorState.MISSING

    # ---- internals

    def _activate(self, index: int, metadata: SectorMetadata) -> None:
        self.history_sizes[index] = metadata.history_size
        self.table.activate(index, self.sector_id(index, metadata.history_size), metadata.s_bucket_sizes)
        self.states[index] = SectorState.PLOTTED

    def _write_metadata_entry(self, index: int, metadata: SectorMetadata) -> None:
        write_all_at(self._metadata_fd, metadata.to_checksummed_bytes(), metadata_entry_offset(index))


class FarmSectorWriter:
    """Writes one sector into its slot of ``plot.bin``; from :meth:`Farm.begin_sector_write`.

    ``write(offset, data)`` any number of times (offsets inside the sector, e.g. a download
    resumed at an offset), then ``commit(metadata)``, which flushes the sector, checks its
    checksum and contents map and only then stores the metadata; or ``abort()``. Leaving the
    ``with`` block without committing aborts. Until committed the sector is not audited.
    """

    def __init__(self, farm: Farm, index: int) -> None:
        self.farm = farm
        self.sector_index = index
        self._done = False

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        size = memoryview(data).nbytes
        if offset < 0 or offset + size > self.farm.sector_size:
            raise FarmError(f"write of {size} bytes at {offset} leaves sector of {self.farm.sector_size} bytes")
        write_all_at(self.farm._plot_fd, data, self.sector_index * self.farm.sector_size + offset)

    def commit(self, metadata: SectorMetadata) -> None:
        self._check_open()
        self.farm._commit(self.sector_index, metadata)
        self._done = True

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self.farm._abort(self.sector_index)

    def _check_open(self) -> None:
        if self._done:
            raise FarmError(f"sector {self.sector_index} write already finished")

    def __enter__(self) -> FarmSectorWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.abort()
