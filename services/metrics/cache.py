"""Cache metrics: the official ``farmer_cache`` and ``disk_piece_cache`` sets (reference
``farmer_cache/metrics.rs``, ``disk_piece_cache/metrics.rs``) and the piece getter's fetch
latency that plotting depends on (ours).

Official names: ``subspace_farmer_farmer_cache_cache_{get_hit,get_miss,find_hit,find_miss}_Requests_total``,
``..._farmer_cache_cache_error_Requests_total``, ``..._farmer_cache_piece_cache_capacity_{total,used}_Pieces``;
``subspace_farmer_disk_piece_cache_{contents,read_piece_index}_Requests_total{cache_id}``,
``..._disk_piece_cache_{read_piece,write_piece}_Pieces_total{cache_id}``,
``..._disk_piece_cache_capacity_{total,used}_Pieces{cache_id}``.
Ours: ``subspace_farmer_piece_getter_fetch_time_seconds{source}``,
``..._piece_getter_fetch_errors_total{source}``, ``..._piece_getter_pieces_total{source}``,
``..._piece_getter_retries_total`` and ``..._piece_getter_invalid_pieces_total{source}``;
``source`` is ``priority-cache | sharded-cache | full-piece-cache | controller | node``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.metrics.farm import exponential_buckets
from services.metrics.registry import PREFIX

FARMER_CACHE = f"{PREFIX}_farmer_cache"
DISK_PIECE_CACHE = f"{PREFIX}_disk_piece_cache"
PIECE_GETTER = f"{PREFIX}_piece_getter"
PIECE_SOURCES = ("priority-cache", "sharded-cache", "full-piece-cache", "controller", "node")
FETCH_BUCKETS = exponential_buckets(0.0005, 2.0, 16)  # 0.5 ms .. 16 s


class FarmerCacheMetrics:
    """The controller-side cache view (attributes named as the reference's fields)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def requests(name: str, text: str) -> Counter:
            return Counter(f"{FARMER_CACHE}_{name}_Requests", text, registry=registry)

        self.cache_get_hit = requests("cache_get_hit", "Cache get hit")
        self.cache_get_miss = requests("cache_get_miss", "Cache get miss")
        self.cache_get_error = requests("cache_error", "Cache get error")
        self.cache_find_hit = requests("cache_find_hit", "Cache find hit")
        self.cache_find_miss = requests("cache_find_miss", "Cache find miss")
        self.piece_cache_capacity_total = Gauge(f"{FARMER_CACHE}_piece_cache_capacity_total_Pieces",
                                                "Piece cache capacity total", registry=registry)
        self.piece_cache_capacity_used = Gauge(f"{FARMER_CACHE}_piece_cache_capacity_used_Pieces",
                                               "Piece cache capacity used", registry=registry)


class DiskPieceCacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("cache_id",)
        self.contents = Counter(f"{DISK_PIECE_CACHE}_contents_Requests", "Contents requests", labels,
                                registry=registry)
        self.read_piece = Counter(f"{DISK_PIECE_CACHE}_read_piece_Pieces", "Read piece requests", labels,
                                  registry=registry)
        self.read_piece_index = Counter(f"{DISK_PIECE_CACHE}_read_piece_index_Requests", "Read piece index requests",
                                        labels, registry=registry)
        self.write_piece = Counter(f"{DISK_PIECE_CACHE}_write_piece_Pieces", "Write piece requests", labels,
                                   registry=registry)
        self.capacity_total = Gauge(f"{DISK_PIECE_CACHE}_capacity_total_Pieces", "Piece cache capacity total",
                                    labels, registry=registry)
        self.capacity_used = Gauge(f"{DISK_PIECE_CACHE}_capacity_used_Pieces", "Piece cache capacity used",
                                   labels, registry=registry)

    def view(self, cache_id: str) -> "DiskPieceCacheView":
        return DiskPieceCacheView(self, cache_id)


class DiskPieceCacheView:
    """One cache's children: ``contents``, ``read_piece``, ``read_piece_index``, ``write_piece``,
    ``capacity_total``, ``capacity_used``."""

    def __init__(self, metrics: DiskPieceCacheMetrics, cache_id: str) -> None:
        self.cache_id = cache_id
        for name in ("contents", "read_piece", "read_piece_index", "write_piece", "capacity_total", "capacity_used"):
            setattr(self, name, getattr(metrics, name).labels(cache_id))


class PieceGetterMetrics:
    """Piece fetches for plotting and proving, by source."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("source",)
        self.fetch_time = Histogram(f"{PIECE_GETTER}_fetch_time_seconds", "Time to fetch a batch of pieces",
                                    labels, buckets=FETCH_BUCKETS, registry=registry)
        self.fetch_errors = Counter(f"{PIECE_GETTER}_fetch_errors", "Failed or stalled fetches", labels,
                                    registry=registry)
        self.pieces = Counter(f"{PIECE_GETTER}_pieces", "Pieces fetched", labels, registry=registry)
        self.invalid_pieces = Counter(f"{PIECE_GETTER}_invalid_pieces", "Pieces that failed the integrity check",
                                      labels, registry=registry)
        self.retries = Counter(f"{PIECE_GETTER}_retries", "Fetches retried from another source", registry=registry)

    @contextmanager
    def fetching(self, source: str, pieces: int = 1) -> Iterator[None]:
        """Time one fetch from ``source``; an exception counts as a fetch error (and propagates)."""
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.fetch_errors.labels(source).inc()
            raise
        self.fetch_time.labels(source).observe(time.perf_counter() - started)
        self.pieces.labels(source).inc(pieces)
