"""Staging: the lake files of receive dates copied into the build file, each file exactly once.

Lake files are immutable (the flusher writes each file once under a new name, atomically), so
a file already staged never needs reading again: `lake.files` records every staged file
with the load that brought it, and a load reads only the files it lacks. Loading a day
twice is therefore harmless, and a day that gained files (a late flush, events received today
for an earlier event time) gains exactly those rows.

Every staged row carries its `load_id` (increasing per load), which is how the correlation
step finds the rows it has not seen yet.

One load covers any number of receive days (`load_days`): one load id, one transaction, one
scan per lake table. A backfill staged day by day paid a COMMIT per day, and committing a
day's rows into the build file (compressing and writing them) cost more than reading them:
30 days of 1M events took ~10 s, 5.5 s of it in 30 COMMITs.

How the files are read depends on the lake, since the work is per file (a day is ~100 small
files, one per tenant and flush, so per-file overheads dominate):

- a local lake is read by DuckDB itself, `read_parquet([paths], filename = true)` joined to
  the pending files (which carry each file's tenant and date, parsed from its path the one
  way `lake_files` does): the rows go from the files straight into the table, with no Arrow
  round trip (handing 1M Arrow rows to DuckDB costs about as much as reading them);
- an S3 lake is read through pyarrow (DuckDB's httpfs cannot be installed here): `READERS`
  threads fetch each file whole (one GET after the HEAD, rather than a footer read and column
  ranges: the files are small), and pyarrow decodes a chunk of about `CHUNK_BYTES` of them in
  its own threads while the next chunk is fetched, so that a long backfill never holds its
  whole range in memory.

Both read a file's columns by name and give a nullable column that an older flusher did not
write as nulls (local: `union_by_name`; S3: the dataset schema), and stage identical rows.
"""

from __future__ import annotations

import posixpath
import re
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from warehouse.lake import Lake
from warehouse.schema import ALERT_EVENTS, DUPLICATE_EVENTS
from warehouse.store import run, scalar

LAKE_TABLES = {"raw/alerts": ("lake", "raw_alerts", ALERT_EVENTS),
               "raw/duplicates": ("lake", "raw_duplicates", DUPLICATE_EVENTS)}
READERS = 16  # concurrent reads through pyarrow: S3 latency, not CPU, bounds them
CHUNK_BYTES = 32 << 20  # Parquet bytes per pyarrow chunk (decoded: several times more)
_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
          pa.bool_(): "BOOLEAN", pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
          pa.map_(pa.string(), pa.string()): "MAP(VARCHAR, VARCHAR)"}
# A local path DuckDB takes literally: absolute, and nothing its glob expansion interprets.
_LITERAL_PATH = re.compile(r"/[^*?\[\]{}\\]*")
_NAIVE_TIMESTAMPS = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"}


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
    """What one load staged (the asset's materialization metadata).

    `day` is the first receive day asked for, `days` all of them (one for `load_day`)."""

    day: date
    load_id: int | None = None
    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    tenants: list[str] = field(default_factory=list)
    received_min: str | None = None
    received_max: str | None = None
    days: list[date] = field(default_factory=list)


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
    staged = {_identity(table, path) for path, table in
              con.execute("SELECT path, lake_table FROM lake.files").fetchall()}
    return [f for f in files if _identity(f.lake_table, f.path) not in staged]


def _identity(lake_table: str, path: str) -> tuple[str, str]:
    """A lake file as staging knows it: its table and its path below the table's folder
    (partitions and name), not the lake's root. A data directory moved to another disk, or
    a lake copied to another bucket or prefix, is then not staged a second time (its rows
    would all be doubled, and the key checks would stop every publish)."""
    return lake_table, "/".join(path.split("/")[-3:])


def load_day(con: duckdb.DuckDBPyConnection, lake: Lake, day: date,
             files: list[LakeFile] | None = None) -> LoadResult:
    """Stage every not-yet-staged lake file of receive date `day`, in one transaction."""
    return load_days(con, lake, [day], files)


