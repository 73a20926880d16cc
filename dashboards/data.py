"""Every query the dashboards run: read-only, parameterized, bounded, cached per snapshot.

- **Read-only, the published snapshot only.** `AW_WAREHOUSE_PATH` is a symbolic link that
  each publish repoints atomically. `snapshot()` resolves it on every page run and the
  resolved file path is part of every cache key, so a new publish is picked up at the next
  rerun while a cached answer never mixes two snapshots. Connections come from
  `warehouse.publish.connect_readonly`, one per cache miss, closed at once (about 13 ms;
  no connection is held between runs, so nothing ever blocks the pipeline or leaks a file
  the pipeline prunes). `WarehouseNotPublished` reaches the app, which shows "no data yet".
- **Parameterized.** Tenant ids, dates and filters are bound parameters (`?`), lists as
  DuckDB lists (`list_contains(?, status)`); nothing is formatted into SQL text.
- **Bounded.** Pages read the pre-aggregated marts (daily per tenant, top keys, the latest
  compliance snapshot), over at most `MAX_DAYS` days, lists with a `LIMIT`. Only an
  incident's own events and the what-if replay read `fct_incident_events`, always for one
  tenant and a day range.
- **Tenancy (R1).** Every query but the MSP roll-up and the portfolio (which take the
  caller's list of allowed tenants) binds exactly one `tenant_id`.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import streamlit as st

from warehouse.config import platform_settings
from warehouse.publish import WarehouseNotPublished, connect_readonly

MAX_DAYS = 90
ROW_LIMIT = 500
EVENT_LIMIT = 1_000
REPLAY_EVENT_LIMIT = 100_000  # the engine replays ~100k events in well under a second
SEVERITIES = ("critical", "high", "warning", "info")
STATUSES = ("open", "stale", "resolved")


def snapshot() -> str:
    """The snapshot file the published link points to now (raises WarehouseNotPublished)."""
    link = platform_settings().resolved_warehouse_path
    if not link.exists():
        raise WarehouseNotPublished(
            f"no warehouse at {link} yet: run `aw pipeline run` (or `aw up --demo`) first")
    return str(link.resolve())


@st.cache_data(ttl=timedelta(minutes=30), max_entries=1_000, show_spinner=False)
def _cached(snapshot_path: str, sql: str, params: tuple[Any, ...], arrow: bool) -> Any:
    con = connect_readonly(Path(snapshot_path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        if arrow:
            return con.sql(sql, params=list(params)).to_arrow_table()
        return con.execute(sql, list(params)).df()
    finally:
        con.close()


def _frame(sql: str, *params: Any) -> pd.DataFrame:
    frame: pd.DataFrame = _cached(snapshot(), sql, params, False)
    return frame


def _bounded(start: date, end: date) -> tuple[date, date]:
    """[start, end] clipped to at most MAX_DAYS days ending at `end`."""
    return max(start, end - timedelta(days=MAX_DAYS - 1)), end


# ---- the whole warehouse -----------------------------------------------------------------


def published() -> dict[str, Any]:
    """When this snapshot was published, and from what."""
    rows = _frame("SELECT published_at, source FROM marts.published LIMIT 1")
    return rows.iloc[0].to_dict() if len(rows) else {}


def tenants() -> pd.DataFrame:
    """Every tenant (id, name), by id."""
    return _frame("SELECT tenant_id, name FROM marts.dim_tenants ORDER BY tenant_id LIMIT 10000")


def latest_day(tenant_id: str | None = None) -> date | None:
    """The latest day with events, of one tenant or of the MSP."""
    frame = _frame("""SELECT max(day) AS day FROM marts.fct_noise_daily
                      WHERE ?::VARCHAR IS NULL OR tenant_id = ?""", tenant_id, tenant_id)
    value = frame.iloc[0]["day"]
    return None if pd.isna(value) else pd.Timestamp(value).date()


# ---- MSP portfolio -----------------------------------------------------------------------


def portfolio(allowed: list[str], start: date, end: date) -> pd.DataFrame:
    """One row per allowed tenant: the period's funnel, daily trends, latest compliance."""
    start, end = _bounded(start, end)
    return _frame("""
        WITH noise AS (
            SELECT tenant_id, sum(events_accepted)::BIGINT AS events_accepted,
                   sum(incidents)::BIGINT AS incidents,
                   sum(open_incidents)::BIGINT AS open_incidents,
                   list(100 * noise_reduction ORDER BY day) AS noise_trend_pct,
                   list(incidents ORDER BY day) AS incidents_trend
            FROM marts.fct_noise_daily
            WHERE day BETWEEN ? AND ? AND list_contains(?, tenant_id)
            GROUP BY tenant_id),
        patch AS (
            SELECT tenant_id, snapshot_date, compliance_pct, compliant_nodes, in_scope_nodes,
                   critical_noncompliant_count, oldest_scan_age_hours
            FROM marts.fct_patch_compliance_daily
            WHERE list_contains(?, tenant_id) AND snapshot_date >= ?::DATE - INTERVAL 30 DAY
            QUALIFY row_number() OVER (PARTITION BY tenant_id ORDER BY snapshot_date DESC) = 1),
        patch_trend AS (
            SELECT tenant_id, list(compliance_pct ORDER BY snapshot_date) AS compliance_trend
            FROM marts.fct_patch_compliance_daily
            WHERE list_contains(?, tenant_id) AND snapshot_date >= ?::DATE - INTERVAL 30 DAY
            GROUP BY tenant_id)
        SELECT t.tenant_id, t.name, coalesce(n.events_accepted, 0) AS events_accepted,
               coalesce(n.incidents, 0) AS incidents,
               coalesce(n.open_incidents, 0) AS open_incidents,
               1 - n.incidents / nullif(n.events_accepted, 0) AS noise_reduction,
               n.noise_trend_pct, n.incidents_trend, p.compliance_pct, p.compliant_nodes,
               p.in_scope_nodes, p.critical_noncompliant_count, p.oldest_scan_age_hours,
               pt.compliance_trend
        FROM marts.dim_tenants t
        LEFT JOIN noise n USING (tenant_id)
        LEFT JOIN patch p USING (tenant_id)
        LEFT JOIN patch_trend pt USING (tenant_id)
        WHERE list_contains(?, t.tenant_id)
        ORDER BY t.tenant_id LIMIT 10000""",
        start, end, allowed, allowed, end, allowed, end, allowed)


