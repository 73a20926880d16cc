"""Fixtures for the export tests: one real published warehouse (built once per session by the
real pipeline from events and an SSM snapshot in a lake), exports of it, a moto S3 server."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from tests.pipelines.conftest import at, write
from tests.support.servers import MotoServer
from warehouse.config import platform_settings
from warehouse.exports.catalog import LIST_SEPARATOR, Column, Kind
from warehouse.exports.settings import export_settings
from warehouse.lake import Lake, open_lake
from warehouse.publish import connect_readonly
from warehouse.ssm.schema import TABLES
from warehouse.ssm.store import write_snapshot

SNAPSHOT_DAY = date(2026, 11, 2)
TAKEN = datetime(2026, 11, 2, 6, tzinfo=UTC)
ACCOUNT = "111111111111"
# Values a CSV writer must quote: a comma, a double quote, a line break.
TRICKY_ASSET = 'x,"y"\nz'
EVENTS = [
    {"id": "e1", "t": at("03:00:00"), "asset": "i-a2", "signature": "cpu"},
    {"id": "e2", "t": at("03:01:00"), "asset": "i-a2", "signature": "cpu"},
    {"id": "e3", "t": at("03:02:00"), "asset": "web-a1", "signature": "disk",
     "status": "firing", "fp": "f1"},
    {"id": "e4", "t": at("03:20:00"), "asset": "web-a1", "signature": "disk",
     "status": "resolved", "fp": "f1"},
    {"id": "e5", "t": at("03:04:00"), "tenant": "beta", "asset": TRICKY_ASSET,
     "signature": "latency", "source": "grafana"},
    {"id": "e6", "t": at("03:05:00"), "tenant": "beta", "asset": TRICKY_ASSET,
     "signature": "latency", "source": "datadog"},
]


def _fleet(lake: Lake) -> None:
    """acme: a compliant web node, a node missing critical patches (it also alerts), and a
    never-scanned node in no patch group."""
    def table(name: str, rows: list[dict[str, object]]) -> pa.Table:
        schema = TABLES[name]
        full = [{"tenant_id": "acme", "source": "api", "snapshot_at": TAKEN,
                 "account_id": ACCOUNT, "region": "us-east-1", **r} for r in rows]
        return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in full],
                                    schema=schema)

    scanned = TAKEN - timedelta(hours=3)
    write_snapshot(lake, {
        "nodes": table("nodes", [
            {"node_id": "i-a1", "computer_name": "web-a1.corp.example", "is_hybrid": False},
            {"node_id": "i-a2", "computer_name": "db-a2", "is_hybrid": False},
            {"node_id": "mi-h1", "computer_name": "onprem-h1", "is_hybrid": True}]),
        "patch_states": table("patch_states", [
            {"node_id": "i-a1", "patch_group": "prod-web", "critical_noncompliant_count": 0,
             "missing_count": 0, "operation": "Scan", "operation_end_at": scanned},
            {"node_id": "i-a2", "patch_group": "prod-db", "critical_noncompliant_count": 2,
             "missing_count": 3, "operation": "Scan", "operation_end_at": scanned}]),
        "compliance": table("compliance", [
            {"node_id": "i-a1", "status": "COMPLIANT"},
            {"node_id": "i-a2", "status": "NON_COMPLIANT"}]),
    }, SNAPSHOT_DAY)


@pytest.fixture(scope="session")
def warehouse_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published warehouse of a real pipeline run (read-only from here on)."""
    data = tmp_path_factory.mktemp("export-warehouse") / "data"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AW_LAKE_URI", "AW_WAREHOUSE_PATH", "DAGSTER_HOME", "AW_SSM_SYNC_URI"):
            mp.delenv(name, raising=False)
        mp.setenv("AW_DATA_DIR", str(data))
        platform_settings.cache_clear()
        try:
            from pipelines.run import run_once

            lake = open_lake(platform_settings().resolved_lake_uri)
            _fleet(lake)
            write(lake, EVENTS)
            run_once(echo=lambda _line: None)
            return platform_settings().resolved_warehouse_path.resolve()
        finally:
            platform_settings.cache_clear()


@pytest.fixture
def con(warehouse_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect_readonly(warehouse_path)
    yield connection
    connection.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        warehouse_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """AW_* pointing at the session warehouse and a fresh local lake (caches cleared)."""
    monkeypatch.setenv("AW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AW_WAREHOUSE_PATH", str(warehouse_path))
    monkeypatch.setenv("AW_LAKE_URI", (tmp_path / "lake").as_uri())
    for name in ("AW_QUICKSIGHT_RLS_FILE", "AW_EXPORT_GLUE_SYNC", "AW_GLUE_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    platform_settings.cache_clear()
    export_settings.cache_clear()
    yield monkeypatch
    platform_settings.cache_clear()
    export_settings.cache_clear()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture
def s3_lake(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> tuple[Lake, str]:
    """A lake on a fresh bucket of the moto server: (lake, bucket)."""
    bucket = f"aw-exports-{uuid.uuid4().hex[:10]}"
    moto.create_bucket(bucket)
    return open_lake(f"s3://{bucket}/lake", moto.endpoint_url, timeout_seconds=5), bucket


# ---- reading exports back ---------------------------------------------------------------------


def read_text(lake: Lake, path: str) -> str:
    with lake.fs.open_input_stream(path) as src:
        return bytes(src.read()).decode("utf-8")


def read_json(lake: Lake, path: str) -> Any:
    return json.loads(read_text(lake, path))


def parse_csv(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return rows[0], rows[1:]


def expected_text(value: object, column: Column) -> str:
    """How a DuckDB value must appear in the CSV (the catalog's documented rendering)."""
    if value is None:
        return ""
    kind = column.kind
    if kind is Kind.BOOLEAN:
        return "1" if value else "0"
    if kind is Kind.TIMESTAMP:
        assert isinstance(value, datetime)
        utc = value.astimezone(UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if kind is Kind.DATE:
        assert isinstance(value, date)
        return value.isoformat()
    if kind is Kind.LIST:
        assert isinstance(value, list)
        return LIST_SEPARATOR.join(str(v) for v in value)
    return str(value)


def typed_value(text: str, column: Column) -> object:
    """Parse a CSV field back by the column's kind (the way QuickSight's casts would)."""
    if text == "":
        return None
    kind = column.kind
    if kind in (Kind.INTEGER, Kind.BOOLEAN):
        return int(text)
    if kind is Kind.DECIMAL:
        return float(text)
    if kind is Kind.TIMESTAMP:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    if kind is Kind.DATE:
        return date.fromisoformat(text)
    if kind is Kind.LIST:
        return text.split(LIST_SEPARATOR)
    return text


def check_manifest(manifest: Any, scheme: str) -> list[str]:
    """Assert the QuickSight manifest format (S3 manifest documentation) and return its URIs."""
    assert set(manifest) == {"fileLocations", "globalUploadSettings"}
    locations = manifest["fileLocations"]
    assert isinstance(locations, list) and locations
    uris: list[str] = []
    for location in locations:
        assert set(location) <= {"URIs", "URIPrefixes"} and location
        uris += location.get("URIs", [])
    assert uris and all(u.startswith(scheme) and u.endswith(".csv") for u in uris)
    assert manifest["globalUploadSettings"] == {
        "format": "CSV", "delimiter": ",", "textqualifier": '"', "containsHeader": "true"}
    return uris
