"""NATS bus metrics (ours), filled by :class:`services.bus.client.Bus` when it is given a
registry's ``metrics.bus``: requester latency and errors by message type, what this process
serves, and broadcasts sent.

* ``subspace_farmer_bus_request_time_seconds{message}``: request (and first stream message)
  round trip, successes only;
* ``subspace_farmer_bus_request_errors_total{message,error}``: ``error`` is ``timeout``,
  ``no_responders``, ``remote`` (the responder's handler failed), ``bad_response`` or ``stream``;
* ``subspace_farmer_bus_handled_total{message}`` / ``..._handler_errors_total{message}``: served here;
* ``subspace_farmer_bus_published_total{message}``: notifications and broadcasts sent;
* ``subspace_farmer_bus_connected``: 1 while connected, ``..._reconnects_total``.

``message`` is the message class name (``PieceRequest``), never a subject with ids in it, so
the series count stays bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.metrics.farm import exponential_buckets
from services.metrics.registry import PREFIX

BUS = f"{PREFIX}_bus"
REQUEST_BUCKETS = exponential_buckets(0.0001, 2.0, 18)  # 0.1 ms .. 13 s
REQUEST_ERRORS = ("timeout", "no_responders", "remote", "bad_response", "stream")


class BusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.request_time = Histogram(f"{BUS}_request_time_seconds", "Bus request round-trip time", ("message",),
                                      buckets=REQUEST_BUCKETS, registry=registry)
        self.request_errors = Counter(f"{BUS}_request_errors", "Failed bus requests", ("message", "error"),
                                      registry=registry)
        self.handled = Counter(f"{BUS}_handled", "Bus messages handled by this process", ("message",),
                               registry=registry)
        self.handler_errors = Counter(f"{BUS}_handler_errors", "Bus handlers that failed", ("message",),
                                      registry=registry)
        self.published = Counter(f"{BUS}_published", "Notifications and broadcasts sent", ("message",),
                                 registry=registry)
        self.connected = Gauge(f"{BUS}_connected", "1 while connected to a NATS server", registry=registry)
        self.reconnects = Counter(f"{BUS}_reconnects", "Reconnections to NATS", registry=registry)

    def request_failed(self, message: str, error: str) -> None:
        if error not in REQUEST_ERRORS:
            raise ValueError(f"bus error kind {error!r} is not one of {', '.join(REQUEST_ERRORS)}")
        self.request_errors.labels(message, error).inc()
