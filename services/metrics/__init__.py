"""Prometheus metrics for every daemon: one registry per process, served on
``--prometheus-listen-on HOST:PORT`` (repeatable, as the official farmer spells it), with metric
definitions grouped by domain.

Why: operators watch dozens of machines on Grafana (dashboard 20433 and community monitors are
written against the official ``subspace-farmer``), so a measure that means the same as one of
the official farmer's keeps its **exact name and labels** (``subspace_farmer_farm_*``,
``subspace_farmer_plotter_*``, ``subspace_farmer_farmer_cache_*``,
``subspace_farmer_disk_piece_cache_*``); our additions use the same ``subspace_farmer_<domain>_``
prefix style. Counters are counters (exposed with ``_total``), durations are histograms in
seconds.

Usage (a daemon gets ``self.metrics`` from :class:`services.daemon.Daemon`; the lifecycle serves
it on the config's ``prometheus_listen_on`` addresses before ``start()`` and closes the
listeners after ``stop()``)::

    metrics = DaemonMetrics("plot-client")             # registry + process/platform collectors
    metrics.describe(instance="host-plot-client", version="0.1.0", hourly_cost=None)

    farm = metrics.farm(farm_id)                       # official single_disk_farm metrics
    farm.set_sectors_total(not_plotted=8000, plotted=0)
    farm.auditing_time.observe(0.012)                  # subspace_farmer_farm_auditing_time_seconds
    farm.skipped_slots.inc()                           # ..._farm_skipped_slots_total
    farm.observe_proving_time(0.9, "Success")          # ..._farm_proving_time_seconds{result}
    farm.sector_plotted.inc(); farm.sector_state_changed("Plotted")
    farm.solutions_found.inc(); farm.solutions_submitted.inc()  # our additions

    plotter = metrics.plotter("gpu-cuda")              # official plotter metrics, label kind
    plotter.sector_plotting_time.observe(42.0); plotter.sector_plotted.inc()
    getter = metrics.piece_getter()                    # piece fetch latency / errors per source
    with getter.fetching("sharded-cache"): ...         # observes seconds, counts a failure
    metrics.farmer_cache().cache_get_hit.inc()         # official farmer_cache metrics
    metrics.disk_piece_cache(cache_id, capacity).write_piece.inc()
    metrics.proof_server().proofs.labels(result="Success").inc()
    metrics.bus                                        # filled by services.bus.client.Bus
    metrics.tcp.bytes_sent.labels(kind="sector").inc(n)
    metrics.gpu(devices_reader)                        # GPU memory/utilisation at scrape time
    metrics.controller / metrics.dev_node(stats_source)

    listeners = serve(metrics.registry, ["0.0.0.0:9081"])  # MetricsListenError on a busy port
    listeners.close()

Every definition lives in one domain module (``farm``, ``plotter``, ``cache``, ``proof``, ``bus``,
``tcp``, ``gpu``, ``node``); :func:`all_metric_names` lists the exposed sample names of all of
them (the Grafana dashboard test checks its queries against it).
"""

from services.metrics.registry import (
    DaemonMetrics,
    MetricsListenError,
    MetricsListeners,
    all_metric_names,
    exposed_names,
    serve,
)

__all__ = [
    "DaemonMetrics",
    "MetricsListenError",
    "MetricsListeners",
    "all_metric_names",
    "exposed_names",
    "serve",
]
