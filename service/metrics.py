"""Prometheus metrics of the ingest service (text format at `GET /metrics`).

Request counters live here; flush figures come from the flusher's status file (the flusher
is another process), exposed by a collector at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.flusher_status import FlusherStatus

# `*_created` series double the exposition and nobody graphs them.
disable_created_metrics()


class _FlusherCollector(Collector):
    def __init__(self, status: Callable[[], FlusherStatus | None]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        s = self.status() or FlusherStatus(lake_ok=False)
        yield GaugeMetricFamily("aw_lake_up", "1 when the lake was writable at the last try",
                                value=1.0 if s.lake_ok else 0.0)
        yield CounterMetricFamily("aw_events_flushed", "Events written to the lake",
                                  value=s.flushed_events)
        yield CounterMetricFamily("aw_flushes", "Buffer segments moved to the lake",
                                  value=s.flushes)
        yield CounterMetricFamily("aw_flush_duration_seconds",
                                  "Time spent moving segments to the lake (÷ aw_flushes_total "
                                  "for the mean)", value=s.flush_seconds_total)
        yield GaugeMetricFamily("aw_flush_last_duration_seconds",
                                "Duration of the last segment flush", value=s.last_flush_seconds)
        yield CounterMetricFamily("aw_lake_errors", "Failed lake writes", value=s.lake_errors)


class IngestMetrics:
    """One registry per app instance, so tests can build many apps in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.accepted = Counter(
            "aw_events_accepted", "Events accepted (duplicates included)",
            ["tenant", "source"], registry=r)
        self.duplicates = Counter(
            "aw_events_duplicate", "Exact duplicates (R2), by reason",
            ["tenant", "reason"], registry=r)
        self.rejected = Counter(
            "aw_requests_rejected", "Requests refused, by reason code",
            ["tenant", "reason"], registry=r)
        self.requests = Counter(
            "aw_requests_accepted", "Requests answered 202", ["tenant", "route"], registry=r)
        self.buffer_bytes = Gauge(
            "aw_buffer_bytes", "Bytes in the durable buffer not yet in the lake", registry=r)
        self.buffer_age = Gauge(
            "aw_buffer_oldest_age_seconds", "Age of the oldest buffered record", registry=r)

    def bind(
        self,
        depth: Callable[[], float],
        age: Callable[[], float],
        flusher_status: Callable[[], FlusherStatus | None],
    ) -> None:
        self.buffer_bytes.set_function(depth)
        self.buffer_age.set_function(age)
        self.registry.register(_FlusherCollector(flusher_status))
