"""services.metrics: the official farmer's exact names, labels and types, repeatable listeners,
and a one-line error for a busy port."""

from __future__ import annotations

import re
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.metrics import DaemonMetrics, MetricsListenError, all_metric_names, serve

# Read from the reference (autonomys/subspace 72a5aa6f crates/subspace-farmer/src/*/metrics.rs:
# registry prefix "subspace_farmer", sub-registry prefix, unit suffix, "_total" for counters).
OFFICIAL_FARM = {
    "subspace_farmer_farm_auditing_time_seconds": "histogram",
    "subspace_farmer_farm_skipped_slots": "counter",
    "subspace_farmer_farm_proving_time_seconds": "histogram",
    "subspace_farmer_farm_farming_errors": "counter",
    "subspace_farmer_farm_sector_downloading_time_seconds": "histogram",
    "subspace_farmer_farm_sector_encoding_time_seconds": "histogram",
    "subspace_farmer_farm_sector_writing_time_seconds": "histogram",
    "subspace_farmer_farm_sector_plotting_time_seconds": "histogram",
    "subspace_farmer_farm_sectors_total_Sectors": "gauge",
    **{f"subspace_farmer_farm_sector_{name}_counter_Sectors": "counter" for name in (
        "downloading", "downloaded", "encoding", "encoded", "writing", "written", "plotting", "plotted",
        "plotting_error")},
}
OFFICIAL_PLOTTER = {
    "subspace_farmer_plotter_sector_downloading_time_seconds": "histogram",
    "subspace_farmer_plotter_sector_encoding_time_seconds": "histogram",
    "subspace_farmer_plotter_sector_plotting_time_seconds": "histogram",
    "subspace_farmer_plotter_plotting_capacity_total_Sectors": "gauge",
    "subspace_farmer_plotter_plotting_capacity_used_Sectors": "gauge",
    **{f"subspace_farmer_plotter_sector_{name}_counter_Sectors": "counter" for name in (
        "downloading", "downloaded", "encoding", "encoded", "plotting", "plotted", "plotting_error")},
}
OFFICIAL_CACHES = {
    "subspace_farmer_farmer_cache_cache_get_hit_Requests": "counter",
    "subspace_farmer_farmer_cache_cache_get_miss_Requests": "counter",
    "subspace_farmer_farmer_cache_cache_error_Requests": "counter",
    "subspace_farmer_farmer_cache_cache_find_hit_Requests": "counter",
    "subspace_farmer_farmer_cache_cache_find_miss_Requests": "counter",
    "subspace_farmer_farmer_cache_piece_cache_capacity_total_Pieces": "gauge",
    "subspace_farmer_farmer_cache_piece_cache_capacity_used_Pieces": "gauge",
    "subspace_farmer_disk_piece_cache_contents_Requests": "counter",
    "subspace_farmer_disk_piece_cache_read_piece_Pieces": "counter",
    "subspace_farmer_disk_piece_cache_read_piece_index_Requests": "counter",
    "subspace_farmer_disk_piece_cache_write_piece_Pieces": "counter",
    "subspace_farmer_disk_piece_cache_capacity_total_Pieces": "gauge",
    "subspace_farmer_disk_piece_cache_capacity_used_Pieces": "gauge",
}
OFFICIAL = {**OFFICIAL_FARM, **OFFICIAL_PLOTTER, **OFFICIAL_CACHES}
SAMPLE_SUFFIX = {"counter": "_total", "gauge": "", "histogram": "_count"}


def scrape(port: int, host: str = "127.0.0.1") -> str:
    return urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10).read().decode()


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def exercised() -> DaemonMetrics:
    """Every official metric with one observation, labelled as the reference labels them."""
    metrics = DaemonMetrics("plot-client")
    metrics.describe(instance="host-1", version="0.1.0", hourly_cost=1.25)
    farm = metrics.farm("01J0FARMID")
    farm.set_sectors_total(NotPlotted=10, Plotted=0)
    farm.auditing_time.observe(0.01)
    farm.skipped_slots.inc()
    farm.observe_proving_time(0.5, "Success")
    farm.note_farming_error("LowLevelAuditing")
    for name in ("downloading", "encoding", "writing", "plotting"):
        getattr(farm, f"sector_{name}_time").observe(1.0)
    for name in ("downloading", "downloaded", "encoding", "encoded", "writing", "written", "plotting", "plotted",
                 "plotting_error"):
        getattr(farm, f"sector_{name}").inc()
    farm.sector_state_changed("Plotted")
    plotter = metrics.plotter("gpu-cuda")
    for name in ("downloading", "encoding", "plotting"):
        getattr(plotter, f"sector_{name}_time").observe(3.0)
    for name in ("downloading", "downloaded", "encoding", "encoded", "plotting", "plotted", "plotting_error"):
        getattr(plotter, f"sector_{name}").inc()
    plotter.capacity_total.set(4)
    plotter.capacity_used.set(1)
    cache = metrics.farmer_cache()
    for name in ("cache_get_hit", "cache_get_miss", "cache_get_error", "cache_find_hit", "cache_find_miss"):
        getattr(cache, name).inc()
    cache.piece_cache_capacity_total.set(100)
    cache.piece_cache_capacity_used.set(7)
    disk = metrics.disk_piece_cache("01J0CACHE", capacity=100)
    for name in ("contents", "read_piece", "read_piece_index", "write_piece"):
        getattr(disk, name).inc()
    disk.capacity_used.set(7)
    return metrics


