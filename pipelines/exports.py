"""The BI exports asset: the published marts as QuickSight CSV and Athena Parquet in the lake.

It reads the published warehouse (never the build file), so it runs beside readers and
queues behind nothing. Hourly at most (`on_cron`), and only after a new publish: a SPICE
refresh is limited per day (32 on Enterprise edition), so exporting more often than QuickSight
can ingest would only churn the lake.
"""

from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from pipelines.assets import PUBLISHED
from pipelines.resources import PlatformResource
from warehouse.exports.aws import client
from warehouse.exports.catalog import EXPORT_TABLES
from warehouse.exports.glue import sync_exports
from warehouse.exports.quicksight import ExportResult, export_published
from warehouse.exports.rls import load_mapping
from warehouse.exports.settings import ExportSettings, export_settings
from warehouse.exports.store import ExportStore

QUICKSIGHT_EXPORTS = dg.AssetKey(["quicksight_exports"])


@dg.asset(
    key=QUICKSIGHT_EXPORTS,
    group_name="exports",
    deps=[PUBLISHED],
    description="The curated marts of the published warehouse exported into the lake for BI: "
                "exports/quicksight/<table>/ (RFC 4180 CSV + a QuickSight manifest) and "
                "exports/athena/<table>/ (Parquet partitioned by tenant_id + a Glue table "
                "definition), plus the row-level security rules. Each table is replaced "
                "atomically. Grain: one export version per table per run, each row of a mart "
                "once, with the mart's own grain.",
    automation_condition=dg.AutomationCondition.on_cron("0 * * * *"),
    kinds={"csv", "parquet", "s3"},
)
def quicksight_exports(context: AssetExecutionContext, platform: PlatformResource
                       ) -> dg.MaterializeResult:
    settings = export_settings()
    rls = load_mapping(settings.quicksight_rls_file) if settings.quicksight_rls_file else None
    result = export_published(platform.settings(), settings, rls, echo=context.log.info)
    if settings.export_glue_sync:
        _sync_glue(platform, settings, context)
    return dg.MaterializeResult(metadata=export_metadata(result))


def export_metadata(result: ExportResult) -> dict[str, Any]:
    """Per table: rows, bytes and version (`<table>/rows`, …), and the totals."""
    metadata: dict[str, Any] = {"version": result.version,
                                "seconds": round(result.seconds, 2)}
    for t in result.tables:
        if t.skipped:
            metadata[f"{t.table}/skipped"] = t.skipped
            continue
        metadata.update({f"{t.table}/rows": t.rows, f"{t.table}/bytes": t.bytes,
                         f"{t.table}/version": t.version})
    exported = [t for t in result.tables if not t.skipped]
    metadata["dagster/row_count"] = sum(t.rows for t in exported)
    metadata["bytes"] = sum(t.bytes for t in exported)
    if result.warnings:
        metadata["warnings"] = "; ".join(result.warnings)
    return metadata


def _sync_glue(platform: PlatformResource, settings: ExportSettings,
               context: AssetExecutionContext) -> None:
    store = ExportStore(platform.lake())
    for step in sync_exports(client("glue"), store, settings.glue_database, EXPORT_TABLES):
        context.log.info(f"{step.action} {step.kind} {step.resource_id}")


EXPORT_ASSETS = [quicksight_exports]
