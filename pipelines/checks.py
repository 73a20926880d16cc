"""Asset checks that can fail: keys, funnel order, KPI ranges, raw freshness, the snapshot.

Each check runs SQL against the build file and fails with the offending rows in its metadata.
"""


import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from pipelines.assets import PUBLISHED
from pipelines.resources import PlatformResource
from warehouse import models, staging
from warehouse.publish import connect_readonly
from warehouse.store import scalar

UNSTAGED_GRACE = timedelta(minutes=10)  # a lake file older than this must be staged
RECENT = timedelta(hours=24)  # warn when no event was received for this long
NOISE = dg.AssetKey(["marts", "fct_noise_daily"])
COMPLIANCE = dg.AssetKey(["marts", "fct_patch_compliance_daily"])
STG_EVENTS = dg.AssetKey(["staging", "stg_events"])
# Ratios that must lie in [0, 1]; correlation_compression may be negative (a long-running
# alert capped into several incidents, R6) but never above 1.
UNIT_RATIOS = ("noise_reduction", "dedup_rate", "suppression_share_too_late",
               "suppression_share_below_threshold", "flap_rate", "recurrence_rate")


def _failures(platform: PlatformResource, sql: str, limit: int = 5
              ) -> tuple[int, list[str]]:
    with platform.build() as con:
        rows = con.execute(f"SELECT * FROM ({sql}) LIMIT {limit + 1}").fetchall()
        total = int(scalar(con, f"SELECT count(*) FROM ({sql})") or 0) if rows else 0
    return total, [str(r) for r in rows[:limit]]


def _result(total: int, examples: list[str], what: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=total == 0,
        description=f"{total} {what}" if total else f"no {what}",
        metadata={"failing_rows": total, "examples": "\n".join(examples)})


def key_violations(table: str, columns: tuple[str, ...]) -> str:
    """The keys of `table` that are duplicated or null, with their row counts.

    Duplicates can only be among rows whose keys hash alike, so the rows are grouped by a
    64-bit hash of the key first (a fraction of the cost of grouping ten million strings),
    and only the rows of colliding hashes, and rows with a null key, are grouped by the key
    itself: the answer is exact."""
    key = ", ".join(columns)
    null = " OR ".join(f"{c} IS NULL" for c in columns)
    return f"""
        WITH colliding AS (SELECT hash({key}) AS h FROM {table} GROUP BY h
                           HAVING count(*) > 1)
        SELECT {key}, count(*) AS n FROM {table}
        WHERE hash({key}) IN (SELECT h FROM colliding) OR {null}
        GROUP BY ALL HAVING count(*) > 1 OR bool_or({null})"""


def _key_check(m: models.Model) -> dg.AssetChecksDefinition:
    key = ", ".join(m.key)

    @dg.asset_check(asset=dg.AssetKey(m.name.split(".")), name="unique_not_null_key",
                    description=f"The key ({key}) is unique and never null.",
                    blocking=True)
    def check(platform: PlatformResource) -> dg.AssetCheckResult:
        total, examples = _failures(platform, key_violations(m.name, m.key))
        return _result(total, examples, f"duplicate or null keys ({key})")

    return check


@dg.asset_check(asset=NOISE, blocking=True, description=(
    "Per tenant-day: incidents that did not continue a capped one (R6) <= alerts <= unique "
    "events <= events accepted, and every count is non-negative."))
def funnel_order(platform: PlatformResource) -> dg.AssetCheckResult:
    total, examples = _failures(platform, """
        SELECT tenant_id, day, incidents, linked_incidents, alerts, unique_events,
               events_accepted FROM marts.fct_noise_daily
        WHERE incidents - linked_incidents > alerts OR alerts > unique_events
           OR unique_events > events_accepted OR duplicates < 0 OR incidents < 0""")
    return _result(total, examples, "tenant-days out of funnel order")


@dg.asset_check(asset=NOISE, blocking=True,
                description="KPI ratios lie in [0, 1]; correlation compression is at most 1.")
