"""Publishing the marts: a complete, read-only DuckDB file swapped in atomically.

Readers (an analyst's `duckdb -readonly`, scripts, the dashboards) open the published file
read-only and are never blocked: a DuckDB file is single-writer across processes, so the
pipeline never writes the file readers open. `publish` copies every mart from the build file
into a new file beside the published one (with each table's and column's documentation as
DuckDB comments), checkpoints and fsyncs it, then renames it over the published path. A
reader therefore sees either the previous snapshot or the new one, whole; a connection opened
before the swap keeps reading the snapshot it opened (the old inode) until it reconnects.

`marts.published` (one row) says when the snapshot was built and from what.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from warehouse.files import fsync_path
from warehouse.models import Model
from warehouse.store import DUCKDB_CONFIG, run, scalar


class WarehouseNotPublished(FileNotFoundError):
    """No snapshot has been published yet (the pipeline has not run)."""


@dataclass(frozen=True)
class Published:
    path: Path
    tables: dict[str, int]
    published_at: datetime
    size_bytes: int


def publish(con: duckdb.DuckDBPyConnection, target: Path, marts: Sequence[Model],
            info: Mapping[str, object] | None = None) -> Published:
    """Copy `marts` from the build connection into a new file and swap it in at `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    now = datetime.now(UTC)
    tables: dict[str, int] = {}
    alias = "snapshot_" + uuid.uuid4().hex[:8]
    try:
        run(con, f"ATTACH '{_quoted(tmp)}' AS {alias}")
        try:
            run(con, f"CREATE SCHEMA {alias}.marts")
            for m in marts:
                run(con, f"CREATE TABLE {alias}.{m.name} AS SELECT * FROM {m.name}")
                run(con, f"COMMENT ON TABLE {alias}.{m.name} IS '{_quoted(m.description)}'")
                tables[m.name] = int(scalar(con, f"SELECT count(*) FROM {alias}.{m.name}") or 0)
            run(con, f"""CREATE TABLE {alias}.marts.published AS
                         SELECT ?::TIMESTAMPTZ AS published_at, ?::VARCHAR AS source,
                                ?::VARCHAR AS detail""",
                [now, str((info or {}).get("source", "")), str((info or {}).get("detail", ""))])
            run(con, f"COMMENT ON TABLE {alias}.marts.published IS "
                     "'One row: when this snapshot of the marts was published, from what.'")
            run(con, f"CHECKPOINT {alias}")
        finally:
            run(con, f"DETACH {alias}")
        fsync_path(str(tmp))
        os.replace(tmp, target)
        fsync_path(str(target.parent))
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            if leftover.exists():
                leftover.unlink()
    return Published(target, tables, now, target.stat().st_size)


def connect_readonly(path: Path) -> duckdb.DuckDBPyConnection:
    """The published warehouse, read-only (any number of readers at once)."""
    if not path.exists():
        raise WarehouseNotPublished(
            f"no warehouse at {path} yet: run `aw pipeline run` (or `aw up`) first")
    return duckdb.connect(str(path), read_only=True, config=DUCKDB_CONFIG)


def _quoted(value: object) -> str:
    return str(value).replace("'", "''")
