"""MSP portfolio: every client on one screen, worst first, and the MSP roll-up."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import cards, charts, data, filters
from dashboards import formats as f

SORTS = {
    "Noise reduction (lowest first)": (["noise_reduction", "incidents"], [True, False]),
    "Patch compliance (lowest first)": (["compliance_pct", "critical_noncompliant_count"],
                                        [True, False]),
    "Incidents (most first)": (["incidents", "noise_reduction"], [False, True]),
}

st.title("MSP portfolio")
viewer = filters.viewer()
latest = data.latest_day()
span = filters.period(latest)
if span is None or not viewer.tenants:
    st.info("No client has events yet." if viewer.tenants else
            "No client is visible to you. Ask the MSP administrator for access.")
    st.stop()
start, end = span
st.caption(f"Alert noise over {start} – {end} (UTC days of event time); patch compliance "
           "at each client's latest daily snapshot.")

clients = data.portfolio(list(viewer.tenants), start, end)
active = clients[clients["events_accepted"] > 0]

if viewer.every_client:
    st.subheader("MSP roll-up")
    events, incidents = int(active["events_accepted"].sum()), int(active["incidents"].sum())
    weighted = 1 - incidents / events if events else None
    ratios = active["noise_reduction"].dropna()
    unweighted = float(ratios.mean()) if len(ratios) else None
    patched = clients.dropna(subset=["in_scope_nodes"])
    compliant = int(patched["compliant_nodes"].sum())
    in_scope = int(patched["in_scope_nodes"].sum())
    cards.metric_row([
        {"label": "Noise reduction, weighted", "value": f.pct(weighted),
         "formula": "1 − ΣI / ΣE_acc", "worked": f"1 − {f.count(incidents)} / {f.count(events)}"},
        {"label": "Noise reduction, unweighted", "value": f.pct(unweighted),
         "formula": "mean over clients of (1 − I / E_acc)",
         "worked": f"mean of {len(ratios)} clients"},
        {"label": "Incidents (I)", "value": f.count(incidents),
         "formula": "Σ counted incidents started", "worked": f"from {f.count(events)} events"},
        {"label": "Fleet patch compliance", "value": f.pct(compliant / in_scope if in_scope
                                                           else None),
         "formula": "Σ compliant / Σ in-scope nodes",
         "worked": f"{f.count(compliant)} / {f.count(in_scope)}"},
    ])
    daily = data.msp_daily(start, end)
    if len(daily):
        charts.daily_lines(
            daily.assign(weighted=daily["noise_reduction_event_weighted"] * 100,
                         unweighted=daily["noise_reduction_tenant_mean"] * 100),
            "day", {"weighted": "event-weighted: 1 − ΣI / ΣE_acc",
                    "unweighted": "unweighted: mean over clients of (1 − I / E_acc)"},
            "noise reduction per day, %")

st.subheader("Clients, worst first")
order = st.selectbox("Sort by", list(SORTS), key="portfolio_sort", width=320)
columns, ascending = SORTS[order or next(iter(SORTS))]
table = clients.sort_values(columns, ascending=ascending, na_position="last")
table = table.assign(
    client=table["name"].where(table["name"] == table["tenant_id"],
                               table["name"] + " (" + table["tenant_id"] + ")"),
    noise_reduction_pct=table["noise_reduction"] * 100,
    compliant=[f"{f.count(c)} / {f.count(n)}" if not pd.isna(n) else f.MISSING
               for c, n in zip(table["compliant_nodes"], table["in_scope_nodes"], strict=True)],
)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    placeholder=f.MISSING,
    column_order=["client", "noise_reduction_pct", "noise_trend_pct", "events_accepted",
                  "incidents", "incidents_trend", "open_incidents", "compliance_pct",
                  "compliance_trend", "compliant", "critical_noncompliant_count",
                  "oldest_scan_age_hours"],
    column_config={
        "client": st.column_config.TextColumn("Client", pinned=True),
        "noise_reduction_pct": st.column_config.ProgressColumn(
            "Noise reduction", help="1 − I / E_acc over the period", format="%.1f%%",
            min_value=0, max_value=100, width=125),
        "noise_trend_pct": st.column_config.LineChartColumn("per day", width="small"),
        "events_accepted": st.column_config.NumberColumn("Events", format="%d", width="small",
                                                         help="E_acc: events accepted"),
        "incidents": st.column_config.NumberColumn("Incidents", format="%d", width="small",
                                                   help="I: counted incidents started"),
        "incidents_trend": st.column_config.BarChartColumn("per day", width="small"),
        "open_incidents": st.column_config.NumberColumn("Open", format="%d", width="small"),
        "compliance_pct": st.column_config.ProgressColumn(
            "Patch compliance", help="100 × compliant / in-scope nodes, latest snapshot",
            format="%.1f%%", min_value=0, max_value=100, width=125),
        "compliance_trend": st.column_config.LineChartColumn("30 days", width="small"),
        "compliant": st.column_config.TextColumn("Compliant", width="small"),
        "critical_noncompliant_count": st.column_config.NumberColumn(
            "Critical", format="%d", width="small",
            help="Σ CriticalNonCompliantCount over in-scope nodes"),
        "oldest_scan_age_hours": st.column_config.NumberColumn(
            "Oldest scan (h)", format="%.0f", width="small"),
    },
)
st.caption("Noise reduction = 1 − I / E_acc per client over the period (I: counted "
           "incidents started, E_acc: events accepted). Compliance % = 100 × compliant / "
           "in-scope nodes; never-scanned nodes count as not compliant. A blank compliance "
           "means no AWS account is registered for the client.")
cards.footer()
