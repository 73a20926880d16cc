"""End to end, the README's first command: `aw up --demo` on an empty data directory seeds
through the ingest endpoint, Dagster's sensors and automation build the marts, and the
dashboards serve them; Ctrl-C stops every process."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.servers import (
    TEST_AWS_ENV,
    _spawn,
    _stop,
    aw_command,
    free_port,
    http_ok,
    log_tail,
    wait_for,
)
from warehouse.publish import WarehouseNotPublished, connect_readonly

pytestmark = pytest.mark.e2e


def _published(path: Path) -> dict[str, int] | None:
    try:
        con = connect_readonly(path)
    except (WarehouseNotPublished, OSError):
        return None
    try:
        noise = con.execute("SELECT count(DISTINCT tenant_id) FROM marts.fct_noise_daily"
                            ).fetchall()[0][0]
        patch = con.execute("SELECT count(DISTINCT tenant_id) FROM "
                            "marts.fct_patch_compliance_daily").fetchall()[0][0]
    finally:
        con.close()
    return {"noise_tenants": int(noise), "patch_tenants": int(patch)}


def test_aw_up_demo_shows_every_client(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = {name: free_port() for name in ("ingest", "dagster", "dashboards")}
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AW_", "DAGSTER_"))}
    env = {**inherited, **TEST_AWS_ENV, "AW_DATA_DIR": str(data_dir),
           "AW_FLUSH_MAX_AGE_SECONDS": "1"}
    log = tmp_path / "aw-up-demo.log"
    proc = _spawn([*aw_command(), "up", "--demo", "--demo-events", "3000",
                   "--port", str(ports["ingest"]), "--dagster-port", str(ports["dagster"]),
                   "--dashboard-port", str(ports["dashboards"])], env, log)
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{ports['dashboards']}/_stcore/health"), 120,
                 lambda: log_tail(log))
        warehouse = data_dir / "warehouse.duckdb"
        want = {"noise_tenants": 4, "patch_tenants": 3}
        wait_for(lambda: _published(warehouse) == want, 300,
                 lambda: f"published: {_published(warehouse)}\n" + log_tail(log, 30)
                                  + "\n--- dagster ---\n"
                                  + log_tail(data_dir / "logs" / "dagster.log", 60))
        text = log.read_text(errors="replace")
        assert "demo: seeding" in text and "alerts posted for acme, globex, initech" in text
        for line in ("dagster    http://", "dashboards http://"):
            assert line in text
        page = httpx.get(f"http://127.0.0.1:{ports['dashboards']}/", timeout=10)
        assert page.status_code == 200
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        stopped_cleanly = proc.poll() == 0
        _stop(proc, signal.SIGKILL, 5)
    assert stopped_cleanly, log_tail(log, 60)
    for port in ports.values():
        assert not http_ok(f"http://127.0.0.1:{port}/")  # nothing left listening
