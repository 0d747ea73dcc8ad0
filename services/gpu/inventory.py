"""What GPUs this process can use (after ``CUDA_VISIBLE_DEVICES``), read through cupy; the CPU
is reported too, since without a GPU the roles fall back to the CPU backend.

``inventory()`` never raises for a missing or broken driver: it reports ``backend="cpu"`` and
the reason in ``gpu_error``. Utilisation comes from NVML (``pynvml``) when that is installed;
cupy's runtime API has memory, not utilisation.
"""

from __future__ import annotations

import os
import platform

import msgspec


class GpuDevice(msgspec.Struct, frozen=True):
    index: int  # CUDA index in this process
    name: str
    memory_total: int  # bytes
    memory_free: int
    compute_capability: str = ""
    pci_bus_id: str = ""


class DeviceUsage(msgspec.Struct, frozen=True):
    """One scrape of a device for the GPU metrics."""

    index: int
    name: str
    memory_total: int
    memory_used: int
    utilization: float | None = None  # 0..1, None when NVML is not available


class Inventory(msgspec.Struct, frozen=True):
    backend: str  # "gpu" when at least one CUDA device is usable, else "cpu"
    devices: tuple[GpuDevice, ...] = ()
    cuda_visible_devices: str | None = None
    gpu_error: str = ""  # why there is no GPU backend (no cupy, no device, driver error)
    cpu_model: str = ""
    cpu_count: int = 0

    @property
    def model(self) -> str:
        """``NVIDIA H100 80GB HBM3`` (``2x ...`` for several), or the CPU model without a GPU."""
        if not self.devices:
            return self.cpu_model or "cpu"
        names = sorted({d.name for d in self.devices})
        prefix = f"{len(self.devices)}x " if len(self.devices) > 1 else ""
        return prefix + " + ".join(names)

    @property
    def vram_bytes(self) -> int:
        return sum(d.memory_total for d in self.devices)


def _cupy():  # noqa: ANN202
    import cupy  # noqa: PLC0415 - optional dependency

    return cupy


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device(cp, index: int) -> GpuDevice:  # noqa: ANN001
    props = cp.cuda.runtime.getDeviceProperties(index)
    name = props.get("name", b"")
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    with cp.cuda.Device(index):
        free, total = cp.cuda.runtime.memGetInfo()
    bus = ""
    try:
        bus = cp.cuda.runtime.deviceGetPCIBusId(index)
    except Exception:  # noqa: BLE001 - older cupy
        pass
    return GpuDevice(index=index, name=name.strip(), memory_total=int(total), memory_free=int(free),
                     compute_capability=f"{props.get('major', 0)}.{props.get('minor', 0)}", pci_bus_id=bus)


def inventory() -> Inventory:
    """GPUs visible to this process, plus the CPU."""
    common = dict(cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"), cpu_model=_cpu_model(),
                  cpu_count=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0)
    try:
        cp = _cupy()
    except ImportError as exc:
        return Inventory(backend="cpu", gpu_error=f"cupy is not installed ({exc.name or exc})", **common)
    try:
        count = int(cp.cuda.runtime.getDeviceCount())
        devices = tuple(_device(cp, i) for i in range(count))
    except Exception as exc:  # noqa: BLE001 - driver / runtime failures
        return Inventory(backend="cpu", gpu_error=f"CUDA is not usable: {exc}", **common)
    if not devices:
        return Inventory(backend="cpu", gpu_error="no CUDA device visible (check CUDA_VISIBLE_DEVICES)", **common)
    return Inventory(backend="gpu", devices=devices, **common)


def _nvml_utilization(pci_bus_ids: list[str]) -> dict[str, float]:
    try:
        import pynvml  # noqa: PLC0415 - optional (nvidia-ml-py)

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - not installed or no driver
        return {}
    out: dict[str, float] = {}
    for bus in pci_bus_ids:
        try:
            handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus.encode())
            out[bus] = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
        except Exception:  # noqa: BLE001 - one device failing must not hide the others
            continue
    return out


def read_device_usage() -> list[DeviceUsage]:
    """Memory (and utilisation where NVML is present) of each visible device; [] without a GPU."""
    inv = inventory()
    utilization = _nvml_utilization([d.pci_bus_id for d in inv.devices if d.pci_bus_id])
    return [DeviceUsage(index=d.index, name=d.name, memory_total=d.memory_total,
                        memory_used=d.memory_total - d.memory_free, utilization=utilization.get(d.pci_bus_id))
            for d in inv.devices]
