"""`aw demo seed` against the real ingest service: tenants, signed alerts through the endpoint,
patch fleets; the pipeline then shows every tenant's noise and three tenants' compliance."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.run import run_once
from tests.support.servers import PROJECT_ROOT, IngestServer, aw_command, wait_for
from warehouse.config import platform_settings
from warehouse.lake import open_lake
from warehouse.publish import connect_readonly
from warehouse.registry import Registry

pytestmark = pytest.mark.e2e


def _seed(url: str, data_dir: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AW_")}
    env["AW_DATA_DIR"] = str(data_dir)
    done = subprocess.run([*aw_command(), "demo", "seed", "--url", url, "--events", "3000",
                           "--days", "6", "--json"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_demo_seed_posts_through_the_endpoint_and_the_pipeline_shows_it(
        data_dir: Path, tmp_path: Path) -> None:
    env = {"AW_DATA_DIR": str(data_dir), "AW_FLUSH_MAX_AGE_SECONDS": "0.3"}
    with IngestServer(env, tmp_path / "serve.log") as server:
        summary = _seed(server.url, data_dir)
        assert summary["tenants"] == ["acme", "globex", "initech", "umbrella"]
        assert summary["posted"] == summary["accepted"] + summary["duplicates"]
        assert summary["duplicates"] > 0  # retried deliveries found by the service's R2
        assert summary["ssm_snapshot_days"] == 5
        lake = open_lake(platform_settings().resolved_lake_uri)
        wait_for(lambda: sum(1 for _ in lake.files("raw/alerts")) > 0, 30, server.log)
        again = _seed(server.url, data_dir)  # existing tenants: a temporary key, then revoked
        assert again["accepted"] + again["duplicates"] == again["posted"]
    with Registry.open(platform_settings()) as registry:
        acme = registry.get_tenant("acme")
        assert len(acme.key_prefixes) == 1  # the seeding key was revoked
        globex = registry.settings_at("globex", datetime.now(UTC)).settings
        assert globex.window == timedelta(minutes=10) and globex.lateness == timedelta(days=30)
        assert {a.tenant_id for a in registry.aws_accounts()} == {"acme", "globex", "initech"}
    assert (data_dir / "ssm-sync").is_dir()
    run_once(echo=lambda _line: None)
    con = connect_readonly(platform_settings().resolved_warehouse_path)
    try:
        noise = dict(con.execute("SELECT tenant_id, sum(events_accepted) FROM "
                                 "marts.fct_noise_daily GROUP BY 1").fetchall())
        compliance = con.execute("SELECT tenant_id, count(*) FROM "
                                 "marts.fct_patch_compliance_daily GROUP BY 1 ORDER BY 1"
                                 ).fetchall()
        risk = con.execute("SELECT count(*) FROM marts.fct_patch_risk_assets").fetchall()
    finally:
        con.close()
    assert set(noise) == {"acme", "globex", "initech", "umbrella"}
    assert sum(noise.values()) == summary["posted"] + again["posted"]
    assert compliance == [("acme", 6), ("globex", 6), ("initech", 6)]  # 5 earlier + today
    assert risk[0][0] >= 1
