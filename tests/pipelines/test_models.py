"""The SQL models on tiny histories with hand-computed funnels and KPIs (SEMANTICS.md), and on
a synthetic history against the engine's own funnel and KPI code."""

from __future__ import annotations

from datetime import timedelta

import pyarrow.compute as pc
import pytest

from pipelines.run import run_once
from tests.pipelines.conftest import DAY, at, events, rows, write
from warehouse.config import platform_settings
from warehouse.correlation import kpis
from warehouse.correlation.engine import correlate
from warehouse.correlation.synthetic import history
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.synthetic_lake import write_events


def QUIET(_line: str) -> None:  # noqa: N802 - a constant-like callable: no progress output
    pass

# Tenant acme: the SEMANTICS illustration (points at 10:00:00, 10:02:15, 10:05:30 → one
# incident; 10:20:31 → a second) plus an exact duplicate of the first event.
ACME = [
    {"id": "a1", "t": at("10:00:00")},
    {"id": "a2", "t": at("10:02:15")},
    {"id": "a3", "t": at("10:05:30")},
    {"id": "a1-dup", "t": at("10:00:00"), "received": at("10:06:00"), "duplicate": True},
    {"id": "a4", "t": at("10:20:31"), "received": at("10:20:32")},
]
# Tenant beta: two firing alerts on one key (R5a), re-sent, both resolved; resolved_at is the
# later resolve (R7) at 09:30, so MTTR = 30 min.
BETA = [
    {"tenant": "beta", "id": "b1", "fp": "f1", "asset": "db01", "signature": "cpu",
     "status": "firing", "t": at("09:00:00")},
    {"tenant": "beta", "id": "b2", "fp": "f2", "asset": "db01", "signature": "cpu",
     "status": "firing", "t": at("09:05:00")},
    {"tenant": "beta", "id": "b3", "fp": "f1", "asset": "db01", "signature": "cpu",
     "status": "firing", "t": at("09:10:00")},
    {"tenant": "beta", "id": "b4", "fp": "f1", "asset": "db01", "signature": "cpu",
     "status": "firing", "t": at("09:15:00")},
    {"tenant": "beta", "id": "b5", "fp": "f2", "asset": "db01", "signature": "cpu",
     "status": "resolved", "t": at("09:20:00")},
    {"tenant": "beta", "id": "b6", "fp": "f1", "asset": "db01", "signature": "cpu",
     "status": "resolved", "t": at("09:30:00")},
]


def _ordered(rows_: list[dict[str, object]]) -> list[dict[str, object]]:
    """Ingest sequence in receive order, as the ingest service assigns it."""
    ordered = sorted(rows_, key=lambda r: (r.get("received") or r["t"] + timedelta(seconds=1)))
    return [{**r, "seq": i + 1} for i, r in enumerate(ordered)]


@pytest.fixture
def built(lake, published):
    write(lake, _ordered(ACME + BETA))
    run_once(echo=QUIET)
    return published()


def test_noise_daily_hand_computed(built) -> None:
    acme, beta = rows(built, "SELECT * FROM marts.fct_noise_daily ORDER BY tenant_id")
    assert (acme["tenant_id"], acme["day"]) == ("acme", DAY.date())
    # E_acc 5, D_x 1, E_u 4, A 4 (each point is its own alert), I 2.
    assert (acme["events_accepted"], acme["duplicates"], acme["unique_events"],
            acme["alerts"], acme["incidents"]) == (5, 1, 4, 4, 2)
    assert acme["noise_reduction"] == pytest.approx(1 - 2 / 5)
    assert acme["dedup_rate"] == pytest.approx(1 - 4 / 4)
    assert acme["correlation_compression"] == pytest.approx(1 - 2 / 4)
    assert acme["alerts_per_incident_mean"] == pytest.approx(4 / 2)
    assert acme["events_per_incident_mean"] == pytest.approx(4 / 2)
    assert acme["alerts_per_incident_median"] == pytest.approx(2.0)  # median of [3, 1]
    # the second incident's key had an incident whose last activity (10:05:30) lies within
    # the 7 days before its start (10:20:31): 1 of 2 recurs
    assert (acme["recurring_incidents"], acme["recurrence_rate"]) == (1, pytest.approx(0.5))
    assert acme["flap_rate"] == 0
    # each incident became visible when its first event arrived, 1 s after its event time
    assert acme["time_to_incident_p50_seconds"] == pytest.approx(1.0)

    # beta: E_acc 6, A 2, I 1
    assert (beta["events_accepted"], beta["alerts"], beta["incidents"]) == (6, 2, 1)
    assert beta["noise_reduction"] == pytest.approx(1 - 1 / 6)
    assert beta["dedup_rate"] == pytest.approx(1 - 2 / 6)
    assert (beta["resolved_incidents"], beta["mttr_mean_seconds"],
            beta["mttr_p50_seconds"]) == (1, pytest.approx(1800.0), pytest.approx(1800.0))


