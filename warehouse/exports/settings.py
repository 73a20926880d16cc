"""Settings of the BI exports (`AW_*` variables), beside the platform settings.

Kept apart from `warehouse.config.PlatformSettings` only because that module is shared; the
fields can move there unchanged.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ExportSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AW_", extra="ignore")

    # JSON mapping of QuickSight users/groups to tenant ids (warehouse/exports/rls.py).
    quicksight_rls_file: Path | None = None
    # Glue database named in the exported DDL, used by provisioning and by the Glue sync.
    glue_database: str = Field(default="alert_whisperer", pattern=r"^[a-z0-9_]{1,255}$")
    # When true, every export also creates/updates the Glue tables (needs Glue permissions).
    export_glue_sync: bool = False
    # Old export versions are deleted once `keep` newer ones exist and they are older than
    # the grace period (a SPICE ingestion or an Athena table may still read them).
    export_keep: int = Field(default=3, ge=1)
    export_grace_minutes: float = Field(default=60.0, ge=0)

    @property
    def grace(self) -> timedelta:
        return timedelta(minutes=self.export_grace_minutes)


@lru_cache
def export_settings() -> ExportSettings:
    return ExportSettings()
