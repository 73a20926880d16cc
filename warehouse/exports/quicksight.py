"""Export the curated marts of the published warehouse into the lake for QuickSight and Athena.

Per table `<t>`, under `<lake>/exports/` (the layout in docs/quicksight.md):

    quicksight/<t>/manifest.json                       the QuickSight manifest: the switch
    quicksight/<t>/v=<version>/part-00000.csv …         RFC 4180 CSV with a header
    quicksight/<t>/v=<version>/_export.json             columns, types, casts, rows, bytes
    athena/<t>/table.json                               Glue TableInput + DDL: the switch
    athena/<t>/create_table.sql                         the same DDL, as a file
    athena/<t>/v=<version>/tenant_id=<id>/part-0.parquet   (unpartitioned without tenant_id)
    quicksight/rls_tenant_permissions/…                 the row-level security rules

A table's files are written under a new version first and its pointer files last, so a reader
(SPICE ingestion, Athena query, a person) sees the previous export or the new one, whole. A
failure leaves every table's previous export in place. Old versions are pruned after a grace
period. Tables are independent: a mart absent from the warehouse is skipped (its previous
export, if any, is kept), an empty one is exported empty.
"""

from __future__ import annotations

import csv
import io
import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from warehouse import models
from warehouse.config import PlatformSettings
from warehouse.exports.athena import create_table_ddl, table_input, write_parquet
from warehouse.exports.catalog import EXPORT_TABLES, TENANT_COLUMN, Column, short_name
from warehouse.exports.csv_files import ExportTooLarge, manifest, table_columns, write_csv
from warehouse.exports.rls import RLS_COLUMNS, RLS_TABLE, RlsMapping
from warehouse.exports.settings import ExportSettings
from warehouse.exports.store import VERSION_PREFIX, ExportStore, new_version
from warehouse.lake import Lake, LakeError, open_lake
from warehouse.publish import connect_readonly
from warehouse.registry_records import TENANT_ID_PATTERN

Echo = Callable[[str], None]
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
METADATA = "_export.json"  # leading underscore: Hive/Athena ignore it
DEFINITION = "table.json"
DDL_FILE = "create_table.sql"


class ExportFailed(RuntimeError):
    """A table could not be exported; its previous export (if any) is still current."""


@dataclass
class TableExport:
    """What one table's export produced (or why it was skipped)."""

    table: str
    version: str = ""
    rows: int = 0
    csv_bytes: int = 0
    parquet_bytes: int = 0
    csv_files: list[str] = field(default_factory=list)
    parquet_files: list[str] = field(default_factory=list)
    manifest_uri: str = ""
    definition_uri: str = ""
    skipped: str | None = None

    @property
    def bytes(self) -> int:
        return self.csv_bytes + self.parquet_bytes


@dataclass
class ExportResult:
    version: str
    tables: list[TableExport]
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "seconds": round(self.seconds, 2),
                "tables": [asdict(t) | {"bytes": t.bytes} for t in self.tables],
                "removed_versions": self.removed, "warnings": self.warnings}


def _quiet(_line: str) -> None:
    pass


def export_published(settings: PlatformSettings, export: ExportSettings,
                     rls: RlsMapping | None = None, echo: Echo = _quiet) -> ExportResult:
    """Export from the published warehouse (read-only) into the configured lake."""
    lake = open_lake(settings.resolved_lake_uri, settings.s3_endpoint_url)
    con = connect_readonly(settings.resolved_warehouse_path)
    try:
        return export_marts(con, lake, rls=rls, database=export.glue_database,
                            keep=export.export_keep, grace=export.grace, echo=echo)
    finally:
        con.close()


