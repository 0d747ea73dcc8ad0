"""The plot-client's sector jobs in flight, and their journal on disk.

Why a journal: a plot-client restarted while plot-servers work on its jobs must recognise
them (accept their results) instead of queueing the same sectors again at a newer history size
and throwing the finished work away; and a sector written just before a crash must not be
written again. Each farm keeps ``plotting_jobs.json`` beside its plot (the reference farmer
ignores files it does not know), replaced atomically on every change: one entry per sector slot
with a job in flight (the job as queued, the ULID of this issue of it, its queue sequence, how
often it was re-queued, and whether its sector is already written).

States of a job in memory (``JobRecord.state``): ``queued`` (published, no holder yet),
``claimed`` (a plot-server holds it), ``downloading`` (its sector is coming in), ``written``
(sector and metadata are in the farm; waiting to tell the holder).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from services.bus.message import new_ulid
from services.plot_server.messages import PlotSectorJob

JOURNAL_FILE = "plotting_jobs.json"

QUEUED = "queued"
CLAIMED = "claimed"
DOWNLOADING = "downloading"
WRITTEN = "written"


class JournalEntry(msgspec.Struct, kw_only=True):
    job: PlotSectorJob
    issue: str  # this issue's ULID: part of its de-duplication id
    sequence: int = 0
    reissues: int = 0
    written: bool = False


class JournalFile(msgspec.Struct, kw_only=True):
    version: int = 1
    jobs: list[JournalEntry] = []


@dataclass
class JobRecord:
    """A job in flight (see the module docstring for ``state``)."""

    job: PlotSectorJob
    issue: str = field(default_factory=new_ulid)
    sequence: int = 0
    reissues: int = 0
    state: str = QUEUED
    holder: str | None = None
    stage: str = ""
    done: int = 0
    total: int = 0
    last_heard: float = field(default_factory=time.monotonic)
    published_at: float = field(default_factory=time.monotonic)
    claimed_at: float = 0.0  # monotonic time a plot-server's claim was accepted (0: not in this run)

    @property
    def sector_index(self) -> int:
        return self.job.sector_index

    @property
    def history_size(self) -> int:
        return self.job.decoded_protocol_info().history_size

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    def msg_id(self) -> str:
        """``Nats-Msg-Id`` of this job's current queue entry: the job id and this issue (a restart
        re-publishing it is a duplicate; the same slot and history size planned again later, after
        a crash mid-write or a failed proof, is a new issue), and a new one when re-queued."""
        suffix = f".{self.reissues}" if self.reissues else ""
        return f"{self.job.job_id}#{self.issue}{suffix}"

    def entry(self) -> JournalEntry:
        return JournalEntry(job=self.job, issue=self.issue, sequence=self.sequence, reissues=self.reissues,
                            written=self.state == WRITTEN)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class JobJournal:
    """``plotting_jobs.json`` of one farm. Blocking file I/O (small file): call from a thread
    or accept a few milliseconds on the event loop."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / JOURNAL_FILE

    def load(self) -> list[JobRecord]:
        """The jobs in flight when the journal was last saved (an unreadable journal is set
        aside as ``.corrupt`` and treated as empty: its sectors are simply planned again)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            journal = msgspec.json.decode(data, type=JournalFile)
        except (msgspec.DecodeError, msgspec.ValidationError):
            os.replace(self.path, self.path.with_name(self.path.name + ".corrupt"))
            return []
        return [JobRecord(job=e.job, issue=e.issue, sequence=e.sequence, reissues=e.reissues,
                          state=WRITTEN if e.written else QUEUED) for e in journal.jobs]

    def save(self, records: list[JobRecord]) -> None:
        entries = sorted((r.entry() for r in records), key=lambda e: e.job.sector_index)
        _atomic_write(self.path, msgspec.json.encode(JournalFile(jobs=entries)))
