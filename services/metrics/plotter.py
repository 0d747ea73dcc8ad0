"""Plotter (plot-server) metrics: the official ``plotter`` set with label ``kind`` (reference
``plotter/cpu/metrics.rs`` and ``plotter/gpu/metrics.rs``: ``kind`` is ``gpu-cuda`` for the CUDA
plotter, ``cpu-<pos table type>`` for the CPU one), plus the cluster's sector-job counters.

Official names: ``subspace_farmer_plotter_sector_{downloading,encoding,plotting}_time_seconds``,
``..._sector_{downloading,downloaded,encoding,encoded,plotting,plotted,plotting_error}_counter_Sectors_total``,
``..._plotting_capacity_total_Sectors`` and ``..._plotting_capacity_used_Sectors`` (gauges).
Ours: ``..._jobs_total{outcome}`` (``done | failed | redelivered | abandoned``), ``..._sectors_held``
(finished sectors waiting for their plot-client) and ``..._sector_upload_time_seconds``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.metrics.farm import SLOW_BUCKETS
from services.metrics.registry import PREFIX

PLOTTER = f"{PREFIX}_plotter"
CUDA_KIND = "gpu-cuda"
CPU_KIND = "cpu-subspace_proof_of_space::chia::ChiaTable"  # the reference's type_name of its PoS table

_COUNTERS = {
    "sector_downloading": "Number of sectors being downloaded",
    "sector_downloaded": "Number of downloaded sectors",
    "sector_encoding": "Number of sectors being encoded",
    "sector_encoded": "Number of encoded sectors",
    "sector_plotting": "Number of sectors being plotted",
    "sector_plotted": "Number of plotted sectors",
    "sector_plotting_error": "Number of sector plotting failures",
}
_TIMES = {
    "sector_downloading_time": "Sector downloading time",
    "sector_encoding_time": "Sector encoding time",
    "sector_plotting_time": "Sector plotting time",
}
JOB_OUTCOMES = ("done", "failed", "redelivered", "abandoned")


class PlotterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("kind",)
        self.times = {name: Histogram(f"{PLOTTER}_{name}_seconds", text, labels, buckets=SLOW_BUCKETS,
                                      registry=registry) for name, text in _TIMES.items()}
        self.counters = {name: Counter(f"{PLOTTER}_{name}_counter_Sectors", text, labels, registry=registry)
                         for name, text in _COUNTERS.items()}
        self.capacity_total = Gauge(f"{PLOTTER}_plotting_capacity_total_Sectors", "Plotting capacity total", labels,
                                    registry=registry)
        self.capacity_used = Gauge(f"{PLOTTER}_plotting_capacity_used_Sectors", "Plotting capacity used", labels,
                                   registry=registry)
        self.jobs = Counter(f"{PLOTTER}_jobs", "Sector jobs by outcome", ("kind", "outcome"), registry=registry)
        self.sectors_held = Gauge(f"{PLOTTER}_sectors_held", "Finished sectors waiting for their plot-client",
                                  labels, registry=registry)
        self.upload_time = Histogram(f"{PLOTTER}_sector_upload_time_seconds",
                                     "Time for a plot-client to download a finished sector", labels,
                                     buckets=SLOW_BUCKETS, registry=registry)

    def view(self, kind: str) -> "PlotterView":
        return PlotterView(self, kind)


class PlotterView:
    """One plotter kind: ``sector_*`` counters and histograms, ``capacity_total`` /
    ``capacity_used``, ``sectors_held``, ``upload_time``, and :meth:`job` for outcomes."""

    def __init__(self, metrics: PlotterMetrics, kind: str) -> None:
        self._metrics = metrics
        self.kind = kind
        for name, family in {**metrics.times, **metrics.counters}.items():
            setattr(self, name, family.labels(kind))
        self.capacity_total = metrics.capacity_total.labels(kind)
        self.capacity_used = metrics.capacity_used.labels(kind)
        self.sectors_held = metrics.sectors_held.labels(kind)
        self.upload_time = metrics.upload_time.labels(kind)

    def job(self, outcome: str) -> None:
        if outcome not in JOB_OUTCOMES:
            raise ValueError(f"job outcome {outcome!r} is not one of {', '.join(JOB_OUTCOMES)}")
        self._metrics.jobs.labels(self.kind, outcome).inc()
