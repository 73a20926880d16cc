"""The export of a real published warehouse into a local lake: every curated mart as CSV +
manifest and as Hive-partitioned Parquet + Glue table, readable back to the mart's rows; RLS
rules; absent and empty marts; atomic switches, failures and pruning."""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from botocore.stub import Stubber

from tests.exports.conftest import (
    TRICKY_ASSET,
    check_manifest,
    expected_text,
    parse_csv,
    read_json,
    read_text,
    typed_value,
)
from warehouse.exports import quicksight as qs_export
from warehouse.exports.catalog import EXPORT_TABLES, short_name
from warehouse.exports.csv_files import table_columns
from warehouse.exports.quicksight import ExportFailed, current_export, export_marts
from warehouse.exports.rls import parse_mapping
from warehouse.exports.store import ExportStore
from warehouse.lake import Lake, LakeError, open_lake

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
RLS = parse_mapping({"users": {"alice": ["acme"], "msp-admin": ["*"]},
                     "groups": {"beta-readers": ["beta"]}})


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return open_lake((tmp_path / "lake").as_uri())


def mart_rows(con: duckdb.DuckDBPyConnection, table: str) -> tuple[list[str], list[tuple]]:
    cursor = con.execute(f"SELECT * FROM {table}")
    return [d[0] for d in cursor.description], cursor.fetchall()


def assert_csv_matches_mart(lake: Lake, con: duckdb.DuckDBPyConnection, table: str,
                            uris: list[str]) -> None:
    columns = table_columns(con, table)
    names, rows = mart_rows(con, table)
    parsed: list[list[str]] = []
    for uri in uris:
        header, body = parse_csv(read_text(lake, ExportStore(lake).path_of(uri)))
        assert header == names
        parsed += body
    expected = sorted([expected_text(v, c) for v, c in zip(r, columns, strict=True)]
                      for r in rows)
    assert sorted(parsed) == expected, table
    # and each field parses back to the mart's value by its documented type
    for fields in parsed:
        for text, column in zip(fields, columns, strict=True):
            typed_value(text, column)


def test_every_curated_mart_is_exported_and_reads_back(con, lake: Lake) -> None:
    result = export_marts(con, lake, rls=RLS, now=T0)
    store = ExportStore(lake)
    assert [t.table for t in result.tables] == [short_name(t) for t in EXPORT_TABLES] + [
        "rls_tenant_permissions"]
    for table in EXPORT_TABLES:
        name = short_name(table)
        done = next(t for t in result.tables if t.table == name)
        assert done.version == result.version and not done.skipped
        manifest_path = store.path("quicksight", name, "manifest.json")
        assert manifest_path.endswith(".json")  # QuickSight manifests need the extension
        uris = check_manifest(read_json(lake, manifest_path), "file://")
        assert_csv_matches_mart(lake, con, table, uris)
        assert done.rows == con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        meta, _ = current_export(store, name) or ({}, "")
        assert meta["rows"] == done.rows and meta["version"] == result.version
        assert [c["name"] for c in meta["columns"]] == mart_rows(con, table)[0]
    # the tricky asset (comma, quotes, line break) survived the round trip
    header, rows = parse_csv(read_text(lake, ExportStore(lake).path_of(next(
        t for t in result.tables if t.table == "fct_incidents").csv_files[0])))
    assert TRICKY_ASSET in [r[header.index("asset")] for r in rows]


def test_parquet_is_partitioned_by_tenant_and_reads_back(con, lake: Lake) -> None:
    result = export_marts(con, lake, now=T0)
    store = ExportStore(lake)
    for table in ("marts.fct_noise_daily", "marts.fct_noise_msp_daily", "marts.fct_incidents"):
        name = short_name(table)
        definition = read_json(lake, store.path("athena", name, "table.json"))
        location = definition["table_input"]["StorageDescriptor"]["Location"]
        assert location == store.uri(store.path("athena", name, f"v={result.version}")) + "/"
        folder = store.path_of(location)
        data = ds.dataset(folder, filesystem=lake.fs, format="parquet",
                          partitioning="hive").to_table()
        names, rows = mart_rows(con, table)
        assert sorted(data.column_names) == sorted(names)
        got = sorted(tuple(r[n] for n in names) for r in data.to_pylist())
        assert got == sorted(rows)
        partitioned = "tenant_id" in names
        assert all(("/tenant_id=" in f) == partitioned for f in definition["files"])


