"""Controller and dev-node metrics (ours), ported from the stats dicts these daemons kept.

Controller (counters it increments): ``subspace_farmer_controller_slots_total``,
``..._solutions_total{result}`` (``forwarded | rejected | malformed``),
``..._reward_signing_requests_total``, ``..._reward_signatures_total``,
``..._archived_segments_total``, ``..._piece_requests_total{result}`` (``found | missing``),
``..._last_slot`` (gauge), ``..._node_connected`` (gauge).

Dev node: read from its ``dev_status`` values at scrape time (so nothing is counted twice):
``subspace_farmer_dev_node_{slots,segments_archived,blocks_authored,solutions_received,
solutions_ignored,solutions_rejected,votes,reward_signing_failures,bad_reward_signatures}_total``
(counters) and ``..._chain_height``, ``..._history_size``, ``..._last_slot``,
``..._pending_acknowledgements``, ``..._ready`` (gauges).
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from services.metrics.registry import PREFIX

CONTROLLER = f"{PREFIX}_controller"
DEV_NODE = f"{PREFIX}_dev_node"


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.slots = Counter(f"{CONTROLLER}_slots", "Slot infos broadcast to farmers", registry=registry)
        self.solutions = Counter(f"{CONTROLLER}_solutions", "Solutions from farmers by outcome at the node",
                                 ("result",), registry=registry)
        self.reward_signing = Counter(f"{CONTROLLER}_reward_signing_requests", "Reward signing requests broadcast",
                                      registry=registry)
        self.reward_signatures = Counter(f"{CONTROLLER}_reward_signatures", "Reward signatures forwarded to the node",
                                         registry=registry)
        self.segments = Counter(f"{CONTROLLER}_archived_segments", "Archived segment headers announced",
                                registry=registry)
        self.piece_requests = Counter(f"{CONTROLLER}_piece_requests", "Pieces asked of the controller",
                                      ("result",), registry=registry)
        self.last_slot = Gauge(f"{CONTROLLER}_last_slot", "Latest slot number seen from the node", registry=registry)
        self.node_connected = Gauge(f"{CONTROLLER}_node_connected", "1 while the node RPC is connected",
                                    registry=registry)


# dev_status key -> (metric suffix, help)
DEV_NODE_COUNTERS = {
    "slots": ("slots", "Slots emitted"),
    "segments_archived": ("segments_archived", "Segments archived"),
    "blocks_authored": ("blocks_authored", "Blocks authored"),
    "solutions_received": ("solutions_received", "Solutions received"),
    "solutions_ignored": ("solutions_ignored", "Solutions ignored (unknown slot or channel full)"),
    "solutions_rejected": ("solutions_rejected", "Solutions that failed verification"),
    "votes": ("votes", "Valid solutions counted as votes"),
    "reward_signing_failures": ("reward_signing_failures", "Blocks not authored for want of a reward signature"),
    "bad_reward_signatures": ("bad_reward_signatures", "Invalid reward signatures"),
}
DEV_NODE_GAUGES = {
    "chainHeight": ("chain_height", "Chain height"),
    "historySize": ("history_size", "History size in segments"),
    "lastSlot": ("last_slot", "Latest slot"),
    "pendingAcknowledgements": ("pending_acknowledgements", "Segment acknowledgements still awaited"),
    "ready": ("ready", "1 once the pre-archived history is in place"),
}


class DevNodeMetrics:
    """Collector over ``stats()``: a dict holding the counter keys of :data:`DEV_NODE_COUNTERS`
    and the ``dev_status`` keys of :data:`DEV_NODE_GAUGES` (missing or None values are skipped)."""

    def __init__(self, registry: CollectorRegistry, stats: Callable[[], dict]) -> None:
        self.stats = stats
        registry.register(self)

    def describe(self):  # noqa: ANN201 - prometheus collector protocol
        return self._families({})

    def collect(self):  # noqa: ANN201
        try:
            values = self.stats()
        except Exception:  # noqa: BLE001 - not started yet: expose the families without samples
            values = {}
        return self._families(values)

    @staticmethod
    def _families(values: dict) -> list:
        families: list = []
        for key, (suffix, text) in DEV_NODE_COUNTERS.items():
            family = CounterMetricFamily(f"{DEV_NODE}_{suffix}", text)
            if isinstance(values.get(key), (int, float)):
                family.add_metric([], values[key])
            families.append(family)
        for key, (suffix, text) in DEV_NODE_GAUGES.items():
            family = GaugeMetricFamily(f"{DEV_NODE}_{suffix}", text)
            if isinstance(values.get(key), (int, float)):
                family.add_metric([], float(values[key]))
            families.append(family)
        return families
