"""Staging: lake files of one receive date copied into the build file, each file exactly once.

Lake files are immutable (the flusher writes each file once under a new name, atomically), so
a file already staged never needs reading again: `lake.files` records every staged file
with the load that brought it, and a day's load reads only the files it lacks. Loading a day
twice is therefore harmless, and a day that gained files (a late flush, events received today
for an earlier event time) gains exactly those rows.

Every staged row carries its `load_id` (increasing per load), which is how the correlation
step finds the rows it has not seen yet.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.lake import Lake
from warehouse.schema import ALERT_EVENTS, DUPLICATE_EVENTS
from warehouse.store import run, scalar

LAKE_TABLES = {"raw/alerts": ("lake", "raw_alerts", ALERT_EVENTS),
               "raw/duplicates": ("lake", "raw_duplicates", DUPLICATE_EVENTS)}
READERS = 8
_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
          pa.bool_(): "BOOLEAN", pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
          pa.map_(pa.string(), pa.string()): "MAP(VARCHAR, VARCHAR)"}


def _columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {_TYPES[f.type]}" for f in schema)


DDL = [
    "CREATE SCHEMA IF NOT EXISTS lake",
    """CREATE TABLE IF NOT EXISTS lake.files (
        path VARCHAR PRIMARY KEY, lake_table VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL,
        date DATE NOT NULL, size_bytes BIGINT, row_count BIGINT NOT NULL,
        load_id BIGINT NOT NULL, loaded_at TIMESTAMPTZ NOT NULL)""",
    *(f"""CREATE TABLE IF NOT EXISTS {schema}.{name} (
            tenant_id VARCHAR NOT NULL, date DATE NOT NULL, load_id BIGINT NOT NULL,
            {_columns(arrow)})"""
      for schema, name, arrow in LAKE_TABLES.values()),
]


@dataclass(frozen=True)
class LakeFile:
    lake_table: str
    path: str
    tenant_id: str
    day: date
    size: int
    modified: datetime | None = None


@dataclass
class LoadResult:
    """What one day's load staged (the asset's materialization metadata)."""

    day: date
    load_id: int | None = None
    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    tenants: list[str] = field(default_factory=list)
    received_min: str | None = None
    received_max: str | None = None


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        run(con, statement)


def lake_files(lake: Lake) -> list[LakeFile]:
    """Every data file of the staged lake tables, with its partition values."""
    out = []
    for table in LAKE_TABLES:
        for info in lake.files(table):
            parts = dict(p.split("=", 1) for p in info.path.split("/") if "=" in p)
            try:
                day = date.fromisoformat(parts["date"])
                tenant = parts["tenant_id"]
            except (KeyError, ValueError):
                continue  # not a partition file of ours
            modified = info.mtime
            if modified is not None and modified.tzinfo is None:
                modified = modified.replace(tzinfo=UTC)
            out.append(LakeFile(table, info.path, tenant, day, int(info.size or 0), modified))
    return out


def pending(con: duckdb.DuckDBPyConnection, files: list[LakeFile]) -> list[LakeFile]:
    """The files not staged yet."""
    ensure_schema(con)
    staged = {row[0] for row in con.execute("SELECT path FROM lake.files").fetchall()}
    return [f for f in files if f.path not in staged]


def load_day(con: duckdb.DuckDBPyConnection, lake: Lake, day: date,
             files: list[LakeFile] | None = None) -> LoadResult:
    """Stage every not-yet-staged lake file of receive date `day`, in one transaction."""
    todo = [f for f in pending(con, files if files is not None else lake_files(lake))
            if f.day == day]
    result = LoadResult(day)
    if not todo:
        return result
    tables: dict[str, list[pa.Table]] = {t: [] for t in LAKE_TABLES}
    counts: dict[str, int] = {}

    def read(f: LakeFile) -> pa.Table:
        table = pq.read_table(f.path, filesystem=lake.fs, schema=LAKE_TABLES[f.lake_table][2])
        n = table.num_rows
        return (table.add_column(0, "tenant_id", pa.array([f.tenant_id] * n, pa.string()))
                .add_column(1, "date", pa.array([day] * n, pa.date32())))

    # Many small files (one per tenant and flush): read them concurrently (I/O, and pyarrow
    # releases the GIL while decoding).
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        for f, table in zip(todo, pool.map(read, todo), strict=True):
            counts[f.path] = table.num_rows
            tables[f.lake_table].append(table)
    load_id = int(scalar(con, "SELECT coalesce(max(load_id), 0) + 1 FROM lake.files") or 1)
    run(con, "BEGIN TRANSACTION")
    try:
        for lake_table, parts in tables.items():
            if not parts:
                continue
            schema, name, _ = LAKE_TABLES[lake_table]
            con.register("staged", pa.concat_tables(parts))
            run(con, f"INSERT INTO {schema}.{name} BY NAME SELECT *, ? AS load_id FROM staged",
                [load_id])
            con.unregister("staged")
            result.rows[lake_table] = sum(p.num_rows for p in parts)
        con.register("staged_files", pa.table({
            "path": [f.path for f in todo], "lake_table": [f.lake_table for f in todo],
            "tenant_id": [f.tenant_id for f in todo],
            "date": pa.array([f.day for f in todo], pa.date32()),
            "size_bytes": pa.array([f.size for f in todo], pa.int64()),
            "row_count": pa.array([counts[f.path] for f in todo], pa.int64())}))
        run(con, "INSERT INTO lake.files SELECT *, ? AS load_id, now() AS loaded_at "
                 "FROM staged_files", [load_id])
        con.unregister("staged_files")
        run(con, "COMMIT")
    except BaseException:
        run(con, "ROLLBACK")
        raise
    result.load_id = load_id
    result.files = len(todo)
    result.tenants = sorted({f.tenant_id for f in todo})
    span = con.execute("SELECT min(received_at)::VARCHAR, max(received_at)::VARCHAR "
                       "FROM lake.raw_alerts WHERE load_id = ?", [load_id]).fetchall()[0]
    result.received_min, result.received_max = span
    return result


def file_label(path: str) -> str:
    """A lake path without its root, for messages."""
    return posixpath.join(*path.split("/")[-4:])