def test_glue_definitions_are_valid_create_table_requests(con, lake: Lake) -> None:
    export_marts(con, lake, now=T0, database="aw_bi")
    store = ExportStore(lake)
    glue = boto3.client("glue", region_name="us-east-1")
    for table in EXPORT_TABLES:
        definition = read_json(lake, store.path("athena", short_name(table), "table.json"))
        table_input: dict[str, Any] = definition["table_input"]
        with Stubber(glue) as stub:  # validates the request against the Glue model
            stub.add_response("create_table", {},
                              {"DatabaseName": "aw_bi", "TableInput": table_input})
            stub.add_response("update_table", {},
                              {"DatabaseName": "aw_bi", "TableInput": table_input})
            glue.create_table(DatabaseName="aw_bi", TableInput=table_input)
            glue.update_table(DatabaseName="aw_bi", TableInput=table_input)
            stub.assert_no_pending_responses()
        ddl = read_text(lake, store.path("athena", short_name(table), "create_table.sql"))
        assert ddl == definition["ddl"]
        assert ddl.startswith(f"CREATE EXTERNAL TABLE `aw_bi`.`{short_name(table)}` (")
        assert f"LOCATION '{table_input['StorageDescriptor']['Location']}'" in ddl
        params = table_input["Parameters"]
        if table_input.get("PartitionKeys"):
            assert "PARTITIONED BY (`tenant_id` string)" in ddl
            tenants = con.execute(f"SELECT DISTINCT tenant_id FROM {table} ORDER BY 1"
                                  ).fetchall()
            assert params["projection.tenant_id.values"] == ",".join(t[0] for t in tenants)
            assert params["storage.location.template"].endswith("/tenant_id=${tenant_id}/")


def test_rls_rules(con, lake: Lake) -> None:
    result = export_marts(con, lake, tables=(), rls=parse_mapping(
        {"users": {"alice": ["acme", "acme"], "msp-admin": ["*", "acme"]},
         "groups": {"beta-readers": ["beta", "gamma"]}}), now=T0)
    (rules,) = result.tables
    uris = check_manifest(read_json(lake, ExportStore(lake).path(
        "quicksight", "rls_tenant_permissions", "manifest.json")), "file://")
    header, rows = parse_csv(read_text(lake, ExportStore(lake).path_of(uris[0])))
    assert header == ["UserName", "GroupName", "tenant_id"]
    # one row per principal and tenant; "*" → an empty tenant_id (all tenants)
    assert rows == [["alice", "", "acme"], ["msp-admin", "", ""],
                    ["", "beta-readers", "beta"], ["", "beta-readers", "gamma"]]
    assert rules.rows == 4
    assert result.warnings == ["RLS mapping names tenant(s) with no data yet: gamma"]


def test_absent_and_empty_marts_are_tolerated(lake: Lake) -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE TABLE marts.fct_noise_daily (tenant_id VARCHAR, day DATE, "
                "incidents BIGINT, noise_reduction DOUBLE)")
    result = export_marts(con, lake, tables=("marts.fct_noise_daily", "marts.fct_incidents"),
                          now=T0)
    empty, absent = result.tables
    assert absent.skipped and "not in the published warehouse" in absent.skipped
    assert (empty.rows, empty.skipped, empty.parquet_files) == (0, None, [])
    store = ExportStore(lake)
    assert lake.fs.get_file_info(store.path("quicksight", "fct_incidents")).type == \
        pafs.FileType.NotFound  # nothing written for an absent mart
    (uri,) = check_manifest(read_json(lake, store.path(
        "quicksight", "fct_noise_daily", "manifest.json")), "file://")
    assert read_text(lake, store.path_of(uri)) == "tenant_id,day,incidents,noise_reduction\r\n"
    table_input = read_json(lake, store.path("athena", "fct_noise_daily", "table.json"))[
        "table_input"]
    assert "projection.enabled" not in table_input["Parameters"]  # no tenant to project
    assert table_input["PartitionKeys"] == [{"Name": "tenant_id", "Type": "string"}]


