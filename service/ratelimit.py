"""Per-tenant token buckets on events, so one tenant's storm cannot starve the others."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`take(tenant, n, rate, burst)` spends n tokens or says how long to wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, tenant_id: str, count: int, rate: float, burst: int) -> float:
        """0.0 when allowed (tokens spent), else the seconds until `count` tokens exist.

        A rate of 0 means unlimited. A request larger than the burst is allowed once the
        bucket is full (it then goes into debt), so a big batch is slowed, never refused
        for ever.
        """
        if rate <= 0:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(tenant_id)
        if bucket is None:
            bucket = self._buckets[tenant_id] = _Bucket(float(burst), now)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        needed = min(float(count), float(burst))
        if bucket.tokens >= needed:
            bucket.tokens -= count
            return 0.0
        return (needed - bucket.tokens) / rate

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))
