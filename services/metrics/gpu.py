"""GPU metrics (ours): memory and utilisation read at scrape time, the self-test verdict and the
measured throughput that the cluster schedules by.

* ``subspace_farmer_gpu_memory_total_bytes{gpu,model}``, ``..._memory_used_bytes{gpu,model}``:
  from cupy (``cudaMemGetInfo``) for each visible device;
* ``subspace_farmer_gpu_utilization_ratio{gpu,model}``: 0..1, only where NVML can be read
  (``pynvml``, optional); absent otherwise rather than a made-up 0;
* ``subspace_farmer_gpu_self_test_passed{backend}``: 1 passed, 0 failed (the process refuses work);
* ``subspace_farmer_gpu_tables_per_second{backend}``: K=20 table sets per second in the self-test.

``gpu`` is the CUDA index as this process sees it (after ``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily

from services.metrics.registry import PREFIX

GPU = f"{PREFIX}_gpu"


class _DeviceCollector:
    def __init__(self, read_devices: Callable[[], list]) -> None:
        self.read_devices = read_devices

    def describe(self):  # noqa: ANN201 - prometheus collector protocol
        return self._families()

    def _families(self) -> list[GaugeMetricFamily]:
        labels = ["gpu", "model"]
        return [
            GaugeMetricFamily(f"{GPU}_memory_total_bytes", "GPU memory total", labels=labels),
            GaugeMetricFamily(f"{GPU}_memory_used_bytes", "GPU memory in use (all processes)", labels=labels),
            GaugeMetricFamily(f"{GPU}_utilization_ratio", "GPU busy fraction (NVML)", labels=labels),
        ]

    def collect(self):  # noqa: ANN201
        total, used, utilization = self._families()
        try:
            devices = self.read_devices()
        except Exception:  # noqa: BLE001 - a failing driver must not break the scrape
            devices = []
        for device in devices:
            labels = [str(device.index), device.name]
            total.add_metric(labels, device.memory_total)
            used.add_metric(labels, device.memory_used)
            if device.utilization is not None:
                utilization.add_metric(labels, device.utilization)
        return [total, used, utilization]


class GpuMetrics:
    def __init__(self, registry: CollectorRegistry, read_devices: Callable[[], list] | None = None) -> None:
        if read_devices is None:
            from services.gpu import read_device_usage

            read_devices = read_device_usage
        registry.register(_DeviceCollector(read_devices))
        self.self_test_passed = Gauge(f"{GPU}_self_test_passed", "1 when the self-test passed (0: work refused)",
                                      ("backend",), registry=registry)
        self.tables_per_second = Gauge(f"{GPU}_tables_per_second", "K=20 table sets per second (self-test)",
                                       ("backend",), registry=registry)
