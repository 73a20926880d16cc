"""The asset graph: lake → staging → correlation → intermediate → marts → published warehouse.

- `raw_events` (group raw) is partitioned by UTC receive date, like the lake; a run stages the
  lake files of its days that are not staged yet (a range of days runs as one run).
- `correlation` (group incidents) brings the engine's stored state up to date with every staged
  event (incremental = full, issue 4) and writes the tenants, their settings versions and the
  incidents with their current status. A late event received today can change an incident of
  any earlier day: each step records exactly which events and incidents it changed
  (`warehouse.changes`), and the per-event, per-alert and per-incident models and the daily
  marts by tenant refresh those rows (and tenant-days) wherever they are in time (the MSP
  roll-ups are rebuilt whole), so every day of every mart is correct, not only today's.
- One asset per SQL model (`warehouse/models`), its dependencies read from the SQL.
- `published_warehouse` (group publish) swaps a read-only snapshot of the marts in for readers.

Everything downstream of `raw_events` updates itself (declarative automation) once raw days
have been staged; `pipelines.sensors` notices new lake files.
"""


import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from pipelines import progress
from pipelines.resources import PlatformResource
from warehouse import incremental, models, staging
from warehouse.correlation.state import CorrelationState
from warehouse.publish import publish
from warehouse.store import scalar

START_DATE = "2020-01-01"
DAILY = dg.DailyPartitionsDefinition(start_date=START_DATE, end_offset=1)
RAW = dg.AssetKey(["raw_events"])
SSM_SNAPSHOT = dg.AssetKey(["ssm_snapshot"])
SSM_STAGED = dg.AssetKey(["staging", "ssm_snapshots"])
CORRELATION_STATE = dg.AssetKey(["corr", "correlation_state"])
PUBLISHED = dg.AssetKey(["published_warehouse"])
PYTHON_KEYS = {name: dg.AssetKey(name.split(".")) for name in models.PYTHON_MODELS}
GROUPS = {
    "staging": "staging", "intermediate": "incidents",
    "marts.fct_incidents": "incidents", "marts.fct_incident_events": "incidents",
    "marts.fct_alerts": "incidents", "marts.dim_tenants": "tenants",
}
# Downstream of the staged days: update whenever something upstream did, whatever the
# partition (late data lands in old days) and even with days that have no data.
UPDATE_ON_NEW_DATA = (
    dg.AutomationCondition.eager()
    .without(dg.AutomationCondition.in_latest_time_window())
    .without(~dg.AutomationCondition.any_deps_missing())
    .with_label("update on new data")
)


def asset_key(ref: str) -> dg.AssetKey:
    """The asset that produces a `<schema>.<table>` the SQL reads."""
    schema, _ = ref.split(".", 1)
    if schema == "lake":
        return SSM_STAGED if ref.split(".", 1)[1].startswith("ssm_") else RAW
    if schema == "corr":
        return CORRELATION_STATE
    return dg.AssetKey(ref.split("."))


def group_of(name: str) -> str:
    if "patch" in name:
        return "compliance"
    return GROUPS.get(name) or GROUPS.get(name.split(".")[0]) or "noise"


@dg.asset(
    key=RAW,
    group_name="raw",
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="Canonical events and exact duplicates as the ingest service stored them in "
                "the lake (raw/alerts, raw/duplicates), staged into the build file. Grain: one "
                "row per event received; partitioned by UTC receive date.",
    kinds={"parquet", "duckdb"},
)
def raw_events(context: AssetExecutionContext, platform: PlatformResource
               ) -> dg.MaterializeResult:
    lake = platform.lake()
    files = staging.lake_files(lake)
    days = [date.fromisoformat(k) for k in context.partition_keys]
    with platform.build() as con:
        # the whole range as one load: one transaction and one scan, whatever its length
        result = staging.load_days(con, lake, days, files)
    if result.files:
        context.log.info(f"staged {result.files} file(s) of {len(days)} day(s), {result.rows}")
    return progress.finished(RAW, dg.MaterializeResult(metadata={
        "partitions": ", ".join(context.partition_keys[:3])
                      + (" …" if len(context.partition_keys) > 3 else ""),
        "files_staged": result.files,
        "events_staged": result.rows.get("raw/alerts", 0),
        "duplicates_staged": result.rows.get("raw/duplicates", 0),
        "tenants": len(result.tenants),
        "received_from": result.received_min or "",
        "received_to": result.received_max or "",
    }))


