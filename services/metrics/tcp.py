"""TCP data plane metrics (ours; ``services.p2p``): bytes moved, connections, handshake
failures and transfer errors, read from the p2p servers' and clients' own counters at scrape time.

Why read instead of count: ``services.p2p`` keeps plain attribute counters on its hot path
(:mod:`services.p2p.stats`); exporting them at scrape time costs the data plane nothing and can
never disagree with what the p2p layer logs.

    metrics.tcp.watch("sector", peer_server)     # anything with a ``.stats`` dict (PeerServer,
    metrics.tcp.watch("piece", peer_client)      # PeerClient); several per kind are summed

``subspace_farmer_tcp_sent_bytes_total{kind}`` / ``..._received_bytes_total{kind}`` where ``kind``
is ``piece`` or ``sector``; ``..._connections{kind}`` (open now, gauge);
``..._handshake_failures_total{kind}`` (bad cluster secret or protocol);
``..._transfer_errors_total{kind}`` (calls that failed or timed out, items whose digest did not
match, malformed frames).
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from services.metrics.registry import PREFIX

TCP = f"{PREFIX}_tcp"
KINDS = ("piece", "sector")
_ERROR_FIELDS = ("errors", "timeouts", "integrity_failures", "protocol_errors")


class TcpMetrics:
    """Collector over the watched p2p endpoints (registered once per registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._sources: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        registry.register(self)

    def watch(self, kind: str, source: Any) -> None:
        """Export ``source.stats`` (a :class:`services.p2p.PeerServer` or ``PeerClient``) as ``kind``."""
        if kind not in KINDS:
            raise ValueError(f"tcp kind {kind!r} is not one of {', '.join(KINDS)}")
        with self._lock:
            self._sources.append((kind, source))

    def totals(self) -> dict[str, dict[str, int]]:
        """Summed counters per kind (what a scrape exposes)."""
        with self._lock:
            sources = list(self._sources)
        totals: dict[str, dict[str, int]] = {}
        for kind, source in sources:
            try:
                stats = source.stats
            except Exception:  # noqa: BLE001 - a closed endpoint must not break the scrape
                continue
            into = totals.setdefault(kind, {"sent": 0, "received": 0, "connections": 0, "handshake_failures": 0,
                                            "transfer_errors": 0})
            into["sent"] += int(stats.get("bytes_sent", 0))
            into["received"] += int(stats.get("bytes_received", 0))
            into["connections"] += int(stats.get("connections_active", 0))
            into["handshake_failures"] += int(stats.get("handshake_failures", 0))
            into["transfer_errors"] += sum(int(stats.get(name, 0)) for name in _ERROR_FIELDS)
        return totals

    def describe(self):  # noqa: ANN201 - prometheus collector protocol
        return self._families({})

    def collect(self):  # noqa: ANN201
        return self._families(self.totals())

    @staticmethod
    def _families(totals: dict[str, dict[str, int]]) -> list:
        sent = CounterMetricFamily(f"{TCP}_sent_bytes", "Bytes sent over the TCP data plane", labels=["kind"])
        received = CounterMetricFamily(f"{TCP}_received_bytes", "Bytes received over the TCP data plane",
                                       labels=["kind"])
        connections = GaugeMetricFamily(f"{TCP}_connections", "Open data plane connections", labels=["kind"])
        handshakes = CounterMetricFamily(f"{TCP}_handshake_failures", "Connections refused at the handshake",
                                         labels=["kind"])
        errors = CounterMetricFamily(f"{TCP}_transfer_errors", "Transfers that failed", labels=["kind"])
        for kind, values in sorted(totals.items()):
            sent.add_metric([kind], values["sent"])
            received.add_metric([kind], values["received"])
            connections.add_metric([kind], values["connections"])
            handshakes.add_metric([kind], values["handshake_failures"])
            errors.add_metric([kind], values["transfer_errors"])
        return [sent, received, connections, handshakes, errors]