def msp_daily(start: date, end: date) -> pd.DataFrame:
    """The MSP roll-up per day (every tenant: only for users allowed every tenant)."""
    start, end = _bounded(start, end)
    return _frame("""SELECT * FROM marts.fct_noise_msp_daily WHERE day BETWEEN ? AND ?
                     ORDER BY day""", start, end)


# ---- client scorecard --------------------------------------------------------------------


def funnel(tenant_id: str, start: date, end: date) -> dict[str, int]:
    """The tenant's funnel over the period: the sums of its daily rows (README "Days")."""
    start, end = _bounded(start, end)
    frame = _frame("""
        SELECT count(*)::BIGINT AS days,
               coalesce(sum(events_accepted), 0)::BIGINT AS events_accepted,
               coalesce(sum(duplicates), 0)::BIGINT AS duplicates,
               coalesce(sum(unique_events), 0)::BIGINT AS unique_events,
               coalesce(sum(alerts), 0)::BIGINT AS alerts,
               coalesce(sum(incidents), 0)::BIGINT AS incidents,
               coalesce(sum(linked_incidents), 0)::BIGINT AS linked_incidents,
               coalesce(sum(merged_incidents), 0)::BIGINT AS merged_incidents,
               coalesce(sum(below_threshold), 0)::BIGINT AS below_threshold,
               coalesce(sum(too_late), 0)::BIGINT AS too_late,
               coalesce(sum(clock_skew), 0)::BIGINT AS clock_skew,
               coalesce(sum(orphan_resolved), 0)::BIGINT AS orphan_resolved,
               coalesce(sum(stale_resolves), 0)::BIGINT AS stale_resolves,
               coalesce(sum(missing_asset), 0)::BIGINT AS missing_asset,
               coalesce(sum(flapping_incidents), 0)::BIGINT AS flapping_incidents,
               coalesce(sum(recurring_incidents), 0)::BIGINT AS recurring_incidents
        FROM marts.fct_noise_daily WHERE tenant_id = ? AND day BETWEEN ? AND ?""",
        tenant_id, start, end)
    return {k: int(v) for k, v in frame.iloc[0].items()}


