"""KPIs of SEMANTICS.md on tiny hand-built incident tables, each value computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from warehouse.correlation import kpis
from warehouse.correlation.engine import FUNNEL_FIELDS, INCIDENTS, MEMBERSHIPS


def at(hhmmss: str, day: int = 26) -> datetime:
    return datetime.fromisoformat(f"2026-11-{day:02d}T{hhmmss}").replace(tzinfo=UTC)


def incident(incident_id: str, key: str, first: str, last: str, **overrides: Any) -> dict:
    row = {
        "incident_id": incident_id, "tenant_id": "t", "agg_key": key,
        "first_seen": at(first), "last_activity": at(last), "resolved_at": None,
        "status": "open", "severity": "high", "event_count": 1, "alert_count": 1,
        "flap_count": 0, "merged_into": None, "linked_to": None, "visible": True,
        "missing_asset": False, "settings_version": "v0", "first_event_id": incident_id + "-e1",
    }
    return row | overrides


# A: resolved after 30 min, flapped once, 4 events of 2 alerts, threshold 2 (version v2).
# B: same key, starts 1 h 50 min after A's last activity (a recurrence), went stale.
# C: another key, resolved after 1 h.
# D: a candidate below threshold: not an incident.
# M: a merge record (merged into A): not an incident.
INCIDENT_ROWS = [
    incident("A", "t|k1", "10:00:00", "10:10:00", resolved_at=at("10:30:00"),
             status="resolved", event_count=4, alert_count=2, flap_count=1,
             settings_version="v2"),
    incident("B", "t|k1", "12:00:00", "12:05:00", status="stale", event_count=2),
    incident("C", "t|k2", "10:00:00", "10:00:00", resolved_at=at("11:00:00"),
             status="resolved"),
    incident("D", "t|k3", "09:00:00", "09:00:00", visible=False),
    incident("M", "t|k1", "10:05:00", "10:05:00", visible=False, merged_into="A"),
]
FUNNEL = {"events_accepted": 12, "duplicates": 2, "alerts": 5, "incidents": 3,
          "below_threshold": 1, "too_late": 1, "clock_skew": 0, "orphan_resolved": 0,
          "missing_asset": 0, "stale_resolves": 0}


def member(seq: int, incident_id: str, key: str, received: str, rule: str = "R5b",
           disposition: str = "member") -> dict:
    return {
        "event_id": f"e{seq}", "tenant_id": "t", "ingest_seq": seq, "disposition": disposition,
        "rule": rule, "event_time": at(received), "received_at": at(received),
        "clock_skew": False, "incident_id": incident_id, "agg_key": key, "gap_us": None,
        "window_us": None, "settings_version": "v0", "flap": False,
    }


MEMBER_ROWS = [
    member(1, "A", "t|k1", "10:01:00", rule="new"),
    member(2, "A", "t|k1", "10:03:00", rule="R7-resolve"),  # resolves do not count (R13)
    member(3, "A", "t|k1", "10:05:00"),  # A's second counted event: visible at 10:05
    member(4, "C", "t|k2", "10:00:30", rule="new"),
    member(5, "B", "t|k1", "12:00:00", rule="new"),
    member(6, "D", "t|k3", "09:00:00", rule="new"),
    member(7, None, None, "09:30:00", rule="R2", disposition="duplicate"),  # type: ignore[arg-type]
]


def tenant_kpis() -> dict[str, Any]:
    return kpis.tenant_kpis(pa.Table.from_pylist(INCIDENT_ROWS, schema=INCIDENTS), FUNNEL,
                            pa.Table.from_pylist(MEMBER_ROWS, schema=MEMBERSHIPS), {"v2": 2})


def test_ratios_and_their_formulas() -> None:
    out = tenant_kpis()
    # I = 3 (A, B, C), E_acc = 12, D_x = 2, E_u = 10, A = 5
    assert out["noise_reduction"] == {"value": 1 - 3 / 12, "formula": "1 - I / E_acc"}
    assert out["dedup_rate"] == {"value": 1 - 5 / 10, "formula": "1 - A / E_u"}
    assert out["correlation_compression"]["value"] == pytest.approx(1 - 3 / 5)
    assert out["correlation_compression"]["formula"] == "1 - I / A"
    assert out["alerts_per_incident"]["mean"]["value"] == pytest.approx(5 / 3)
    assert out["alerts_per_incident"]["median"]["value"] == 1.0  # of [2, 1, 1]
    assert out["events_per_incident"]["mean"]["value"] == pytest.approx(10 / 3)
    assert out["events_per_incident"]["median"]["value"] == 2.0  # of [4, 2, 1]
    assert out["suppression_share"]["too_late"]["value"] == pytest.approx(1 / 12)
    assert out["suppression_share"]["below_threshold"]["value"] == pytest.approx(1 / 12)
    assert out["flap_rate"]["value"] == pytest.approx(1 / 3)  # A only
    assert out["recurrence_rate"]["value"] == pytest.approx(1 / 3)  # B follows A within 7 d


def test_every_kpi_carries_its_formula() -> None:
    def walk(value: Any) -> int:
        if isinstance(value, dict) and "value" in value:
            assert isinstance(value["formula"], str) and value["formula"]
            return 1
        if isinstance(value, dict):
            if "formula" in value:
                return 1
            return sum(walk(v) for v in value.values())
        return 0

    out = tenant_kpis()
    assert all(walk(out[name]) >= 1 for name in out)


def test_mttr_over_resolved_incidents_with_stale_and_open_apart() -> None:
    mttr = tenant_kpis()["mttr"]
    # A: 1800 s, C: 3600 s; B (stale) is excluded and counted apart.
    assert mttr["mean_seconds"] == 2700.0
    assert mttr["p50_seconds"] == 2700.0
    assert mttr["p90_seconds"] == pytest.approx(1800 + 0.9 * 1800)  # linear interpolation
    assert (mttr["resolved"], mttr["stale"], mttr["open"]) == (2, 1, 0)


def test_time_to_incident_uses_the_arrival_that_reached_the_threshold() -> None:
    tti = tenant_kpis()["time_to_incident"]
    # A (N=2): its second firing/point member by ingest_seq (seq 3, the resolve skipped)
    # arrived at 10:05 → 300 s; C (N=1): 30 s; B: 0 s. p50 of [300, 30, 0] = 30.
    assert tti["p50_seconds"] == 30.0
    assert tti["incidents"] == 3


def test_top_noisy_keys_by_events_and_by_incidents_with_tie_break_by_key() -> None:
    top = tenant_kpis()["top_noisy_keys"]
    assert [(k["agg_key"], k["events"], k["incidents"]) for k in top["by_events"]] == [
        ("t|k1", 4, 2), ("t|k2", 1, 1), ("t|k3", 1, 0)]  # k2/k3 tie on events: by key
    assert [k["agg_key"] for k in top["by_incidents"]] == ["t|k1", "t|k2", "t|k3"]


def test_merge_records_and_candidates_are_not_incidents() -> None:
    live = kpis.visible_incidents(pa.Table.from_pylist(INCIDENT_ROWS, schema=INCIDENTS))
    assert sorted(live["incident_id"]) == ["A", "B", "C"]


def test_zero_denominators_give_none_not_an_error() -> None:
    funnel = dict.fromkeys(FUNNEL_FIELDS, 0)
    out = kpis.tenant_kpis(INCIDENTS.empty_table(), funnel, MEMBERSHIPS.empty_table())
    for name in ("noise_reduction", "dedup_rate", "correlation_compression", "flap_rate",
                 "recurrence_rate"):
        assert out[name]["value"] is None, name
    for group in ("alerts_per_incident", "events_per_incident"):
        assert out[group]["mean"]["value"] is None
        assert out[group]["median"]["value"] is None
    assert out["suppression_share"]["too_late"]["value"] is None
    assert out["mttr"]["mean_seconds"] is None and out["mttr"]["p90_seconds"] is None
    assert out["time_to_incident"]["p50_seconds"] is None
    assert out["top_noisy_keys"]["by_events"] == []
    # Events but no incident: A / I and E_u / I have a zero denominator, 1 - I / E_acc not.
    out = kpis.tenant_kpis(INCIDENTS.empty_table(), FUNNEL | {"incidents": 0})
    assert out["noise_reduction"]["value"] == 1.0
    assert out["alerts_per_incident"]["mean"]["value"] is None
    assert kpis.msp_rollup({})["noise_reduction_event_weighted"]["value"] is None


def test_msp_rollup_event_weighted_and_unweighted_differ_and_are_labelled() -> None:
    funnels = {
        "big": dict.fromkeys(FUNNEL_FIELDS, 0) | {"events_accepted": 100, "incidents": 10},
        "small": dict.fromkeys(FUNNEL_FIELDS, 0) | {"events_accepted": 10, "incidents": 5},
    }
    roll = kpis.msp_rollup(funnels)
    # weighted: 1 - 15 / 110; unweighted: mean(0.9, 0.5) = 0.7
    assert roll["noise_reduction_event_weighted"]["value"] == pytest.approx(1 - 15 / 110)
    assert roll["noise_reduction_tenant_mean"]["value"] == pytest.approx(0.7)
    assert roll["noise_reduction_event_weighted"]["formula"] == \
        "1 - sum(I) / sum(E_acc) over tenants"
    assert roll["noise_reduction_tenant_mean"]["formula"] == \
        "mean over tenants of (1 - I / E_acc)"
    assert roll["tenants"] == 2


def test_compute_keeps_tenants_apart() -> None:
    other = [row | {"tenant_id": "u", "incident_id": row["incident_id"] + "u",
                    "agg_key": "u|" + row["agg_key"]} for row in INCIDENT_ROWS[:1]]
    out = kpis.from_tables(
        pa.Table.from_pylist(INCIDENT_ROWS + other, schema=INCIDENTS),
        {"t": FUNNEL, "u": FUNNEL | {"events_accepted": 4, "duplicates": 0, "alerts": 1,
                                     "incidents": 1}},
        pa.Table.from_pylist(MEMBER_ROWS, schema=MEMBERSHIPS), {"v2": 2})
    assert out["by_tenant"]["t"] == tenant_kpis()
    assert out["by_tenant"]["u"]["noise_reduction"]["value"] == 1 - 1 / 4
    assert out["by_tenant"]["u"]["top_noisy_keys"]["by_incidents"][0]["agg_key"] == "u|t|k1"
    assert out["msp_rollup"]["noise_reduction_event_weighted"]["value"] == 1 - 4 / 16


def test_recurrence_window_is_seven_days_inclusive() -> None:
    def on(day: int, incident_id: str, key: str, first: str, last: str) -> dict:
        return incident(incident_id, key, first, last) | {
            "first_seen": at(first, day), "last_activity": at(last, day)}

    rows = [
        on(1, "X", "t|k1", "10:00:00", "10:10:00"),
        on(8, "Y", "t|k1", "10:10:00", "10:20:00"),  # exactly 7 days after X's last activity
        on(1, "P", "t|k2", "10:00:00", "10:10:00"),
        on(8, "Q", "t|k2", "10:10:01", "10:20:00"),  # 7 days and 1 s after P's: no
    ]
    funnel = FUNNEL | {"incidents": 4}
    out = kpis.tenant_kpis(pa.Table.from_pylist(rows, schema=INCIDENTS), funnel)
    assert out["recurrence_rate"]["value"] == 1 / 4
