"""The README tells the truth: its "Send your first alert" block works as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import PROJECT_ROOT, IngestServer, wait_for
from warehouse.lake import open_lake

pytestmark = pytest.mark.e2e


def readme_block(heading: str) -> str:
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text.split(f"## {heading}", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, f"no bash block under '{heading}'"
    return match.group(1)


def test_first_alert_curl_lands_in_the_lake(tmp_path: Path) -> None:
    # The snippet runs from the project root with the default AW_DATA_DIR (./data): here a
    # temp dir stands in for the checkout, with the project's venv linked in.
    (tmp_path / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    data = tmp_path / "data"
    env = {"AW_DATA_DIR": str(data), "AW_FLUSH_MAX_AGE_SECONDS": "0.2"}
    with IngestServer(env, tmp_path / "serve.log") as server:
        script = readme_block("Send your first alert").replace(
            "127.0.0.1:8001", f"127.0.0.1:{server.port}"
        )
        shell_env = {k: v for k, v in os.environ.items() if not k.startswith("AW_")}
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=shell_env,
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert '"accepted":1' in result.stdout, result.stdout
        lake = open_lake(f"file://{data / 'lake'}")
        rows = wait_for(lambda: lake.read_table("raw/alerts").to_pylist() or None, 20,
                        "the README's alert in raw/alerts")
        # the same flush writes raw/requests after raw/alerts
        wait_for(lambda: lake.read_table("raw/requests").num_rows or None, 20,
                 "the README's request in raw/requests")
    assert [(r["tenant_id"], r["asset"], r["signature"], r["severity"]) for r in rows] == [
        ("acme", "web01", "disk_full", "critical")
    ]
    # The credentials the README saved never reach the lake (Parquet is compressed, so
    # compare decoded rows, not file bytes).
    creds = json.loads((tmp_path / "acme.json").read_text())
    stored = repr([lake.read_table(t).to_pylist() for t in ("raw/alerts", "raw/requests")])
    assert creds["api_key"] not in stored and creds["hmac_secret"] not in stored