def incident_stats(tenant_id: str, start: date, end: date) -> dict[str, Any]:
    """Medians, MTTR and time to incident over the period's counted incidents."""
    start, end = _bounded(start, end)
    frame = _frame("""
        SELECT median(alert_count) AS alerts_per_incident_median,
               median(event_count) AS events_per_incident_median,
               count(*) FILTER (WHERE status = 'resolved') AS resolved,
               count(*) FILTER (WHERE status = 'stale') AS stale,
               count(*) FILTER (WHERE status = 'open') AS open,
               avg(resolve) AS mttr_mean, quantile_cont(resolve, 0.5) AS mttr_p50,
               quantile_cont(resolve, 0.9) AS mttr_p90,
               quantile_cont(seconds_to_visible, 0.5) AS time_to_incident_p50
        FROM (SELECT *, CASE WHEN status = 'resolved' THEN seconds_to_resolve END AS resolve
              FROM marts.fct_incidents
              WHERE tenant_id = ? AND day BETWEEN ? AND ? AND counted)""",
        tenant_id, start, end)
    return frame.iloc[0].to_dict()


def noise_daily(tenant_id: str, start: date, end: date) -> pd.DataFrame:
    """The tenant's daily funnel and KPIs."""
    start, end = _bounded(start, end)
    return _frame("""SELECT * FROM marts.fct_noise_daily
                     WHERE tenant_id = ? AND day BETWEEN ? AND ? ORDER BY day""",
                  tenant_id, start, end)


def top_keys(tenant_id: str, limit: int = 15) -> pd.DataFrame:
    """The tenant's noisiest keys of its last 7 days of data, by member events."""
    return _frame("""SELECT agg_key, asset, signature, array_to_string(sources, ', ') AS sources,
                            member_events, incidents, flapping_incidents, flaps,
                            events_per_incident, rank_by_events, rank_by_incidents,
                            period_start, period_end
                     FROM marts.fct_top_noisy_keys WHERE tenant_id = ?
                     ORDER BY rank_by_events LIMIT ?""", tenant_id, limit)


def near_miss_keys(tenant_id: str, start: date, end: date, limit: int = 10) -> pd.DataFrame:
    """Keys whose incidents opened just after the window (W < gap <= 2W, rule `new`): each
    would have joined the previous incident under a window as wide as its gap."""
    start, end = _bounded(start, end)
    return _frame("""
        SELECT agg_key, any_value(asset) AS asset, any_value(signature) AS signature,
               count(*)::BIGINT AS near_misses, median(gap_seconds) AS median_gap_seconds,
               max(gap_seconds) AS widest_gap_seconds, max(window_seconds) AS window_seconds
        FROM marts.fct_incident_events
        WHERE tenant_id = ? AND day BETWEEN ? AND ? AND disposition = 'member'
          AND rule = 'new' AND gap_seconds > window_seconds
          AND gap_seconds <= 2 * window_seconds
        GROUP BY agg_key ORDER BY near_misses DESC, agg_key LIMIT ?""",
        tenant_id, start, end, limit)


