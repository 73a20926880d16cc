"""Fixtures for the pipeline tests: an isolated platform (lake, registry, build file and
published warehouse under a temp AW_DATA_DIR) and events written into its lake."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from warehouse import staging
from warehouse.config import platform_settings
from warehouse.correlation.events import EVENTS
from warehouse.correlation.synthetic import history
from warehouse.lake import Lake, open_lake
from warehouse.publish import connect_readonly
from warehouse.staging import LakeFile
from warehouse.store import WarehouseStore
from warehouse.synthetic_lake import write_events

warnings.filterwarnings("ignore", module="dagster")
DAY = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture
def lake(data_dir: Path) -> Lake:
    return open_lake(platform_settings().resolved_lake_uri)


def at(hhmmss: str, day: datetime = DAY) -> datetime:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return day + timedelta(hours=h, minutes=m, seconds=s)


def events(rows: list[dict[str, Any]], first_seq: int = 1) -> pa.Table:
    """Events from short dicts: tenant, id, t (event time), status, asset, signature, fp;
    received one second after the event time unless `received` is given."""
    out: dict[str, list[Any]] = {f.name: [] for f in EVENTS}
    for i, row in enumerate(rows):
        t = row["t"]
        out["tenant_id"].append(row.get("tenant", "acme"))
        out["event_id"].append(row["id"])
        out["ingest_seq"].append(row.get("seq", first_seq + i))
        out["source"].append(row.get("source", "generic"))
        out["source_fingerprint"].append(row.get("fp", row["id"]))
        out["asset"].append(row.get("asset", "web01"))
        out["signature"].append(row.get("signature", "disk_full"))
        out["severity"].append(row.get("severity", "warning"))
        out["status"].append(row.get("status", "point"))
        out["occurred_at"].append(t)
        out["received_at"].append(row.get("received", t + timedelta(seconds=1)))
        out["labels"].append(list(row["labels"].items()) if row.get("labels") else None)
        out["delivery_id"].append(row.get("delivery"))
        out["body_sha256"].append(row.get("body", f"body-{row['id']}"))
        out["duplicate"].append(row.get("duplicate", False))
    return pa.table(out, schema=EVENTS)


def lake_history(lake: Lake, n: int, days: int, tenants: int, seed: int
                 ) -> tuple[pa.Table, list[LakeFile], list[date]]:
    """A seeded synthetic history written into the lake as the flusher would: the events,
    the lake's files, and their receive days in order."""
    table = history(n, days=days, tenants=tenants, seed=seed)
    write_events(lake, table)
    files = staging.lake_files(lake)
    return table, files, sorted({f.day for f in files})


def build_store(tmp_path: Path) -> WarehouseStore:
    """A build file and published warehouse under `tmp_path`."""
    return WarehouseStore(tmp_path / "build.duckdb", tmp_path / "warehouse.duckdb")


def write(lake: Lake, rows: list[dict[str, Any]], first_seq: int = 1,
          prefix: str = "t") -> None:
    write_events(lake, events(rows, first_seq), prefix=prefix)


@pytest.fixture
def published(data_dir: Path) -> Iterator[Any]:
    """A function opening the published warehouse read-only (connections closed after)."""
    opened: list[duckdb.DuckDBPyConnection] = []

    def open_() -> duckdb.DuckDBPyConnection:
        con = connect_readonly(platform_settings().resolved_warehouse_path)
        opened.append(con)
        return con

    yield open_
    for con in opened:
        con.close()


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
