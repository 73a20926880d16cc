"""The KPI table of SEMANTICS.md, computed from one correlation result, per tenant (R1) and as
the labelled MSP roll-ups.

Every KPI is a dict that carries its formula (`{"value": 0.67, "formula": "1 - I / E_acc"}`),
so a report can always print what it computed. Decisions:

- `I` counts visible live incidents only: rows with `visible` set and no `merged_into`
  (merge records and below-threshold candidates are not incidents). `E_acc`, `D_x`, `A` and
  `S_r` come from the engine's funnel; `E_u = E_acc - D_x`.
- A ratio with a zero denominator is None, never a division error; so is a median or
  percentile of nothing.
- Medians and percentiles interpolate linearly between closest ranks (numpy's default), so
  the median of an even count is the mean of the two middle values.
- MTTR is `resolved_at - first_seen` in seconds over visible incidents with status
  `resolved`; visible `stale` and `open` incidents are counted apart, never in MTTR.
- Time to incident: an incident became visible when the member event that brought it to its
  threshold `N` arrived (members in `ingest_seq` order, counting firing and point events, not
  resolves, R13). Its value is that event's receive time minus the incident's `first_seen`.
  `N` comes from the incident's settings version label (`thresholds`; 1 when unknown).
- Recurrence: a visible incident recurs when another visible incident of the same `agg_key`
  has its `last_activity` within the 7 days before this one's `first_seen`, both ends
  inclusive.
- Top noisy keys: agg_keys ranked by member events (of any incident, visible or not) and by
  visible incidents, descending, ties broken by the key; the first `TOP` of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.correlation.engine import Correlation

TOP = 10
RECURRENCE_US = 7 * 86_400 * 1_000_000
US_PER_SECOND = 1_000_000
COUNTING_RESOLVE_RULE = "R7-resolve"  # the rule of every member resolve; resolves do not count

FORMULAS = {
    "noise_reduction": "1 - I / E_acc",
    "dedup_rate": "1 - A / E_u",
    "correlation_compression": "1 - I / A",
    "alerts_per_incident_mean": "A / I",
    "alerts_per_incident_median": "median of alert_count over visible incidents",
    "events_per_incident_mean": "E_u / I",
    "events_per_incident_median": "median of event_count over visible incidents",
    "suppression_share_too_late": "S_too_late / E_acc",
    "suppression_share_below_threshold": "S_below_threshold / E_acc",
    "flap_rate": "visible incidents with flap_count >= 1 / I",
    "mttr": "resolved_at - first_seen (seconds) over visible resolved incidents",
    "time_to_incident": "p50 of (receive time of the event that reached the threshold "
                        "- first_seen) (seconds) over visible incidents",
    "recurrence_rate": "visible incidents whose agg_key had another visible incident with "
                       "last_activity in the 7 days before first_seen / I",
    "top_noisy_keys": "agg_keys ranked by member events and by visible incidents, "
                      "ties by key",
    "msp_event_weighted": "1 - sum(I) / sum(E_acc) over tenants",
    "msp_tenant_mean": "mean over tenants of (1 - I / E_acc)",
}


def ratio(numerator: float, denominator: float) -> float | None:
    """`numerator / denominator`, or None when the denominator is zero."""
    return None if denominator == 0 else numerator / denominator


def one_minus(numerator: float, denominator: float) -> float | None:
    """`1 - numerator / denominator`, or None when the denominator is zero."""
    share = ratio(numerator, denominator)
    return None if share is None else 1.0 - share


def kpi(value: float | None, name: str) -> dict[str, Any]:
    """One KPI with its formula."""
    return {"value": value, "formula": FORMULAS[name]}


def percentile(values: np.ndarray, q: float) -> float | None:
    """The q-th percentile (linear interpolation), None for no values."""
    return None if len(values) == 0 else float(np.percentile(values, q))


def compute(result: Correlation, thresholds: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Every tenant's KPIs and the MSP roll-ups of one engine result."""
    return from_tables(result.incidents, result.funnel, result.memberships, thresholds)


def from_tables(incidents: pa.Table, funnel: Mapping[str, Mapping[str, int]],
                memberships: pa.Table | None = None,
                thresholds: Mapping[str, int] | None = None) -> dict[str, Any]:
    """`{"by_tenant": {tenant: KPIs}, "msp_rollup": {...}}` from the engine's incidents
    (`INCIDENTS`), funnel per tenant and, optionally, memberships (`MEMBERSHIPS`)."""
    by_tenant = {
        tenant: tenant_kpis(_of_tenant(incidents, tenant), funnel[tenant],
                            None if memberships is None else _of_tenant(memberships, tenant),
                            thresholds)
        for tenant in sorted(funnel)
    }
    return {"by_tenant": by_tenant, "msp_rollup": msp_rollup(funnel)}


def _of_tenant(table: pa.Table, tenant: str) -> pa.Table:
    return table.filter(pc.equal(table.column("tenant_id"), tenant))


