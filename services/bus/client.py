"""The cluster's NATS connection: typed request / stream request / notification / broadcast over
nats-py, with encoding, timeouts, retries and de-duplication done once here (spec 06 §2).

Usage::

    bus = await Bus.connect(["nats://127.0.0.1:4222"], name="controller")  # BusConfigError if the
                                              # server lacks JetStream or max_payload < 2 MiB
    reply = await bus.request(SegmentHeaders(segment_indices=[0]), timeout=5, retries=3)
    svc = await bus.serve(SegmentHeaders, handler, queue_group="subspace.controller")
    await bus.publish(Solution(...), instance="controller-1")            # notification
    await bus.broadcast(SlotInfo(...), dedup_id=f"slot-info-{slot}")      # receivers drop dups
    async with await bus.subscribe(SlotInfo) as sub:
        async for slot_info in sub: ...
    async for item in bus.stream_request(FindPieces(piece_indices=[...]), instance="_"): ...
    await svc.stop(); await bus.close()

Metrics: ``Bus.connect(..., metrics=daemon.metrics.bus)`` (a :class:`services.metrics.bus.BusMetrics`)
records request latency and errors by message type, messages handled and failed here, and
publishes; without it nothing is recorded.

Handlers: ``handler(msg)`` may be sync or async. For a request it returns the response value
(of ``msg_type.response``); for a stream request it returns (or is) an iterable / async iterable
of items; for a notification/broadcast its result is ignored. A handler exception becomes a
:class:`RemoteError` at the requester (header ``Bus-Error``), never a silent timeout.

Stream requests follow spec 06 §2: the requester subscribes to ``stream-response.<ULID>`` and
sends the request with that reply subject; the responder sends ``Continue{index, responses,
ack_subject}`` ... ``Last{index, responses}`` (``Last{0, []}`` for an empty stream), packing as
many items per message as fit in ``approximate_max_message_size = max_payload * 9 / 10``
(measured per item rather than estimated from the first one; never above ``max_payload``). The requester acks every
``Continue`` by publishing ``u32_le(index)`` to ``ack_subject`` once its items were consumed; after
sending message ``i >= 1`` the responder waits up to ``ack_timeout`` (60 s) for the ack of
``i - 1`` (2 messages in flight) and aborts the stream (closing the handler's generator) otherwise.
"""

from __future__ import annotations

import asyncio
import inspect
import struct
import time
from collections import OrderedDict, deque
from typing import Any, AsyncIterator, Awaitable, Callable, Generic, TypeVar

import msgspec
import nats
import nats.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from services.bus.errors import (
    BusConfigError,
    BusError,
    NoResponders,
    RemoteError,
    RequestTimeout,
    StreamError,
)
from services.bus.message import Message, decode, encode, encoded_size, new_ulid

log = structlog.get_logger("bus")

MIN_MAX_PAYLOAD = 2 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 300.0  # spec 06: requester timeout 5 min
DEFAULT_RETRIES = 3
DEFAULT_INITIAL_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 30.0
STREAM_ACK_TIMEOUT = 60.0  # spec 06: responder waits 60 s for the ack of message i-1
ERROR_HEADER = "Bus-Error"
MSG_ID_HEADER = "Nats-Msg-Id"
DEDUP_CACHE_SIZE = 4096
DEFAULT_MAX_CONCURRENCY = 32  # the reference runs 32 service instances per controller

T = TypeVar("T")
M = TypeVar("M", bound=Message)


class StreamContinue(msgspec.Struct, Generic[T], tag=0, array_like=True):
    """More messages follow; ack ``index`` on ``ack_subject``."""

    index: int
    responses: list[T]
    ack_subject: str


class StreamLast(msgspec.Struct, Generic[T], tag=1, array_like=True):
    """End of stream (``Last{0, []}`` is an empty stream)."""

    index: int
    responses: list[T]