def load_days(con: duckdb.DuckDBPyConnection, lake: Lake, days: Iterable[date],
              files: list[LakeFile] | None = None) -> LoadResult:
    """Stage every not-yet-staged lake file of the receive dates `days` as one load.

    One load id, one transaction (all of the files or none of them) and one scan per lake
    table however many days there are, so a backfill pays one COMMIT, not one per day. `files`
    is the lake's listing when the caller has it already (`lake_files`); `day` of the result
    is the first of `days`."""
    wanted = set(days)
    if not wanted:
        raise ValueError("load_days needs at least one receive day")
    listed = files if files is not None else lake_files(lake)
    todo = list({f.path: f for f in pending(con, listed) if f.day in wanted}.values())
    result = LoadResult(min(wanted), days=sorted(wanted))
    if not todo:
        return result
    stage = _stage_duckdb if _duckdb_can_read(lake, todo) else _stage_arrow
    counts: dict[str, int] = {}
    run(con, "BEGIN TRANSACTION")
    try:
        load_id = int(scalar(con, "SELECT coalesce(max(load_id), 0) + 1 FROM lake.files"))
        for lake_table in LAKE_TABLES:
            group = [f for f in todo if f.lake_table == lake_table]
            if group:
                counts.update(stage(con, lake, lake_table, group, load_id))
                result.rows[lake_table] = sum(counts[f.path] for f in group)
        _record_files(con, todo, counts, load_id)
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


def _duckdb_can_read(lake: Lake, files: list[LakeFile]) -> bool:
    """DuckDB reads the files itself when they are local and it would take every path
    literally (a path it would expand as a glob goes through pyarrow instead)."""
    return lake.is_local and all(_LITERAL_PATH.fullmatch(f.path) for f in files)


def _stage_duckdb(con: duckdb.DuckDBPyConnection, lake: Lake, lake_table: str,
                  files: list[LakeFile], load_id: int) -> dict[str, int]:
    """Insert the rows of local `files` with one DuckDB scan; their row counts by path.

    The row counts come from the footers, and the insert must have brought exactly their sum:
    a file whose rows the join lost would otherwise be recorded as staged and never read."""
    schema, name, arrow = LAKE_TABLES[lake_table]
    paths = [f.path for f in files]
    counts = {path: int(n) for path, n in con.execute(
        "SELECT file_name, num_rows FROM parquet_file_metadata(?)", [paths]).fetchall()}
    found = {row[0]: row[1] for row in con.execute(
        "DESCRIBE SELECT * FROM read_parquet(?, union_by_name = true)", [paths]).fetchall()}
    columns = ", ".join(f'"{f.name}"' for f in arrow)
    values = ", ".join(_cast(f, found.get(f.name)) for f in arrow)
    con.register("staging_files", pa.table({
        "path": paths, "tenant_id": [f.tenant_id for f in files],
        "date": pa.array([f.day for f in files], pa.date32())}))
    try:
        inserted = scalar(
            con, f"INSERT INTO {schema}.{name} (tenant_id, date, load_id, {columns}) "
                 f"SELECT f.tenant_id, f.date, ?, {values} "
                 "FROM read_parquet(?, filename = true, union_by_name = true) AS p "
                 "JOIN staging_files AS f ON p.filename = f.path", [load_id, paths])
    finally:
        con.unregister("staging_files")
    missing = [p for p in paths if p not in counts]
    if missing or inserted != sum(counts[p] for p in paths):
        raise RuntimeError(f"staging {lake_table}: inserted {inserted} rows, the files hold "
                           f"{sum(counts.values())} (unread: {missing[:3]})")
    return {p: counts[p] for p in paths}


def _cast(f: pa.Field, found: str | None) -> str:
    """The select expression giving column `f` the table's type from a file column of DuckDB
    type `found` (None: no file has it, so nulls). A timestamp without time zone is UTC, as
    pyarrow casts it (a plain CAST would read it in the session's time zone)."""
    target = _TYPES[f.type]
    if found is None:
        return f'NULL::{target} AS "{f.name}"'
    if target == "TIMESTAMPTZ" and found in _NAIVE_TIMESTAMPS:
        return f"timezone('UTC', p.\"{f.name}\"::TIMESTAMP) AS \"{f.name}\""
    return f'CAST(p."{f.name}" AS {target}) AS "{f.name}"'


