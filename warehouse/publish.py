"""Publishing the marts: a complete, read-only DuckDB snapshot swapped in atomically.

Readers (an analyst's `duckdb -readonly`, scripts, the dashboards) open the published
warehouse read-only and are never blocked: a DuckDB file is single-writer across processes,
so the pipeline never writes a file readers open. `publish` copies every mart from the build
file into a new snapshot file (`<warehouse>.snapshots/<time>-<id>.duckdb`, each table
described by a DuckDB comment), checkpoints and fsyncs it, then atomically repoints the
published path, a symbolic link, at it. A reader therefore sees the previous snapshot or the
new one, whole; a connection opened before the swap keeps reading its snapshot until it
reconnects.

Why a link to distinct files rather than renaming over one path: DuckDB caches open databases
per path inside a process, so a long-lived reader process (the dashboards) reconnecting to a
path that was renamed over would be handed the old database. `connect_readonly` resolves the
link first, so every snapshot has its own path. Old snapshots are deleted once `KEEP` newer
ones exist and they are older than `GRACE` (an open connection keeps reading a deleted file).

`marts.published` (one row) says when the snapshot was built and from what.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from warehouse.files import fsync_path
from warehouse.models import Model
from warehouse.store import DUCKDB_CONFIG, run, scalar

KEEP = 3
GRACE = timedelta(minutes=10)


class WarehouseNotPublished(FileNotFoundError):
    """No snapshot has been published yet (the pipeline has not run)."""


@dataclass(frozen=True)
class Published:
    path: Path
    tables: dict[str, int]
    published_at: datetime
    size_bytes: int


def snapshots_dir(target: Path) -> Path:
    return target.with_name(f"{target.stem}.snapshots")


def publish(con: duckdb.DuckDBPyConnection, target: Path, marts: Sequence[Model],
            info: Mapping[str, object] | None = None) -> Published:
    """Copy `marts` from the build connection into a new snapshot and point `target` at it."""
    folder = snapshots_dir(target)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    snapshot = folder / f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.duckdb"
    tmp = folder / f".{snapshot.name}.tmp"
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
        fsync_path(tmp)
        os.replace(tmp, snapshot)
        fsync_path(folder)
        link = target.with_name(f".{target.name}.{uuid.uuid4().hex}.link")
        link.symlink_to(snapshot.relative_to(target.parent))
        os.replace(link, target)
        fsync_path(target.parent)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            if leftover.exists():
                leftover.unlink()
    _prune(folder, keep=snapshot)
    return Published(target, tables, now, snapshot.stat().st_size)


def _prune(folder: Path, keep: Path) -> None:
    """Delete snapshots beyond the newest `KEEP` that are older than `GRACE`."""
    snapshots = sorted(folder.glob("*.duckdb"), reverse=True)  # names sort by time
    cutoff = time.time() - GRACE.total_seconds()
    for old in snapshots[KEEP:]:
        if old != keep and old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)


def connect_readonly(path: Path) -> duckdb.DuckDBPyConnection:
    """The published warehouse, read-only (any number of readers at once)."""
    if not path.exists():
        raise WarehouseNotPublished(
            f"no warehouse at {path} yet: run `aw pipeline run` (or `aw up`) first")
    return duckdb.connect(str(path.resolve()), read_only=True, config=DUCKDB_CONFIG)


def _quoted(value: object) -> str:
    return str(value).replace("'", "''")
