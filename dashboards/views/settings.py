"""Settings and what-if: a client's correlation settings, and a backtest of other values
(window, key, threshold) on its recent events before anyone changes anything."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from dashboards import cards, charts, data, filters, whatif
from dashboards import formats as f
from warehouse.correlation_settings import CorrelationSettings, parse_duration

WINDOWS = ["1m", "2m", "5m", "10m", "15m", "20m", "30m", "45m", "1h", "2h", "4h", "8h", "12h",
           "24h"]
KEY_FIELDS = ["asset", "signature", "source"]
REPLAY_DAYS = {"Last day": 1, "Last 3 days": 3, "Last 7 days": 7}

st.title("Settings and what-if")
tenant = filters.client(filters.viewer())
row = data.tenant_settings(tenant) if tenant else None
if tenant is None or row is None:
    st.info("Choose a client.")
    cards.footer()
    st.stop()

current = whatif.settings_of(row)
st.subheader("Current correlation settings")
st.caption(f"**{filters.display_name(tenant)}** · version {row['settings_version']}"
           + (f", in force since {pd.Timestamp(row['settings_effective_at']):%Y-%m-%d %H:%M} UTC"
              if row["settings_version"] != "v0" else " (the defaults of SEMANTICS.md)")
           + f" · {f.count(row['events_total'])} events received")
st.dataframe(pd.DataFrame([
    ("Window W (R5)", f.window(row["window_seconds"]), "join while t ≤ last_activity + W"),
    ("Aggregation key (R4)", ", ".join(current.key), "tenant | norm(field) | …"),
    ("Threshold N (R13)", str(current.threshold), "member events before an incident is visible"),
    ("Cap M (R6)", f.window(row["cap_seconds"]), "t > first_seen + M opens a linked incident"),
    ("Lateness L (R9)", f.window(row["lateness_seconds"]), "older events are too late"),
    ("Stale after T_stale (R8)", f.window(row["stale_after_seconds"]), "silent firing → stale"),
    ("Clock skew F (R9)", f.window(row["clock_skew_seconds"]), "further ahead is clamped"),
], columns=["Setting", "Value", "Meaning"]), hide_index=True, width="stretch")

st.subheader("What if?")
st.caption("Replays the client's recent events (from `marts.fct_incident_events`) through the "
           "correlation engine twice, under the current settings and under the proposed ones, "
           "and compares incidents and noise reduction. Nothing is changed.")
window_now = f.window(row["window_seconds"])
windows = sorted(set(WINDOWS) | {window_now}, key=lambda w: parse_duration(w))
# Widget keys carry the tenant: each client's form starts from its own settings.
with st.form(f"whatif_{tenant}"):
    a, b, c, d = st.columns(4)
    window = a.select_slider("Window W", windows, value=window_now, key=f"whatif_window_{tenant}")
    key = b.multiselect("Key fields", KEY_FIELDS + [k for k in current.key if k not in KEY_FIELDS],
                        default=list(current.key), key=f"whatif_key_{tenant}",
                        accept_new_options=True, help="asset, signature, source, or type "
                        "label:<name> to key on a label")
    threshold = c.number_input("Threshold N", min_value=1, max_value=1000,
                               value=int(current.threshold), step=1,
                               key=f"whatif_threshold_{tenant}")
    span_label = d.selectbox("Replay", list(REPLAY_DAYS), index=1, key=f"whatif_days_{tenant}")
    submitted = st.form_submit_button("Run the backtest", type="primary")


_KPIS: list[tuple[str, tuple[str, ...], Callable[[Any], str], str]] = [
    ("Correlation compression", ("correlation_compression", "value"), f.pct,
     "1 - I / A"),
    ("Events per incident, mean", ("events_per_incident", "mean", "value"), f.number, "E_u / I"),
    ("Alerts per incident, mean", ("alerts_per_incident", "mean", "value"), f.number, "A / I"),
    ("Flap rate", ("flap_rate", "value"), f.pct, "incidents with flap_count >= 1 / I"),
    ("MTTR p50", ("mttr", "p50_seconds"), f.duration, "resolved_at - first_seen"),
    ("Below threshold", ("funnel", "below_threshold"), f.count, "S_below_threshold (R13)"),
]


def proposal() -> CorrelationSettings | None:
    try:
        return current.with_changes({"window": window, "key": list(key),
                                     "threshold": int(threshold)})
    except ValueError as exc:
        st.error(f"Not a valid setting: {exc}")
        return None


def show(result: whatif.Backtest, proposed: CorrelationSettings) -> None:
    cmp: dict[str, Any] = result.comparison
    inc, nr = cmp["incidents"], cmp["noise_reduction"]
    before, after = result.current, result.proposed
    st.caption(f"{f.count(result.events)} events of {result.start} – {result.end} replayed.")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Incidents (I), proposed", f.count(inc["after"]),
              delta=f"{inc['after'] - inc['before']:+,} vs {f.count(inc['before'])} now",
              delta_color="inverse", border=True)
    m2.metric("Noise reduction, proposed", f.pct(nr["after"]),
              delta=_points(nr["before"], nr["after"]), border=True)
    m2.caption(f"`{nr['formula']}`, now {f.pct(nr['before'])}")
    m3.metric("Incidents merged", f.count(len(cmp["merges"])), border=True)
    m3.caption("current incidents joined into one under the proposal")
    m4.metric("Incidents split", f.count(len(cmp["splits"])), border=True)
    m4.caption("current incidents split in two or more")
    cards.kpi_table([(name, fmt(_value(before, path)), fmt(_value(after, path)), formula)
                     for name, path, fmt, formula in _KPIS],
                    columns=("KPI", "Current settings", "Proposed settings", "Formula"))
    if len(result.daily):
        charts.daily_bars(result.daily, "day", {"current": "current settings",
                                                "proposed": "proposed settings"},
                          "incidents started")
    if cmp["merges"]:
        st.markdown("**Incidents the proposal would merge** (first 10)")
        merged = pd.DataFrame(cmp["merges"][:10])
        st.dataframe(merged, hide_index=True, width="stretch",
                     column_order=["agg_key", "first_seen", "event_count", "from"],
                     column_config={"agg_key": "key", "first_seen": "first seen",
                                    "event_count": "events (proposed)",
                                    "from": "current incidents it joins"})
    st.markdown("To apply it (a new settings version, R15):")
    st.code(f"aw tenants set {tenant} --window {f.window(proposed.window.total_seconds())} "
            f"--key {','.join(proposed.key)} --threshold {proposed.threshold}", language="bash")




def _value(kpis: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = kpis
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _points(before: float | None, after: float | None) -> str | None:
    if before is None or after is None:
        return None
    return f"{(after - before) * 100:+.1f} points"


if submitted or st.session_state.get(f"whatif_ran_{tenant}"):
    st.session_state[f"whatif_ran_{tenant}"] = True
    proposed = proposal()
    latest = data.latest_day(tenant)
    longest = max(REPLAY_DAYS.values())
    per_day = (data.events_per_day(tenant, latest - timedelta(days=longest - 1), latest)
               if latest else pd.DataFrame())
    days = whatif.replay_days(per_day, REPLAY_DAYS[span_label or "Last 3 days"])
    if proposed is not None and days is None:
        st.info("No events to replay for this client yet.")
    elif proposed is not None and days is not None:
        with st.spinner("Replaying…"):
            result = whatif.cached_run(data.snapshot(), tenant, days[0], days[1],
                                       current.to_json(), proposed.to_json())
        show(result, proposed)
cards.footer()
