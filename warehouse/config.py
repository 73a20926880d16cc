"""Platform-wide settings shared by the service, the pipelines and the CLI.

One settings object per process, created by a cached function (`platform_settings`) and
passed down, never read at import time, so tests can point everything at a temp directory by
setting `AW_*` variables and calling `platform_settings.cache_clear()`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """A platform setting has a value the platform cannot use (the message names it)."""


class PlatformSettings(BaseSettings):
    """Where the embedded default keeps its files, and where the lake lives."""

    model_config = SettingsConfigDict(env_prefix="AW_", extra="ignore")

    data_dir: Path = Path("./data")
    # `file://…` or `s3://bucket/prefix`; empty means `file://$AW_DATA_DIR/lake`.
    lake_uri: str = ""
    s3_endpoint_url: str | None = None
    warehouse_path: Path | None = None
    # DuckDB's memory limit for pipeline runs (beyond it, sorts, joins and windows spill to
    # `<build file>.tmp`); empty: DuckDB's default, 80 % of the machine.
    build_memory_limit: str = "3GB"
    # DuckDB's memory limit while the correlation step runs, when the engine holds a batch of
    # up to a million events in Python memory beside it; empty: `build_memory_limit`.
    correlation_memory_limit: str = "1GB"
    # The MSP's SSM Resource Data Sync location (`s3://bucket/prefix` or a local path): the
    # folder holding the `AWS:<Type>/` folders. Empty: patch data comes from the API only.
    ssm_sync_uri: str = ""
    # Base64 of 32 random bytes. Empty: a key file under the data dir is created (embedded mode).
    master_key: SecretStr | None = None

    @property
    def resolved_lake_uri(self) -> str:
        if self.lake_uri:
            return self.lake_uri
        return (self.data_dir / "lake").resolve().as_uri()

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "registry.sqlite"

    @property
    def master_key_path(self) -> Path:
        return self.data_dir / "secrets" / "master.key"

    @property
    def resolved_warehouse_path(self) -> Path:
        return self.warehouse_path or self.data_dir / "warehouse.duckdb"


@lru_cache
def platform_settings() -> PlatformSettings:
    return PlatformSettings()
