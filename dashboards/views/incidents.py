"""Incidents explorer: a client's incidents filtered by status, severity and time, worst
first, and one incident's timeline with every event and why it joined."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import cards, data, filters
from dashboards import formats as f

SEVERITY_COLORS = {"critical": "red", "high": "orange", "warning": "yellow", "info": "blue"}
STATUS_COLORS = {"open": "red", "stale": "gray", "resolved": "green"}

st.title("Incidents explorer")
tenant = filters.client(filters.viewer())
latest = data.latest_day(tenant) if tenant else None
if tenant is None or latest is None:
    st.info("This client has no incidents yet." if tenant else "Choose a client.")
    cards.footer()
    st.stop()

when, status, severity, uncounted = st.columns([2, 2, 2, 1.3], vertical_alignment="bottom")
chosen = when.date_input("Started between", (latest - timedelta(days=6), latest),
                         min_value=latest - timedelta(days=data.MAX_DAYS - 1), max_value=latest,
                         key="incident_days")
statuses = status.multiselect("Status", data.STATUSES, default=data.STATUSES,
                              key="incident_status")
severities = severity.multiselect("Severity", data.SEVERITIES, default=data.SEVERITIES,
                                  key="incident_severity")
include = uncounted.checkbox("Merged, below threshold", key="incident_uncounted",
                             help="Also list incidents that are not counted as I: merged into "
                                  "an earlier one (R10) or below the threshold N (R13).")
days = chosen if isinstance(chosen, tuple) and len(chosen) == 2 else (latest, latest)
start, end = (d if isinstance(d, date) else latest for d in days)

found = data.incidents(tenant, start, end, statuses, severities, include)
total = int(found["total"].iloc[0]) if len(found) else 0
st.caption(f"{f.count(total)} incident(s) of **{filters.display_name(tenant)}** started "
           f"{start} – {end}"
           + (f"; the {f.count(len(found))} worst shown" if total > len(found) else "")
           + ". Worst first: severity, then open before stale before resolved, newest first.")
st.dataframe(found, hide_index=True, width="stretch", height=300, placeholder=f.MISSING,
             column_order=["severity", "status", "first_seen", "asset", "signature", "sources",
                           "event_count", "alert_count", "flap_count", "seconds_to_resolve",
                           "incident_id"],
             column_config={
                 "first_seen": st.column_config.DatetimeColumn("first seen (UTC)",
                                                               format="YYYY-MM-DD HH:mm:ss"),
                 "seconds_to_resolve": st.column_config.NumberColumn("time to resolve (s)",
                                                                     format="%.0f"),
             })


def label(row: dict[str, Any]) -> str:
    return (f"{row['severity']} · {row['status']} · {row['asset']} / {row['signature']} · "
            f"{pd.Timestamp(row['first_seen']):%Y-%m-%d %H:%M} · {row['incident_id']}")


st.subheader("Timeline")
options = found["incident_id"].tolist()
rows = {r["incident_id"]: r for r in found.to_dict("records")}
pick, paste = st.columns([3, 2])
picked = pick.selectbox("Incident", options, key="incident_pick",
                        format_func=lambda i: label(rows[i]) if i in rows else i)
pasted = paste.text_input("…or an incident id", key="incident", bind="query-params",
                          placeholder="inc_…").strip()
incident_id = pasted or picked
incident = data.incident(tenant, incident_id) if incident_id else None
if incident is None:
    st.info(f"No incident {incident_id!r} for {tenant}." if incident_id else
            "No incident matches the filters.")
    cards.footer()
    st.stop()

st.markdown(f"**{incident['asset']} / {incident['signature']}** · severity "
            f":{SEVERITY_COLORS.get(incident['severity'], 'gray')}-badge[{incident['severity']}]"
            f" (highest member) · status "
            f":{STATUS_COLORS.get(incident['status'], 'gray')}-badge[{incident['status']}]"
            f" · first seen {pd.Timestamp(incident['first_seen']):%Y-%m-%d %H:%M:%S} UTC")
cards.metric_row([
    {"label": "Events", "value": f.count(incident["event_count"]), "formula": "member events"},
    {"label": "Alerts", "value": f.count(incident["alert_count"]),
     "formula": "stateful occurrences + points"},
    {"label": "Flaps", "value": f.count(incident["flap_count"]), "formula": "R7 reopenings"},
    {"label": "Time to resolve", "value": f.duration(incident["seconds_to_resolve"]),
     "formula": "resolved_at − first_seen"},
])
notes = [f"key `{incident['agg_key']}`", f"sources {incident['sources']}",
         f"settings {incident['settings_version']}"]
if incident["merged_into"]:
    notes.append(f"merged into `{incident['merged_into']}` (R10): not counted")
if incident["linked_to"]:
    notes.append(f"linked to `{incident['linked_to']}` (opened at the cap, R6)")
if not incident["visible"]:
    notes.append("below the threshold N (R13): not counted")
st.caption(" · ".join(notes))

first_day = pd.Timestamp(incident["first_seen"]).date()
last_day = pd.Timestamp(incident["last_activity"]).date()
events = data.incident_events(tenant, incident["incident_id"], first_day, last_day)
if len(events):
    st.altair_chart(
        alt.Chart(events).mark_circle(size=90).encode(
            x=alt.X("event_time:T", title="event time (UTC)"),
            y=alt.Y("rule:N", title="rule"),
            color=alt.Color("status:N"),
            tooltip=["event_time:T", "source", "status", "rule", "join_reason"]),
        height=180, width="stretch")
st.dataframe(events, hide_index=True, width="stretch", placeholder=f.MISSING,
             column_order=["event_time", "source", "status", "severity", "rule",
                           "join_reason", "gap_seconds", "received_at", "event_id"],
             column_config={
                 "event_time": st.column_config.DatetimeColumn("event time (UTC)",
                                                               format="YYYY-MM-DD HH:mm:ss"),
                 "received_at": st.column_config.DatetimeColumn("received (UTC)",
                                                                format="YYYY-MM-DD HH:mm:ss"),
                 "join_reason": st.column_config.TextColumn("why (join reason)", width="large"),
             })
st.caption("One row per member event in event-time order (ties by arrival), with the rule "
           "that placed it (`marts.fct_incident_events`).")
cards.footer()
