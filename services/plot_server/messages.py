"""The sector-job protocol between plot-clients and plot-servers (their public protocol).

Why one module for both sides: a sector job is one conversation, and its messages only make
sense together; the plot-server is the role that defines it (plot-clients are its customers).

Flow (docs/ARCHITECTURE.md "Sector jobs"):

1. the plot-client queues a :class:`PlotSectorJob` on the JetStream work queue
   ``plot-sector`` (``services.bus.jobs``; stream ``autonomys-jobs-plot-sector``, consumer
   ``plot-sector-workers``), ``job_id`` = :func:`sector_job_id` (farm, sector index, history
   size); its ``Nats-Msg-Id`` is the job id and the plot-client's journalled issue id, so a
   restarted plot-client re-publishing it adds no copy;
2. a plot-server with room pulls it and asks the job's plot-client :class:`SectorJobClaim`:
   the plot-client accepts one holder per job (a newer claim after a redelivery supersedes the
   older holder, which is told :class:`SectorJobCancel`) and refuses jobs it no longer wants
   or already wrote;
3. while plotting, the holder heartbeats the JetStream job and sends :class:`SectorJobProgress`
   (the reply says whether to go on: a cancelled or superseded job stops promptly);
4. the finished sector is written under the plot-server's BASE_PATH and offered with
   :class:`SectorJobReady` (its ``tcp://`` endpoint, size, checksum and the SCALE
   ``PlottedSector``); the plot-client downloads it over the data plane with
   :class:`FetchSectorRange` (any byte range: downloads resume at an offset);
5. after writing sector then metadata, the plot-client sends :class:`SectorJobDone`; only then
   does the plot-server ack the JetStream job and delete its copy.

Subjects: plot-client side ``subspace.plot-client.<client instance>.sector-job.{claim,progress,
ready}``; plot-server side ``subspace.plot-server.<server instance>.sector-job.{done,cancel}``.
Protocol values travel as their SCALE bytes (``FarmerProtocolInfo``, ``PlottedSector``).
"""

from __future__ import annotations

import msgspec

from services.bus.jobs import Job, WorkQueueSettings
from services.bus.message import Message
from services.p2p.message import Request
from services.protocol.sector import FarmerProtocolInfo, PlottedSector

PLOT_SECTOR_QUEUE = "plot-sector"
# Both sides open the queue with these (the consumer's settings follow whoever opens it last):
# a dead holder's job is redelivered within 30 s (holders heartbeat every 10 s), at most 5
# deliveries, a job id is remembered for 10 min (plot-client restarts re-queue without copies).
SECTOR_JOB_QUEUE = WorkQueueSettings(ack_wait=30.0, max_deliver=5, duplicate_window=600.0)

# progress stages
STAGE_CLAIMED = "claimed"
STAGE_DOWNLOADING = "downloading"
STAGE_ENCODING = "encoding"
STAGE_WRITING = "writing"
STAGE_READY = "ready"

# SectorJobDone outcomes
DONE_WRITTEN = "written"  # sector and metadata are in the farm: ack the job
DONE_UNWANTED = "unwanted"  # the client does not want this job any more: drop it
DONE_FAILED = "failed"  # the download or its checksum failed for good: plot it again


def sector_job_id(farm_id: str, sector_index: int, history_size: int) -> str:
    """The job id of plotting ``sector_index`` of ``farm_id`` at ``history_size``: one job (and
    one accepted result) per sector slot and history size."""
    return f"{farm_id}-{sector_index}-{history_size}"


