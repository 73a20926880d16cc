"""End to end: `aw up` runs the real ingest service and the real `dagster dev`; signed alerts
posted to the ingest endpoint reach the published marts through the sensor-launched runs;
Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.servers import (
    TEST_AWS_ENV,
    _spawn,
    _stop,
    aw_command,
    create_tenant,
    free_port,
    http_ok,
    log_tail,
    post_alerts,
    wait_for,
)
from warehouse.publish import WarehouseNotPublished, connect_readonly

pytestmark = pytest.mark.e2e


def _alert(asset: str, signature: str, t: datetime, status: str = "firing",
           alert_id: str | None = None) -> dict[str, object]:
    return {"asset": asset, "signature": signature, "severity": "critical", "status": status,
            "source_alert_id": alert_id or f"{asset}-{signature}",
            "occurred_at": t.isoformat().replace("+00:00", "Z"), "message": "e2e"}


def _published_counts(path: Path) -> dict[str, int] | None:
    try:
        con = connect_readonly(path)
    except (WarehouseNotPublished, OSError):
        return None
    try:
        rows = con.execute("SELECT tenant_id, sum(events_accepted) FROM marts.fct_noise_daily "
                           "GROUP BY tenant_id").fetchall()
    finally:
        con.close()
    return {t: int(n) for t, n in rows}


def test_aw_up_runs_ingest_and_dagster_and_the_marts_follow(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    acme = create_tenant(data_dir, "acme", "Acme Corp")
    globex = create_tenant(data_dir, "globex", "Globex")
    port, dagster_port, dashboard_port = free_port(), free_port(), free_port()
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("AW_", "DAGSTER_"))}
    env = {**inherited, **TEST_AWS_ENV, "AW_DATA_DIR": str(data_dir),
           "AW_FLUSH_MAX_AGE_SECONDS": "0.5"}
    log = tmp_path / "aw-up.log"
    proc = _spawn([*aw_command(), "up", "--port", str(port), "--dagster-port",
                   str(dagster_port), "--dashboard-port", str(dashboard_port)], env, log)
    try:
        ingest = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{ingest}/readyz"), 60, lambda: log_tail(log))
        wait_for(lambda: http_ok(f"http://127.0.0.1:{dagster_port}/server_info"), 120,
                 lambda: log_tail(log))
        now = datetime.now(UTC).replace(microsecond=0)
        with httpx.Client(base_url=ingest, timeout=10) as client:
            burst = [_alert("web01", "disk_full", now - timedelta(minutes=10 - i),
                            alert_id=f"disk-{i}") for i in range(4)]
            assert post_alerts(client, acme, json.dumps(burst).encode()).status_code == 202
            other = [_alert("db01", "cpu_high", now - timedelta(minutes=3)),
                     _alert("db01", "cpu_high", now - timedelta(minutes=1), status="resolved")]
            assert post_alerts(client, globex, json.dumps(other).encode()).status_code == 202
        warehouse = data_dir / "warehouse.duckdb"
        counts = wait_for(lambda: _published_counts(warehouse) == {"acme": 4, "globex": 2}
                          and _published_counts(warehouse), 240,
                          lambda: f"published: {_published_counts(warehouse)}\n"
                                  + log_tail(log, 30)
                                  + "\n--- dagster ---\n"
                                  + log_tail(data_dir / "logs" / "dagster.log", 60))
        assert counts == {"acme": 4, "globex": 2}
        con = connect_readonly(warehouse)
        try:
            incidents = con.execute(
                "SELECT tenant_id, event_count, status FROM marts.fct_incidents "
                "WHERE counted ORDER BY tenant_id").fetchall()
            tenants = con.execute("SELECT tenant_id, name FROM marts.dim_tenants "
                                  "ORDER BY tenant_id").fetchall()
        finally:
            con.close()
        assert incidents == [("acme", 4, "open"), ("globex", 2, "resolved")]
        assert tenants == [("acme", "Acme Corp"), ("globex", "Globex")]
        text = (data_dir / "logs" / "dagster.log").read_text(errors="replace")
        assert "lake_files_sensor" in text and "update_marts_on_new_data" in text
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        stopped_cleanly = proc.poll() == 0
        _stop(proc, signal.SIGKILL, 5)
    assert stopped_cleanly, log_tail(log, 60)
    # nothing of Dagster is left running
    time.sleep(1)
    leftover = subprocess.run(["pgrep", "-f", f"-p {dagster_port}"], capture_output=True,
                              text=True).stdout.strip()
    assert not leftover, leftover


