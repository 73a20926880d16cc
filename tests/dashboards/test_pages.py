"""Every page on the fixture warehouse (AppTest): the values shown equal what the marts say."""

from __future__ import annotations

from datetime import timedelta
from statistics import mean

import pytest

from dashboards import formats as f
from tests.dashboards.conftest import metrics, one, open_page, rows
from tests.dashboards.fixture_warehouse import KNOWN_DAY

WEEK = timedelta(days=6)  # the default period: the last 7 days, both ends included


def test_portfolio_rollup_weighted_and_unweighted(marts) -> None:
    at = open_page("portfolio")
    end = one(marts, "SELECT max(day) AS d FROM marts.fct_noise_daily")["d"]
    per_client = rows(marts, """SELECT tenant_id, sum(incidents) AS i, sum(events_accepted) AS e
                                FROM marts.fct_noise_daily WHERE day BETWEEN ? AND ?
                                GROUP BY tenant_id""", end - WEEK, end)
    incidents = sum(r["i"] for r in per_client)
    events = sum(r["e"] for r in per_client)
    shown = metrics(at)
    assert shown["Noise reduction, weighted"] == f.pct(1 - incidents / events)
    assert shown["Noise reduction, unweighted"] == f.pct(
        mean(1 - r["i"] / r["e"] for r in per_client))
    assert shown["Incidents (I)"] == f.count(incidents)
    latest = rows(marts, """SELECT compliant_nodes, in_scope_nodes
                            FROM marts.fct_patch_compliance_daily
                            QUALIFY row_number() OVER (PARTITION BY tenant_id
                                                       ORDER BY snapshot_date DESC) = 1""")
    compliant = sum(r["compliant_nodes"] for r in latest)
    in_scope = sum(r["in_scope_nodes"] for r in latest)
    assert shown["Fleet patch compliance"] == f.pct(compliant / in_scope)
    assert any(f"{compliant} / {in_scope}" in c.value for c in at.caption)
    # the formulas are printed, and both roll-ups are labelled
    assert any("1 − ΣI / ΣE_acc" in c.value for c in at.caption)
    assert any("mean over clients of (1 − I / E_acc)" in c.value for c in at.caption)


def test_portfolio_lists_every_client_worst_first(marts) -> None:
    at = open_page("portfolio")
    table = at.dataframe[0].value
    assert table["tenant_id"].tolist()[-1] == "umbrella"  # no events: last, not "worst"
    assert set(table["tenant_id"]) == {"acme", "globex", "hooli", "initech", "umbrella"}
    reductions = table["noise_reduction"].dropna().tolist()
    assert len(reductions) == 4 and reductions == sorted(reductions)  # lowest first
    acme = table.set_index("tenant_id").loc["acme"]
    scorecard = one(marts, """SELECT compliance_pct, critical_noncompliant_count
                              FROM marts.fct_patch_compliance_daily WHERE tenant_id = 'acme'
                              ORDER BY snapshot_date DESC LIMIT 1""")
    assert acme["compliance_pct"] == pytest.approx(scorecard["compliance_pct"])
    assert acme["critical_noncompliant_count"] == scorecard["critical_noncompliant_count"]
    trend = rows(marts, """SELECT compliance_pct FROM marts.fct_patch_compliance_daily
                           WHERE tenant_id = 'acme' ORDER BY snapshot_date""")
    assert list(acme["compliance_trend"]) == pytest.approx([r["compliance_pct"] for r in trend])
    assert table.set_index("tenant_id").loc["hooli", "compliant"] == f.MISSING  # no AWS account

    at.selectbox(key="portfolio_sort").set_value("Patch compliance (lowest first)").run()
    assert at.dataframe[0].value["tenant_id"].iloc[0] == "initech"  # 40 % today


