"""The S3 profile: the same pipeline with the lake in an S3 bucket (the moto server as a
separate process) differs only in AW_LAKE_URI; the marts equal those of a local lake."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.run import run_once
from tests.pipelines.conftest import at, events
from tests.support.servers import MotoServer
from warehouse.config import platform_settings
from warehouse.lake import open_lake
from warehouse.publish import connect_readonly
from warehouse.synthetic_lake import write_events

pytestmark = pytest.mark.e2e
ROWS = [{"id": "e1", "t": at("10:00:00")}, {"id": "e2", "t": at("10:04:00")},
        {"id": "e3", "t": at("11:00:00"), "tenant": "globex"},
        {"id": "e4", "t": at("11:00:00"), "duplicate": True, "tenant": "globex"}]
QUERY = ("SELECT tenant_id, day, events_accepted, duplicates, incidents, noise_reduction "
         "FROM marts.fct_noise_daily ORDER BY tenant_id")


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    with MotoServer(log_path=tmp_path / "moto.log") as server:
        yield server


def _marts() -> list[tuple[object, ...]]:
    run_once(echo=lambda _line: None)
    con = connect_readonly(platform_settings().resolved_warehouse_path)
    try:
        return con.execute(QUERY).fetchall()
    finally:
        con.close()


def test_s3_lake_gives_the_same_marts_as_a_local_lake(data_dir, moto, monkeypatch,
                                                       tmp_path) -> None:
    table = events([{**r, "seq": i + 1} for i, r in enumerate(ROWS)])
    write_events(open_lake(platform_settings().resolved_lake_uri), table)
    local = _marts()

    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    moto.create_bucket(bucket)
    monkeypatch.setenv("AW_DATA_DIR", str(tmp_path / "s3-profile"))
    monkeypatch.setenv("AW_LAKE_URI", f"s3://{bucket}/aw")
    monkeypatch.setenv("AW_S3_ENDPOINT_URL", moto.endpoint_url)
    platform_settings.cache_clear()
    write_events(open_lake(platform_settings().resolved_lake_uri, moto.endpoint_url), table)
    assert _marts() == local
    assert [r[:5] for r in local] == [("acme", at("10:00:00").date(), 2, 0, 1),
                                      ("globex", at("10:00:00").date(), 2, 1, 1)]
