"""JetStream work queues: durable jobs shared by a pool of workers, each job done by one worker at
a time, redelivered to another worker when its holder dies, de-duplicated by a job id.

Why JetStream and not a request to "a free worker": a job must survive the crash of the worker
doing it (and of the one who asked for it) and long jobs (a sector takes minutes) must not be
handed to a second worker while the first is still alive. A work-queue stream with one durable
pull consumer gives exactly that: a worker pulls a job only when it has room (backpressure lives
in the worker), keeps it with in-progress acks (heartbeats), and the server redelivers it after
``ack_wait`` without a heartbeat. Knows no role; the job types live in the roles' ``messages.py``.

Names (what ``nats stream ls`` / ``nats consumer info`` show), for a job type with
``queue = "plot-sector"``:

* stream ``autonomys-jobs-plot-sector`` (work-queue retention, file storage), subject
  ``autonomys.jobs.plot-sector``;
* durable pull consumer ``plot-sector-workers`` shared by all workers
  (``nats consumer info autonomys-jobs-plot-sector plot-sector-workers``).

Usage::

    class PlotSectorJob(Job):                       # typed payload (msgpack via msgspec)
        queue = "plot-sector"
        sector_index: int

    queue = await WorkQueue.open(bus, PlotSectorJob, WorkQueueSettings(ack_wait=60, max_deliver=5))
    published = await queue.publish(PlotSectorJob(job_id="farm-3-7", sector_index=3))
    published.duplicate                             # True: same job_id within duplicate_window

    worker = await queue.worker()
    claimed = await worker.next(timeout=5)          # None when no job came
    async with claimed.keep_alive():                # in-progress acks every ack_wait / 3
        ...
    await claimed.ack()                             # done: removed from the stream
    # or: await claimed.retry("pieces unavailable", delay=10)   (nak; last attempt: dropped)
    #     await claimed.drop("cancelled by its owner")           (term with the reason)

    async for dead in await queue.watch_exhausted():   # jobs whose deliveries ran out
        log(dead.job, dead.deliveries); await queue.delete(dead.sequence)

Redeliveries are bounded by ``max_deliver``: every redelivery is logged by the worker that gets
it (``jobs.redelivered``: the previous holder failed or stopped heartbeating), a failing worker
logs its reason and naks (or terms with the reason on the last attempt, which the server reports
in its ``MSG_TERMINATED`` advisory), and a job whose last holder died stays in the stream
unserved; :meth:`WorkQueue.watch_exhausted` reads the server's ``MAX_DELIVERIES`` advisories so the
job's owner can log it, delete it and decide what to do (the server notices when a worker
next pulls, which workers do all the time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, ClassVar, Generic, TypeVar

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from services.bus.client import MSG_ID_HEADER, Bus, server_sync
from services.bus.errors import BusError
from services.bus.message import check_token, decode, encode

log = structlog.get_logger("bus.jobs")

STREAM_PREFIX = "autonomys-jobs-"
SUBJECT_PREFIX = "autonomys.jobs."
CONSUMER_SUFFIX = "-workers"
_MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"


class Job(msgspec.Struct, kw_only=True):
    """Base of a typed job payload. ``queue`` names the work queue (see the module docstring);
    ``job_id`` is the de-duplication id (``Nats-Msg-Id``): publishing the same id again within
    the duplicate window is a no-op."""

    queue: ClassVar[str] = ""
    job_id: str


J = TypeVar("J", bound=Job)


def stream_name(queue: str) -> str:
    return STREAM_PREFIX + check_token(queue)


def subject_name(queue: str) -> str:
    return SUBJECT_PREFIX + check_token(queue)


def consumer_name(queue: str) -> str:
    return check_token(queue) + CONSUMER_SUFFIX


@dataclass(frozen=True)
class WorkQueueSettings:
    """``ack_wait``: seconds a job stays with a worker without a heartbeat before it is
    redelivered; ``max_deliver``: deliveries per job (first one included); ``duplicate_window``:
    seconds a ``job_id`` is remembered; ``max_jobs``: queued jobs at most (publishing more fails);
    ``replicas``: JetStream replicas of the stream (1..5, at most the cluster size)."""

    ack_wait: float = 60.0
    max_deliver: int = 5
    duplicate_window: float = 600.0
    max_jobs: int = 1_000_000
    replicas: int = 1

    def __post_init__(self) -> None:
        if self.ack_wait <= 0 or self.duplicate_window <= 0:
            raise ValueError("ack_wait and duplicate_window must be positive")
        if self.max_deliver < 1 or self.max_jobs < 1 or not 1 <= self.replicas <= 5:
            raise ValueError("max_deliver and max_jobs must be >= 1 and replicas 1..5")


@dataclass(frozen=True)
class Published:
    sequence: int
    duplicate: bool


@dataclass(frozen=True)
class ExhaustedJob(Generic[J]):
    """A job the server stopped delivering after ``deliveries`` attempts (``job`` is None when
    it was already deleted or does not decode)."""

    sequence: int
    deliveries: int
    job: J | None


class ClaimedJob(Generic[J]):
    """One delivery of a job to this worker."""

    def __init__(self, queue: "WorkQueue[J]", msg: Msg, job: J) -> None:
        self.queue = queue
        self.job = job
        self._msg = msg
        meta = msg.metadata
        self.sequence: int = meta.sequence.stream
        self.attempt: int = meta.num_delivered
        self.finished = False

    @property
    def max_attempts(self) -> int:
        return self.queue.settings.max_deliver

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    async def heartbeat(self) -> None:
        """Tell the server this job is still being worked on (restarts its ``ack_wait``)."""
        if not self.finished:
            await self._msg.in_progress()

    @contextlib.asynccontextmanager
    async def keep_alive(self, interval: float | None = None) -> AsyncIterator["ClaimedJob[J]"]:
        """Heartbeat every ``interval`` seconds (default ``ack_wait / 3``) inside the block."""
        period = interval or self.queue.settings.ack_wait / 3

        async def beat() -> None:
            while True:
                await asyncio.sleep(period)
                try:
                    await self.heartbeat()
                except nats.errors.Error as exc:  # reconnecting: the next beat may get through
                    log.warning("jobs.heartbeat_failed", job_id=self.job.job_id, error=str(exc) or type(exc).__name__)

        task = asyncio.ensure_future(beat())
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def ack(self, timeout: float = 10.0) -> None:
        """Done: the server removes the job (waits for the server's confirmation)."""
        if self.finished:
            return
        await self._msg.ack_sync(timeout=timeout)
        self.finished = True

    async def retry(self, reason: str, delay: float | None = None) -> bool:
        """Give the job back for another attempt after ``delay`` s (by any worker), logging
        ``reason``; on the last attempt the job is dropped instead. True when it will be retried."""
        if self.finished:
            return False
        if self.is_last_attempt:
            await self.drop(f"{reason} (attempt {self.attempt} of {self.max_attempts}, no attempts left)")
            return False
        log.warning("jobs.retry", queue=self.queue.queue, job_id=self.job.job_id, attempt=self.attempt,
                    max_attempts=self.max_attempts, reason=reason, delay=delay)
        await self._msg.nak(delay=delay)
        self.finished = True
        return True

    async def drop(self, reason: str) -> None:
        """Stop delivering this job (AckTerm; the server removes it from a work-queue stream and
        reports ``reason`` in its MSG_TERMINATED advisory)."""
        if self.finished:
            return
        log.warning("jobs.dropped", queue=self.queue.queue, job_id=self.job.job_id, attempt=self.attempt, reason=reason)
        text = " ".join(reason.split())[:500]
        await self.queue.bus.nc.publish(self._msg.reply, b"+TERM " + text.encode())
        self.finished = True


class Worker(Generic[J]):
    """A pull subscription on the queue's shared durable consumer."""

    def __init__(self, queue: "WorkQueue[J]", sub: Any) -> None:
        self.queue = queue
        self._sub = sub

    async def next(self, timeout: float = 5.0) -> ClaimedJob[J] | None:
        """Pull one job (waiting at most ``timeout`` s); None when none came. A payload that
        does not decode is dropped with the reason."""
        try:
            msgs = await self._sub.fetch(1, timeout=timeout)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            return None
        except nats.errors.Error as exc:  # disconnected, reconnecting, consumer deleted...
            raise BusError(f"cannot pull from {self.queue.stream}: {exc or type(exc).__name__}") from None
        msg = msgs[0]
        try:
            job = decode(msg.data, self.queue.job_type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            reason = f"undecodable {self.queue.job_type.__name__}: {exc}"
            log.warning("jobs.bad_payload", queue=self.queue.queue, sequence=msg.metadata.sequence.stream, error=reason)
            await self.queue.bus.nc.publish(msg.reply, b"+TERM " + reason[:500].encode())
            return None
        claimed = ClaimedJob(self.queue, msg, job)
        if claimed.attempt > 1:
            log.warning("jobs.redelivered", queue=self.queue.queue, job_id=job.job_id, attempt=claimed.attempt,
                        max_attempts=claimed.max_attempts,
                        reason="the previous attempt failed or its worker stopped heartbeating")
        return claimed

    async def stop(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()


class WorkQueue(Generic[J]):
    """The stream and shared consumer of one job type; create with :meth:`open`."""

    def __init__(self, bus: Bus, job_type: type[J], settings: WorkQueueSettings) -> None:
        self.bus = bus
        self.job_type = job_type
        self.settings = settings
        self.queue = job_type.queue
        self.stream = stream_name(self.queue)
        self.subject = subject_name(self.queue)
        self.consumer = consumer_name(self.queue)

    @classmethod
    async def open(cls, bus: Bus, job_type: type[J], settings: WorkQueueSettings | None = None) -> "WorkQueue[J]":
        """Create (or update to ``settings``) the stream and the shared consumer."""
        if not job_type.queue:
            raise ValueError(f"job type {job_type.__name__} names no queue")
        queue = cls(bus, job_type, settings or WorkQueueSettings())
        await queue._ensure()
        return queue

    async def _ensure(self) -> None:
        s = self.settings
        stream = StreamConfig(
            name=self.stream, subjects=[self.subject], retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, discard=DiscardPolicy.NEW, max_msgs=s.max_jobs,
            duplicate_window=s.duplicate_window, num_replicas=s.replicas,
            description=f"autonomys work queue {self.queue}",
        )
        consumer = ConsumerConfig(
            durable_name=self.consumer, ack_policy=AckPolicy.EXPLICIT, ack_wait=s.ack_wait,
            max_deliver=s.max_deliver, max_waiting=4096, max_ack_pending=-1,
            description=f"workers of {self.queue}",
        )
        js = self.bus.js
        try:
            try:
                await js.add_stream(stream)
            except nats.js.errors.BadRequestError:  # exists with other settings: take ours
                await js.update_stream(stream)
            await js.add_consumer(self.stream, consumer)
        except nats.js.errors.APIError as exc:
            raise BusError(f"cannot set up work queue {self.stream}: {exc.description or exc}") from None

    async def publish(self, job: J, *, msg_id: str | None = None, timeout: float = 10.0) -> Published:
        """Queue ``job`` (a repeat of its ``msg_id``, by default its ``job_id``, within the
        duplicate window is not queued again: ``duplicate`` is True and ``sequence`` is the first
        one's). A job deliberately queued again (after its deliveries ran out) takes a new one."""
        if not isinstance(job, self.job_type):
            raise TypeError(f"expected {self.job_type.__name__}, got {type(job).__name__}")
        try:
            ack = await self.bus.js.publish(self.subject, encode(job), timeout=timeout,
                                            headers={MSG_ID_HEADER: msg_id or job.job_id})
        except nats.js.errors.APIError as exc:
            raise BusError(f"cannot queue job {job.job_id} on {self.stream}: {exc.description or exc}") from None
        return Published(ack.seq, bool(ack.duplicate))

    async def worker(self) -> Worker[J]:
        sub = await self.bus.js.pull_subscribe_bind(durable=self.consumer, stream=self.stream)
        return Worker(self, sub)

    async def delete(self, sequence: int) -> bool:
        """Remove a queued job by its sequence (False when it is already gone)."""
        try:
            return bool(await self.bus.js.delete_msg(self.stream, sequence))
        except nats.js.errors.NotFoundError:
            return False
        except nats.js.errors.APIError as exc:
            if exc.err_code in (10037, 10057):  # no message found / sequence not found
                return False
            raise

    async def get(self, sequence: int) -> J | None:
        """The queued job at ``sequence`` (None when gone)."""
        try:
            raw = await self.bus.js.get_msg(self.stream, sequence)
        except (nats.js.errors.NotFoundError, nats.js.errors.APIError):
            return None
        try:
            return decode(raw.data, self.job_type)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def depth(self) -> tuple[int, int]:
        """``(waiting, in_progress)``: jobs not yet delivered, jobs delivered and not acked."""
        info = await self.bus.js.consumer_info(self.stream, self.consumer)
        return info.num_pending or 0, info.num_ack_pending or 0

    async def watch_exhausted(self) -> "ExhaustedJobs[J]":
        """Jobs the server stops delivering (their ``max_deliver`` ran out), from now on. The
        server notices when a worker next pulls, so this needs workers polling the queue."""
        sub = await self.bus.nc.subscribe(f"{_MAX_DELIVERIES_ADVISORY}.{self.stream}.{self.consumer}")
        await server_sync(self.bus.nc)
        return ExhaustedJobs(self, sub)


class ExhaustedJobs(Generic[J]):
    """Async iterator of :class:`ExhaustedJob` (see :meth:`WorkQueue.watch_exhausted`)."""

    def __init__(self, queue: WorkQueue[J], sub: Any) -> None:
        self.queue = queue
        self._sub = sub

    def __aiter__(self) -> "ExhaustedJobs[J]":
        return self

    async def __anext__(self) -> ExhaustedJob[J]:
        while True:
            try:
                raw = await self._sub.next_msg(timeout=None)
            except (nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
                raise StopAsyncIteration from None
            try:
                advisory = json.loads(raw.data)
                sequence, deliveries = int(advisory["stream_seq"]), int(advisory.get("deliveries", 0))
            except (ValueError, KeyError, TypeError):
                continue
            job = await self.queue.get(sequence)
            log.warning("jobs.exhausted", queue=self.queue.queue, sequence=sequence, deliveries=deliveries,
                        job_id=job.job_id if job else None)
            return ExhaustedJob(sequence, deliveries, job)

    async def stop(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()
