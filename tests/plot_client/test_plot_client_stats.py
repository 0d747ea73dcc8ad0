"""A farm's plotting feeds the official ``subspace_farmer_farm_sector_*`` metrics stage by stage
(claim accepted, sector ready, sector committed, failure) and the sector-state gauge."""

from __future__ import annotations

from services.metrics import DaemonMetrics
from services.plot_client.stats import FarmingStats

FARM = "01J0STATSTESTFARM000000000"


def value(metrics: DaemonMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"farm_id": FARM, **labels})


def test_sector_stages_feed_the_official_farm_metrics():
    metrics = DaemonMetrics("plot-client")
    stats = FarmingStats(FARM, metrics=metrics.farm(FARM))
    stats.observe_sectors(0.0, target=3, plotted=0)
    stats.count_sector_plotting()
    stats.observe_sector_ready(downloading_s=1.5, encoding_s=4.0)
    stats.observe_sector_plotted(writing_s=0.25, plotting_s=6.0)
    stats.observe_sectors(1.0, target=3, plotted=1)
    stats.count_sector_plotting()
    stats.count_sector_plotting_error()
    farm = "subspace_farmer_farm"
    assert value(metrics, f"{farm}_sector_plotting_counter_Sectors_total") == 2
    for stage in ("downloading", "downloaded", "encoding", "encoded", "writing", "written", "plotted",
                  "plotting_error"):
        assert value(metrics, f"{farm}_sector_{stage}_counter_Sectors_total") == 1, stage
    for stage, seconds in (("downloading", 1.5), ("encoding", 4.0), ("writing", 0.25), ("plotting", 6.0)):
        assert value(metrics, f"{farm}_sector_{stage}_time_seconds_count") == 1, stage
        assert value(metrics, f"{farm}_sector_{stage}_time_seconds_sum") == seconds, stage
    assert value(metrics, f"{farm}_sectors_total_Sectors", state="Plotted") == 1
    assert value(metrics, f"{farm}_sectors_total_Sectors", state="NotPlotted") == 2
    snapshot = stats.snapshot()
    assert snapshot["sectors_plotted"] == 1 and snapshot["sector_plotting_errors"] == 1