def test_official_names_labels_and_types():
    metrics = exercised()
    listeners = serve(metrics.registry, ["127.0.0.1:0"])
    try:
        text = scrape(listeners.addresses[0][1])
    finally:
        listeners.close()
    found = families(text)
    for name, kind in OFFICIAL.items():
        assert name in found, name
        assert found[name].type == kind, (name, found[name].type)
        assert re.search(rf"^{name}{SAMPLE_SUFFIX[kind]}[ {{]", text, re.M), name  # the exposed sample name
    assert 'subspace_farmer_farm_proving_time_seconds_count{farm_id="01J0FARMID",result="Success"} 1.0' in text
    assert 'subspace_farmer_farm_sectors_total_Sectors{farm_id="01J0FARMID",state="NotPlotted"} 9.0' in text
    assert 'subspace_farmer_farm_sectors_total_Sectors{farm_id="01J0FARMID",state="Plotted"} 1.0' in text
    assert 'subspace_farmer_farm_farming_errors_total{error="LowLevelAuditing",farm_id="01J0FARMID"} 1.0' in text
    assert 'subspace_farmer_plotter_sector_plotted_counter_Sectors_total{kind="gpu-cuda"} 1.0' in text
    assert 'subspace_farmer_disk_piece_cache_capacity_total_Pieces{cache_id="01J0CACHE"} 100.0' in text
    # the reference's histogram buckets: exponential_buckets(0.0002, 2, 15) for auditing
    assert 'subspace_farmer_farm_auditing_time_seconds_bucket{farm_id="01J0FARMID",le="3.2768"}' in text
    assert 'subspace_farmer_component_info{component="plot-client",name="host-1",version="0.1.0"} 1.0' in text
    assert "subspace_farmer_hourly_cost 1.25" in text
    assert "process_resident_memory_bytes" in text
    assert "_created" not in text


def test_every_counter_is_a_counter():
    metrics = DaemonMetrics("all")
    metrics.all_groups()
    for family in metrics.registry.collect():
        if family.name.startswith("subspace_farmer_") and family.type == "gauge":
            assert not family.name.endswith(("_total", "_counter")), family.name
    names = all_metric_names()
    assert {f"{name}{SAMPLE_SUFFIX[kind]}" for name, kind in OFFICIAL.items()} <= names
    for ours in ("subspace_farmer_farm_solutions_found_total", "subspace_farmer_farm_solutions_submitted_total",
                 "subspace_farmer_farm_solutions_accepted_total", "subspace_farmer_farm_solutions_past_deadline_total",
                 "subspace_farmer_piece_getter_fetch_time_seconds_bucket", "subspace_farmer_bus_request_time_seconds_count",
                 "subspace_farmer_bus_request_errors_total", "subspace_farmer_tcp_sent_bytes_total",
                 "subspace_farmer_gpu_memory_used_bytes", "subspace_farmer_gpu_utilization_ratio",
                 "subspace_farmer_controller_slots_total", "subspace_farmer_dev_node_blocks_authored_total"):
        assert ours in names, ours


def test_repeatable_listeners_and_busy_port():
    metrics = exercised()
    listeners = serve(metrics.registry, ["127.0.0.1:0", "127.0.0.1:0"])
    try:
        ports = [port for _, port in listeners.addresses]
        assert len(set(ports)) == 2
        for port in ports:
            assert "subspace_farmer_farm_skipped_slots_total" in scrape(port)
        with pytest.raises(MetricsListenError) as caught:
            serve(metrics.registry, ["127.0.0.1:0", f"127.0.0.1:{ports[0]}"])
        message = str(caught.value)
        assert message == (f"cannot serve Prometheus metrics on 127.0.0.1:{ports[0]} (--prometheus-listen-on): "
                           "address already in use")
    finally:
        listeners.close()
    with socket.socket() as probe:  # closed listeners free their ports (a TIME_WAIT leftover is no listener)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", ports[0]))
        probe.listen()


def test_piece_getter_timing_counts_failures():
    metrics = DaemonMetrics("plot-server")
    getter = metrics.piece_getter()
    with getter.fetching("sharded-cache", pieces=32):
        pass
    with pytest.raises(OSError), getter.fetching("controller"):
        raise OSError("reset")
    value = metrics.registry.get_sample_value
    assert value("subspace_farmer_piece_getter_pieces_total", {"source": "sharded-cache"}) == 32
    assert value("subspace_farmer_piece_getter_fetch_time_seconds_count", {"source": "sharded-cache"}) == 1
    assert value("subspace_farmer_piece_getter_fetch_errors_total", {"source": "controller"}) == 1


def test_gpu_gauges_read_at_scrape_time():
    from services.gpu.inventory import DeviceUsage

    devices = [DeviceUsage(index=0, name="NVIDIA H200", memory_total=141 << 30, memory_used=3 << 30, utilization=0.5),
               DeviceUsage(index=1, name="NVIDIA H200", memory_total=141 << 30, memory_used=0)]
    metrics = DaemonMetrics("proof-server")
    metrics.gpu(lambda: devices)
    value = metrics.registry.get_sample_value
    assert value("subspace_farmer_gpu_memory_used_bytes", {"gpu": "0", "model": "NVIDIA H200"}) == 3 << 30
    assert value("subspace_farmer_gpu_utilization_ratio", {"gpu": "0", "model": "NVIDIA H200"}) == 0.5
    assert value("subspace_farmer_gpu_utilization_ratio", {"gpu": "1", "model": "NVIDIA H200"}) is None
    devices.clear()  # the device list is read at every scrape
    assert value("subspace_farmer_gpu_memory_used_bytes", {"gpu": "0", "model": "NVIDIA H200"}) is None
