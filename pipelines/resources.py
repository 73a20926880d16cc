"""The pipeline's resources, chosen in one place for both deployment profiles (STYLE.md §4).

Everything comes from the platform settings (`AW_*` variables): the embedded default (a local
lake under `AW_DATA_DIR`, the build file and the published warehouse beside it) and the S3
profile (`AW_LAKE_URI=s3://…`, `AW_S3_ENDPOINT_URL`) differ only in the lake URI, which
`warehouse.lake.open_lake` turns into a local or S3 filesystem.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import dagster as dg
import duckdb
from pydantic import PrivateAttr

from warehouse.config import PlatformSettings, platform_settings
from warehouse.correlation.backtest_input import stored_timelines
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.lake import Lake, open_lake
from warehouse.models import TenantRow
from warehouse.registry import Registry
from warehouse.store import WarehouseStore


class PlatformResource(dg.ConfigurableResource):
    """The lake, the registry and the warehouse files of this deployment.

    In a run, the build file is opened once, on first use, and kept until the run ends: each
    step gets its own connection to it (`build()`: a cursor, so its temporary tables and
    registered Arrow tables go with it), but the database stays open between steps, with
    the pages it has read, and is checkpointed once at the end instead of being opened,
    checkpointed and closed by every step. The run holds the build file's lock from its first
    step to its last, so two runs (the daemon's and a cron `aw pipeline run`) take turns by
    run, never step by step. Runs execute in one process (`in_process_executor`): Dagster
    sets a resource up once per run and tears it down at the end."""

    _in_run: bool = PrivateAttr(default=False)
    _run_stack: ExitStack | None = PrivateAttr(default=None)
    _run_con: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._in_run = True

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        stack = self._run_stack
        self._in_run, self._run_stack, self._run_con = False, None, None
        if stack is not None:
            stack.close()  # checkpoint, close, unlock

    def settings(self) -> PlatformSettings:
        return platform_settings()

    def lake(self) -> Lake:
        s = self.settings()
        return open_lake(s.resolved_lake_uri, s.s3_endpoint_url)

    def store(self) -> WarehouseStore:
        return WarehouseStore.from_settings(self.settings())

    @contextmanager
    def build(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The build file, read-write; pipeline runs take turns on it."""
        if not self._in_run:
            with self.store().writer() as con:
                yield con
            return
        if self._run_con is None:
            stack = ExitStack()
            self._run_con = stack.enter_context(self.store().writer())
            self._run_stack = stack
        cursor = self._run_con.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

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
