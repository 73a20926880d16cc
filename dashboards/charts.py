"""Daily charts (altair): one point or bar per UTC day, labelled series, a y axis that
starts where the data does (a noise reduction moving between 76 % and 82 % is not drawn as a
flat line at the top of 0-100)."""

from __future__ import annotations

from collections.abc import Mapping

import altair as alt
import pandas as pd
import streamlit as st

DAY_AXIS = alt.Axis(format="%b %d", labelAngle=0, tickCount="day", title=None)
LEGEND = alt.Legend(orient="bottom", title=None, labelLimit=0)


def _long(frame: pd.DataFrame, x: str, series: Mapping[str, str]) -> pd.DataFrame:
    """`frame[x]` and the `series` columns as (day, series label, value) rows."""
    wide = frame[[x, *series]].rename(columns={x: "day", **series})
    wide["day"] = pd.to_datetime(wide["day"])
    return wide.melt("day", var_name="series", value_name="value").dropna(subset=["value"])


def daily_lines(frame: pd.DataFrame, x: str, series: Mapping[str, str], y_title: str,
                height: int = 220, value_format: str = ".1f") -> None:
    """One line per series (`column -> label`), a point per day."""
    data = _long(frame, x, series)
    chart = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("day:T", axis=DAY_AXIS),
        y=alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=False, nice=True)),
        color=alt.Color("series:N", legend=LEGEND, sort=list(series.values())),
        tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), "series:N",
                 alt.Tooltip("value:Q", format=value_format)])
    st.altair_chart(chart, height=height, width="stretch")


def daily_bars(frame: pd.DataFrame, x: str, series: Mapping[str, str], y_title: str,
               height: int = 220) -> None:
    """Bars per day, side by side when there are several series."""
    data = _long(frame, x, series)
    data["date"] = data["day"].dt.strftime("%b %d")
    encoding = {
        "x": alt.X("date:O", title=None, sort=None, axis=alt.Axis(labelAngle=0)),
        "y": alt.Y("value:Q", title=y_title),
        "color": alt.Color("series:N", legend=LEGEND if len(series) > 1 else None,
                           sort=list(series.values())),
        "tooltip": [alt.Tooltip("day:T", format="%Y-%m-%d"), "series:N", "value:Q"],
    }
    if len(series) > 1:
        encoding["xOffset"] = alt.XOffset("series:N", sort=list(series.values()))
    st.altair_chart(alt.Chart(data).mark_bar().encode(**encoding), height=height,
                    width="stretch")
