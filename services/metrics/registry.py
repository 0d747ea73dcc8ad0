"""One Prometheus registry per daemon, its domain metric groups, and the HTTP listeners.

The registry is a private ``CollectorRegistry`` (never the process-global default), so a test
can run several daemons in one process and a library never registers into someone else's
exposition. Domain groups are created on first use and cached: asking twice for
``metrics.plotter("gpu-cuda")`` returns the same families.
"""

from __future__ import annotations

import errno
import threading
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge, Info, PlatformCollector, ProcessCollector
from prometheus_client import disable_created_metrics, start_http_server

from services.config import parse_host_port
from services.daemon import DaemonError

# ``*_created`` samples double the series count and no dashboard uses them.
disable_created_metrics()

PREFIX = "subspace_farmer"


class MetricsListenError(DaemonError):
    """A ``--prometheus-listen-on`` address cannot be served (one line, exit 1)."""


class DaemonMetrics:
    """The metrics of one daemon process (see the package docstring for the domain groups)."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._info = Info(f"{PREFIX}_component", "Daemon role, instance name and version",
                          registry=self.registry)
        self._hourly_cost = Gauge(f"{PREFIX}_hourly_cost", "Operator-declared cost of this process per hour "
                                  "(--hourly-cost, in the operator's currency)", registry=self.registry)
        self._groups: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def describe(self, instance: str, version: str = "", hourly_cost: float | None = None) -> None:
        """Publish ``subspace_farmer_component_info{component,name,version}`` (and the hourly cost).

        The instance goes into label ``name``: Prometheus itself sets ``instance`` to the scrape
        target, and a clashing label would be renamed to ``exported_instance``."""
        self._info.info({"component": self.component, "name": instance, "version": version})
        if hourly_cost is not None:
            self._hourly_cost.set(hourly_cost)

    def _group(self, key: Any, factory: Callable[[], Any]) -> Any:
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = factory()
            return group

    # ---- domains (imports are local: each domain module imports this one for PREFIX)

    def farm(self, farm_id: str):  # noqa: ANN201 - services.metrics.farm.FarmView
        from services.metrics.farm import FarmMetrics

        return self._group(FarmMetrics, lambda: FarmMetrics(self.registry)).view(farm_id)

    def plotter(self, kind: str):  # noqa: ANN201
        from services.metrics.plotter import PlotterMetrics

        return self._group(PlotterMetrics, lambda: PlotterMetrics(self.registry)).view(kind)

    def piece_getter(self):  # noqa: ANN201
        from services.metrics.cache import PieceGetterMetrics

        return self._group(PieceGetterMetrics, lambda: PieceGetterMetrics(self.registry))

    def farmer_cache(self):  # noqa: ANN201
        from services.metrics.cache import FarmerCacheMetrics

        return self._group(FarmerCacheMetrics, lambda: FarmerCacheMetrics(self.registry))

    def disk_piece_cache(self, cache_id: str, capacity: int | None = None):  # noqa: ANN201
        from services.metrics.cache import DiskPieceCacheMetrics

        view = self._group(DiskPieceCacheMetrics, lambda: DiskPieceCacheMetrics(self.registry)).view(cache_id)
        if capacity is not None:
            view.capacity_total.set(capacity)
        return view

    def proof_server(self):  # noqa: ANN201
        from services.metrics.proof import ProofServerMetrics

        return self._group(ProofServerMetrics, lambda: ProofServerMetrics(self.registry))

    @property
    def bus(self):  # noqa: ANN201
        from services.metrics.bus import BusMetrics

        return self._group(BusMetrics, lambda: BusMetrics(self.registry))

    @property
    def tcp(self):  # noqa: ANN201
        from services.metrics.tcp import TcpMetrics

        return self._group(TcpMetrics, lambda: TcpMetrics(self.registry))

    def gpu(self, read_devices: Callable[[], list] | None = None):  # noqa: ANN201
        """GPU gauges; ``read_devices`` (default :func:`services.gpu.read_device_usage`) is called
        at scrape time."""
        from services.metrics.gpu import GpuMetrics

        return self._group(GpuMetrics, lambda: GpuMetrics(self.registry, read_devices))

    @property
    def controller(self):  # noqa: ANN201
        from services.metrics.node import ControllerMetrics

        return self._group(ControllerMetrics, lambda: ControllerMetrics(self.registry))

    def dev_node(self, stats: Callable[[], dict]):  # noqa: ANN201
        from services.metrics.node import DevNodeMetrics

        return self._group(DevNodeMetrics, lambda: DevNodeMetrics(self.registry, stats))

    def all_groups(self) -> None:
        """Create every domain group (for listing names and for the dashboard test)."""
        self.farm("-")
        self.plotter("-")
        self.piece_getter()
        self.farmer_cache()
        self.disk_piece_cache("-")
        self.proof_server()
        self.bus  # noqa: B018 - property creates the group
        self.tcp  # noqa: B018
        self.gpu(lambda: [])
        self.controller  # noqa: B018
        self.dev_node(lambda: {})


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name ``registry`` can expose (``x_total`` of a counter, ``x_bucket`` /
    ``x_sum`` / ``x_count`` of a histogram, ...), including families with no child yet."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", ""),
                "info": ("_info",), "gauge": ("",), "unknown": ("",), "stateset": ("",), "gaugehistogram": (
                    "_bucket", "_gsum", "_gcount")}
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def all_metric_names() -> set[str]:
    """Sample names of every metric the definitions of this package register."""
    metrics = DaemonMetrics("all")
    metrics.all_groups()
    return exposed_names(metrics.registry)


class MetricsListeners:
    """The HTTP servers of one registry; ``close()`` stops them and frees the ports."""

    def __init__(self) -> None:
        self.servers: list[Any] = []

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` actually bound (port 0 resolved)."""
        return [server.server_address[:2] for server in self.servers]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        self.servers.clear()


def serve(registry: CollectorRegistry, addresses: Iterable[str]) -> MetricsListeners:
    """Serve ``/metrics`` of ``registry`` on every ``HOST:PORT`` (port 0: any free port).

    A busy or foreign address raises :class:`MetricsListenError` naming it; listeners already
    started are closed first, so a failed start leaves nothing behind."""
    listeners = MetricsListeners()
    for address in addresses:
        host, port = parse_host_port(address, "--prometheus-listen-on", allow_zero_port=True)
        try:
            server, _ = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            listeners.close()
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise MetricsListenError(f"cannot serve Prometheus metrics on {address} (--prometheus-listen-on): "
                                     f"{reason}") from None
        listeners.servers.append(server)
    return listeners
