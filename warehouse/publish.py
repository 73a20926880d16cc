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

**Incremental publish.** Writing every mart again costs as much as the rest of an
incremental run. So a new snapshot normally starts as a byte copy of the previous one (the
one this build file recorded publishing, whatever the link says, so a crash between the swap
and the record costs nothing), and each mart is brought up to the build: an incremental
model's rows in scope of the change versions since it was published are deleted and
re-inserted (`warehouse.changes`, the same scopes the models refresh by; a mart that is a view
in the build file selects them from its source), an unchanged one is left, the small roll-ups
are written again. Every `FULL_EVERY`th publish, or when anything
it relies on is missing, the snapshot is written from scratch, which also bounds the space
deleted rows leave in a copied file.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from warehouse import changes
from warehouse.files import fsync_path
from warehouse.models import Model, build
from warehouse.store import DUCKDB_CONFIG, run, scalar

KEEP = 3
GRACE = timedelta(minutes=10)
FULL_EVERY = 20  # publishes; every FULL_EVERY-th writes a fresh snapshot
DDL = [
    "CREATE SCHEMA IF NOT EXISTS pipeline",
    """CREATE TABLE IF NOT EXISTS pipeline.published_snapshot (
        id INTEGER PRIMARY KEY, path VARCHAR NOT NULL, copies INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS pipeline.published_marts (
        mart VARCHAR PRIMARY KEY, version BIGINT NOT NULL, sql_sha256 VARCHAR NOT NULL)""",
]


class WarehouseNotPublished(FileNotFoundError):
    """No snapshot has been published yet (the pipeline has not run)."""


@dataclass(frozen=True)
class Published:
    path: Path
    tables: dict[str, int]
    published_at: datetime
    size_bytes: int
    mode: str = "full"  # "full", or "incremental" (a copy of the previous snapshot, updated)


def snapshots_dir(target: Path) -> Path:
    return target.with_name(f"{target.stem}.snapshots")


def publish(con: duckdb.DuckDBPyConnection, target: Path, marts: Sequence[Model],
            info: Mapping[str, object] | None = None) -> Published:
    """Bring a new snapshot up to the build's `marts` and point `target` at it."""
    changes.ensure_tables(con)
    for statement in DDL:
        run(con, statement)
    folder = snapshots_dir(target)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    snapshot = folder / f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.duckdb"
    tmp = folder / f".{snapshot.name}.tmp"
    tables: dict[str, int] = {}
    alias = "snapshot_" + uuid.uuid4().hex[:8]
    previous, copies = _previous(con)
    published = _published_versions(con) if previous else {}
    mode = "incremental" if previous else "full"
    for m in marts:
        if m.view:  # a view shows its source as it is now: record the version it is at
            build(con, m)
    try:
        if previous:
            shutil.copyfile(previous, tmp)
        run(con, f"ATTACH '{_quoted(tmp)}' AS {alias}")
        try:
            run(con, f"CREATE SCHEMA IF NOT EXISTS {alias}.marts")
            for m in marts:
                _bring_up(con, alias, m, published.get(m.name))
                tables[m.name] = int(scalar(con, f"SELECT count(*) FROM {alias}.{m.name}") or 0)
            run(con, f"""CREATE OR REPLACE TABLE {alias}.marts.published AS
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
    _record(con, snapshot, copies + 1 if previous else 0, marts)
    _prune(folder, keep=snapshot)
    return Published(target, tables, now, snapshot.stat().st_size, mode)


def _previous(con: duckdb.DuckDBPyConnection) -> tuple[Path | None, int]:
    """The snapshot this build last published, to copy, and how many copies it descends
    from; None when the next snapshot is to be written from scratch."""
    rows = con.execute("SELECT path, copies FROM pipeline.published_snapshot WHERE id = 1"
                       ).fetchall()
    if not rows:
        return None, 0
    path, copies = Path(rows[0][0]), int(rows[0][1])
    if copies + 1 >= FULL_EVERY or not path.exists():
        return None, 0
    return path, copies


def _published_versions(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str]]:
    return {r[0]: (int(r[1]), str(r[2])) for r in con.execute(
        "SELECT mart, version, sql_sha256 FROM pipeline.published_marts").fetchall()}


def _bring_up(con: duckdb.DuckDBPyConnection, alias: str, m: Model,
              published: tuple[int, str] | None) -> None:
    """Make the snapshot's copy of mart `m` equal the build's."""
    built = changes.model_version(con, m.name)
    exists = scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? "
                         "AND schema_name = 'marts' AND table_name = ?", [alias, m.table])
    if m.scope is not None and published is not None and built is not None and exists \
            and published[1] == m.sql_sha256 == built[1] and published[0] >= changes.floor(con) \
            and _scope_reference_at(con, m.scope, built[0]):
        if published[0] == built[0]:
            return  # unchanged since it was published
        # the rows the build refreshes every time (`also`), as the snapshot has them
        changes.prepare_scope(con, m.scope, published[0], built[0],
                              (f"{alias}.{m.name}", m.also) if m.also else None)
        run(con, f"DELETE FROM {alias}.{m.name} "
                 f"WHERE {changes.in_scope(m.scope, f'{alias}.{m.name}')}")
        # a view's rows in scope are selected from its source (it has no rows of its own)
        rows = f"BY NAME {m.statement(True)}" if m.view else \
            f"SELECT * FROM {m.name} WHERE {changes.in_scope(m.scope, m.name)}"
        run(con, f"INSERT INTO {alias}.{m.name} {rows}")
        return
    run(con, f"DROP TABLE IF EXISTS {alias}.{m.name}")
    run(con, f"CREATE TABLE {alias}.{m.name} AS SELECT * FROM {m.name}")
    run(con, f"COMMENT ON TABLE {alias}.{m.name} IS '{_quoted(m.description)}'")


def _scope_reference_at(con: duckdb.DuckDBPyConnection, scope: str, version: int) -> bool:
    """Alert scopes are numbered by `intermediate.int_alerts`: it must be at the mart's
    version for the snapshot's rows to line up with them."""
    if scope != "alerts":
        return True
    reference = changes.model_version(con, "intermediate.int_alerts")
    return reference is not None and reference[0] == version


def _record(con: duckdb.DuckDBPyConnection, snapshot: Path, copies: int,
            marts: Sequence[Model]) -> None:
    """What the new snapshot holds: the next publish starts from it."""
    run(con, "BEGIN TRANSACTION")
    try:
        run(con, "INSERT OR REPLACE INTO pipeline.published_snapshot VALUES (1, ?, ?)",
            [str(snapshot), copies])
        run(con, "DELETE FROM pipeline.published_marts")
        for m in marts:
            built = changes.model_version(con, m.name)
            if built is not None:
                run(con, "INSERT INTO pipeline.published_marts VALUES (?, ?, ?)",
                    [m.name, built[0], built[1]])
        run(con, "COMMIT")
    except BaseException:
        run(con, "ROLLBACK")
        raise


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