def test_msp_rollup_weighted_and_unweighted_differ(built) -> None:
    (day,) = rows(built, "SELECT * FROM marts.fct_noise_msp_daily")
    assert (day["tenants"], day["events_accepted"], day["incidents"]) == (2, 11, 3)
    # event-weighted: 1 - ΣI / ΣE_acc; unweighted: the mean of the tenants' ratios
    assert day["noise_reduction_event_weighted"] == pytest.approx(1 - 3 / 11)
    assert day["noise_reduction_tenant_mean"] == pytest.approx(((1 - 2 / 5) + (1 - 1 / 6)) / 2)
    assert day["noise_reduction_event_weighted"] != pytest.approx(
        day["noise_reduction_tenant_mean"])


def test_incidents_alerts_and_explanations(built) -> None:
    incidents = rows(built, """SELECT tenant_id, agg_key, first_seen, status, event_count,
                                      alert_count, counted, sources, asset, signature
                               FROM marts.fct_incidents ORDER BY tenant_id, first_seen""")
    assert [(i["tenant_id"], i["event_count"], i["alert_count"]) for i in incidents] == [
        ("acme", 3, 3), ("acme", 1, 1), ("beta", 6, 2)]
    assert incidents[2]["status"] == "resolved"
    assert incidents[0]["agg_key"] == "acme|web01|disk_full"
    assert incidents[2]["sources"] == ["generic"]
    alerts = rows(built, """SELECT source_fingerprint, kind, status, event_count,
                                   seconds_to_resolve FROM marts.fct_alerts
                            WHERE tenant_id = 'beta' ORDER BY started_at""")
    assert alerts == [
        {"source_fingerprint": "f1", "kind": "stateful", "status": "resolved", "event_count": 4,
         "seconds_to_resolve": 1800.0},
        {"source_fingerprint": "f2", "kind": "stateful", "status": "resolved", "event_count": 2,
         "seconds_to_resolve": 900.0}]
    reasons = {r["event_id"]: r for r in rows(built, "SELECT * FROM marts.fct_incident_events")}
    assert reasons["a2"]["rule"] == "R5b"
    assert reasons["a2"]["join_reason"] == (
        "joined: 135 s after the last activity, within the 900 s window (R5b)")
    assert reasons["a4"]["rule"] == "new"
    assert "901 s after the key's last activity, beyond the 900 s window" in \
        reasons["a4"]["join_reason"]
    assert reasons["a1-dup"]["disposition"] == "duplicate"
    assert reasons["a1-dup"]["incident_id"] is None
    assert reasons["b2"]["rule"] == "R5a"
    assert reasons["a1"]["incident_id"] == reasons["a3"]["incident_id"]


def test_an_alert_occurrence_takes_its_fields_from_its_first_event_in_event_time(
        lake, published) -> None:
    # R3/R14: the firing that starts the occurrence is the earliest in event time, here the
    # second to arrive; the re-send that arrived first carries another asset and signature
    write(lake, [
        {"tenant": "gamma", "id": "g-resend", "fp": "g", "asset": "db01", "signature": "cpu",
         "status": "firing", "t": at("09:10:00"), "seq": 1},
        {"tenant": "gamma", "id": "g-first", "fp": "g", "asset": "db00", "signature": "cpu-old",
         "status": "firing", "t": at("09:00:00"), "received": at("09:12:00"), "seq": 2},
        {"tenant": "gamma", "id": "g-resolve", "fp": "g", "asset": "db01", "signature": "cpu",
         "status": "resolved", "t": at("09:20:00"), "seq": 3},
    ])
    run_once(echo=QUIET)
    (alert,) = rows(published(), """
        SELECT first_event_id, asset, signature, agg_key, started_at, event_count,
               incident_id = (SELECT incident_id FROM marts.fct_incident_events
                              WHERE event_id = 'g-first') AS first_events_incident
        FROM marts.fct_alerts WHERE tenant_id = 'gamma'""")
    assert alert == {"first_event_id": "g-first", "asset": "db00", "signature": "cpu-old",
                     "agg_key": "gamma|db00|cpu-old", "started_at": at("09:00:00"),
                     "event_count": 3, "first_events_incident": True}