def sources(tenant_id: str, start: date, end: date) -> pd.DataFrame:
    """Each source tool's share of the funnel, with its alert quality, noisiest first."""
    start, end = _bounded(start, end)
    return _frame("""
        WITH noise AS (
            SELECT source, sum(events_accepted)::BIGINT AS events_accepted,
                   sum(duplicates)::BIGINT AS duplicates, sum(alerts)::BIGINT AS alerts,
                   sum(incidents)::BIGINT AS incidents
            FROM marts.fct_source_noise_daily
            WHERE tenant_id = ? AND day BETWEEN ? AND ? GROUP BY source),
        quality AS (
            SELECT source, sum(events)::BIGINT AS quality_events,
                   sum(with_asset_share * events) / nullif(sum(events), 0) AS with_asset_share,
                   sum(severity_mapped_share * events) / nullif(sum(events), 0)
                       AS severity_mapped_share,
                   sum(resolve_path_share * events) / nullif(sum(events), 0) AS resolve_path_share
            FROM marts.fct_alert_quality_daily
            WHERE tenant_id = ? AND day BETWEEN ? AND ? GROUP BY source)
        SELECT source, events_accepted, duplicates, alerts, incidents,
               1 - incidents / nullif(events_accepted, 0) AS noise_reduction,
               with_asset_share, severity_mapped_share, resolve_path_share
        FROM noise FULL JOIN quality USING (source)
        ORDER BY incidents DESC NULLS LAST, source LIMIT 100""",
        tenant_id, start, end, tenant_id, start, end)


# ---- incidents ---------------------------------------------------------------------------

_INCIDENT_COLUMNS = """incident_id, first_seen, last_activity, resolved_at, status, severity,
    asset, signature, array_to_string(sources, ', ') AS sources, event_count, alert_count,
    flap_count, seconds_to_resolve, counted, visible, merged_into, linked_to, agg_key,
    settings_version, day"""


def incidents(tenant_id: str, start: date, end: date, statuses: list[str],
              severities: list[str], include_uncounted: bool = False,
              limit: int = ROW_LIMIT) -> pd.DataFrame:
    """The tenant's incidents started in [start, end], worst first: severity, open before
    stale before resolved, newest first. `total` is the count before the limit."""
    start, end = _bounded(start, end)
    return _frame(f"""
        SELECT {_INCIDENT_COLUMNS}, count(*) OVER () AS total
        FROM marts.fct_incidents
        WHERE tenant_id = ? AND day BETWEEN ? AND ? AND list_contains(?, status)
          AND list_contains(?, severity) AND (counted OR ?)
        ORDER BY list_position(?, severity), list_position(?, status), first_seen DESC,
                 incident_id
        LIMIT ?""", tenant_id, start, end, statuses, severities, include_uncounted,
        list(SEVERITIES), list(STATUSES), limit)


def incident(tenant_id: str, incident_id: str) -> dict[str, Any] | None:
    """One incident of this tenant (None when the id is not one of its incidents)."""
    frame = _frame(f"""SELECT {_INCIDENT_COLUMNS} FROM marts.fct_incidents
                       WHERE tenant_id = ? AND incident_id = ? LIMIT 1""",
                   tenant_id, incident_id)
    return frame.iloc[0].to_dict() if len(frame) else None


def incident_events(tenant_id: str, incident_id: str, first_day: date,
                    last_day: date) -> pd.DataFrame:
    """The incident's events in event-time order, each with its rule and join reason.
    Members' event times lie in [first_seen, last_activity], so those days bound the scan."""
    return _frame("""
        SELECT event_time, received_at, event_id, source, asset, signature, severity, status,
               rule, join_reason, gap_seconds, window_seconds, flap, new_alert, clock_skew,
               settings_version, ingest_seq
        FROM marts.fct_incident_events
        WHERE tenant_id = ? AND incident_id = ? AND day BETWEEN ? AND ?
        ORDER BY event_time, ingest_seq LIMIT ?""",
        tenant_id, incident_id, first_day, last_day, EVENT_LIMIT)


# ---- patch compliance --------------------------------------------------------------------


def compliance_daily(tenant_id: str, end: date, days: int = 30) -> pd.DataFrame:
    """The tenant's compliance scorecard per snapshot day, the last `days` days to `end`."""
    return _frame("""SELECT * FROM marts.fct_patch_compliance_daily
                     WHERE tenant_id = ? AND snapshot_date BETWEEN ? AND ?
                     ORDER BY snapshot_date""",
                  tenant_id, end - timedelta(days=min(days, MAX_DAYS) - 1), end)


def latest_snapshot_date(tenant_id: str) -> date | None:
    frame = _frame("""SELECT max(snapshot_date) AS d FROM marts.fct_patch_compliance_daily
                      WHERE tenant_id = ?""", tenant_id)
    value = frame.iloc[0]["d"]
    return None if pd.isna(value) else pd.Timestamp(value).date()


