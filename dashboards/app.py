"""Alert Whisperer dashboards: `streamlit run dashboards/app.py` (docs/dashboards.md).

The entry point of an `st.navigation` app: it sets the page up, asks for a login when
authentication is configured (`access`), shows a friendly state while nothing is published,
and runs the chosen page. Pages are thin scripts in `views/` over one data module (`data`).
"""

from __future__ import annotations

import streamlit as st

from dashboards import access, cards, data
from warehouse.publish import WarehouseNotPublished

PAGES = [
    st.Page("views/portfolio.py", title="MSP portfolio", icon=":material/dashboard:",
            default=True),
    st.Page("views/scorecard.py", title="Client scorecard", icon=":material/scoreboard:"),
    st.Page("views/incidents.py", title="Incidents explorer", icon=":material/search:"),
    st.Page("views/patch.py", title="Patch compliance", icon=":material/security_update_good:"),
    st.Page("views/settings.py", title="Settings and what-if", icon=":material/tune:"),
]

st.set_page_config(page_title="Alert Whisperer", page_icon=":material/notifications_paused:",
                   layout="wide")
access.require_login()
page = st.navigation(PAGES)
st.sidebar.caption("Alert Whisperer · alert noise and patch compliance")
access.account_menu()
try:
    data.snapshot()
    page.run()
except WarehouseNotPublished:
    st.title(page.title)
    st.info(cards.NO_DATA_YET, icon=":material/hourglass_empty:")
