"""The filters pages share: the client (tenant) and the period.

The client selector offers only the clients the viewer may see (`access`), keeps its value
across pages (`persist_state="session"`) and in the URL (`?tenant=acme`, so a view can be
shared); a URL naming a client the viewer may not see is ignored by the widget, and
`client()` checks the answer against the allowed list again before any query runs.
"""

from __future__ import annotations

from datetime import date, timedelta

import streamlit as st

from dashboards import access, data
from dashboards.access import Access

PERIODS = {"Last 7 days": 7, "Last 14 days": 14, "Last 30 days": 30, "Last 90 days": 90}


def viewer() -> Access:
    """The viewer's access to the warehouse's tenants."""
    return access.current(data.tenants()["tenant_id"].tolist())


def client(allowed: Access) -> str | None:
    """The client chosen in the sidebar, or None (with a message) when there is none."""
    if not allowed.tenants:
        st.warning("No client is visible to you. Ask the MSP administrator for access.")
        return None
    # Options are tenant ids, so the URL reads `?tenant=acme` (a bound widget writes the
    # displayed option into the URL).
    chosen = st.sidebar.selectbox("Client", allowed.tenants, key="tenant",
                                  bind="query-params", persist_state="session")
    if chosen is None or not allowed.allows(chosen):
        return None
    return str(chosen)


def display_name(tenant_id: str) -> str:
    """"Acme Corp (acme)", or the id alone when the tenant has no other name."""
    names = data.tenants().set_index("tenant_id")["name"]
    name = str(names.get(tenant_id, tenant_id))
    return tenant_id if name == tenant_id else f"{name} ({tenant_id})"


def period(latest: date | None, key: str = "period") -> tuple[date, date] | None:
    """The period (whole UTC days) ending at `latest`, chosen in the sidebar."""
    if latest is None:
        return None
    label = st.sidebar.selectbox("Period", list(PERIODS), key=key, persist_state="session")
    days = PERIODS[label or "Last 7 days"]
    return latest - timedelta(days=days - 1), latest
