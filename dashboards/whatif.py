"""The what-if backtest: a tenant's recent events replayed under its current settings and
under proposed ones, before anyone changes anything.

The events come from `marts.fct_incident_events` (`data.replay_events`, at most
`data.REPLAY_EVENT_LIMIT` of them, whole days), both runs go through the real engine
(`warehouse.correlation.engine.correlate`, one constant settings value each) and are
compared with `warehouse.correlation.kpis`. Both runs see the same events, so the edge of
the replayed days (an incident that began before them) affects both alike: the difference
is the settings' doing. The R10 merge replay is skipped (`merges=False`): it only adds merge
records and changes no incident count (engine docstring), and it is the slow part.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import streamlit as st

from dashboards import data
from warehouse.correlation import kpis
from warehouse.correlation.engine import Correlation, correlate
from warehouse.correlation.events import conform
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.correlation_settings import CorrelationSettings


@dataclass(frozen=True)
class Backtest:
    """Current vs proposed over the same replayed events."""

    events: int
    start: date
    end: date
    current: dict[str, Any]  # kpis.tenant_kpis of the current settings
    proposed: dict[str, Any]
    comparison: dict[str, Any]  # kpis.compare
    daily: pd.DataFrame  # day, current, proposed: incidents started per day


def settings_of(row: dict[str, Any]) -> CorrelationSettings:
    """A tenant's settings from its `dim_tenants` row (per-source staleness overrides are not
    in the marts: the replay uses `stale_after` for every source)."""
    def seconds(name: str) -> timedelta:
        return timedelta(seconds=float(row[f"{name}_seconds"]))

    return CorrelationSettings(
        window=seconds("window"), key=tuple(row["key_fields"]), cap=seconds("cap"),
        threshold=int(row["threshold"]), lateness=seconds("lateness"),
        stale_after=seconds("stale_after"), clock_skew=seconds("clock_skew"))


def replay_days(per_day: pd.DataFrame, days: int,
                limit: int = data.REPLAY_EVENT_LIMIT) -> tuple[date, date] | None:
    """The latest whole days (at most `days`) whose events fit in `limit`; at least one."""
    if per_day.empty:
        return None
    ordered = per_day.sort_values("day", ascending=False).head(days)
    total, first = 0, None
    for row in ordered.itertuples():
        if first is not None and total + int(row.events) > limit:
            break
        total += int(row.events)
        first = pd.Timestamp(row.day).date()
    end = pd.Timestamp(ordered.iloc[0]["day"]).date()
    return first or end, end


def run(events: pa.Table, tenant_id: str, current: CorrelationSettings,
        proposed: CorrelationSettings, start: date, end: date) -> Backtest:
    """Correlate `events` (the tenant's events of days [start, end]) under both settings."""
    table = conform(events)
    before = correlate(table, SettingsTimeline.constant(current), merges=False)
    after = correlate(table, SettingsTimeline.constant(proposed), merges=False)
    return Backtest(
        events=table.num_rows,
        start=start,
        end=end,
        current=_tenant_kpis(before, tenant_id, current),
        proposed=_tenant_kpis(after, tenant_id, proposed),
        comparison=kpis.compare(before, after),
        daily=_daily(before, after),
    )


def _tenant_kpis(result: Correlation, tenant_id: str,
                 settings: CorrelationSettings) -> dict[str, Any]:
    found = kpis.compute(result, {"v0": settings.threshold})["by_tenant"]
    funnel = result.funnel.get(tenant_id, {})
    return {**found.get(tenant_id, {}), "funnel": funnel}


def _daily(before: Correlation, after: Correlation) -> pd.DataFrame:
    def per_day(result: Correlation) -> pd.Series:
        live = kpis.visible_incidents(result.incidents)
        if live.empty:
            return pd.Series(dtype="int64")
        return pd.to_datetime(live["first_seen"]).dt.date.value_counts()

    frame = pd.DataFrame({"current": per_day(before), "proposed": per_day(after)})
    frame = frame.fillna(0).astype("int64").sort_index()
    frame.index.name = "day"
    return frame.reset_index()


@st.cache_data(ttl=timedelta(minutes=30), max_entries=64, show_spinner=False)
def cached_run(snapshot: str, tenant_id: str, start: date, end: date, current_json: str,
               proposed_json: str) -> Backtest:
    """`run` on the tenant's events of [start, end] in `snapshot`, cached per input."""
    del snapshot  # part of the cache key: a new publish replays again
    events = data.replay_events(tenant_id, start, end)
    return run(events, tenant_id, CorrelationSettings.from_json(current_json),
               CorrelationSettings.from_json(proposed_json), start, end)
