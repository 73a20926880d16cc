"""The dashboards in a real browser: `streamlit run dashboards/app.py` as a separate process on
the fixture warehouse, driven by Playwright in Debian's Chromium (never a downloaded browser).

Each page's key elements are checked against the marts, and a screenshot of each is saved in
`test-output/screenshots/` (the README's come from there, copied by hand into
`docs/screenshots/`). Streamlit renders over a websocket, so every step waits for elements
and for the script to finish (`data-test-script-state="notRunning"`), never a fixed sleep.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dashboards import formats as f
from tests.dashboards.conftest import APP, OUTPUT, ROOT, one, record_render_time

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = OUTPUT / "screenshots"
TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's chromium is not installed at /usr/bin/chromium "
                              "(apt-get install chromium); no browser is downloaded"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(warehouse_dir: Path) -> Iterator[str]:
    """`streamlit run dashboards/app.py` on a free port of 127.0.0.1, stopped by its PID."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AW_DATA_DIR": str(warehouse_dir)}
    for name in ("AW_LAKE_URI", "AW_WAREHOUSE_PATH"):
        env.pop(name, None)
    OUTPUT.mkdir(exist_ok=True)
    log = (OUTPUT / "streamlit-e2e.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
         "--client.toolbarMode", "viewer"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(url):
            assert process.poll() is None, "streamlit exited: see test-output/streamlit-e2e.log"
            assert time.monotonic() < deadline, "streamlit not healthy within 30 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


def _visit(page: Any, url: str, title: str, name: str) -> None:
    """Open `url`, wait for the page `title` and the end of the script run; time it."""
    start = time.perf_counter()
    page.goto(url)
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=TIMEOUT_MS)
    _settled(page)
    record_render_time(name, "browser", time.perf_counter() - start)


def _settled(page: Any) -> None:
    page.locator("[data-test-script-state='notRunning']").wait_for(timeout=TIMEOUT_MS)
    page.locator("[data-testid='stSkeleton']").first.wait_for(state="detached",
                                                              timeout=TIMEOUT_MS)


def _metric(page: Any, label: str) -> str:
    """The displayed value of the metric labelled `label`."""
    card = page.locator("[data-testid='stMetric']").filter(
        has=page.get_by_text(label, exact=True))
    return str(card.locator("[data-testid='stMetricValue']").inner_text()).strip()


def _screenshot(page: Any, name: str, height: int) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1440, "height": height})
    _settled(page)
    page.locator("[data-testid='stVegaLiteChart'], [data-testid='stDataFrame']").last \
        .wait_for(timeout=TIMEOUT_MS)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_portfolio_in_a_browser(server: str, page: Any, marts: Any) -> None:
    _visit(page, f"{server}/", "MSP portfolio", "portfolio")
    end = one(marts, "SELECT max(day) AS d FROM marts.fct_noise_daily")["d"]
    msp = one(marts, """SELECT sum(incidents) AS i, sum(events_accepted) AS e
                        FROM marts.fct_noise_daily WHERE day BETWEEN ? AND ?""",
              end - timedelta(days=6), end)
    assert _metric(page, "Noise reduction, weighted") == f.pct(1 - msp["i"] / msp["e"])
    assert _metric(page, "Noise reduction, unweighted").endswith("%")
    assert page.get_by_text("Clients, worst first").is_visible()
    assert page.locator("[data-testid='stDataFrame']").count() == 1
    _screenshot(page, "portfolio", 1250)


def test_scorecard_in_a_browser(server: str, page: Any, marts: Any) -> None:
    _visit(page, f"{server}/scorecard?tenant=acme", "Client scorecard", "scorecard")
    end = one(marts, "SELECT max(day) AS d FROM marts.fct_noise_daily WHERE tenant_id = ?",
              "acme")["d"]
    acme = one(marts, """SELECT sum(events_accepted) AS e, sum(incidents) AS i
                         FROM marts.fct_noise_daily
                         WHERE tenant_id = 'acme' AND day BETWEEN ? AND ?""",
               end - timedelta(days=6), end)
    assert _metric(page, "Events accepted (E_acc)") == f.count(acme["e"])
    assert _metric(page, "Incidents (I)") == f.count(acme["i"])
    assert _metric(page, "Noise reduction") == f.pct(1 - acme["i"] / acme["e"])
    assert page.get_by_text("Acme Corp (acme)").first.is_visible()
    for heading in ("Noise funnel", "KPIs", "Top noisy keys", "Sources and alert quality"):
        assert page.get_by_role("heading", name=heading).is_visible()
    _screenshot(page, "scorecard", 3350)


def test_incident_timeline_in_a_browser(server: str, page: Any, marts: Any) -> None:
    known = one(marts, """SELECT incident_id FROM marts.fct_incident_events
                          WHERE event_id = 'known-1'""")["incident_id"]
    _visit(page, f"{server}/incidents?tenant=acme&incident={known}", "Incidents explorer",
           "incidents")
    assert _metric(page, "Events") == "3"
    assert page.get_by_text("critical", exact=True).first.is_visible()  # the severity badge
    assert page.get_by_text("acme|web-2|disk_full", exact=True).is_visible()
    assert page.locator("[data-testid='stDataFrame']").count() == 2  # list and timeline
    _screenshot(page, "incidents", 1500)


def test_patch_compliance_in_a_browser(server: str, page: Any) -> None:
    _visit(page, f"{server}/patch?tenant=acme", "Patch compliance", "patch")
    assert _metric(page, "Compliance") == "44.4%"
    assert _metric(page, "Compliant nodes") == "8 / 18"
    for heading in ("30-day trend", "Non-compliant nodes", "Patch groups", "Noisy and unpatched"):
        assert page.get_by_role("heading", name=heading).is_visible()
    _screenshot(page, "patch-compliance", 1500)


def test_whatif_in_a_browser(server: str, page: Any) -> None:
    _visit(page, f"{server}/settings?tenant=globex", "Settings and what-if", "settings")
    assert page.get_by_text("Globex Corp (globex)").first.is_visible()  # from ?tenant=
    window = page.get_by_role("slider")
    window.focus()
    for _ in range(3):  # 10m (globex's window) -> 15m -> 20m -> 30m
        window.press("ArrowRight")
    start = time.perf_counter()
    page.get_by_role("button", name="Run the backtest").click()
    page.get_by_text("Incidents (I), proposed").wait_for(timeout=TIMEOUT_MS)
    _settled(page)
    record_render_time("settings", "browser_backtest", time.perf_counter() - start)
    assert _metric(page, "Noise reduction, proposed").endswith("%")
    assert page.get_by_text("aw tenants set globex --window 30m").is_visible()
    _screenshot(page, "settings-whatif", 1950)
