"""The running parts of one ingest process, started and stopped together."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from service.auth import Authenticator
from service.buffer import DurableBuffer
from service.config import ServiceSettings
from service.dedup import DedupIndex
from service.flusher import Flusher
from service.intake import Intake
from service.metrics import IngestMetrics
from service.ratelimit import RateLimiter
from warehouse.lake import Lake, open_lake
from warehouse.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class IngestRuntime:
    settings: ServiceSettings
    registry: Registry
    auth: Authenticator
    buffer: DurableBuffer
    dedup: DedupIndex
    flusher: Flusher
    intake: Intake
    limiter: RateLimiter
    metrics: IngestMetrics
    lake: Lake

    @classmethod
    def build(cls, settings: ServiceSettings) -> IngestRuntime:
        registry = Registry.open(settings)
        metrics = IngestMetrics()
        buffer = DurableBuffer(
            settings.buffer_dir,
            max_bytes=settings.buffer_max_bytes,
            segment_max_events=settings.flush_max_events,
            segment_max_bytes=settings.flush_max_bytes,
            segment_max_age=settings.flush_max_age_seconds,
        )
        dedup = DedupIndex(
            settings.state_dir / "dedup.sqlite",
            body_window_us=settings.duplicate_body_window_seconds * 1_000_000,
        )
        lake = open_lake(
            settings.resolved_lake_uri, settings.s3_endpoint_url, settings.lake_timeout_seconds
        )
        flusher = Flusher(
            buffer, dedup, lake, settings.lake_file_max_rows,
            on_flush=metrics.on_flush, on_error=metrics.lake_errors.inc,
        )
        metrics.bind_buffer(
            lambda: buffer.depth_bytes, buffer.oldest_age_seconds, lambda: flusher.lake_ok
        )
        return cls(
            settings=settings,
            registry=registry,
            auth=Authenticator(registry, settings.signature_tolerance_seconds),
            buffer=buffer,
            dedup=dedup,
            flusher=flusher,
            intake=Intake(buffer, dedup, settings.retry_after_seconds),
            limiter=RateLimiter(),
            metrics=metrics,
            lake=lake,
        )

    def start(self) -> None:
        """Re-hold the keys of what the buffer still holds, then start writer and flusher."""
        self.flusher.replay_keys()
        pending = len(self.buffer.sealed_segments())
        if pending:
            log.info("replaying %d buffered segment(s) into the lake", pending)
        self.buffer.start()
        self.flusher.start()

    def stop(self) -> None:
        """Write and seal what is queued, try a last flush, close files."""
        self.buffer.stop()
        self.flusher.stop(drain=True)
        self.dedup.close()

    def ready(self) -> tuple[bool, dict[str, int | str]]:
        # Not ready once the room left might not take one more large request (a maximal
        # body, or a tenth of a small buffer), so readiness turns 503 before intake does.
        room = self.settings.buffer_max_bytes - self.buffer.depth_bytes
        buffer_ok = room > min(self.settings.max_body_bytes, self.settings.buffer_max_bytes // 10)
        status: dict[str, int | str] = {
            "buffer": "ok" if buffer_ok else "full",
            "buffer_bytes": self.buffer.depth_bytes,
            "lake": "ok" if self.flusher.lake_ok else "unavailable",
        }
        return buffer_ok and self.flusher.lake_ok, status
