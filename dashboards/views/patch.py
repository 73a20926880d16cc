"""Patch compliance of one client (AWS Systems Manager): the scorecard at the latest daily
snapshot, its 30-day trend, the non-compliant nodes, each patch group, and the assets that
are both noisy and unpatched."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import cards, charts, data, filters
from dashboards import formats as f

st.title("Patch compliance")
tenant = filters.client(filters.viewer())
snapshot_date = data.latest_snapshot_date(tenant) if tenant else None
if tenant is None or snapshot_date is None:
    if tenant:
        st.info(f"No patch data for {tenant}: register its AWS account "
                f"(`aw tenants set {tenant} --aws-account ACCOUNT_ID`, docs/ssm-setup.md); "
                "the next daily snapshot fills this page.")
    else:
        st.info("Choose a client.")
    cards.footer()
    st.stop()

trend = data.compliance_daily(tenant, snapshot_date, days=30)
now = trend.iloc[-1]
st.caption(f"**{filters.display_name(tenant)}** · snapshot of {snapshot_date} (taken "
           f"{pd.Timestamp(now['snapshot_at']):%Y-%m-%d %H:%M} UTC) · {int(now['accounts'])} "
           f"account(s), {int(now['regions'])} region(s)"
           + (f" · {int(now['collection_errors'])} collection error(s): see the Dagster run"
              if now["collection_errors"] else ""))
cards.metric_row([
    {"label": "Compliance", "value": f.pct100(now["compliance_pct"]),
     "formula": "100 × compliant / in-scope nodes",
     "worked": f"100 × {int(now['compliant_nodes'])} / {int(now['in_scope_nodes'])}"},
    {"label": "Compliant nodes", "value": f"{int(now['compliant_nodes'])} / "
                                          f"{int(now['in_scope_nodes'])}",
     "formula": "status COMPLIANT / in scope", "worked": "never scanned = not compliant"},
    {"label": "Critical patches missing", "value": f.count(now["critical_noncompliant_count"]),
     "formula": "Σ CriticalNonCompliantCount",
     "worked": f"on {int(now['nodes_missing_critical'])} node(s)"},
    {"label": "Age of the last scan", "value": f.hours(now["oldest_scan_age_hours"]),
     "formula": "oldest per-node (snapshot − last scan)",
     "worked": f"newest {f.hours(now['newest_scan_age_hours'])}"},
    {"label": "Compliance, strict", "value": f.pct100(now["compliance_pct_strict"]),
     "formula": "a stale scan (> 7 d) counts as not compliant",
     "worked": f"{int(now['stale_scan_nodes'])} stale, {int(now['never_scanned_nodes'])} "
               "never scanned"},
])
st.caption(f"In scope: managed nodes not terminated nor stopped ({int(now['out_of_scope_nodes'])}"
           f" out of scope); {int(now['hybrid_nodes'])} hybrid (`mi-`) node(s).")

st.subheader("30-day trend")
if len(trend) > 1:
    charts.daily_lines(trend, "snapshot_date",
                       {"compliance_pct": "compliance: 100 × compliant / in scope",
                        "compliance_pct_strict": "strict: a stale scan is not compliant"},
                       "% of in-scope nodes")
else:
    st.caption("One snapshot so far: the trend fills in with one point a day.")

left, right = st.columns([3, 2])
with left:
    st.subheader("Non-compliant nodes")
    nodes = data.noncompliant_nodes(tenant, snapshot_date)
    st.dataframe(nodes, hide_index=True, width="stretch",
                 column_order=["computer_name", "node_id", "compliance_status",
                               "critical_noncompliant_count", "missing_count", "failed_count",
                               "installed_pending_reboot_count", "patch_group", "scan_age_hours",
                               "never_scanned", "account_id", "region"],
                 column_config={"critical_noncompliant_count": st.column_config.NumberColumn(
                     "critical"), "scan_age_hours": st.column_config.NumberColumn(
                     "scan age (h)", format="%.0f")})
with right:
    st.subheader("Patch groups")
    groups = data.patch_groups(tenant, snapshot_date)
    st.dataframe(groups, hide_index=True, width="stretch",
                 column_config={"compliance_pct": st.column_config.ProgressColumn(
                     "compliance", format="%.1f%%", min_value=0, max_value=100)})

st.subheader("Noisy and unpatched")
risk = data.risk_assets(tenant)
st.caption("Assets whose alerts joined incidents in the client's last 7 days of alert data and "
           "that are in-scope nodes missing critical patches at the latest snapshot, matched "
           "by node id, computer name, short host name or a host label (`matched_by`).")
if len(risk):
    st.dataframe(risk, hide_index=True, width="stretch")
else:
    st.caption("None: no alerting asset matches a node that misses critical patches.")
cards.footer()