@dg.asset(
    key=SSM_SNAPSHOT,
    group_name="compliance",
    partitions_def=DAILY,
    description="The day's SSM patch snapshot of every tenant (raw/ssm in the lake): nodes, "
                "patch states, Patch compliance summaries, missing patches and patch groups, "
                "through AssumeRole per client account and from the MSP's Resource Data Sync. "
                "Grain: one file per table, tenant, account, region and source per day. SSM "
                "keeps only the current state, so only today's partition can be taken.",
    kinds={"aws", "parquet"},
)
def ssm_snapshot(context: AssetExecutionContext, platform: PlatformResource
                 ) -> dg.MaterializeResult:
    from warehouse.ssm.collect import take_snapshot

    today = datetime.now(UTC).date()
    day = date.fromisoformat(context.partition_key)
    if day != today:
        raise dg.Failure(description=(
            f"cannot snapshot {day}: SSM keeps only the current state, so a snapshot is taken "
            f"for today ({today}) only"))
    taken = take_snapshot(platform.settings(), datetime.now(UTC))
    for error in taken.errors:
        context.log.warning(f"SSM collection: {error}")
    return progress.finished(SSM_SNAPSHOT, dg.MaterializeResult(metadata={
        "files": taken.files, "tenants": len(taken.tenants), "nodes": taken.rows.get("nodes", 0),
        "errors": len(taken.errors), "sources": ", ".join(taken.sources) or "none configured",
        **{f"rows_{k}": v for k, v in taken.rows.items()}}))


@dg.asset(
    key=SSM_STAGED,
    group_name="compliance",
    deps=[SSM_SNAPSHOT],
    description="Every daily SSM snapshot in the lake, loaded into the build file "
                "(lake.ssm_<table>). Grain: one row per table row of every snapshot.",
    automation_condition=UPDATE_ON_NEW_DATA,
    kinds={"duckdb"},
)
def ssm_snapshots(platform: PlatformResource) -> dg.MaterializeResult:
    from warehouse.ssm.store import stage

    with platform.build() as con:
        counts = stage(con, platform.lake())
        days = con.execute("SELECT count(DISTINCT snapshot_date), min(snapshot_date)::VARCHAR, "
                           "max(snapshot_date)::VARCHAR FROM lake.ssm_nodes").fetchall()[0]
    return progress.finished(SSM_STAGED, dg.MaterializeResult(metadata={
        **{f"rows_{k}": v for k, v in counts.items()}, "snapshot_days": int(days[0]),
        "first_day": days[1] or "", "last_day": days[2] or ""}))


@dg.multi_asset(
    specs=[
        dg.AssetSpec(CORRELATION_STATE, group_name="incidents",
                     deps=[dg.AssetKey(["staging", "stg_events"])],
                     description="The correlation engine's stored state (schema corr): events "
                                 "with their arrival decisions, live incidents with their "
                                 "lifecycle, every event's explanation, merge records, tenant "
                                 "clocks. Updated incrementally, equal to a full recompute. "
                                 "Grain: one row per event (explanations) and per incident.",
                     automation_condition=UPDATE_ON_NEW_DATA, kinds={"duckdb", "python"}),
        dg.AssetSpec(PYTHON_KEYS["staging.stg_tenants"], group_name="staging",
                     description="One row per tenant (the registry's, plus any tenant seen "
                                 "only in the data).",
                     automation_condition=UPDATE_ON_NEW_DATA, kinds={"duckdb"},
                     deps=[dg.AssetKey(["staging", "stg_events"])]),
        dg.AssetSpec(PYTHON_KEYS["staging.stg_settings"], group_name="staging",
                     description="One row per tenant and correlation settings version (R15), "
                                 "the defaults (v0) included.",
                     automation_condition=UPDATE_ON_NEW_DATA, kinds={"duckdb"},
                     deps=[dg.AssetKey(["staging", "stg_events"])]),
        dg.AssetSpec(PYTHON_KEYS["intermediate.int_incidents"], group_name="incidents",
                     description="One row per incident (merge records included) with its "
                                 "status at its tenant's clock (open, resolved, stale).",
                     automation_condition=UPDATE_ON_NEW_DATA, kinds={"duckdb"},
                     deps=[CORRELATION_STATE]),
    ],
)
def correlation(context: AssetExecutionContext, platform: PlatformResource
                ) -> Iterator[dg.MaterializeResult]:
    tenants, timeline = platform.tenants()
    started = time.monotonic()
    with platform.build() as con, platform.store().correlating(con):
        staging.ensure_schema(con)
        step = incremental.correlate_staged(con, timeline)
        correlated = time.monotonic()
        models.write_tenants(con, tenants, timeline)
        n_incidents, version, changed_events, changed_incidents = models.write_incidents(
            con, CorrelationState(con, timeline))
        logged = time.monotonic()
        stored = scalar(con, "SELECT count(*) FROM corr.events")
        settings_rows = scalar(con, "SELECT count(*) FROM staging.stg_settings")
        tenant_rows = scalar(con, "SELECT count(*) FROM staging.stg_tenants")
    for tenant, why in step.recomputed.items():
        context.log.info(f"tenant {tenant} recomputed from scratch: {why}")
    yield progress.finished(CORRELATION_STATE, dg.MaterializeResult(
        asset_key=CORRELATION_STATE, metadata={
            "new_events": step.events, "events_stored": int(stored or 0),
            "tenants_updated": len(step.tenants), "keys_touched": step.keys_touched,
            "tenants_recomputed": ", ".join(f"{t} ({w})" for t, w in step.recomputed.items()),
            "change_version": version, "events_changed": changed_events,
            "incidents_changed": changed_incidents,
            "seconds": round(time.monotonic() - started, 2),
            # where the step's time went: the engine's state, then incidents and change log
            "seconds_correlating": round(correlated - started, 2),
            "seconds_change_log": round(logged - correlated, 2)}))
    for name, rows in (("staging.stg_tenants", tenant_rows),
                       ("staging.stg_settings", settings_rows),
                       ("intermediate.int_incidents", n_incidents)):
        yield progress.finished(PYTHON_KEYS[name], dg.MaterializeResult(
            asset_key=PYTHON_KEYS[name], metadata={"dagster/row_count": int(rows or 0)}))