def noncompliant_nodes(tenant_id: str, snapshot_date: date) -> pd.DataFrame:
    """In-scope nodes not compliant at that snapshot, most critical patches missing first."""
    return _frame("""
        SELECT node_id, computer_name, account_id, region, patch_group, compliance_status,
               critical_noncompliant_count, security_noncompliant_count, missing_count,
               failed_count, installed_pending_reboot_count, last_operation, last_scan_at,
               scan_age_hours, never_scanned, stale_scan, is_hybrid, ping_status
        FROM marts.fct_patch_compliance_node_daily
        WHERE tenant_id = ? AND snapshot_date = ? AND in_scope AND NOT compliant
        ORDER BY critical_noncompliant_count DESC, never_scanned DESC, missing_count DESC,
                 node_id
        LIMIT ?""", tenant_id, snapshot_date, ROW_LIMIT)


def patch_groups(tenant_id: str, snapshot_date: date) -> pd.DataFrame:
    """Each patch group's compliance at that snapshot, worst first."""
    return _frame("""SELECT patch_group, compliance_pct, compliant_nodes, in_scope_nodes,
                            critical_noncompliant_count, stale_scan_nodes, never_scanned_nodes
                     FROM marts.fct_patch_compliance_group_daily
                     WHERE tenant_id = ? AND snapshot_date = ?
                     ORDER BY compliance_pct NULLS FIRST, patch_group LIMIT ?""",
                  tenant_id, snapshot_date, ROW_LIMIT)


def risk_assets(tenant_id: str) -> pd.DataFrame:
    """Alerting assets that are noisy and unpatched, riskiest first."""
    return _frame("""SELECT risk_rank, asset, node_id, computer_name, matched_by, patch_group,
                            critical_noncompliant_count, missing_count, incidents_7d,
                            member_events_7d, scan_age_hours, account_id, region
                     FROM marts.fct_patch_risk_assets WHERE tenant_id = ?
                     ORDER BY risk_rank LIMIT ?""", tenant_id, ROW_LIMIT)


# ---- settings and what-if ----------------------------------------------------------------


def tenant_settings(tenant_id: str) -> dict[str, Any] | None:
    """The tenant's current correlation settings (dim_tenants)."""
    frame = _frame("SELECT * FROM marts.dim_tenants WHERE tenant_id = ? LIMIT 1", tenant_id)
    return frame.iloc[0].to_dict() if len(frame) else None


def events_per_day(tenant_id: str, start: date, end: date) -> pd.DataFrame:
    """The tenant's events per day (of event time), newest first: sizes the replay."""
    start, end = _bounded(start, end)
    return _frame("""SELECT day, count(*)::BIGINT AS events FROM marts.fct_incident_events
                     WHERE tenant_id = ? AND day BETWEEN ? AND ?
                     GROUP BY day ORDER BY day DESC""", tenant_id, start, end)


def replay_events(tenant_id: str, start: date, end: date) -> pa.Table:
    """The tenant's events of [start, end] as the engine's input columns (`EVENTS`).

    R2 is not a correlation setting, so duplicates keep the decision already made: the ingest
    service's flag or the engine's (`disposition = 'duplicate'`). The body hash is not in the
    marts (""), which leaves delivery ids as the only R2 key: no new duplicate is found.
    Duplicates' canonical fields are null in the marts and get the lake's placeholders."""
    start, end = _bounded(start, end)
    return _cached(snapshot(), """
        SELECT tenant_id, event_id, ingest_seq, source, source_fingerprint, asset,
               coalesce(signature, '') AS signature, coalesce(severity, 'warning') AS severity,
               coalesce(status, 'point') AS status, occurred_at, received_at, labels,
               delivery_id, '' AS body_sha256,
               coalesce(is_duplicate, false) OR disposition = 'duplicate' AS duplicate
        FROM marts.fct_incident_events
        WHERE tenant_id = ? AND day BETWEEN ? AND ?
        ORDER BY ingest_seq LIMIT ?""", (tenant_id, start, end, REPLAY_EVENT_LIMIT), True)
