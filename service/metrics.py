"""Prometheus metrics of the ingest service (text format at `GET /metrics`)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# `*_created` series double the exposition and nobody graphs them.
disable_created_metrics()


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
        self.flush_seconds = Histogram(
            "aw_flush_duration_seconds", "Time to move one buffer segment to the lake",
            registry=r, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.flushed_events = Counter(
            "aw_events_flushed", "Events written to the lake", registry=r)
        self.lake_errors = Counter("aw_lake_errors", "Failed lake writes", registry=r)
        self.buffer_bytes = Gauge(
            "aw_buffer_bytes", "Bytes in the durable buffer not yet in the lake", registry=r)
        self.buffer_age = Gauge(
            "aw_buffer_oldest_age_seconds", "Age of the oldest buffered record", registry=r)
        self.lake_up = Gauge("aw_lake_up", "1 when the last lake write succeeded", registry=r)

    def bind_buffer(
        self, depth: Callable[[], float], age: Callable[[], float], lake_ok: Callable[[], bool]
    ) -> None:
        self.buffer_bytes.set_function(depth)
        self.buffer_age.set_function(age)
        self.lake_up.set_function(lambda: 1.0 if lake_ok() else 0.0)

    def on_flush(self, seconds: float, rows: int) -> None:
        self.flush_seconds.observe(seconds)
        self.flushed_events.inc(rows)
