"""TCP data plane metrics (ours; ``services.p2p``): bytes moved, connections, handshake
failures and transfer errors.

``subspace_farmer_tcp_sent_bytes_total{kind}`` / ``..._received_bytes_total{kind}`` where ``kind``
is ``piece`` or ``sector``; ``..._connections`` (open now, gauge); ``..._handshake_failures_total``
(bad cluster secret or protocol); ``..._transfer_errors_total{kind}`` (reset, stall, checksum).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.metrics.registry import PREFIX

TCP = f"{PREFIX}_tcp"


class TcpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.bytes_sent = Counter(f"{TCP}_sent_bytes", "Bytes sent over the TCP data plane", ("kind",),
                                  registry=registry)
        self.bytes_received = Counter(f"{TCP}_received_bytes", "Bytes received over the TCP data plane", ("kind",),
                                      registry=registry)
        self.connections = Gauge(f"{TCP}_connections", "Open data plane connections", registry=registry)
        self.handshake_failures = Counter(f"{TCP}_handshake_failures", "Connections refused at the handshake",
                                          registry=registry)
        self.transfer_errors = Counter(f"{TCP}_transfer_errors", "Transfers that failed", ("kind",),
                                       registry=registry)
