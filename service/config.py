"""Settings of the ingest service (prefix `AW_`), injected through `get_settings`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field

from warehouse.config import PlatformSettings


class ServiceSettings(PlatformSettings):
    """Limits and tuning of the ingest service; every value has an `AW_` variable."""

    host: str = "127.0.0.1"
    port: int = 8001
    max_body_bytes: int = 1024 * 1024
    # Signature timestamps are accepted within ±this many seconds; replays are remembered
    # for twice as long, so a replay can never slip in after the cache forgot it.
    signature_tolerance_seconds: int = 300
    # The durable buffer: past this many bytes not yet in the lake, intake answers 503.
    buffer_max_bytes: int = 1024 * 1024 * 1024
    # A buffer segment is sealed and flushed to the lake at whichever comes first.
    flush_max_events: int = 50_000
    flush_max_bytes: int = 64 * 1024 * 1024
    flush_max_age_seconds: float = 30.0
    # Rows per Parquet file, at most (a big segment becomes several files).
    lake_file_max_rows: int = 1_000_000
    lake_timeout_seconds: float = 10.0
    duplicate_body_window_seconds: int = 24 * 3600
    # How long `Retry-After` tells a client to wait on 503.
    retry_after_seconds: int = 5
    # `process` (default): the flusher runs beside the intake on its own core; `thread`:
    # in-process (tests, single-core hosts).
    flusher: Literal["process", "thread"] = "process"
    # The Bloom filter of persisted duplicate keys: 2**N bits (27: 16 MiB, ~13M keys at 1 %).
    dedup_bloom_bits_log2: int = Field(default=27, ge=16, le=34)
    # Pinned SNS signing certificates, each named like its SigningCertURL's basename
    # (SimpleNotificationService-<id>.pem): used without fetching (offline hosts, tests).
    sns_cert_dir: Path | None = None

    @property
    def buffer_dir(self) -> Path:
        return self.data_dir / "buffer"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "service"

    @property
    def dedup_path(self) -> Path:
        return self.state_dir / "dedup.sqlite"


@lru_cache
def get_settings() -> ServiceSettings:
    return ServiceSettings()
