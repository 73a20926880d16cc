"""Client scorecard: the noise funnel, every KPI of SEMANTICS.md with its formula, the daily
trend, the noisiest keys and sources with tuning hints."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import cards, charts, data, filters, hints
from dashboards import formats as f
from warehouse.correlation.kpis import FORMULAS, one_minus, ratio

st.title("Client scorecard")
tenant = filters.client(filters.viewer())
span = filters.period(data.latest_day(tenant)) if tenant else None
if tenant is None or span is None:
    st.info("This client has no events yet." if tenant else "Choose a client.")
    cards.footer()
    st.stop()
start, end = span
st.caption(f"**{filters.display_name(tenant)}** · {start} – {end} (UTC days of event time). "
           "Period figures are sums of the client's daily rows (`marts.fct_noise_daily`).")

fn = data.funnel(tenant, start, end)
stats = data.incident_stats(tenant, start, end)
e_acc, d_x, e_u, a, i = (fn["events_accepted"], fn["duplicates"], fn["unique_events"],
                         fn["alerts"], fn["incidents"])

st.subheader("Noise funnel")
cards.metric_row([
    {"label": "Events accepted (E_acc)", "value": f.count(e_acc),
     "formula": "events accepted after auth and validation"},
    {"label": "Exact duplicates (D_x)", "value": f.count(d_x), "formula": "R2 duplicates"},
    {"label": "Unique events (E_u)", "value": f.count(e_u), "formula": "E_u = E_acc − D_x",
     "worked": f"{f.count(e_acc)} − {f.count(d_x)}"},
    {"label": "Alerts (A)", "value": f.count(a), "formula": "alert occurrences started (R3)"},
    {"label": "Incidents (I)", "value": f.count(i),
     "formula": "visible, not merged incidents started"},
])
stages = pd.DataFrame({"stage": ["Events accepted", "Unique events", "Alerts", "Incidents"],
                       "count": [e_acc, e_u, a, i]})
st.altair_chart(
    alt.Chart(stages).mark_bar().encode(
        x=alt.X("count:Q", title=None), y=alt.Y("stage:N", sort=None, title=None),
        tooltip=["stage", "count"])
    + alt.Chart(stages).mark_text(align="left", dx=4).encode(
        x="count:Q", y=alt.Y("stage:N", sort=None), text=alt.Text("count:Q", format=",")),
    height=170, width="stretch")
suppressed = pd.DataFrame([
    ("Too late (R9)", fn["too_late"], "S_too_late / E_acc"),
    ("Below threshold (R13)", fn["below_threshold"], "S_below_threshold / E_acc"),
], columns=["Suppressed: reason", "Events", "Formula"])
suppressed["Share of E_acc"] = [f.pct(ratio(n, e_acc), 2) for n in suppressed["Events"]]
other = pd.DataFrame([
    ("Orphan resolves (R12)", fn["orphan_resolved"]),
    ("Stale resolves (R11)", fn["stale_resolves"]),
    ("Clock skew clamped (R9)", fn["clock_skew"]), ("Without an asset (R4)", fn["missing_asset"]),
    ("Incidents merged (R10)", fn["merged_incidents"]),
    ("Linked incidents at the cap (R6)", fn["linked_incidents"]),
], columns=["Other outcomes", "Count"])
left, right = st.columns(2)
left.dataframe(suppressed, hide_index=True, width="stretch")
left.caption("Maintenance and quota suppression are not recorded in the marts yet "
             "(quota refusals are answered 429 and never accepted).")
right.dataframe(other, hide_index=True, width="stretch")

st.subheader("KPIs")
nr, dedup, comp = one_minus(i, e_acc), one_minus(a, e_u), one_minus(i, a)
flap = ratio(fn["flapping_incidents"], i)
cards.metric_row([
    {"label": "Noise reduction", "value": f.pct(nr), "formula": FORMULAS["noise_reduction"],
     "worked": f"1 − {f.count(i)} / {f.count(e_acc)}"},
    {"label": "Dedup rate", "value": f.pct(dedup), "formula": FORMULAS["dedup_rate"],
     "worked": f"1 − {f.count(a)} / {f.count(e_u)}"},
    {"label": "Correlation compression", "value": f.pct(comp),
     "formula": FORMULAS["correlation_compression"], "worked": f"1 − {f.count(i)} / {f.count(a)}"},
    {"label": "Flap rate", "value": f.pct(flap), "formula": "flapping incidents / I",
     "worked": f"{f.count(fn['flapping_incidents'])} / {f.count(i)}"},
    {"label": "MTTR p50", "value": f.duration(stats["mttr_p50"]),
     "formula": "p50 of resolved_at − first_seen",
     "worked": f"{f.count(stats['resolved'])} resolved"},
])
cards.kpi_table([
    ("Alerts per incident, mean", f.number(ratio(a, i)), FORMULAS["alerts_per_incident_mean"],
     f"{f.count(a)} / {f.count(i)}"),
    ("Alerts per incident, median", f.number(stats["alerts_per_incident_median"]),
     FORMULAS["alerts_per_incident_median"], f"{f.count(i)} incidents"),
    ("Events per incident, mean", f.number(ratio(e_u, i)), FORMULAS["events_per_incident_mean"],
     f"{f.count(e_u)} / {f.count(i)}"),
    ("Events per incident, median", f.number(stats["events_per_incident_median"]),
     FORMULAS["events_per_incident_median"], f"{f.count(i)} incidents"),
    ("Suppression share, too late", f.pct(ratio(fn["too_late"], e_acc), 2),
     FORMULAS["suppression_share_too_late"], f"{f.count(fn['too_late'])} / {f.count(e_acc)}"),
    ("Suppression share, below threshold", f.pct(ratio(fn["below_threshold"], e_acc), 2),
     FORMULAS["suppression_share_below_threshold"],
     f"{f.count(fn['below_threshold'])} / {f.count(e_acc)}"),
    ("MTTR mean", f.duration(stats["mttr_mean"]), FORMULAS["mttr"],
     f"{f.count(stats['resolved'])} resolved; {f.count(stats['stale'])} stale and "
     f"{f.count(stats['open'])} open shown apart"),
    ("MTTR p50", f.duration(stats["mttr_p50"]), FORMULAS["mttr"], "linear interpolation"),
    ("MTTR p90", f.duration(stats["mttr_p90"]), FORMULAS["mttr"], "linear interpolation"),
    ("Time to incident p50", f.duration(stats["time_to_incident_p50"]),
     "p50 of visible_at − first_seen (pipeline latency)", f"{f.count(i)} incidents"),
    ("Recurrence rate", f.pct(ratio(fn["recurring_incidents"], i)),
     "incidents whose key had an incident in the previous 7 days / I",
     f"{f.count(fn['recurring_incidents'])} / {f.count(i)}"),
    ("MTTA", f.MISSING, "mean, p50 of first_ack − incident start",
     "not computed: no source sends acknowledgements yet"),
])

daily = data.noise_daily(tenant, start, end)
if len(daily) > 1:
    st.subheader("Per day")
    left, right = st.columns(2)
    with left:
        charts.daily_lines(daily.assign(nr=daily["noise_reduction"] * 100), "day",
                           {"nr": "noise reduction: 1 − I / E_acc"}, "noise reduction, %",
                           height=200)
    with right:
        charts.daily_bars(daily, "day", {"incidents": "incidents (I)"}, "incidents started",
                          height=200)

st.subheader("Top noisy keys")
keys = data.top_keys(tenant)
if len(keys):
    period = (pd.Timestamp(keys["period_start"].iloc[0]).date(),
              pd.Timestamp(keys["period_end"].iloc[0]).date())
    st.caption(f"The client's last 7 days of data ({period[0]} – {period[1]}), ranked by "
               "member events; events per incident = member_events / incidents.")
    keys["hint"] = [hints.noisy_key(int(r.member_events), int(r.incidents),
                                    int(r.flapping_incidents), int(r.flaps))
                    for r in keys.itertuples()]
    st.dataframe(keys, hide_index=True, width="stretch", placeholder=f.MISSING,
                 column_order=["rank_by_events", "asset", "signature", "sources",
                               "member_events", "incidents", "events_per_incident", "flaps",
                               "hint"],
                 column_config={"rank_by_events": st.column_config.NumberColumn("#"),
                                "events_per_incident": st.column_config.NumberColumn(
                                    "events / incident", format="%.1f"),
                                "hint": st.column_config.TextColumn("Tuning hint", width="large")})
near = data.near_miss_keys(tenant, start, end)
st.markdown("**Keys that would merge under a longer window** — incidents opened with a gap "
            "just above the window W (`W < gap ≤ 2W`, rule `new` in `fct_incident_events`).")
if len(near):
    near["hint"] = [hints.near_miss(int(r.near_misses), float(r.widest_gap_seconds),
                                    float(r.window_seconds)) for r in near.itertuples()]
    st.dataframe(near, hide_index=True, width="stretch", placeholder=f.MISSING,
                 column_order=["asset", "signature", "near_misses", "median_gap_seconds",
                               "widest_gap_seconds", "window_seconds", "hint"],
                 column_config={
                     "near_misses": st.column_config.NumberColumn("near misses"),
                     "median_gap_seconds": st.column_config.NumberColumn("median gap (s)",
                                                                         format="%.0f"),
                     "widest_gap_seconds": st.column_config.NumberColumn("widest gap (s)",
                                                                         format="%.0f"),
                     "window_seconds": st.column_config.NumberColumn("W (s)", format="%.0f"),
                     "hint": st.column_config.TextColumn("Tuning hint", width="large")})
else:
    st.caption("None in this period.")

st.subheader("Sources and alert quality")
st.dataframe(data.sources(tenant, start, end), hide_index=True, width="stretch",
             column_config={
                 "noise_reduction": st.column_config.ProgressColumn(
                     "noise reduction", help="1 − incidents / events_accepted",
                     format="percent", min_value=0, max_value=1),
                 "with_asset_share": st.column_config.NumberColumn("with an asset",
                                                                   format="percent"),
                 "severity_mapped_share": st.column_config.NumberColumn(
                     "severity mapped", format="percent"),
                 "resolve_path_share": st.column_config.NumberColumn(
                     "resolve path", help="stateful: the tool can resolve it", format="percent"),
             })
st.caption("Alert quality per source: event-weighted shares of accepted, non-duplicate events "
           "with an asset, a mapped severity and a resolve path (`fct_alert_quality_daily`).")
cards.footer()