def kpi_ranges(platform: PlatformResource) -> dg.AssetCheckResult:
    bad = " OR ".join(f"NOT ({c} BETWEEN 0 AND 1)" for c in UNIT_RATIOS)
    total, examples = _failures(platform, f"""
        SELECT tenant_id, day, {', '.join(UNIT_RATIOS)}, correlation_compression
        FROM marts.fct_noise_daily WHERE {bad} OR correlation_compression > 1""")
    return _result(total, examples, "tenant-days with a KPI out of range")


@dg.asset_check(asset=COMPLIANCE, blocking=True, description=(
    "Per tenant-day: compliant <= in-scope nodes, stale and never-scanned <= in scope, and "
    "compliance_pct in [0, 100]."))
def compliance_ranges(platform: PlatformResource) -> dg.AssetCheckResult:
    total, examples = _failures(platform, """
        SELECT tenant_id, snapshot_date, in_scope_nodes, compliant_nodes, compliance_pct
        FROM marts.fct_patch_compliance_daily
        WHERE compliant_nodes > in_scope_nodes OR stale_scan_nodes > in_scope_nodes
           OR never_scanned_nodes > in_scope_nodes
           OR NOT coalesce(compliance_pct BETWEEN 0 AND 100, in_scope_nodes = 0)""")
    return _result(total, examples, "tenant-days with impossible compliance figures")


@dg.asset_check(asset=STG_EVENTS, description=(
    f"Every lake file older than {UNSTAGED_GRACE} has been staged (the pipeline keeps up)."))
def lake_files_staged(platform: PlatformResource) -> dg.AssetCheckResult:
    files = staging.lake_files(platform.lake())
    with platform.build() as con:
        missing = staging.pending(con, files)
    cutoff = datetime.now(UTC) - UNSTAGED_GRACE
    overdue = [f for f in missing if f.modified is not None and f.modified < cutoff]
    return dg.AssetCheckResult(
        passed=not overdue,
        description=f"{len(overdue)} lake file(s) of past days not staged" if overdue
        else "every lake file of past days is staged",
        metadata={"unstaged_files": len(missing), "overdue": len(overdue),
                  "examples": "\n".join(staging.file_label(f.path) for f in overdue[:5])})


@dg.asset_check(asset=STG_EVENTS, description=(
    f"Some event was received in the last {RECENT} (warns: a quiet MSP or a broken feed)."))
def raw_data_fresh(platform: PlatformResource) -> dg.AssetCheckResult:
    with platform.build() as con:
        newest = scalar(con, "SELECT max(received_at) FROM staging.stg_events")
    age = datetime.now(UTC) - newest if isinstance(newest, datetime) else None
    return dg.AssetCheckResult(
        passed=age is not None and age <= RECENT,
        severity=dg.AssetCheckSeverity.WARN,
        description="no event staged yet" if age is None
        else f"newest event received {age} ago",
        metadata={"newest_received_at": str(newest or ""),
                  "age_hours": round(age.total_seconds() / 3600, 2) if age else -1.0})


@dg.asset_check(asset=PUBLISHED, blocking=True, description=(
    "The published snapshot opens read-only and holds every mart with the build's row counts."))
def snapshot_matches_build(platform: PlatformResource) -> dg.AssetCheckResult:
    started = time.monotonic()
    with platform.build() as con:
        expected = {m.name: int(scalar(con, f"SELECT count(*) FROM {m.name}") or 0)
                    for m in models.marts()}
    reader = connect_readonly(platform.store().published_path)
    try:
        found = {}
        for name in expected:
            try:
                found[name] = int(scalar(reader, f"SELECT count(*) FROM {name}") or 0)
            except Exception:  # noqa: BLE001 - a missing table is the failure reported
                found[name] = -1
    finally:
        reader.close()
    wrong = {n: (expected[n], found[n]) for n in expected if expected[n] != found[n]}
    return dg.AssetCheckResult(
        passed=not wrong,
        description="snapshot equals the build" if not wrong
        else f"{len(wrong)} mart(s) differ: {wrong}",
        metadata={"marts": len(expected), "seconds": round(time.monotonic() - started, 2)})


KEY_CHECKS = [_key_check(m) for m in models.catalog() if m.key and m.layer == "marts"]
ALL_CHECKS = [*KEY_CHECKS, funnel_order, kpi_ranges, compliance_ranges, lake_files_staged,
              raw_data_fresh, snapshot_matches_build]