def test_scorecard_funnel_and_kpis_of_acme(marts) -> None:
    at = open_page("scorecard", tenant="acme")
    end = one(marts, "SELECT max(day) AS d FROM marts.fct_noise_daily WHERE tenant_id = ?",
              "acme")["d"]
    day = one(marts, """SELECT sum(events_accepted) AS e, sum(duplicates) AS d,
                               sum(unique_events) AS u, sum(alerts) AS a, sum(incidents) AS i,
                               sum(flapping_incidents) AS flapping
                        FROM marts.fct_noise_daily
                        WHERE tenant_id = 'acme' AND day BETWEEN ? AND ?""", end - WEEK, end)
    shown = metrics(at)
    assert shown["Events accepted (E_acc)"] == f.count(day["e"])
    assert shown["Exact duplicates (D_x)"] == f.count(day["d"])
    assert shown["Unique events (E_u)"] == f.count(day["u"]) == f.count(day["e"] - day["d"])
    assert shown["Alerts (A)"] == f.count(day["a"])
    assert shown["Incidents (I)"] == f.count(day["i"])
    assert shown["Noise reduction"] == f.pct(1 - day["i"] / day["e"])
    assert shown["Dedup rate"] == f.pct(1 - day["a"] / day["u"])
    assert shown["Correlation compression"] == f.pct(1 - day["i"] / day["a"])
    assert shown["Flap rate"] == f.pct(day["flapping"] / day["i"])
    captions = [c.value for c in at.caption]
    assert f"`1 - I / E_acc` = 1 − {f.count(day['i'])} / {f.count(day['e'])}" in captions
    mttr = one(marts, """SELECT quantile_cont(seconds_to_resolve, 0.5) AS p50,
                                quantile_cont(seconds_to_resolve, 0.9) AS p90
                         FROM marts.fct_incidents WHERE tenant_id = 'acme' AND counted
                           AND status = 'resolved' AND day BETWEEN ? AND ?""", end - WEEK, end)
    assert shown["MTTR p50"] == f.duration(mttr["p50"])
    kpi = at.dataframe[2].value.set_index("KPI")
    assert kpi.loc["MTTR p90", "Value"] == f.duration(mttr["p90"])
    assert kpi.loc["Alerts per incident, mean", "Value"] == f.number(day["a"] / day["i"])
    assert kpi.loc["Events per incident, mean", "Formula"] == "E_u / I"


def test_scorecard_tuning_hints(marts) -> None:
    at = open_page("scorecard", tenant="acme")
    frames = [d.value for d in at.dataframe]
    keys = next(d for d in frames if "rank_by_events" in d.columns)
    expected = rows(marts, """SELECT agg_key FROM marts.fct_top_noisy_keys
                              WHERE tenant_id = 'acme' ORDER BY rank_by_events LIMIT 15""")
    assert keys["agg_key"].tolist() == [r["agg_key"] for r in expected]
    flapping = keys[keys["flaps"] > 0]
    assert len(flapping) and all(h.startswith("Flapping") for h in flapping["hint"])
    # known-4 opened an incident 901 s after web-2's last activity, W = 900 s: a near miss
    near = next(d for d in frames if "near_misses" in d.columns).set_index("agg_key")
    web2 = near.loc["acme|web-2|disk_full"]
    assert (web2["near_misses"], web2["widest_gap_seconds"]) == (1, 901.0)
    assert "a window of 16m would have merged them" in web2["hint"]


def test_incident_timeline_shows_each_event_and_why(marts) -> None:
    known = one(marts, """SELECT incident_id FROM marts.fct_incident_events
                          WHERE event_id = 'known-1'""")["incident_id"]
    at = open_page("incidents", tenant="acme",
                   incident_days=(KNOWN_DAY.date() - timedelta(days=1), KNOWN_DAY.date()))
    assert known in at.dataframe[0].value["incident_id"].tolist()
    at.text_input(key="incident").set_value(known).run()
    shown = metrics(at)
    assert (shown["Events"], shown["Alerts"], shown["Flaps"]) == ("3", "3", "0")
    assert any("severity :red-badge[critical]" in m.value for m in at.markdown)
    events = at.dataframe[1].value
    expected = rows(marts, """SELECT event_id, rule, join_reason FROM marts.fct_incident_events
                              WHERE incident_id = ? ORDER BY event_time, ingest_seq""", known)
    assert events[["event_id", "rule", "join_reason"]].to_dict("records") == expected
    assert [r["rule"] for r in expected] == ["new", "R5b", "R5b"]
    assert expected[1]["join_reason"] == (
        "joined: 135 s after the last activity, within the 900 s window (R5b)")


def test_incident_filters(marts) -> None:
    at = open_page("incidents", tenant="globex", incident_status=["resolved"],
                   incident_severity=["critical", "high"])
    found = at.dataframe[0].value
    end = one(marts, "SELECT max(day) AS d FROM marts.fct_noise_daily WHERE tenant_id = ?",
              "globex")["d"]
    expected = one(marts, """SELECT count(*) AS n FROM marts.fct_incidents
                             WHERE tenant_id = 'globex' AND counted AND status = 'resolved'
                               AND severity IN ('critical', 'high') AND day BETWEEN ? AND ?""",
                   end - WEEK, end)["n"]
    assert len(found) == expected > 0
    assert set(found["status"]) == {"resolved"}
    assert set(found["severity"]) <= {"critical", "high"}
    assert found["severity"].tolist() == sorted(found["severity"], key=["critical", "high"].index)


