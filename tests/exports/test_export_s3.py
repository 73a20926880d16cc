"""The export on a real S3 endpoint (moto server, a separate process), and the QuickSight
calls moto implements (create_data_source, create_data_set, create_ingestion) made with the
exact requests provisioning sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow.dataset as ds
import pytest

from tests.exports.conftest import check_manifest, parse_csv, read_json, read_text
from tests.exports.test_export_local import assert_csv_matches_mart
from tests.support.servers import MotoServer
from warehouse.exports.catalog import EXPORT_TABLES, short_name
from warehouse.exports.provision import desired, plan, read_exports
from warehouse.exports.quicksight import export_marts
from warehouse.exports.quicksight_requests import Target
from warehouse.exports.rls import parse_mapping
from warehouse.exports.store import ExportStore

pytestmark = pytest.mark.e2e
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
TABLES = ("marts.fct_noise_daily", "marts.fct_noise_msp_daily", "marts.fct_incidents")
RLS = parse_mapping({"users": {"alice": ["acme"]}, "groups": {"msp": ["*"]}})


def test_export_to_s3_reads_back_and_leaves_no_directory_markers(con, s3_lake,
                                                                 moto: MotoServer) -> None:
    lake, bucket = s3_lake
    result = export_marts(con, lake, rls=RLS, now=T0)
    store = ExportStore(lake)
    objects = dict(moto.list_objects(bucket))
    assert not [k for k, size in objects.items() if size == 0]  # no zero-byte markers
    for table in EXPORT_TABLES:
        name = short_name(table)
        manifest_key = f"lake/exports/quicksight/{name}/manifest.json"
        assert manifest_key in objects
        uris = check_manifest(read_json(lake, store.path("quicksight", name, "manifest.json")),
                              f"s3://{bucket}/lake/exports/quicksight/{name}/v=")
        assert all(u.removeprefix(f"s3://{bucket}/") in objects for u in uris)
        assert_csv_matches_mart(lake, con, table, uris)
        definition = read_json(lake, store.path("athena", name, "table.json"))
        location = definition["table_input"]["StorageDescriptor"]["Location"]
        assert location == f"s3://{bucket}/lake/exports/athena/{name}/v={result.version}/"
        rows = ds.dataset(store.path_of(location), filesystem=lake.fs, format="parquet",
                          partitioning="hive").count_rows()
        assert rows == con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    header, rules = parse_csv(read_text(lake, store.path_of(next(
        t for t in result.tables if t.table == "rls_tenant_permissions").csv_files[0])))
    assert rules == [["alice", "", "acme"], ["", "msp", ""]]


def test_reexport_on_s3_switches_then_prunes_the_old_version(con, s3_lake,
                                                             moto: MotoServer) -> None:
    lake, bucket = s3_lake
    tables = ("marts.fct_noise_daily", "marts.fct_noise_msp_daily")
    first = export_marts(con, lake, tables=tables, now=T0)
    second = export_marts(con, lake, tables=tables, now=T0 + timedelta(hours=2), keep=1,
                          grace=timedelta(hours=1))
    keys = [k for k, _ in moto.list_objects(bucket)]
    assert not [k for k in keys if first.version in k]  # the old version is gone
    assert len(second.removed) == 4
    for name in ("fct_noise_daily", "fct_noise_msp_daily"):
        assert any(f"/{name}/v={second.version}/" in k for k in keys)
        manifest = read_json(lake, ExportStore(lake).path("quicksight", name, "manifest.json"))
        assert second.version in manifest["fileLocations"][0]["URIs"][0]
    # the only zero-byte objects pyarrow leaves are the table folders' own markers
    assert {k for k, size in moto.list_objects(bucket) if size == 0} <= {
        f"lake/exports/{area}/{name}/" for area in ("quicksight", "athena")
        for name in ("fct_noise_daily", "fct_noise_msp_daily")}


def test_moto_accepts_the_create_requests_provisioning_sends(con, s3_lake,
                                                            moto: MotoServer) -> None:
    lake, bucket = s3_lake
    export_marts(con, lake, tables=TABLES, rls=RLS, now=T0)
    store = ExportStore(lake)
    target = Target("123456789012", "us-east-1",
                    ("arn:aws:quicksight:us-east-1:123456789012:user/default/alice",))
    exports = read_exports(store, EXPORT_TABLES)  # read back from S3: the exported ones
    assert [meta["table"] for meta, _ in exports.tables] == [short_name(t) for t in TABLES]
    sources, data_sets = desired(target, store, exports)
    qs = moto.client("quicksight")
    for request in plan(target, sources, data_sets, exports):
        response = getattr(qs, request.operation)(**request.params)
        assert response["Status"] in (200, 201, 202)
        key = "DataSourceId" if request.operation == "create_data_source" else "DataSetId"
        # (moto spells dataset ARNs `data-set/`; provisioning uses the ARNs AWS returns)
        assert response["Arn"].endswith(f"/{request.params[key]}")
    noise = next(s for s in sources if s.resource_id.endswith("-s3-fct_noise_daily"))
    described = qs.describe_data_source(AwsAccountId="123456789012",
                                        DataSourceId=noise.resource_id)["DataSource"]
    assert described["DataSourceParameters"] == {"S3Parameters": {"ManifestFileLocation": {
        "Bucket": bucket, "Key": "lake/exports/quicksight/fct_noise_daily/manifest.json"}}}
    for d in data_sets:
        ingestion = qs.create_ingestion(AwsAccountId="123456789012", DataSetId=d.resource_id,
                                        IngestionId=f"aw-{d.version}-1",
                                        IngestionType="FULL_REFRESH")
        assert ingestion["IngestionId"] == f"aw-{d.version}-1"