class PlotSectorJob(Job):
    """Plot one sector for a farm (spec 06 §3 ``plot-sector`` payload plus who asked)."""

    queue = PLOT_SECTOR_QUEUE
    farm_id: str
    public_key: bytes  # 32
    sector_index: int
    protocol_info: bytes  # SCALE FarmerProtocolInfo (its history_size is the sector's)
    pieces_in_sector: int
    client: str  # the plot-client's instance: where claims, progress and the result go
    replotting: bool = False

    @classmethod
    def build(cls, farm_id: str, public_key: bytes, sector_index: int, protocol_info: FarmerProtocolInfo,
              pieces_in_sector: int, client: str, replotting: bool = False) -> PlotSectorJob:
        return cls(job_id=sector_job_id(farm_id, sector_index, protocol_info.history_size), farm_id=farm_id,
                   public_key=bytes(public_key), sector_index=sector_index, protocol_info=protocol_info.to_scale(),
                   pieces_in_sector=pieces_in_sector, client=client, replotting=replotting)

    def decoded_protocol_info(self) -> FarmerProtocolInfo:
        return FarmerProtocolInfo.from_scale(self.protocol_info)


# ---- served by the plot-client (the job's owner)


class ClaimReply(msgspec.Struct):
    accepted: bool
    reason: str = ""


class SectorJobClaim(Message):
    """A plot-server took the job from the queue (``attempt``: its JetStream delivery count)."""

    subject = "subspace.plot-client.*.sector-job.claim"
    response = ClaimReply
    job_id: str
    server: str
    attempt: int


class ProgressReply(msgspec.Struct):
    keep_going: bool
    reason: str = ""


class SectorJobProgress(Message):
    """Where the holder is; sent every few seconds and on each stage change."""

    subject = "subspace.plot-client.*.sector-job.progress"
    response = ProgressReply
    job_id: str
    server: str
    stage: str
    done: int = 0  # pieces fetched / records encoded so far
    total: int = 0


class ReadyReply(msgspec.Struct):
    accepted: bool
    reason: str = ""


class SectorJobReady(Message):
    """The sector is plotted and can be downloaded from ``endpoint`` (``FetchSectorRange``)."""

    subject = "subspace.plot-client.*.sector-job.ready"
    response = ReadyReply
    job_id: str
    server: str
    endpoint: str  # tcp://HOST:PORT of the plot-server's data plane
    sector_size: int
    checksum: bytes  # the sector's last 32 bytes: blake3 of everything before
    plotted_sector: bytes  # SCALE PlottedSector
    seconds: float = 0.0  # plotting time
    downloading_seconds: float = 0.0  # of which waiting for pieces (services.plot_server.pipeline.PlotResult)
    encoding_seconds: float = 0.0  # of which encoding records

    def decoded_plotted_sector(self) -> PlottedSector:
        return PlottedSector.from_scale(self.plotted_sector)


# ---- served by the plot-server holding the job


class DoneReply(msgspec.Struct):
    ok: bool
    reason: str = ""


class SectorJobDone(Message):
    """The plot-client's verdict on a sector it was offered (``DONE_*``)."""

    subject = "subspace.plot-server.*.sector-job.done"
    response = DoneReply
    job_id: str
    outcome: str
    reason: str = ""


class SectorJobCancel(Message):
    """Stop the job now (cancelled by its plot-client or superseded by a newer holder)."""

    subject = "subspace.plot-server.*.sector-job.cancel"
    job_id: str
    reason: str = ""


# ---- data plane (the plot-server's listener, ``--listen-port``)


class FetchSectorRange(Request):
    """Bytes ``[offset, offset + length)`` of a finished sector, as consecutive items keyed by
    their offset in the sector, each at most ``chunk_size`` bytes (a download resumes by asking
    again from the first byte it lacks)."""

    method = "plot-server.fetch-sector-range"
    bulk = True
    job_id: str
    offset: int
    length: int
    chunk_size: int = 4 * 1024 * 1024

    def expected_keys(self) -> list[int]:
        return list(range(self.offset, self.offset + self.length, max(1, self.chunk_size)))


__all__ = [
    "ClaimReply", "DoneReply", "FetchSectorRange", "PlotSectorJob", "ProgressReply", "ReadyReply",
    "SectorJobCancel", "SectorJobClaim", "SectorJobDone", "SectorJobProgress", "SectorJobReady", "sector_job_id",
]