def test_patch_compliance_of_acme(marts) -> None:
    at = open_page("patch", tenant="acme")
    latest = one(marts, """SELECT * FROM marts.fct_patch_compliance_daily WHERE tenant_id = 'acme'
                           ORDER BY snapshot_date DESC LIMIT 1""")
    assert (latest["compliant_nodes"], latest["in_scope_nodes"]) == (8, 18)  # the demo fleet
    shown = metrics(at)
    assert shown["Compliance"] == f.pct100(latest["compliance_pct"]) == "44.4%"
    assert shown["Compliant nodes"] == "8 / 18"
    assert shown["Critical patches missing"] == f.count(latest["critical_noncompliant_count"])
    assert shown["Age of the last scan"] == f.hours(latest["oldest_scan_age_hours"])
    assert shown["Compliance, strict"] == f.pct100(latest["compliance_pct_strict"])
    nodes, groups, risk = (d.value for d in at.dataframe)
    assert len(nodes) == latest["in_scope_nodes"] - latest["compliant_nodes"]
    assert nodes["critical_noncompliant_count"].tolist() == sorted(
        nodes["critical_noncompliant_count"], reverse=True)
    assert groups.set_index("patch_group")["compliance_pct"].to_dict() == pytest.approx({
        r["patch_group"]: r["compliance_pct"] for r in rows(marts, """
            SELECT patch_group, compliance_pct FROM marts.fct_patch_compliance_group_daily
            WHERE tenant_id = 'acme' AND snapshot_date = ?""", latest["snapshot_date"])})
    assert risk[["asset", "matched_by"]].to_dict("records") == [
        {"asset": "web-2", "matched_by": "short_name"}]
    assert len(at.get("vega_lite_chart")) == 1  # the 30-day trend: 7 daily snapshots


def test_patch_compliance_without_aws_account(on_fixture) -> None:
    at = open_page("patch", tenant="hooli")
    assert "No patch data for hooli" in at.info[0].value
    assert not at.metric


def test_settings_and_backtest(marts) -> None:
    at = open_page("settings", tenant="globex")
    settings = at.dataframe[0].value.set_index("Setting")["Value"]
    assert settings["Window W (R5)"] == "10m"  # globex's version 1
    assert settings["Aggregation key (R4)"] == "asset, signature"
    at.select_slider(key="whatif_window_globex").set_value("1h")
    at.button[0].click().run()
    assert not at.exception and not at.error
    shown = {m.label: m for m in at.metric}
    delta = shown["Incidents (I), proposed"].proto.delta  # "-16 vs 306 now"
    before = int(delta.split(" vs ")[1].removesuffix(" now").replace(",", ""))
    after = int(shown["Incidents (I), proposed"].value.replace(",", ""))
    assert after < before  # a longer window merges incidents
    assert int(shown["Incidents merged"].value) > 0
    assert "aw tenants set globex --window 1h --key asset,signature --threshold 1" in \
        at.code[0].value
    table = at.dataframe[1].value
    assert list(table.columns) == ["KPI", "Current settings", "Proposed settings", "Formula"]


def test_backtest_refuses_invalid_settings(on_fixture) -> None:
    at = open_page("settings", tenant="acme")
    at.multiselect(key="whatif_key_acme").set_value([])
    at.button[0].click().run()
    assert not at.exception
    assert "key must name at least one field" in at.error[0].value


@pytest.mark.parametrize(("page", "message"), [
    ("scorecard", "This client has no events yet."),
    ("incidents", "This client has no incidents yet."),
    ("patch", "No patch data for umbrella"),
])
def test_a_client_without_data_yet(on_fixture, page: str, message: str) -> None:
    at = open_page(page, tenant="umbrella")
    assert message in at.info[0].value
    assert not at.metric and not at.dataframe


def test_backtest_of_a_client_without_events(on_fixture) -> None:
    at = open_page("settings", tenant="umbrella")
    assert at.dataframe[0].value.set_index("Setting").loc["Window W (R5)", "Value"] == "15m"
    at.button[0].click().run()
    assert not at.exception
    assert "No events to replay for this client yet." in [i.value for i in at.info]