def export_marts(con: duckdb.DuckDBPyConnection, lake: Lake, *,
                 tables: Sequence[str] = EXPORT_TABLES, rls: RlsMapping | None = None,
                 database: str = "alert_whisperer", keep: int = 3,
                 grace: timedelta = timedelta(hours=1), now: datetime | None = None,
                 echo: Echo = _quiet) -> ExportResult:
    """Export `tables` (and the RLS rules when given), each atomically; prune old versions."""
    started = time.monotonic()
    store = ExportStore(lake)
    at = (now or datetime.now(UTC)).astimezone(UTC)
    result = ExportResult(version=new_version(at), tables=[])
    exported_at = at.isoformat().replace("+00:00", "Z")
    source = _source(con)
    echo(f"exporting {len(tables)} mart(s) to {store.uri(store.root)} (version "
         f"{result.version})")
    for table in tables:
        try:
            done = _export_table(con, store, table, result.version, exported_at, database,
                                 source)
        except (LakeError, duckdb.Error, ExportTooLarge, pa.ArrowException) as exc:
            raise ExportFailed(
                f"exporting {table} failed, its previous export is still current: {exc}"
            ) from exc
        result.tables.append(done)
        echo(f"  {'–' if done.skipped else '✓'} {done.table}  "
             + (done.skipped or f"{done.rows:,} rows, {_size(done.bytes)}"))
    if rls is not None:
        result.tables.append(_export_rls(store, rls, result.version, exported_at, source))
        result.warnings += _unknown_tenants(con, rls)
        echo(f"  ✓ {RLS_TABLE}  {result.tables[-1].rows} rule(s)")
    for warning in result.warnings:
        echo(f"  ! {warning}")
    for done in result.tables:
        if not done.skipped:
            result.removed += _prune(store, done.table, result.version, keep, grace, now)
    result.seconds = time.monotonic() - started
    return result


def _export_table(con: duckdb.DuckDBPyConnection, store: ExportStore, table: str,
                  version: str, exported_at: str, database: str,
                  source: dict[str, str]) -> TableExport:
    name = short_name(table)
    columns = table_columns(con, table)
    if not columns:
        return TableExport(name, skipped="not in the published warehouse: previous export kept")
    try:
        model = models.model(table)
        key, description = list(model.key), model.description
    except KeyError:
        key, description = [], ""
    partitioned = TENANT_COLUMN in {c.name for c in columns}
    qs_dir, at_dir = store.path("quicksight", name), store.path("athena", name)
    qs_version = posixpath.join(qs_dir, VERSION_PREFIX + version)
    at_version = posixpath.join(at_dir, VERSION_PREFIX + version)
    csv_files = write_csv(con, store, table, columns, qs_version, key)
    parquet = write_parquet(con, store, table, columns, at_version, key, partitioned)
    bad = [t for t in parquet.tenants if not TENANT_ID_PATTERN.fullmatch(t)]
    if bad:
        raise LakeError(f"tenant id(s) not usable as a partition: {bad[:3]}")
    meta = _metadata(name, table, version, exported_at, description, key, columns,
                     csv_files.rows, csv_files.bytes, [store.uri(p) for p in csv_files.paths],
                     source, parquet.tenants if partitioned else None)
    store.write_json(posixpath.join(qs_version, METADATA), meta)
    definition = table_input(name, description, columns, store.uri(at_version),
                             parquet.tenants if partitioned else None,
                             {"aw.export_version": version, "aw.exported_at": exported_at})
    ddl = create_table_ddl(database, definition)
    # The switches: each pointer file replaces the previous one in a single write.
    store.write_json(posixpath.join(qs_dir, MANIFEST), manifest(meta["files"]))
    store.write_json(posixpath.join(at_dir, DEFINITION), {
        "format_version": FORMAT_VERSION, "table": name, "version": version,
        "exported_at": exported_at, "rows": parquet.rows, "bytes": parquet.bytes,
        "files": [store.uri(p) for p in parquet.paths], "database": database,
        "table_input": definition, "ddl": ddl})
    store.write_bytes(posixpath.join(at_dir, DDL_FILE), ddl.encode())
    return TableExport(
        name, version, csv_files.rows, csv_files.bytes, parquet.bytes,
        meta["files"], [store.uri(p) for p in parquet.paths],
        store.uri(posixpath.join(qs_dir, MANIFEST)), store.uri(posixpath.join(at_dir,
                                                                             DEFINITION)))