def visible_incidents(incidents: pa.Table) -> pd.DataFrame:
    """The incidents that count as `I`: visible and not merged."""
    frame = incidents.to_pandas()
    if frame.empty:
        return frame
    return frame[frame["visible"] & frame["merged_into"].isna()].reset_index(drop=True)


def tenant_kpis(incidents: pa.Table, funnel: Mapping[str, int],
                memberships: pa.Table | None = None,
                thresholds: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The KPI table of one tenant from its incidents (engine `INCIDENTS`), its funnel and,
    for time to incident and noisy keys by events, its memberships."""
    live = visible_incidents(incidents)
    i_count = len(live)
    e_acc = funnel["events_accepted"]
    e_u = e_acc - funnel["duplicates"]
    alerts = funnel["alerts"]
    flapping = int((live["flap_count"] >= 1).sum()) if i_count else 0
    return {
        "noise_reduction": kpi(one_minus(i_count, e_acc), "noise_reduction"),
        "dedup_rate": kpi(one_minus(alerts, e_u), "dedup_rate"),
        "correlation_compression": kpi(one_minus(i_count, alerts), "correlation_compression"),
        "alerts_per_incident": {
            "mean": kpi(ratio(alerts, i_count), "alerts_per_incident_mean"),
            "median": kpi(_median(live, "alert_count"), "alerts_per_incident_median"),
        },
        "events_per_incident": {
            "mean": kpi(ratio(e_u, i_count), "events_per_incident_mean"),
            "median": kpi(_median(live, "event_count"), "events_per_incident_median"),
        },
        "suppression_share": {
            "too_late": kpi(ratio(funnel["too_late"], e_acc), "suppression_share_too_late"),
            "below_threshold": kpi(ratio(funnel["below_threshold"], e_acc),
                                   "suppression_share_below_threshold"),
        },
        "flap_rate": kpi(ratio(flapping, i_count), "flap_rate"),
        "mttr": mttr(live),
        "time_to_incident": time_to_incident(live, memberships, thresholds),
        "recurrence_rate": kpi(ratio(recurring(live), i_count), "recurrence_rate"),
        "top_noisy_keys": top_noisy_keys(live, memberships),
    }


def _median(live: pd.DataFrame, column: str) -> float | None:
    return percentile(live[column].to_numpy(np.float64), 50) if len(live) else None


def _us(series: pd.Series) -> np.ndarray:
    """Timestamps of a frame column as microseconds since the epoch."""
    return series.to_numpy("datetime64[us]").astype(np.int64)


def mttr(live: pd.DataFrame) -> dict[str, Any]:
    """Mean, p50 and p90 seconds over visible resolved incidents; stale and open apart."""
    status = live["status"] if len(live) else pd.Series([], dtype=object)
    done = live[status == "resolved"] if len(live) else live
    seconds = (
        (_us(done["resolved_at"]) - _us(done["first_seen"])) / US_PER_SECOND
        if len(done) else np.array([], np.float64)
    )
    return {
        "mean_seconds": float(seconds.mean()) if len(seconds) else None,
        "p50_seconds": percentile(seconds, 50),
        "p90_seconds": percentile(seconds, 90),
        "resolved": int(len(done)),
        "stale": int((status == "stale").sum()),
        "open": int((status == "open").sum()),
        "formula": FORMULAS["mttr"],
    }


def time_to_incident(live: pd.DataFrame, memberships: pa.Table | None,
                     thresholds: Mapping[str, int] | None = None) -> dict[str, Any]:
    """p50 seconds from `first_seen` to the arrival that made each visible incident visible."""
    if memberships is None or not len(live):
        return {"p50_seconds": None, "incidents": 0, "formula": FORMULAS["time_to_incident"]}
    members = memberships.select(["incident_id", "ingest_seq", "disposition", "rule",
                                  "received_at"]).to_pandas()
    members = members[(members["disposition"] == "member")
                      & (members["rule"] != COUNTING_RESOLVE_RULE)]
    members = members.sort_values(["incident_id", "ingest_seq"], kind="stable")
    members["rank"] = members.groupby("incident_id").cumcount() + 1
    wanted = live[["incident_id", "first_seen", "settings_version"]].copy()
    wanted["rank"] = [int((thresholds or {}).get(v, 1)) for v in wanted["settings_version"]]
    reached = wanted.merge(members, on=["incident_id", "rank"], how="inner")
    seconds = (_us(reached["received_at"]) - _us(reached["first_seen"])) / US_PER_SECOND
    return {"p50_seconds": percentile(seconds, 50), "incidents": int(len(reached)),
            "formula": FORMULAS["time_to_incident"]}


def recurring(live: pd.DataFrame) -> int:
    """Visible incidents with another visible incident of their key whose last activity lies
    in `[first_seen - 7 d, first_seen]`."""
    if not len(live):
        return 0
    sizes = live["agg_key"].value_counts()
    repeated = live[live["agg_key"].isin(sizes[sizes >= 2].index)]
    count = 0
    for _, group in repeated.groupby("agg_key", sort=False):
        starts = _us(group["first_seen"])
        lasts = _us(group["last_activity"])
        ordered = np.sort(lasts)
        within = (np.searchsorted(ordered, starts, side="right")
                  - np.searchsorted(ordered, starts - RECURRENCE_US, side="left"))
        # An incident's own last activity is never before its first_seen, so it lies in its
        # own range only when the two are equal.
        within -= lasts == starts
        count += int((within > 0).sum())
    return count


def top_noisy_keys(live: pd.DataFrame, memberships: pa.Table | None,
                   top: int = TOP) -> dict[str, Any]:
    """The noisiest agg_keys by member events and by visible incidents."""
    incidents = live["agg_key"].value_counts() if len(live) else pd.Series(dtype=np.int64)
    if memberships is not None:
        frame = memberships.select(["agg_key", "disposition"]).to_pandas()
        events = frame.loc[frame["disposition"] == "member", "agg_key"].value_counts()
    else:
        events = pd.Series(dtype=np.int64)
    keys = sorted(set(incidents.index) | set(events.index))
    rows = [{"agg_key": k, "events": int(events.get(k, 0)), "incidents": int(incidents.get(k, 0))}
            for k in keys]
    return {
        "by_events": sorted(rows, key=lambda r: (-r["events"], r["agg_key"]))[:top],
        "by_incidents": sorted(rows, key=lambda r: (-r["incidents"], r["agg_key"]))[:top],
        "formula": FORMULAS["top_noisy_keys"],
    }


def msp_rollup(funnels: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """Noise reduction over tenants, event-weighted and as the unweighted mean of tenants."""
    incidents = sum(f["incidents"] for f in funnels.values())
    events = sum(f["events_accepted"] for f in funnels.values())
    tenant_ratios = [r for f in funnels.values()
                     if (r := one_minus(f["incidents"], f["events_accepted"])) is not None]
    mean = sum(tenant_ratios) / len(tenant_ratios) if tenant_ratios else None
    return {
        "tenants": len(funnels),
        "noise_reduction_event_weighted": kpi(one_minus(incidents, events),
                                              "msp_event_weighted"),
        "noise_reduction_tenant_mean": kpi(mean, "msp_tenant_mean"),
    }


def thresholds_of(versions: list[Any]) -> dict[str, int]:
    """label -> threshold of a timeline's `versions` (the last one listed wins a label)."""
    return {v.label: int(v.settings.threshold) for v in versions}


def compare(base: Correlation, other: Correlation) -> dict[str, Any]:
    """What changes from `base` to `other` (the same events under other settings): incident
    counts, noise reduction, and incidents that split or merge, matched by member events."""
    def members(result: Correlation) -> pd.DataFrame:
        frame = result.memberships.select(["event_id", "disposition", "incident_id"]).to_pandas()
        return frame.loc[frame["disposition"] == "member", ["event_id", "incident_id"]]

    def summary(result: Correlation) -> tuple[int, float | None]:
        incidents = sum(f["incidents"] for f in result.funnel.values())
        events = sum(f["events_accepted"] for f in result.funnel.values())
        return incidents, one_minus(incidents, events)

    pairs = members(base).merge(members(other), on="event_id", suffixes=("_base", "_other"))
    (i_base, nr_base), (i_other, nr_other) = summary(base), summary(other)
    return {
        "incidents": {"before": i_base, "after": i_other},
        "noise_reduction": {"before": nr_base, "after": nr_other,
                            "formula": FORMULAS["noise_reduction"]},
        "splits": _regrouped(pairs, "incident_id_base", "incident_id_other", base, other,
                             "into"),
        "merges": _regrouped(pairs, "incident_id_other", "incident_id_base", other, base,
                             "from"),
    }


def _regrouped(pairs: pd.DataFrame, own: str, theirs: str, own_run: Correlation,
               their_run: Correlation, label: str) -> list[dict[str, Any]]:
    """Incidents of one run whose member events lie in two or more incidents of the other."""
    spread = pairs.groupby(own)[theirs].nunique()
    ids = sorted(spread[spread >= 2].index)
    if not ids:
        return []
    own_rows = _by_id(own_run.incidents)
    their_rows = _by_id(their_run.incidents)
    out = []
    for incident_id in ids:
        row = own_rows[incident_id]
        parts = pairs.loc[pairs[own] == incident_id, theirs].unique().tolist()
        parts.sort(key=lambda i: (their_rows[i]["first_seen"], i))
        out.append({"incident_id": incident_id, "tenant_id": row["tenant_id"],
                    "agg_key": row["agg_key"], "first_seen": row["first_seen"],
                    "event_count": row["event_count"], label: parts})
    return sorted(out, key=lambda r: (r["tenant_id"], r["agg_key"], r["first_seen"],
                                      r["incident_id"]))


def _by_id(incidents: pa.Table) -> dict[str, dict[str, Any]]:
    live = incidents.filter(pc.is_null(incidents.column("merged_into")))
    return {row["incident_id"]: row for row in live.to_pylist()}
