"""Farm (plot-client) metrics: the official ``single_disk_farm`` set, same names and labels
(``subspace_farmer_farm_*{farm_id}``, reference ``single_disk_farm/metrics.rs``), plus the
solution pipeline counters our cluster adds (found -> submitted -> accepted / past deadline).

Official names as exposed (the reference registry prefixes ``subspace_farmer``, its farm
sub-registry ``farm`` and the label ``farm_id``; units become a name suffix, counters end in
``_total``): ``..._auditing_time_seconds``, ``..._skipped_slots_total``,
``..._proving_time_seconds{result}``, ``..._farming_errors_total{error}``,
``..._sector_{downloading,encoding,writing,plotting}_time_seconds``,
``..._sectors_total_Sectors{state}`` (a gauge), and
``..._sector_{downloading,downloaded,encoding,encoded,writing,written,plotting,plotted,plotting_error}_counter_Sectors_total``.
``result`` is one of ``Success | Timeout | Rejected | Failed``; ``state`` one of
``NotPlotted | Plotted | AboutToExpire | Expired`` (the reference's spellings).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.metrics.registry import PREFIX

FARM = f"{PREFIX}_farm"
SECTOR_STATES = ("NotPlotted", "Plotted", "AboutToExpire", "Expired")
PROVING_RESULTS = ("Success", "Timeout", "Rejected", "Failed")


def exponential_buckets(start: float, factor: float, count: int) -> list[float]:
    """The reference's ``exponential_buckets(start, factor, count)`` (upper bounds, +Inf added)."""
    return [start * factor**i for i in range(count)]


FAST_BUCKETS = exponential_buckets(0.0002, 2.0, 15)  # auditing, proving, writing
SLOW_BUCKETS = exponential_buckets(0.1, 2.0, 15)  # downloading, encoding, plotting

_SECTOR_COUNTERS = {
    "sector_downloading": "Number of sectors being downloaded",
    "sector_downloaded": "Number of downloaded sectors",
    "sector_encoding": "Number of sectors being encoded",
    "sector_encoded": "Number of encoded sectors",
    "sector_writing": "Number of sectors being written",
    "sector_written": "Number of written sectors",
    "sector_plotting": "Number of sectors being plotted",
    "sector_plotted": "Number of plotted sectors",
    "sector_plotting_error": "Number of sector plotting failures",
}
_SECTOR_TIMES = {
    "sector_downloading_time": ("Sector downloading time", SLOW_BUCKETS),
    "sector_encoding_time": ("Sector encoding time", SLOW_BUCKETS),
    "sector_writing_time": ("Sector writing time", FAST_BUCKETS),
    "sector_plotting_time": ("Sector plotting time", SLOW_BUCKETS),
}


class FarmMetrics:
    """The label families, registered once per registry; :meth:`view` binds one farm."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("farm_id",)
        self.auditing_time = Histogram(f"{FARM}_auditing_time_seconds", "Auditing time", labels,
                                       buckets=FAST_BUCKETS, registry=registry)
        self.skipped_slots = Counter(f"{FARM}_skipped_slots", "Completely skipped slots (not even auditing)",
                                     labels, registry=registry)
        self.proving_time = Histogram(f"{FARM}_proving_time_seconds", "Proving time", ("farm_id", "result"),
                                      buckets=FAST_BUCKETS, registry=registry)
        self.farming_errors = Counter(f"{FARM}_farming_errors", "Non-fatal farming errors", ("farm_id", "error"),
                                      registry=registry)
        self.times = {name: Histogram(f"{FARM}_{name}_seconds", text, labels, buckets=buckets, registry=registry)
                      for name, (text, buckets) in _SECTOR_TIMES.items()}
        self.sectors_total = Gauge(f"{FARM}_sectors_total_Sectors", "Total number of sectors with corresponding state",
                                   ("farm_id", "state"), registry=registry)
        self.counters = {name: Counter(f"{FARM}_{name}_counter_Sectors", text, labels, registry=registry)
                         for name, text in _SECTOR_COUNTERS.items()}
        # ours: the solution pipeline of a cluster plot-client
        self.solutions_found = Counter(f"{FARM}_solutions_found", "Audit winners turned into solutions",
                                       labels, registry=registry)
        self.solutions_submitted = Counter(f"{FARM}_solutions_submitted", "Solutions sent to the controller",
                                           labels, registry=registry)
        self.solutions_accepted = Counter(f"{FARM}_solutions_accepted",
                                          "Solutions whose reward hash this farm signed (block authored)",
                                          labels, registry=registry)
        self.solutions_past_deadline = Counter(f"{FARM}_solutions_past_deadline",
                                               "Solutions dropped because proving missed the slot deadline",
                                               labels, registry=registry)
        self.audited_sectors = Gauge(f"{FARM}_audited_sectors", "Sectors audited in the latest slot", labels,
                                     registry=registry)

    def view(self, farm_id: str) -> "FarmView":
        return FarmView(self, farm_id)


class FarmView:
    """One farm's children: ``auditing_time``, ``skipped_slots``, ``sector_*`` counters and
    histograms, ``solutions_*``; helpers for the labelled families."""

    def __init__(self, metrics: FarmMetrics, farm_id: str) -> None:
        self._metrics = metrics
        self.farm_id = farm_id
        self.auditing_time = metrics.auditing_time.labels(farm_id)
        self.skipped_slots = metrics.skipped_slots.labels(farm_id)
        for name, family in {**metrics.times, **metrics.counters}.items():
            setattr(self, name, family.labels(farm_id))
        self.solutions_found = metrics.solutions_found.labels(farm_id)
        self.solutions_submitted = metrics.solutions_submitted.labels(farm_id)
        self.solutions_accepted = metrics.solutions_accepted.labels(farm_id)
        self.solutions_past_deadline = metrics.solutions_past_deadline.labels(farm_id)
        self.audited_sectors = metrics.audited_sectors.labels(farm_id)

    def observe_proving_time(self, seconds: float, result: str) -> None:
        if result not in PROVING_RESULTS:
            raise ValueError(f"proving result {result!r} is not one of {', '.join(PROVING_RESULTS)}")
        self._metrics.proving_time.labels(self.farm_id, result).observe(seconds)

    def note_farming_error(self, kind: str) -> None:
        self._metrics.farming_errors.labels(self.farm_id, kind).inc()

    def set_sectors_total(self, **counts: int) -> None:
        """``set_sectors_total(NotPlotted=8000, Plotted=0)`` at farm start."""
        for state, count in counts.items():
            self._sector_gauge(state).set(count)

    def sector_state_changed(self, state: str) -> None:
        """A sector entered ``state``; moves one sector between the state gauges as the
        reference does (a newly plotted sector leaves NotPlotted, else Expired, else AboutToExpire)."""
        self._sector_gauge(state).inc()
        if state == "Plotted":
            for previous in ("NotPlotted", "Expired", "AboutToExpire"):
                gauge = self._sector_gauge(previous)
                if gauge._value.get() > 0 or previous == "AboutToExpire":
                    gauge.dec()
                    return
        elif state in ("AboutToExpire", "Expired"):
            self._sector_gauge("Plotted").dec()

    def _sector_gauge(self, state: str) -> Gauge:
        if state not in SECTOR_STATES:
            raise ValueError(f"sector state {state!r} is not one of {', '.join(SECTOR_STATES)}")
        return self._metrics.sectors_total.labels(self.farm_id, state)