def _stage_arrow(con: duckdb.DuckDBPyConnection, lake: Lake, lake_table: str,
                 files: list[LakeFile], load_id: int) -> dict[str, int]:
    """Insert the rows of `files` read through pyarrow, chunk by chunk; their row counts."""
    schema, name, arrow = LAKE_TABLES[lake_table]
    counts: dict[str, int] = {}
    for chunk, data in _fetch_chunks(lake, files):
        table = _decode(chunk, data, arrow)
        per_file = np.bincount(table.column("file_index").to_numpy(), minlength=len(chunk))
        counts.update((f.path, int(n)) for f, n in zip(chunk, per_file, strict=True))
        con.register("staged", table)
        try:
            run(con, f"INSERT INTO {schema}.{name} BY NAME "
                     "SELECT * EXCLUDE (file_index), ? AS load_id FROM staged", [load_id])
        finally:
            con.unregister("staged")
    return counts


def _fetch_chunks(lake: Lake, files: list[LakeFile]
                  ) -> Iterator[tuple[list[LakeFile], list[pa.Buffer]]]:
    """Each chunk of `files` with their bytes, the next chunk's fetches already running.

    Fetching is all these threads do (one call each, so they hardly contend for the GIL);
    decoding is pyarrow's, in its own threads (`_decode`)."""
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        ahead: deque[tuple[list[LakeFile], list[Future[pa.Buffer]]]] = deque()
        for chunk in _chunks(files):
            ahead.append((chunk, [pool.submit(_fetch, lake, f.path) for f in chunk]))
            if len(ahead) > 1:
                done, futures = ahead.popleft()
                yield done, [future.result() for future in futures]
        while ahead:
            done, futures = ahead.popleft()
            yield done, [future.result() for future in futures]


def _chunks(files: list[LakeFile]) -> Iterator[list[LakeFile]]:
    chunk: list[LakeFile] = []
    size = 0
    for f in files:
        chunk.append(f)
        size += f.size
        if size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _fetch(lake: Lake, path: str) -> pa.Buffer:
    """A whole lake file (S3: one GET after the HEAD; the files are small)."""
    with lake.fs.open_input_stream(path) as source:
        return source.read_buffer()


def _decode(files: list[LakeFile], data: list[pa.Buffer], schema: pa.Schema) -> pa.Table:
    """The files' rows as one table: their columns by name against `schema` (one a file lacks,
    written by an older flusher, as nulls), led by the file's `tenant_id` and `date` and
    followed by its index in `files`, all three from the file's partition expression."""
    fmt = ds.ParquetFileFormat()
    fragments = [
        fmt.make_fragment(pa.BufferReader(buffer), partition_expression=(
            (ds.field("tenant_id") == f.tenant_id)
            & (ds.field("date") == pa.scalar(f.day, pa.date32()))
            & (ds.field("file_index") == pa.scalar(i, pa.int64()))))
        for i, (f, buffer) in enumerate(zip(files, data, strict=True))]
    staged = pa.schema([pa.field("tenant_id", pa.string()), pa.field("date", pa.date32()),
                        *schema, pa.field("file_index", pa.int64())])
    return ds.FileSystemDataset(fragments, staged, fmt).to_table()


def _record_files(con: duckdb.DuckDBPyConnection, files: list[LakeFile],
                  counts: dict[str, int], load_id: int) -> None:
    """One `lake.files` row per staged file: the file is never read again."""
    con.register("staged_files", pa.table({
        "path": [f.path for f in files], "lake_table": [f.lake_table for f in files],
        "tenant_id": [f.tenant_id for f in files],
        "date": pa.array([f.day for f in files], pa.date32()),
        "size_bytes": pa.array([f.size for f in files], pa.int64()),
        "row_count": pa.array([counts[f.path] for f in files], pa.int64())}))
    try:
        run(con, "INSERT INTO lake.files SELECT *, ? AS load_id, now() AS loaded_at "
                 "FROM staged_files", [load_id])
    finally:
        con.unregister("staged_files")


def file_label(path: str) -> str:
    """A lake path without its root, for messages."""
    return posixpath.join(*path.split("/")[-4:])