def _manifest_version(lake: Lake, name: str) -> str:
    uri = read_json(lake, ExportStore(lake).path("quicksight", name, "manifest.json"))[
        "fileLocations"][0]["URIs"][0]
    return posixpath.basename(posixpath.dirname(uri)).removeprefix("v=")


def test_readers_see_the_old_export_until_the_switch(con, lake: Lake,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first = export_marts(con, lake, now=T0)
    old_csv = {t.table: read_text(lake, ExportStore(lake).path_of(t.csv_files[0]))
               for t in first.tables}
    seen: list[str] = []
    real = qs_export.write_parquet

    def check_then_write(*args: Any, **kwargs: Any) -> Any:
        # the new CSV is written, the pointer files are not: readers still get the old one
        name = short_name(args[2])
        assert _manifest_version(lake, name) == first.version
        (uri,) = read_json(lake, ExportStore(lake).path("quicksight", name, "manifest.json"))[
            "fileLocations"][0]["URIs"]
        assert read_text(lake, ExportStore(lake).path_of(uri)) == old_csv[name]
        seen.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(qs_export, "write_parquet", check_then_write)
    second = export_marts(con, lake, now=T0 + timedelta(hours=1))
    assert len(seen) == len(EXPORT_TABLES)
    assert all(_manifest_version(lake, t.table) == second.version for t in second.tables)


def test_a_failure_mid_export_leaves_the_previous_export_current(
        con, lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    first = export_marts(con, lake, now=T0)
    real = qs_export.write_parquet

    def fail_on_incidents(*args: Any, **kwargs: Any) -> Any:
        if args[2] == "marts.fct_incidents":
            raise LakeError("S3 went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(qs_export, "write_parquet", fail_on_incidents)
    with pytest.raises(ExportFailed, match="fct_incidents failed, its previous export is "
                                           "still current: S3 went away"):
        export_marts(con, lake, now=T0 + timedelta(hours=1))
    order = [short_name(t) for t in EXPORT_TABLES]
    failed_at = order.index("fct_incidents")
    store = ExportStore(lake)
    for i, name in enumerate(order):
        version = _manifest_version(lake, name)
        definition = read_json(lake, store.path("athena", name, "table.json"))
        if i < failed_at:
            assert version != first.version  # switched before the failure
        else:
            assert version == first.version and definition["version"] == first.version
            old = next(t for t in first.tables if t.table == name)
            assert_csv_matches_mart(lake, con, f"marts.{name}", old.csv_files)


def test_old_versions_are_pruned_after_the_grace_period_never_the_current(
        con, lake: Lake) -> None:
    tables = ("marts.fct_noise_daily",)
    runs = [export_marts(con, lake, tables=tables, now=T0 + timedelta(hours=h), keep=2,
                         grace=timedelta(hours=1)) for h in range(4)]
    store = ExportStore(lake)
    # each run keeps the newest two, deleting older ones once they are an hour old
    assert store.versions(store.path("quicksight", "fct_noise_daily")) == [
        runs[3].version, runs[2].version]
    assert store.versions(store.path("athena", "fct_noise_daily")) == [
        runs[3].version, runs[2].version]
    def paths(run: Any) -> list[str]:
        return [store.path(area, "fct_noise_daily", f"v={run.version}")
                for area in ("quicksight", "athena")]

    assert (runs[1].removed, runs[2].removed, runs[3].removed) == (
        [], paths(runs[0]), paths(runs[1]))
    assert _manifest_version(lake, "fct_noise_daily") == runs[3].version
    # a grace period that has not passed keeps everything, even beyond `keep`
    late = export_marts(con, lake, tables=tables, now=T0 + timedelta(hours=3, minutes=30),
                        keep=1, grace=timedelta(hours=1))
    assert late.removed == paths(runs[2])  # runs[3] is only 30 minutes old: kept
    assert store.versions(store.path("quicksight", "fct_noise_daily")) == [
        late.version, runs[3].version]
