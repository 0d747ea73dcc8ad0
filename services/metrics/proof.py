"""Proof-server metrics (ours; the official farmer proves inside the farm, see
``subspace_farmer_farm_proving_time_seconds``): requests by result, proving time, queue depth.

``subspace_farmer_proof_server_proofs_total{result}`` with ``result`` one of the reference's
``Success | Timeout | Rejected | Failed`` plus ``PastDeadline`` (dropped before proving),
``subspace_farmer_proof_server_proving_time_seconds``, ``..._queue_depth``,
``..._tables_per_second`` (measured by the self-test).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.metrics.farm import FAST_BUCKETS
from services.metrics.registry import PREFIX

PROOF_SERVER = f"{PREFIX}_proof_server"
PROOF_RESULTS = ("Success", "Timeout", "Rejected", "Failed", "PastDeadline")


class ProofServerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.proofs = Counter(f"{PROOF_SERVER}_proofs", "Proof requests by result", ("result",), registry=registry)
        self.proving_time = Histogram(f"{PROOF_SERVER}_proving_time_seconds", "Time to prove one candidate",
                                      buckets=FAST_BUCKETS, registry=registry)
        self.queue_depth = Gauge(f"{PROOF_SERVER}_queue_depth", "Proof requests waiting or running",
                                 registry=registry)
        self.tables_per_second = Gauge(f"{PROOF_SERVER}_tables_per_second",
                                       "K=20 table sets per second measured by the self-test", registry=registry)

    def proof(self, result: str) -> None:
        if result not in PROOF_RESULTS:
            raise ValueError(f"proof result {result!r} is not one of {', '.join(PROOF_RESULTS)}")
        self.proofs.labels(result).inc()
