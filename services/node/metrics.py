"""Prometheus exposition of a daemon's counters, read at scrape time.

The dev node and the controller keep plain dicts of counters/gauges; this serves them on
``--prometheus-listen-on HOST:PORT`` as ``<prefix>_<name>`` gauges (non-numeric values are
skipped), so nothing has to be updated twice.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily

from services.config import parse_host_port


class _StatsCollector:
    def __init__(self, prefix: str, stats: Callable[[], dict]) -> None:
        self.prefix = prefix
        self.stats = stats

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        for name, value in sorted(self.stats().items()):
            if isinstance(value, (int, float)):  # bools included (an int subclass)
                metric = "".join(c if c.isalnum() else "_" for c in name)
                yield GaugeMetricFamily(f"{self.prefix}_{_snake(metric)}", name, value=float(value))


def _snake(name: str) -> str:
    out = []
    for i, c in enumerate(name):
        if c.isupper() and i and name[i - 1] != "_":
            out.append("_")
        out.append(c.lower())
    return "".join(out)


def serve_metrics(listen: str, prefix: str, stats: Callable[[], dict]) -> tuple[object, object]:
    """Start the HTTP exposition server; returns ``(server, thread)`` (call ``server.shutdown()``)."""
    host, port = parse_host_port(listen, "--prometheus-listen-on", allow_zero_port=True)
    registry = CollectorRegistry()
    registry.register(_StatsCollector(prefix, stats))
    return start_http_server(port, addr=host, registry=registry)
