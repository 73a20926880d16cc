"""The running parts of one ingest process, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from service.auth import Authenticator
from service.buffer import DurableBuffer, sealed_segments
from service.config import ServiceSettings
from service.dedup import DedupIndex, SeenStore
from service.flusher_control import FlusherControl
from service.flusher_status import status_path
from service.intake import Intake
from service.metrics import IngestMetrics
from service.ratelimit import RateLimiter
from service.segment_keys import segment_keys
from warehouse.lake_uri import parse_lake_uri
from warehouse.registry import Registry

log = logging.getLogger(__name__)

_TICK_SECONDS = 0.1


@dataclass
class IngestRuntime:
    settings: ServiceSettings
    registry: Registry
    auth: Authenticator
    buffer: DurableBuffer
    dedup: DedupIndex
    flusher: FlusherControl
    intake: Intake
    limiter: RateLimiter
    metrics: IngestMetrics
    _ticker: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: ServiceSettings) -> IngestRuntime:
        # The flusher opens the lake; checking the URI here makes a bad AW_LAKE_URI stop the
        # service at start instead of failing in the flusher for ever.
        parse_lake_uri(settings.resolved_lake_uri)
        registry = Registry.open(settings)
        buffer = DurableBuffer(
            settings.buffer_dir,
            max_bytes=settings.buffer_max_bytes,
            segment_max_events=settings.flush_max_events,
            segment_max_bytes=settings.flush_max_bytes,
            segment_max_age=settings.flush_max_age_seconds,
        )
        dedup = DedupIndex(
            SeenStore(settings.dedup_path),
            body_window_us=settings.duplicate_body_window_seconds * 1_000_000,
            bloom_bits_log2=settings.dedup_bloom_bits_log2,
        )
        flusher = FlusherControl(settings)
        metrics = IngestMetrics()
        metrics.bind(lambda: buffer.depth_bytes, buffer.oldest_age_seconds, flusher.status)
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
        )

    async def start(self) -> None:
        """Hold the keys of what the buffer still holds, fill the Bloom filter, start the
        flusher and the ticker (segment ages, flushed segments, flusher health)."""
        leftovers = sealed_segments(self.settings.buffer_dir)
        for segment in leftovers:
            try:
                self.dedup.hold(segment_keys(segment), None, segment.first_seq)
            except FileNotFoundError:  # flushed meanwhile by a flusher still running
                continue
        if leftovers:
            log.info("replaying %d buffered segment(s) into the lake", len(leftovers))
        log.info("duplicate filter holds %d persisted keys", self.dedup.load())
        # A status left by an earlier run says nothing about this one; wait (briefly) for the
        # new flusher's first report so /readyz is truthful from the first request.
        status_path(self.settings.buffer_dir).unlink(missing_ok=True)
        self.flusher.start()
        for _ in range(100):
            if self.flusher.status() is not None:
                break
            await asyncio.sleep(0.05)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK_SECONDS)
            try:
                self.observe()
            except Exception:  # the ticker must outlive any one failure
                log.exception("runtime tick failed")

    def observe(self) -> None:
        self.buffer.tick()
        for segment in self.buffer.forget_flushed():
            self.dedup.segment_flushed(segment)
        self.flusher.ensure_running()

    async def stop(self) -> None:
        """Write and seal what is queued, let the flusher flush it, close files."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.buffer.aclose()
        await asyncio.to_thread(self.flusher.stop)
        self.dedup.store.close()
        self.registry.close()

    def ready(self) -> tuple[bool, dict[str, int | str]]:
        # Not ready once the room left might not take one more large request (a maximal
        # body, or a tenth of a small buffer), so readiness turns 503 before intake does.
        room = self.settings.buffer_max_bytes - self.buffer.depth_bytes
        buffer_ok = room > min(self.settings.max_body_bytes, self.settings.buffer_max_bytes // 10)
        status = self.flusher.status()
        lake_ok = self.flusher.alive() and status is not None and status.lake_ok
        report: dict[str, int | str] = {
            "buffer": "ok" if buffer_ok else "full",
            "buffer_bytes": self.buffer.depth_bytes,
            "lake": "ok" if lake_ok else "unavailable",
        }
        return buffer_ok and lake_ok, report
