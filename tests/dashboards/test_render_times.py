"""How long each page takes to render on the fixture warehouse (AppTest, in-process).

Recorded, not asserted (machines differ): printed at the end of the run and written to
`test-output/dashboard-render-times.json`. `cold` clears the query cache first (every query
runs against the snapshot); `warm` is the rerun a click causes (cached queries). The page
scripts and their imports are loaded before either is measured.
"""

from __future__ import annotations

import time

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.dashboards.conftest import APP, PAGES, record_render_time


def _timed(at: AppTest) -> float:
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    assert not at.exception, [e.value for e in at.exception]
    return elapsed


@pytest.mark.parametrize("page", list(PAGES))
def test_page_render_time(on_fixture, page: str) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if page != "portfolio":
        at.switch_page(PAGES[page])
    at.run()  # the page's modules imported
    st.cache_data.clear()
    record_render_time(page, "cold", _timed(at))
    record_render_time(page, "warm", _timed(at))
    if page == "settings":
        at.select_slider(key="whatif_window_acme").set_value("1h")
        at.button[0].click()
        record_render_time(page, "backtest_cold", _timed(at))
        assert at.metric