class _DedupCache:
    """Small LRU of ``Nats-Msg-Id`` values already delivered."""

    def __init__(self, size: int = DEDUP_CACHE_SIZE) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def is_duplicate(self, msg: Msg) -> bool:
        msg_id = (msg.headers or {}).get(MSG_ID_HEADER)
        if not msg_id:
            return False
        if msg_id in self._seen:
            self._seen.move_to_end(msg_id)
            return True
        self._seen[msg_id] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return False


async def server_sync(nc: NatsClient) -> None:
    """Return once the server has processed everything this connection sent before.

    nats-py 2.16 writes a flush PING straight to the socket, possibly ahead of commands still in
    its pending buffer (a just-made SUB), so one flush can return before the server knows the
    subscription. The first round trip lets the flusher write the buffer; the second PING then
    follows it on the wire."""
    await nc.flush()
    await nc.flush()


def _one_line(text: str) -> str:
    """An error text as one header-safe line (at most 1000 characters, never empty)."""
    return " ".join(text.split())[:1000] or "error"


def _backoff(attempt: int, initial: float, maximum: float) -> float:
    return min(maximum, initial * (2**attempt))


def _is_no_responders(msg: Msg) -> bool:
    headers = msg.headers or {}
    return headers.get("Status") == "503" or (not msg.data and headers.get("Status", "").startswith("503"))


async def _call(handler: Callable[[Any], Any], msg: Any) -> Any:
    result = handler(msg)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _aiter(source: Any) -> AsyncIterator[Any]:
    if hasattr(source, "__aiter__"):
        async for item in source:
            yield item
    elif source is None:
        return
    else:
        for item in source:
            yield item


_CLOSED = object()


