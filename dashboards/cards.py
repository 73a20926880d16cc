"""KPI cards and tables that always print their formula (SEMANTICS.md: "every report prints
its formula"), and the friendly empty states."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from dashboards import data

NO_DATA_YET = ("No data yet: nothing has been published to the warehouse. Run "
               "`aw pipeline run` (or start everything with demo data: `aw up --demo`), "
               "then reload this page.")


def metric(label: str, value: str, formula: str | None = None, worked: str | None = None,
           help: str | None = None) -> None:
    """A metric with its formula, and the formula with the numbers put in, under it."""
    st.metric(label, value, help=help, border=True)
    if formula:
        st.caption(f"`{formula}`" + (f" = {worked}" if worked else ""))


def metric_row(cards: Sequence[dict[str, Any]]) -> None:
    """Metrics side by side; each dict holds `metric`'s arguments."""
    for column, card in zip(st.columns(len(cards)), cards, strict=True):
        with column:
            metric(**card)


def kpi_table(rows: Sequence[tuple[str, str, str, str]],
              columns: Sequence[str] = ("KPI", "Value", "Formula", "Inputs")) -> None:
    """KPI, value, formula, inputs (or the given columns): a KPI table, every row shown."""
    st.dataframe(pd.DataFrame(rows, columns=list(columns)), hide_index=True, width="stretch",
                 height=35 * (len(rows) + 1) + 3)


def footer() -> None:
    """Which snapshot the page shows."""
    info = data.published()
    if info:
        at = pd.Timestamp(info["published_at"]).strftime("%Y-%m-%d %H:%M UTC")
        st.sidebar.caption(f"Warehouse snapshot published {at}.")