def _model_asset(m: models.Model) -> dg.AssetsDefinition:
    is_root = m.name == "staging.stg_events"

    @dg.asset(
        key=dg.AssetKey(m.name.split(".")),
        deps=[asset_key(d) for d in m.deps],
        group_name=group_of(m.name),
        description=m.description,
        automation_condition=UPDATE_ON_NEW_DATA,
        kinds={"duckdb", "sql"},
    )
    def build_model(context: AssetExecutionContext, platform: PlatformResource
                    ) -> dg.MaterializeResult:
        started = time.monotonic()
        with platform.build() as con:
            if is_root:
                staging.ensure_schema(con)
            built = models.build(con, m)
            metadata: dict[str, Any] = {"dagster/row_count": built.rows, "build": built.mode,
                                        "build_reason": built.why,
                                        "change_version": built.version,
                                        "seconds": round(time.monotonic() - started, 2)}
            if built.mode == "incremental":
                metadata["scope_rows_refreshed"] = built.refreshed
            if "day" in _columns(con, m.name):
                span = con.execute(f"SELECT min(day)::VARCHAR, max(day)::VARCHAR, "
                                   f"count(DISTINCT day) FROM {m.name}").fetchall()[0]
                metadata.update({"first_day": span[0] or "", "last_day": span[1] or "",
                                 "days": int(span[2])})
            if "tenant_id" in _columns(con, m.name):
                metadata["tenants"] = int(scalar(
                    con, f"SELECT count(DISTINCT tenant_id) FROM {m.name}") or 0)
        return progress.finished(dg.AssetKey(m.name.split(".")),
                                 dg.MaterializeResult(metadata=metadata))

    return build_model


def _columns(con: object, name: str) -> set[str]:
    schema, table = name.split(".")
    rows = con.execute(  # type: ignore[attr-defined]
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ?", [schema, table]).fetchall()
    return {r[0] for r in rows}


MODEL_ASSETS = [_model_asset(m) for m in models.catalog()]


@dg.asset(
    key=PUBLISHED,
    group_name="publish",
    deps=[dg.AssetKey(m.name.split(".")) for m in models.marts()],
    description="The warehouse readers open (AW_WAREHOUSE_PATH): a read-only snapshot of every "
                "mart, swapped in atomically, so no reader is ever blocked or sees a half-built "
                "table. Grain: one snapshot file per publish, each mart with its own grain.",
    automation_condition=UPDATE_ON_NEW_DATA,
    kinds={"duckdb"},
)
def published_warehouse(context: AssetExecutionContext, platform: PlatformResource
                        ) -> dg.MaterializeResult:
    store = platform.store()
    with platform.build() as con:
        built = models.ensure_built(con, [m.name for m in models.marts()])
        if built:
            context.log.info(f"built marts no run had built yet: {', '.join(built)}")
        done = publish(con, store.published_path, models.marts(),
                       {"source": platform.settings().resolved_lake_uri,
                        "detail": f"dagster run {context.run.run_id}"})
    return progress.finished(PUBLISHED, dg.MaterializeResult(metadata={
        "path": str(done.path), "size_bytes": done.size_bytes,
        **done.tables}))


ALL_ASSETS = [raw_events, ssm_snapshot, ssm_snapshots, correlation, *MODEL_ASSETS,
              published_warehouse]
