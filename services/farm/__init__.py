"""Farm directories in the reference farmer's on-disk layout (spec 03 §9).

A farm is one directory the official ``subspace-farmer`` can open and we can open: farms it
wrote are farmed as they are (no replotting), farms we create it would open.

* ``single_disk_farm.json`` — farm info (ULID id, genesis hash, public key, pieces per sector,
  allocated space) as compact serde JSON; an exclusive ``flock`` on it (the reference's lock)
  keeps a second farmer process out.
* ``identity.bin`` — SCALE ``Vec<u8>`` of 32 entropy bytes; created on first start with mode
  0600; the sr25519 key derives from it (:mod:`.identity`).
* ``metadata.bin`` — 3-byte header ``{version 0, plotted_sector_count u16}``, then from 1 MiB one
  checksummed sector metadata entry (131 116 bytes) per sector.
* ``plot.bin`` — sector ``i`` at ``i * sector_size``, preallocated.
* ``piece_cache.bin``, ``known_addresses.bin`` — the official farmer's piece cache and peer
  cache; never touched here (the cluster farmer runs without a piece cache).
* ``sector_writes.journal`` — ours: sectors being written (:mod:`.journal`).

Sizing (:mod:`.layout`): a farm opened with ``sectors=N`` holds N sector slots; a new farm
records the smallest ``allocatedSpace`` from which the reference, at the cluster farmer's cache
percentage 0, derives N sectors, and files sized the way it sizes them.

Opening: ``Farm.open(path, sectors=N, genesis_hash=..., max_pieces_in_sector=...)`` creates the
farm in an empty directory (an ext4 ``lost+found`` is fine), refuses a non-empty directory that
is not a farm, a farm of another chain or key, a farm in use, and an N below the plotted sector
count. Undecodable metadata entries become the reference's dummy entries (history size 1, no
s-buckets: expired, replotted); sectors a crash left half-written (named in the journal) too.
``Farm.interrupted_sectors`` lists the latter, ``sectors_to_replot()`` every sector with a dummy
entry, ``missing_sectors()`` the slots never plotted, ``plotted_sectors()`` the farmed ones.

Farming: ``Farm.audit(global_challenge, voting_solution_range, executor)`` audits every plotted
sector with one s-bucket read each (:mod:`.audit`) and returns ``AuditedSector`` (the protocol's
``SectorAuditResult`` plus the row generation it was read under), best distance first;
``sector_view(i)`` (mmap), ``sector_metadata(i)``, ``read_contents_map(i)``,
``read_record_metadata(i, offset)`` serve proving; ``is_current(i, generation)`` tells whether a
sector changed since an audit, and ``mark_for_replot(i, generation)`` is the reaction to a failed
proof (dummy entry, as the reference does).

Writing new and replotted sectors (for the plotting component; all calls block, run them in a
thread)::

    with farm.begin_sector_write(sector_index) as writer:   # journal entry; the old sector (if
        writer.write(offset, chunk)                          # any) gets dummy metadata first and
        ...                                                  # is no longer audited
        writer.commit(sector_metadata)                       # fsync, sector checksum + contents
                                                             # map checked, metadata entry (and
                                                             # header count) written, journal
                                                             # cleared, sector audited again
    farm.write_sector(sector_index, sector_bytes, sector_metadata)   # the same in one call

From the farm's point of view the write is atomic: a sector is audited with the old metadata
or, after ``commit``, with the new; a crash in between leaves a sector to replot, never a sector
audited with metadata that does not match its bytes. Leaving the ``with`` block without
``commit`` (an error, a failed download) aborts: the slot becomes a sector to replot (or stays
missing). Writing beyond the plotted count fills the gap with dummy entries, because the
reference keeps plotted sectors contiguous (``plotted_sector_count`` is a count, not a set).
"""

from services.farm.audit import AuditedSector, AuditTable
from services.farm.farm import Farm, SectorState, FarmSectorWriter
from services.farm.identity import Identity
from services.farm.layout import FarmError, FarmInfo, allocated_space_for_sectors, space_distribution

__all__ = [
    "AuditTable",
    "AuditedSector",
    "Farm",
    "FarmError",
    "FarmInfo",
    "Identity",
    "SectorState",
    "FarmSectorWriter",
    "allocated_space_for_sectors",
    "space_distribution",
]