class Subscription(Generic[M]):
    """Async iterator of decoded messages of one type (broadcast de-duplication included).
    Iteration ends after :meth:`unsubscribe` or :meth:`Bus.close`."""

    def __init__(self, bus: "Bus", msg_type: type[M], with_subject: bool, max_pending: int) -> None:
        self.bus = bus
        self.msg_type = msg_type
        self.subject = ""
        self._sub: NatsSubscription | None = None
        self._with_subject = with_subject
        self._dedup = _DedupCache()
        # bounded: a slow consumer pushes back into nats-py's own pending limits
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=max_pending)
        self._closed = False

    async def _on_msg(self, raw: Msg) -> None:
        if self._closed or self._dedup.is_duplicate(raw):
            return
        try:
            value = decode(raw.data, self.msg_type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("bus.bad_message", subject=raw.subject, type=self.msg_type.__name__, error=str(exc))
            return
        await self._queue.put((raw.subject, value) if self._with_subject else value)

    def __aiter__(self) -> "Subscription[M]":
        return self

    async def __anext__(self) -> Any:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # wake other waiters too
            raise StopAsyncIteration
        return item

    async def next(self, timeout: float | None = None) -> Any:
        """Next message, or :class:`RequestTimeout` after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no {self.msg_type.__name__} on {self.subject} within {timeout} s") from None

    async def unsubscribe(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.bus._subscriptions.discard(self)
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except (nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
                pass
        while self._queue.full():  # make room for the end marker
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)

    async def __aenter__(self) -> "Subscription[M]":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.unsubscribe()


class Service:
    """A responder registered with :meth:`Bus.serve`; counters help tests and metrics."""

    def __init__(self, bus: "Bus", msg_type: type[Message], handler: Callable, subject: str,
                 queue_group: str | None, max_concurrency: int, ack_timeout: float) -> None:
        self.bus = bus
        self.msg_type = msg_type
        self.handler = handler
        self.subject = subject
        self.queue_group = queue_group
        self.ack_timeout = ack_timeout
        self.handled = 0
        self.errors = 0
        self.stream_aborts = 0
        self._sub: NatsSubscription | None = None
        self._tasks: set[asyncio.Task] = set()
        self._limit = asyncio.Semaphore(max_concurrency)
        self._dedup = _DedupCache()

    async def _on_msg(self, raw: Msg) -> None:
        if self._dedup.is_duplicate(raw):
            return
        if self.msg_type.response is None and not self.msg_type.stream:
            # notifications / broadcasts: in order, inline
            await self._handle(raw)
            return
        await self._limit.acquire()
        task = asyncio.ensure_future(self._handle(raw))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._limit.release()

    async def _handle(self, raw: Msg) -> None:
        try:
            msg = decode(raw.data, self.msg_type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.errors += 1
            self.bus._count_handler_error(self.msg_type)
            log.warning("bus.bad_request", subject=raw.subject, type=self.msg_type.__name__, error=str(exc))
            await self._reply_error(raw, f"bad {self.msg_type.__name__}: {exc}")
            return
        try:
            if self.msg_type.stream:
                await self._answer_stream(raw, msg)
            elif self.msg_type.response is not None:
                await self._answer_request(raw, msg)
            else:
                await _call(self.handler, msg)
            self.handled += 1
            if self.bus.metrics is not None:
                self.bus.metrics.handled.labels(self.msg_type.__name__).inc()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the requester
            self.errors += 1
            self.bus._count_handler_error(self.msg_type)
            log.warning("bus.handler_failed", subject=raw.subject, error=repr(exc))
            if self.msg_type.response is not None and not self.msg_type.stream:
                await self._reply_error(raw, f"{type(exc).__name__}: {exc}")

    async def _reply_error(self, raw: Msg, text: str) -> None:
        if raw.reply:
            try:
                await self.bus.nc.publish(raw.reply, b"", headers={ERROR_HEADER: _one_line(text)})
            except nats.errors.Error:
                pass

    async def _answer_request(self, raw: Msg, msg: Message) -> None:
        response = await _call(self.handler, msg)
        if not raw.reply:
            return
        data = encode(response)
        if len(data) > self.bus.max_payload:
            raise BusError(f"response of {len(data)} bytes to {raw.subject} exceeds max_payload {self.bus.max_payload}")
        await self.bus.nc.publish(raw.reply, data)

    async def _answer_stream(self, raw: Msg, msg: Message) -> None:
        if not raw.reply:
            log.warning("bus.stream_without_reply", subject=raw.subject)
            return
        sender = _StreamSender(self.bus, raw.reply, self.ack_timeout)
        try:
            source = await _call(self.handler, msg)
        except Exception as exc:
            await sender.fail(f"{type(exc).__name__}: {exc}")
            raise
        try:
            await sender.send_all(source)
        except _AckTimeout:
            self.stream_aborts += 1
            log.warning("bus.stream_ack_timeout", subject=raw.subject, ack_timeout=self.ack_timeout)
        except Exception as exc:
            await sender.fail(f"{type(exc).__name__}: {exc}")
            raise

    async def stop(self) -> None:
        """Unsubscribe and cancel handlers still running."""
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except (nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
                pass
            self._sub = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.bus._services.discard(self)


class _AckTimeout(Exception):
    """The stream's consumer did not acknowledge in time (responder side)."""


class _StreamSender:
    """Responder side of one stream request (see module docstring)."""

    def __init__(self, bus: "Bus", reply: str, ack_timeout: float) -> None:
        self.bus = bus
        self.reply = reply
        self.ack_timeout = ack_timeout
        self.ack_subject = f"stream-response-ack.{new_ulid()}"
        self.index = 0
        self._acked = -1
        self._ack_event = asyncio.Event()

    async def _on_ack(self, raw: Msg) -> None:
        if len(raw.data) != 4:
            log.warning("bus.bad_stream_ack", subject=raw.subject, size=len(raw.data))
            return
        (index,) = struct.unpack("<I", raw.data)
        if index > self._acked:
            self._acked = index
            self._ack_event.set()

    async def _wait_ack(self, index: int) -> None:
        async def wait() -> None:
            while self._acked < index:
                self._ack_event.clear()
                await self._ack_event.wait()

        try:
            await asyncio.wait_for(wait(), self.ack_timeout)
        except asyncio.TimeoutError:
            raise _AckTimeout(index) from None

    async def fail(self, text: str) -> None:
        data = encode(StreamLast(index=self.index, responses=[]))
        try:
            await self.bus.nc.publish(self.reply, data, headers={ERROR_HEADER: _one_line(text)})
        except nats.errors.Error:
            pass

    async def send_all(self, source: Any) -> None:
        """Pack the handler's items into Continue/Last messages of at most
        ``approximate_max_message_size`` encoded item bytes (always at least one item), reading
        ahead at most two messages' worth, and never waiting to fill a message: items ready now
        go out now (progress pings must not be delayed)."""
        nc = self.bus.nc
        budget = self.bus.approximate_max_message_size
        items = source.__aiter__() if hasattr(source, "__aiter__") else _aiter(source).__aiter__()
        queue: deque[tuple[Any, int]] = deque()
        state: dict[str, Any] = {"bytes": 0, "ended": False, "failure": None}
        ready = asyncio.Event()
        space = asyncio.Event()

        async def pump_items() -> None:
            while True:
                while state["bytes"] >= 2 * budget:
                    space.clear()
                    await space.wait()
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    state["ended"] = True
                    ready.set()
                    return
                except Exception as exc:  # noqa: BLE001 - handed to the sender
                    state["failure"] = exc
                    ready.set()
                    return
                size = encoded_size(item)
                queue.append((item, size))
                state["bytes"] += size
                ready.set()

        ack_sub = await nc.subscribe(self.ack_subject, cb=self._on_ack)
        pump = asyncio.ensure_future(pump_items())
        try:
            while True:
                await asyncio.sleep(0)  # let the pump run so ready items share a message
                while not queue and not state["ended"] and state["failure"] is None:
                    ready.clear()
                    await ready.wait()
                if not queue and state["failure"] is not None:
                    raise state["failure"]
                batch: list[Any] = []
                batch_bytes = 0
                while queue and (not batch or batch_bytes + queue[0][1] <= budget):
                    item, size = queue.popleft()
                    state["bytes"] -= size
                    batch.append(item)
                    batch_bytes += size
                space.set()
                last = state["ended"] and not queue
                data = self._encode(batch, last)
                await nc.publish(self.reply, data)
                if last:
                    return
                if self.index >= 1:
                    await self._wait_ack(self.index - 1)
                self.index += 1
        finally:
            if not pump.done():
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            for closable in (items, source):
                aclose = getattr(closable, "aclose", None) or getattr(closable, "close", None)
                if aclose is None:
                    continue
                try:
                    result = aclose()
                    if inspect.isawaitable(result):
                        await result
                except Exception:  # noqa: BLE001 - best-effort close of the handler's generator
                    pass
            try:
                await ack_sub.unsubscribe()
            except nats.errors.Error:
                pass

    def _encode(self, batch: list, last: bool) -> bytes:
        if last:
            data = encode(StreamLast(index=self.index, responses=batch))
        else:
            data = encode(StreamContinue(index=self.index, responses=batch, ack_subject=self.ack_subject))
        if len(data) > self.bus.max_payload:  # only a single oversized item can get here
            raise BusError(f"stream item of {len(data)} bytes exceeds max_payload {self.bus.max_payload}")
        return data


class Bus:
    """A connected NATS client with the cluster's messaging patterns (module docstring)."""

    def __init__(self, nc: NatsClient, name: str | None, metrics: Any = None) -> None:
        self.nc = nc
        self.name = name
        self.metrics = metrics  # services.metrics.bus.BusMetrics or None
        self.js = nc.jetstream()
        self._services: set[Service] = set()
        self._subscriptions: set[Subscription] = set()
        self._state: dict[str, bool] = {"closing": False}

    # -- connection -----------------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        servers: list[str] | str,
        name: str | None = None,
        *,
        connect_timeout: float = 5.0,
        connect_attempts: int = 3,
        min_max_payload: int = MIN_MAX_PAYLOAD,
        require_jetstream: bool = True,
        metrics: Any = None,
        **options: Any,
    ) -> "Bus":
        """Connect (reconnecting forever afterwards) and check the server is fit for the cluster.

        Raises :class:`BusConfigError` (a DaemonError: one-line exit) when no server answers,
        JetStream is off, or ``max_payload < min_max_payload``.
        """
        if isinstance(servers, str):
            servers = [servers]
        if not servers:
            raise ValueError("at least one NATS server URL is needed")

        async def error_cb(exc: Exception) -> None:
            log.warning("bus.nats_error", error=str(exc) or type(exc).__name__)

        state = {"closing": False}

        async def disconnected_cb() -> None:
            if metrics is not None:
                metrics.connected.set(0)
            if not state["closing"]:
                log.warning("bus.disconnected")

        async def reconnected_cb() -> None:
            if metrics is not None:
                metrics.connected.set(1)
                metrics.reconnects.inc()
            url = nc.connected_url.geturl() if nc.connected_url else "?"
            log.info("bus.reconnected", server=url)
            if nc.max_payload < min_max_payload:
                log.error("bus.small_max_payload", server=url, max_payload=nc.max_payload)

        opts = dict(
            servers=list(servers),
            name=name,
            connect_timeout=connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=connect_attempts,
            reconnect_time_wait=0.5,
            error_cb=error_cb,
            disconnected_cb=disconnected_cb,
            reconnected_cb=reconnected_cb,
        )
        opts.update(options)
        try:
            nc = await nats.connect(**opts)
        except (nats.errors.NoServersError, OSError, asyncio.TimeoutError, nats.errors.Error) as exc:
            raise BusConfigError(f"cannot connect to NATS at {', '.join(servers)}: {exc}") from None
        # after the first connection, never give up reconnecting
        nc.options["max_reconnect_attempts"] = options.get("max_reconnect_attempts", -1)
        url = nc.connected_url.geturl() if nc.connected_url else servers[0]
        try:
            if nc.max_payload < min_max_payload:
                raise BusConfigError(
                    f"NATS server {url} has max_payload {nc.max_payload} bytes "
                    f"({nc.max_payload / 2**20:.1f} MiB); the cluster needs >= {min_max_payload} bytes "
                    f"({min_max_payload / 2**20:.0f} MiB): set `max_payload = 3MB` in the nats-server config"
                )
            if require_jetstream:
                await cls._check_jetstream(nc, url)
        except BaseException:
            await nc.close()
            raise
        bus = cls(nc, name, metrics)
        bus._state = state
        if metrics is not None:
            metrics.connected.set(1)
        return bus

    @staticmethod
    async def _check_jetstream(nc: NatsClient, url: str) -> None:
        hint = "enable it with a `jetstream { store_dir: ... }` block (or `-js`) in the nats-server config"
        if not nc._server_info.get("jetstream"):  # INFO flag; account check below is authoritative
            raise BusConfigError(f"NATS server {url} does not have JetStream enabled; {hint}")
        try:
            await nc.jetstream(timeout=5.0).account_info()
        except Exception as exc:  # noqa: BLE001 - any failure means unusable JetStream
            raise BusConfigError(f"NATS server {url}: JetStream is not available ({exc or type(exc).__name__}); {hint}") from None

    @property
    def max_payload(self) -> int:
        return self.nc.max_payload

    @property
    def approximate_max_message_size(self) -> int:
        """``max_payload * 9 / 10``: the budget for packing many responses into one message."""
        return self.max_payload * 9 // 10

    @property
    def is_connected(self) -> bool:
        return self.nc.is_connected

    async def close(self) -> None:
        """Stop every service, then drain and close the connection."""
        self._state["closing"] = True
        for svc in list(self._services):
            await svc.stop()
        for subscription in list(self._subscriptions):
            await subscription.unsubscribe()
        if self.nc.is_closed:
            return
        try:
            await self.nc.flush(timeout=5)  # deliver what was published, then close
        except Exception:  # noqa: BLE001 - disconnected: nothing more to deliver
            pass
        await self.nc.close()

    async def __aenter__(self) -> "Bus":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    # -- sending --------------------------------------------------------------------------
    def _payload(self, msg: Message) -> bytes:
        if not isinstance(msg, Message):
            raise TypeError(f"expected a bus Message, got {type(msg).__name__}")
        data = encode(msg)
        if len(data) > self.max_payload:
            raise ValueError(
                f"{type(msg).__name__} encodes to {len(data)} bytes, over the server's max_payload {self.max_payload}"
            )
        return data

    async def publish(self, msg: Message, instance: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        """Notification: fire and forget."""
        payload = self._payload(msg)
        await self.nc.publish(type(msg).subject_for(instance), payload, headers=headers)
        if self.metrics is not None:
            self.metrics.published.labels(type(msg).__name__).inc()

    def _count_handler_error(self, msg_type: type[Message]) -> None:
        if self.metrics is not None:
            self.metrics.handler_errors.labels(msg_type.__name__).inc()

    def _request_failed(self, msg_type: type[Message], error: str) -> None:
        if self.metrics is not None:
            self.metrics.request_failed(msg_type.__name__, error)

    def _request_done(self, msg_type: type[Message], started: float) -> None:
        if self.metrics is not None:
            self.metrics.request_time.labels(msg_type.__name__).observe(time.perf_counter() - started)

    async def broadcast(self, msg: Message, instance: str | None = None, *, dedup_id: str | None = None) -> None:
        """Publish to every subscriber; receivers drop a repeated ``dedup_id`` (``Nats-Msg-Id``)."""
        headers = {MSG_ID_HEADER: dedup_id} if dedup_id else None
        await self.publish(msg, instance, headers=headers)

    async def request(
        self,
        msg: Message,
        instance: str | None = None,
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
    ) -> Any:
        """Send a request and return the decoded response (``type(msg).response``), retrying
        with exponential backoff on timeout / no responders (``retries`` extra attempts)."""
        msg_type = type(msg)
        if msg_type.response is None or msg_type.stream:
            raise ValueError(f"{msg_type.__name__} is not a request type (response={msg_type.response!r}, stream={msg_type.stream})")
        subject = msg_type.subject_for(instance)
        payload = self._payload(msg)
        failure: BusError | None = None
        kind = ""
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(_backoff(attempt - 1, initial_backoff, max_backoff))
            started = time.perf_counter()
            try:
                raw = await self.nc.request(subject, payload, timeout=timeout)
            except nats.errors.NoRespondersError:
                failure, kind = NoResponders(f"no responders on {subject} after {attempt + 1} attempt(s)"), "no_responders"
                continue
            except nats.errors.TimeoutError:
                failure = RequestTimeout(f"no response on {subject} within {timeout} s after {attempt + 1} attempt(s)")
                kind = "timeout"
                continue
            error = (raw.headers or {}).get(ERROR_HEADER)
            if error is not None:
                self._request_failed(msg_type, "remote")
                raise RemoteError(f"{subject}: {error}")
            try:
                response = decode(raw.data, msg_type.response)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._request_failed(msg_type, "bad_response")
                raise BusError(f"bad response on {subject}: {exc}") from None
            self._request_done(msg_type, started)
            return response
        assert failure is not None
        self._request_failed(msg_type, kind)
        raise failure

    def stream_request(
        self,
        msg: Message,
        instance: str | None = None,
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
    ) -> AsyncIterator[Any]:
        """Async iterator of the items of a stream response. ``timeout`` bounds the wait for each
        message; retries (with backoff) happen only before the first message arrives."""
        msg_type = type(msg)
        if not msg_type.stream or msg_type.response is None:
            raise ValueError(f"{msg_type.__name__} is not a stream request type")
        subject = msg_type.subject_for(instance)
        payload = self._payload(msg)
        chunk_type = StreamContinue[msg_type.response] | StreamLast[msg_type.response]  # type: ignore[index]
        return self._stream(msg_type, subject, payload, chunk_type, timeout, retries, initial_backoff, max_backoff)

    async def _stream(self, msg_type: type[Message], subject: str, payload: bytes, chunk_type: Any, timeout: float,
                      retries: int, initial_backoff: float, max_backoff: float) -> AsyncIterator[Any]:
        sub: NatsSubscription | None = None
        try:
            raw: Msg | None = None
            failure: BusError | None = None
            kind = ""
            for attempt in range(retries + 1):
                if attempt:
                    await asyncio.sleep(_backoff(attempt - 1, initial_backoff, max_backoff))
                if sub is not None:
                    await sub.unsubscribe()
                inbox = f"stream-response.{new_ulid()}"
                sub = await self.nc.subscribe(inbox)
                started = time.perf_counter()
                await self.nc.publish(subject, payload, reply=inbox)
                try:
                    raw = await sub.next_msg(timeout=timeout)
                except nats.errors.TimeoutError:
                    failure = RequestTimeout(f"no stream response on {subject} within {timeout} s after {attempt + 1} attempt(s)")
                    raw, kind = None, "timeout"
                    continue
                if _is_no_responders(raw):
                    failure = NoResponders(f"no responders on {subject} after {attempt + 1} attempt(s)")
                    raw, kind = None, "no_responders"
                    continue
                self._request_done(msg_type, started)
                break
            if raw is None:
                assert failure is not None
                self._request_failed(msg_type, kind)
                raise failure
            expected = 0
            while True:
                error = (raw.headers or {}).get(ERROR_HEADER)
                if error is not None:
                    self._request_failed(msg_type, "remote")
                    raise RemoteError(f"{subject}: {error}")
                try:
                    chunk = decode(raw.data, chunk_type)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    self._request_failed(msg_type, "bad_response")
                    raise StreamError(f"bad stream response on {subject}: {exc}") from None
                if chunk.index != expected:
                    self._request_failed(msg_type, "stream")
                    raise StreamError(f"stream response on {subject}: index {chunk.index}, expected {expected}")
                for item in chunk.responses:
                    yield item
                if isinstance(chunk, StreamLast):
                    return
                await self.nc.publish(chunk.ack_subject, struct.pack("<I", chunk.index))
                expected += 1
                try:
                    raw = await sub.next_msg(timeout=timeout)
                except nats.errors.TimeoutError:
                    self._request_failed(msg_type, "stream")
                    raise StreamError(f"stream on {subject} stalled: nothing for {timeout} s after index {chunk.index}") from None
        finally:
            if sub is not None:
                try:
                    await sub.unsubscribe()
                except nats.errors.Error:
                    pass

    # -- receiving ------------------------------------------------------------------------
    async def subscribe(self, msg_type: type[M], instance: str | None = None, *, queue_group: str | None = None,
                        with_subject: bool = False, max_pending: int = 1024) -> Subscription[M]:
        """Subscribe to a message type (instance None: ``*`` matches any instance). Iterating
        yields decoded messages, or ``(subject, message)`` with ``with_subject=True``."""
        subject = msg_type.subscription_subject(instance)
        subscription: Subscription[M] = Subscription(self, msg_type, with_subject, max_pending)
        subscription.subject = subject
        subscription._sub = await self.nc.subscribe(subject, queue=queue_group or "", cb=subscription._on_msg)
        await server_sync(self.nc)
        self._subscriptions.add(subscription)
        return subscription

    async def serve(
        self,
        msg_type: type[Message],
        handler: Callable[[Any], Any] | Callable[[Any], Awaitable[Any]],
        *,
        queue_group: str | None = None,
        instance: str | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        ack_timeout: float = STREAM_ACK_TIMEOUT,
    ) -> Service:
        """Answer ``msg_type`` with ``handler``. ``queue_group`` defaults to
        ``msg_type.queue_group``; with a queue group only one member answers each message."""
        group = queue_group if queue_group is not None else msg_type.queue_group
        subject = msg_type.subscription_subject(instance)
        svc = Service(self, msg_type, handler, subject, group, max_concurrency, ack_timeout)
        svc._sub = await self.nc.subscribe(subject, queue=group or "", cb=svc._on_msg)
        await server_sync(self.nc)
        self._services.add(svc)
        return svc