def _metadata(name: str, table: str, version: str, exported_at: str, description: str,
              key: list[str], columns: Sequence[Column], rows: int, size: int,
              files: list[str], source: dict[str, str],
              tenants: list[str] | None) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "table": name, "source_table": table,
            "version": version, "exported_at": exported_at, "description": description,
            "key": key, "rows": rows, "bytes": size, "files": files,
            "tenant_column": TENANT_COLUMN if tenants is not None else None,
            "tenants": tenants, "columns": [c.to_json() for c in columns], "source": source}


def _export_rls(store: ExportStore, rls: RlsMapping, version: str, exported_at: str,
                source: dict[str, str]) -> TableExport:
    folder = store.path("quicksight", RLS_TABLE)
    version_dir = posixpath.join(folder, VERSION_PREFIX + version)
    rows = rls.rows()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([c.name for c in RLS_COLUMNS])
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8")
    path = posixpath.join(version_dir, "part-00000.csv")
    try:
        store.write_bytes(path, data)
        meta = _metadata(RLS_TABLE, RLS_TABLE, version, exported_at,
                         "QuickSight row-level security rules: one row per user or group and "
                         "tenant (an empty tenant_id means every tenant).", [], RLS_COLUMNS,
                         len(rows), len(data), [store.uri(path)], source, None)
        store.write_json(posixpath.join(version_dir, METADATA), meta)
        store.write_json(posixpath.join(folder, MANIFEST), manifest(meta["files"]))
    except LakeError as exc:
        raise ExportFailed(f"exporting the RLS rules failed, the previous rules are still "
                           f"current: {exc}") from exc
    return TableExport(RLS_TABLE, version, len(rows), len(data), 0, meta["files"], [],
                       store.uri(posixpath.join(folder, MANIFEST)))


def _prune(store: ExportStore, name: str, version: str, keep: int, grace: timedelta,
           now: datetime | None) -> list[str]:
    removed = []
    for area in ("quicksight", "athena"):
        removed += store.prune(store.path(area, name), version, keep, grace, now)
    return removed


def _source(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Where the export comes from: the published snapshot and when it was published."""
    info = {"warehouse": ""}
    try:
        row = con.execute("SELECT published_at::VARCHAR FROM marts.published").fetchone()
        info["published_at"] = str(row[0]) if row else ""
        path = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = "
                           "current_database()").fetchone()
        info["warehouse"] = str(path[0]) if path and path[0] else ""
    except duckdb.Error:
        pass  # not a published snapshot (a test table, a build file): nothing to record
    return info


def _unknown_tenants(con: duckdb.DuckDBPyConnection, rls: RlsMapping) -> list[str]:
    wanted = rls.tenants()
    if not wanted or not table_columns(con, "marts.dim_tenants"):
        return []
    known = {r[0] for r in con.execute("SELECT tenant_id FROM marts.dim_tenants").fetchall()}
    missing = sorted(wanted - known)
    return [f"RLS mapping names tenant(s) with no data yet: {', '.join(missing)}"] if missing \
        else []


def current_export(store: ExportStore, name: str) -> tuple[dict[str, Any], str] | None:
    """The metadata of a table's current QuickSight export and its manifest path, found by
    following the manifest (the switch), or None when the table was never exported."""
    manifest_path = store.path("quicksight", name, MANIFEST)
    found = store.read_json(manifest_path)
    if not found:
        return None
    first = found["fileLocations"][0]["URIs"][0]
    meta = store.read_json(posixpath.join(posixpath.dirname(store.path_of(first)), METADATA))
    return (meta, manifest_path) if meta else None


def current_definition(store: ExportStore, name: str) -> dict[str, Any] | None:
    """A table's current Athena/Glue definition (`table.json`), or None."""
    found = store.read_json(store.path("athena", name, DEFINITION))
    return found if isinstance(found, dict) else None


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} GB"
