"""The pipeline's resources, chosen in one place for both deployment profiles (STYLE.md §4).

Everything comes from the platform settings (`AW_*` variables): the embedded default (a local
lake under `AW_DATA_DIR`, the build file and the published warehouse beside it) and the S3
profile (`AW_LAKE_URI=s3://…`, `AW_S3_ENDPOINT_URL`) differ only in the lake URI, which
`warehouse.lake.open_lake` turns into a local or S3 filesystem.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from warehouse.config import PlatformSettings, platform_settings
from warehouse.correlation.backtest_input import stored_timelines
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.lake import Lake, open_lake
from warehouse.models import TenantRow
from warehouse.registry import Registry
from warehouse.store import WarehouseStore


class PlatformResource(dg.ConfigurableResource):
    """The lake, the registry and the warehouse files of this deployment."""

    def settings(self) -> PlatformSettings:
        return platform_settings()

    def lake(self) -> Lake:
        s = self.settings()
        return open_lake(s.resolved_lake_uri, s.s3_endpoint_url)

    def store(self) -> WarehouseStore:
        return WarehouseStore.from_settings(self.settings())

    @contextmanager
    def build(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The build file, read-write; pipeline steps take turns on it."""
        with self.store().writer() as con:
            yield con

    def tenants(self) -> tuple[list[TenantRow], SettingsTimeline]:
        """Registry tenants and the settings timeline every tenant is correlated under."""
        s = self.settings()
        if not s.registry_path.exists():
            return [], SettingsTimeline()
        registry = Registry.open(s)
        try:
            tenants = registry.list_tenants()
            rows = [TenantRow(t.id, t.name, t.created_at) for t in tenants]
            timeline = stored_timelines({t.id: registry.settings_history(t.id) for t in tenants})
        finally:
            registry.close()
        return rows, timeline


def resources() -> dict[str, object]:
    return {"platform": PlatformResource()}