def test_late_event_updates_an_earlier_day(lake, published) -> None:
    """A late event received a day later bridges two incidents of day 1 (R10): the marts of
    day 1 change, not only those of the receive day."""
    write(lake, _ordered(ACME))
    run_once(echo=QUIET)
    before = rows(published(), "SELECT incidents, merged_incidents FROM marts.fct_noise_daily")
    assert before == [{"incidents": 2, "merged_incidents": 0}]
    late = {"id": "late", "t": at("10:12:00"), "received": DAY + timedelta(days=1, hours=1)}
    write(lake, [{**late, "seq": 100}], prefix="late")
    run_once(echo=QUIET)
    con = published()
    after = rows(con, "SELECT day, events_accepted, incidents, merged_incidents "
                      "FROM marts.fct_noise_daily ORDER BY day")
    # one day still: the late event's day is its event time's
    assert after == [{"day": DAY.date(), "events_accepted": 6, "incidents": 1,
                      "merged_incidents": 1}]
    (merged,) = rows(con, "SELECT incident_id, merged_into FROM marts.fct_incidents "
                          "WHERE merged_into IS NOT NULL")
    (late_row,) = rows(con, "SELECT join_reason, merged_incidents FROM marts.fct_incident_events"
                            " WHERE event_id = 'late'")
    assert late_row["merged_incidents"] == [merged["incident_id"]]
    assert "merged" in late_row["join_reason"] and "(R10)" in late_row["join_reason"]


def test_daily_marts_add_up_to_the_engine_funnel_and_kpis(lake, published) -> None:
    """On a synthetic history: summing fct_noise_daily over days gives each tenant's funnel
    exactly as the engine computes it, and the period KPIs of `kpis.py` follow."""
    table = history(20_000, days=6, tenants=4, seed=11)
    half = table.num_rows // 2
    ordered = table.sort_by("ingest_seq")
    write_events(lake, ordered.slice(0, half), prefix="one")
    run_once(echo=QUIET)
    write_events(lake, ordered.slice(half), prefix="two")  # an incremental second run
    run_once(echo=QUIET)
    con = published()
    full = correlate(table, SettingsTimeline())
    sums = {r["tenant_id"]: r for r in rows(con, """
        SELECT tenant_id, sum(events_accepted) AS events_accepted, sum(duplicates) AS duplicates,
               sum(alerts) AS alerts, sum(incidents) AS incidents,
               sum(below_threshold) AS below_threshold, sum(too_late) AS too_late,
               sum(clock_skew) AS clock_skew, sum(orphan_resolved) AS orphan_resolved,
               sum(missing_asset) AS missing_asset, sum(stale_resolves) AS stale_resolves,
               sum(recurring_incidents) AS recurring, sum(flapping_incidents) AS flapping,
               sum(resolved_incidents) AS resolved
        FROM marts.fct_noise_daily GROUP BY tenant_id""")}
    assert set(sums) == set(full.funnel)
    for tenant, funnel in full.funnel.items():
        got = sums[tenant]
        assert {k: int(got[k]) for k in funnel} == funnel, tenant
        tenant_incidents = full.incidents.filter(pc.equal(full.incidents.column("tenant_id"),
                                                          tenant))
        live = kpis.visible_incidents(tenant_incidents)
        assert int(got["recurring"]) == kpis.recurring(live)
        assert int(got["flapping"]) == int((live["flap_count"] >= 1).sum())
        assert int(got["resolved"]) == int((live["status"] == "resolved").sum())
    # the same incidents, ids included, as a full recompute
    ids = {r["incident_id"] for r in rows(con, "SELECT incident_id FROM marts.fct_incidents")}
    assert ids == set(full.incidents.column("incident_id").to_pylist())
    assert platform_settings().resolved_warehouse_path.exists()


def test_events_helper_defaults() -> None:
    table = events([{"id": "x", "t": at("00:00:00")}])
    assert table.column("received_at")[0].as_py() == DAY + timedelta(seconds=1)
