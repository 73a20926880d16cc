"""Fixtures for the dashboards: one real warehouse per session (`fixture_warehouse.build`,
about 15 s), an empty data dir, AppTest runs of a page, and the marts read directly (so
every expected value comes from the warehouse, not from the dashboards' own queries)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboards import fixture_warehouse
from warehouse.config import platform_settings
from warehouse.publish import connect_readonly

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboards" / "app.py"
OUTPUT = ROOT / "test-output"
PAGES = {
    "portfolio": "views/portfolio.py",
    "scorecard": "views/scorecard.py",
    "incidents": "views/incidents.py",
    "patch": "views/patch.py",
    "settings": "views/settings.py",
}
RENDER_TIMES: dict[str, dict[str, float]] = {}


def _isolated_env(mp: pytest.MonkeyPatch, data_dir: Path) -> None:
    mp.setenv("AW_DATA_DIR", str(data_dir))
    for name in ("AW_LAKE_URI", "AW_WAREHOUSE_PATH", "AW_SSM_SYNC_URI", "DAGSTER_HOME"):
        mp.delenv(name, raising=False)
    platform_settings.cache_clear()


@pytest.fixture(scope="session")
def warehouse_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AW_DATA_DIR of the published fixture warehouse (built once per session)."""
    data_dir = tmp_path_factory.mktemp("dashboards") / "data"
    with pytest.MonkeyPatch.context() as mp:
        _isolated_env(mp, data_dir)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        fixture_warehouse.build(data_dir)
    platform_settings.cache_clear()
    return data_dir


@pytest.fixture
def on_fixture(warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The process points at the fixture warehouse for one test."""
    _isolated_env(monkeypatch, warehouse_dir)
    yield warehouse_dir
    platform_settings.cache_clear()


@pytest.fixture
def marts(on_fixture: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The published fixture warehouse, read-only, for expected values."""
    con = connect_readonly(platform_settings().resolved_warehouse_path)
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()


def rows(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[dict[str, Any]]:
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def one(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> dict[str, Any]:
    (row,) = rows(con, sql, *params)
    return row


def open_page(name: str, tenant: str | None = None, **widgets: Any) -> AppTest:
    """The app run on page `name` (a key of PAGES), with a client chosen."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if name != "portfolio":
        at.switch_page(PAGES[name]).run()
    if tenant is not None:
        at.selectbox(key="tenant").set_value(tenant).run()
    for key, value in widgets.items():
        at.session_state[key] = value
    if widgets:
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    """Metric label -> displayed value."""
    return {m.label: m.value for m in at.metric}


def page_text(at: AppTest) -> str:
    """Everything a page shows as text: headings, metrics, captions, markdown, alerts, tables,
    widget options."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                 "error", "code"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [d.value.to_csv() for d in at.dataframe]
    for kind in ("selectbox", "multiselect", "radio"):
        for widget in getattr(at, kind):
            if widget.key != "tenant":  # the client chooser itself lists the allowed clients
                parts += [str(o) for o in widget.options]
    return "\n".join(parts)


def record_render_time(page: str, kind: str, seconds: float) -> None:
    RENDER_TIMES.setdefault(page, {})[kind] = round(seconds, 3)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the measured page render times (not asserted) and keep them in test-output."""
    if not RENDER_TIMES:
        return
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "dashboard-render-times.json").write_text(json.dumps(RENDER_TIMES, indent=2))
    terminalreporter.section("dashboard page render times (seconds, AppTest)")
    for page, times in RENDER_TIMES.items():
        terminalreporter.write_line(
            f"{page:<12} " + "  ".join(f"{k}={v:.3f}" for k, v in sorted(times.items())))
