"""QuickSight provisioning: every request checked by botocore's Stubber against the real
QuickSight and Glue models; a first run creates, a second run with equal descriptions changes
nothing; differences are updated, missing permissions granted, newer exports refreshed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pyarrow.fs as pafs
import pytest
from botocore.stub import Stubber

from tests.exports import aws_responses as aws
from warehouse.exports.catalog import EXPORT_TABLES, short_name
from warehouse.exports.provision import (
    Exports,
    ProvisionError,
    apply,
    desired,
    plan,
    validate,
)
from warehouse.exports.quicksight import current_definition, current_export, export_marts
from warehouse.exports.quicksight_requests import (
    DATA_SET_ACTIONS,
    DATA_SOURCE_ACTIONS,
    DataSetSpec,
    DataSourceSpec,
    Target,
)
from warehouse.exports.rls import RLS_TABLE, parse_mapping
from warehouse.exports.store import ExportStore
from warehouse.lake import Lake, open_lake
from warehouse.publish import connect_readonly

ACCOUNT = "123456789012"
ALICE = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:user/default/alice"
TARGET = Target(ACCOUNT, "us-east-1", (ALICE,))
BUCKET_ROOT = "aw-bi-bucket/lake"


@pytest.fixture(scope="module")
def exports(warehouse_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Exports:
    """The current exports of the session warehouse, as read from an S3 lake at BUCKET_ROOT
    (exported locally; the manifest paths are where they would be in the bucket)."""
    lake = open_lake(tmp_path_factory.mktemp("provision-lake").as_uri())
    con = connect_readonly(warehouse_path)
    try:
        export_marts(con, lake, rls=parse_mapping({"groups": {"acme-readers": ["acme"]}}))
    finally:
        con.close()
    local = ExportStore(lake)
    found = Exports()
    for name in [short_name(t) for t in EXPORT_TABLES]:
        meta, _ = current_export(local, name) or ({}, "")
        found.tables.append((meta, f"{BUCKET_ROOT}/exports/quicksight/{name}/manifest.json"))
        found.definitions.append(current_definition(local, name) or {})
    rls_meta, _ = current_export(local, RLS_TABLE) or ({}, "")
    found.rls = (rls_meta, f"{BUCKET_ROOT}/exports/quicksight/{RLS_TABLE}/manifest.json")
    return found


@pytest.fixture
def store() -> ExportStore:
    # An S3 lake object; provisioning only derives bucket and key from it (no network).
    fs = pafs.S3FileSystem(anonymous=True, region="us-east-1")
    return ExportStore(Lake(fs=fs, root=BUCKET_ROOT, uri=f"s3://{BUCKET_ROOT}"))


@pytest.fixture
def qs() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("quicksight", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def ids(spec: DataSourceSpec | DataSetSpec) -> dict[str, str]:
    key = "DataSourceId" if isinstance(spec, DataSourceSpec) else "DataSetId"
    return {"AwsAccountId": ACCOUNT, key: spec.resource_id}


def exported_at(spec: DataSetSpec) -> datetime:
    return datetime.fromisoformat(spec.exported_at.replace("Z", "+00:00"))


def queue_existing(stub: Stubber, sources: list[DataSourceSpec], data_sets: list[DataSetSpec],
                   refreshed: bool = True) -> None:
    """The describe responses of an account where everything exists as desired."""
    for s in sources:
        stub.add_response("describe_data_source", aws.data_source(TARGET, s), ids(s))
        stub.add_response("describe_data_source_permissions",
                          aws.data_source_permissions(TARGET, s), ids(s))
    for d in data_sets:
        stub.add_response("describe_data_set", aws.data_set(TARGET, d), ids(d))
        when = exported_at(d) + (timedelta(minutes=5) if refreshed else -timedelta(days=1))
        stub.add_response("list_ingestions", aws.ingestions(
            TARGET, d, ("aw-old-1", "COMPLETED", when)), ids(d))
        stub.add_response("describe_data_set_permissions",
                          aws.data_set_permissions(TARGET, d), ids(d))


def test_first_run_creates_everything_with_valid_requests(qs, exports: Exports,
                                                          store: ExportStore) -> None:
    client, stub = qs
    sources, data_sets = desired(TARGET, store, exports)
    for s in sources:
        stub.add_client_error("describe_data_source", expected_params=ids(s), **aws.not_found())
        stub.add_response("create_data_source", aws.created_data_source(
            TARGET, s.create(TARGET)), s.create(TARGET))
    for d in data_sets:
        stub.add_client_error("describe_data_set", expected_params=ids(d), **aws.not_found())
        stub.add_response("create_data_set", aws.created_data_set(TARGET, d.create(TARGET)),
                          d.create(TARGET))
    steps = apply(client, TARGET, sources, data_sets, exports)
    assert {s.action for s in steps} == {"create"}
    assert len(steps) == len(sources) + len(data_sets) == 2 * (len(EXPORT_TABLES) + 1)
    # RLS first (its ARN is referenced), then every tenant-level dataset protected by it
    rules = data_sets[0]
    assert rules.resource_id == f"alert-whisperer-{RLS_TABLE}"
    for d in data_sets[1:]:
        rls = d.create(TARGET).get("RowLevelPermissionDataSet")
        tenant_level = any(c.name == "tenant_id" for c in d.columns)
        assert (rls is not None) == tenant_level, d.table
        if rls:
            assert rls == {"Arn": TARGET.arn("dataset", rules.resource_id),
                           "PermissionPolicy": "GRANT_ACCESS", "FormatVersion": "VERSION_1",
                           "Status": "ENABLED"}
    assert not any("RowLevel" in k for k in next(
        d for d in data_sets if d.table == "fct_noise_msp_daily").create(TARGET))


def test_datasets_reference_the_arns_the_service_returns(qs, exports: Exports,
                                                         store: ExportStore) -> None:
    client, stub = qs
    sources, data_sets = desired(TARGET, store, exports)
    rules_source, rules, table_source, table = sources[0], data_sets[0], sources[1], data_sets[1]
    served = {s.resource_id: f"arn:aws:quicksight:us-east-1:{ACCOUNT}:datasource/served-"
                             f"{s.resource_id}" for s in (rules_source, table_source)}
    for s in (rules_source, table_source):
        stub.add_response("describe_data_source", aws.data_source(
            TARGET, s, Arn=served[s.resource_id]), ids(s))
        stub.add_response("describe_data_source_permissions",
                          aws.data_source_permissions(TARGET, s), ids(s))
    rules_arn = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:dataset/served-rules"
    stub.add_client_error("describe_data_set", expected_params=ids(rules), **aws.not_found())
    request = rules.create(TARGET)
    request["PhysicalTableMap"]["source"]["S3Source"]["DataSourceArn"] = served[
        rules_source.resource_id]
    stub.add_response("create_data_set", {**aws.created_data_set(TARGET, request),
                                          "Arn": rules_arn}, request)
    stub.add_client_error("describe_data_set", expected_params=ids(table), **aws.not_found())
    request = table.create(TARGET)
    request["PhysicalTableMap"]["source"]["S3Source"]["DataSourceArn"] = served[
        table_source.resource_id]
    request["RowLevelPermissionDataSet"]["Arn"] = rules_arn
    stub.add_response("create_data_set", aws.created_data_set(TARGET, request), request)
    apply(client, TARGET, [rules_source, table_source], [rules, table], exports)


def test_s3_datasets_cast_the_csv_strings_to_the_mart_types(exports: Exports,
                                                             store: ExportStore) -> None:
    _, data_sets = desired(TARGET, store, exports)
    noise = next(d for d in data_sets if d.table == "fct_noise_daily").create(TARGET)
    (physical,) = noise["PhysicalTableMap"].values()
    assert physical["S3Source"]["UploadSettings"] == {
        "Format": "CSV", "StartFromRow": 1, "ContainsHeader": True,
        "TextQualifier": "DOUBLE_QUOTE", "Delimiter": ","}
    assert {c["Type"] for c in physical["S3Source"]["InputColumns"]} == {"STRING"}
    (logical,) = noise["LogicalTableMap"].values()
    casts = {op["CastColumnTypeOperation"]["ColumnName"]: op["CastColumnTypeOperation"]
             for op in logical["DataTransforms"]}
    assert casts["day"] == {"ColumnName": "day", "NewColumnType": "DATETIME",
                            "Format": "yyyy-MM-dd"}
    assert casts["incidents"] == {"ColumnName": "incidents", "NewColumnType": "INTEGER"}
    assert casts["noise_reduction"] == {"ColumnName": "noise_reduction",
                                        "NewColumnType": "DECIMAL", "SubType": "FLOAT"}
    assert "tenant_id" not in casts  # strings stay strings (RLS needs a string field)
    incidents = next(d for d in data_sets if d.table == "fct_incidents").create(TARGET)
    (logical,) = incidents["LogicalTableMap"].values()
    first_seen = next(op["CastColumnTypeOperation"] for op in logical["DataTransforms"]
                      if op["CastColumnTypeOperation"]["ColumnName"] == "first_seen")
    assert first_seen["Format"] == "yyyy-MM-dd'T'HH:mm:ss.SSSZ"


def test_second_run_with_equal_descriptions_changes_nothing(qs, exports: Exports,
                                                            store: ExportStore) -> None:
    client, stub = qs
    sources, data_sets = desired(TARGET, store, exports)
    queue_existing(stub, sources, data_sets)
    # only describe/list calls are queued: any create, update or grant would fail the Stubber
    steps = apply(client, TARGET, sources, data_sets, exports)
    assert {s.action for s in steps} == {"unchanged"}


def test_an_rls_description_without_optional_fields_is_unchanged(
        qs, exports: Exports, store: ExportStore) -> None:
    client, stub = qs
    _, data_sets = desired(TARGET, store, exports)
    d = data_sets[1]
    assert d.rls_arn
    described = aws.data_set(TARGET, d, RowLevelPermissionDataSet={
        "Arn": d.rls_arn, "PermissionPolicy": "GRANT_ACCESS"})
    stub.add_response("describe_data_set", described, ids(d))
    stub.add_response("list_ingestions", aws.ingestions(
        TARGET, d, ("aw-1", "COMPLETED", exported_at(d) + timedelta(minutes=3))), ids(d))
    stub.add_response("describe_data_set_permissions", aws.data_set_permissions(TARGET, d),
                      ids(d))
    assert [x.action for x in apply(client, TARGET, [], [d], exports)] == ["unchanged"]


def test_differences_are_updated_and_missing_permissions_granted(qs, exports: Exports,
                                                                 store: ExportStore) -> None:
    client, stub = qs
    sources, data_sets = desired(TARGET, store, exports, rls=True)
    s, d = sources[1], data_sets[1]  # the first table's data source and dataset
    bob = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:user/default/bob"
    moved = {"S3Parameters": {"ManifestFileLocation": {"Bucket": "old-bucket", "Key": "m.json"}}}
    stub.add_response("describe_data_source", aws.data_source(
        TARGET, s, DataSourceParameters=moved), ids(s))
    stub.add_response("update_data_source", {
        "Arn": TARGET.arn("datasource", s.resource_id), "DataSourceId": s.resource_id,
        "UpdateStatus": "UPDATE_IN_PROGRESS", "RequestId": "r", "Status": 202},
        s.update(TARGET))
    stub.add_response("describe_data_source_permissions",
                      aws.data_source_permissions(TARGET, s, principals=()), ids(s))
    stub.add_response("update_data_source_permissions", {
        "DataSourceArn": TARGET.arn("datasource", s.resource_id),
        "DataSourceId": s.resource_id, "RequestId": "r", "Status": 200},
        {**ids(s), "GrantPermissions": [{"Principal": ALICE,
                                         "Actions": list(DATA_SOURCE_ACTIONS)}]})
    stale = {"typed": {"Alias": d.table, "Source": {"PhysicalTableId": "source"}}}  # no casts
    stub.add_response("describe_data_set", aws.data_set(TARGET, d, LogicalTableMap=stale),
                      ids(d))
    arn = TARGET.arn("dataset", d.resource_id)
    stub.add_response("update_data_set", {
        "Arn": arn, "DataSetId": d.resource_id, "IngestionArn": f"{arn}/ingestion/u1",
        "IngestionId": "u1", "RequestId": "r", "Status": 201}, d.update(TARGET))
    stub.add_response("describe_data_set_permissions",
                      aws.data_set_permissions(TARGET, d, principals=(bob,)), ids(d))
    grant = [{"Principal": ALICE, "Actions": list(DATA_SET_ACTIONS)}]
    stub.add_response("update_data_set_permissions", {
        "DataSetArn": arn, "DataSetId": d.resource_id, "RequestId": "r", "Status": 200},
        {**ids(d), "GrantPermissions": grant})
    steps = apply(client, TARGET, [s], [d], exports)
    assert [(x.kind, x.action) for x in steps] == [
        ("data source", "update"), ("permissions", "grant"), ("data set", "update"),
        ("permissions", "grant")]


def test_an_unchanged_dataset_is_refreshed_only_for_a_newer_export(
        qs, exports: Exports, store: ExportStore) -> None:
    client, stub = qs
    _, data_sets = desired(TARGET, store, exports)
    d = data_sets[1]
    stub.add_response("describe_data_set", aws.data_set(TARGET, d), ids(d))
    # the latest good ingestion predates the export; a failed one after it does not count
    stub.add_response("list_ingestions", aws.ingestions(
        TARGET, d, ("aw-x-1", "COMPLETED", exported_at(d) - timedelta(hours=1)),
        (f"aw-{d.version}-1", "FAILED", exported_at(d) + timedelta(minutes=1))), ids(d))
    stub.add_response("create_ingestion", {
        "Arn": "arn:aws:quicksight:us-east-1:123456789012:dataset/x/ingestion/y",
        "IngestionId": f"aw-{d.version}-2", "IngestionStatus": "INITIALIZED",
        "RequestId": "r", "Status": 201},
        {**ids(d), "IngestionId": f"aw-{d.version}-2", "IngestionType": "FULL_REFRESH"})
    stub.add_response("describe_data_set_permissions", aws.data_set_permissions(TARGET, d),
                      ids(d))
    # and while an ingestion runs, nothing is started
    stub.add_response("describe_data_set", aws.data_set(TARGET, d), ids(d))
    stub.add_response("list_ingestions", aws.ingestions(
        TARGET, d, (f"aw-{d.version}-2", "RUNNING", exported_at(d) + timedelta(minutes=2))),
        ids(d))
    stub.add_response("describe_data_set_permissions", aws.data_set_permissions(TARGET, d),
                      ids(d))
    first = apply(client, TARGET, [], [d], exports)
    second = apply(client, TARGET, [], [d], exports)
    assert [(x.kind, x.action) for x in first] == [("data set", "unchanged"),
                                                   ("ingestion", "refresh")]
    assert [(x.kind, x.action, x.detail) for x in second] == [
        ("data set", "unchanged", ""), ("ingestion", "unchanged", "an ingestion is in progress")]


def test_athena_source_syncs_glue_tables_and_reads_them_with_typed_sql(
        qs, exports: Exports, store: ExportStore) -> None:
    client, stub = qs
    target = Target(ACCOUNT, "us-east-1", (ALICE,), source="athena", glue_database="aw_bi")
    sources, data_sets = desired(target, store, exports)
    assert [s.type for s in sources] == ["S3", "ATHENA"]  # RLS rules are CSV on S3 either way
    glue = boto3.client("glue", region_name="us-east-1")
    inputs = [d["table_input"] for d in exports.definitions]
    with Stubber(glue) as glue_stub:
        glue_stub.add_response("get_database", {"Database": {"Name": "aw_bi"}}, {"Name": "aw_bi"})
        for i, table_input in enumerate(inputs):
            where = {"DatabaseName": "aw_bi", "Name": table_input["Name"]}
            if i == 0:  # missing → created
                glue_stub.add_client_error("get_table", "EntityNotFoundException",
                                           expected_params=where)
                glue_stub.add_response("create_table", {},
                                       {"DatabaseName": "aw_bi", "TableInput": table_input})
            elif i == 1:  # pointing at an older export → updated
                old = {**table_input, "StorageDescriptor": {
                    **table_input["StorageDescriptor"], "Location": "s3://b/old/"}}
                glue_stub.add_response("get_table", aws.glue_table("aw_bi", old), where)
                glue_stub.add_response("update_table", {},
                                       {"DatabaseName": "aw_bi", "TableInput": table_input})
            else:
                glue_stub.add_response("get_table", aws.glue_table("aw_bi", table_input), where)
        for s in sources:
            stub.add_client_error("describe_data_source", expected_params=ids(s),
                                  **aws.not_found())
            stub.add_response("create_data_source", aws.created_data_source(
                target, s.create(target)), s.create(target))
        for d in data_sets:
            stub.add_client_error("describe_data_set", expected_params=ids(d),
                                  **aws.not_found())
            stub.add_response("create_data_set", aws.created_data_set(
                target, d.create(target)), d.create(target))
        steps = apply(client, target, sources, data_sets, exports, glue=glue)
        glue_stub.assert_no_pending_responses()
    glue_actions = [(s.kind, s.action) for s in steps if s.kind.startswith("glue")]
    assert glue_actions[:2] == [("glue table", "create"), ("glue table", "update")]
    assert {a for _, a in glue_actions[2:]} == {"unchanged"}
    noise = next(d for d in data_sets if d.table == "fct_noise_daily")
    sql = noise.physical["source"]["CustomSql"]
    assert sql["SqlQuery"].endswith('FROM "aw_bi"."fct_noise_daily"')
    nodes = next(d for d in data_sets if d.table == "fct_patch_compliance_node_daily")
    node_sql = nodes.physical["source"]["CustomSql"]["SqlQuery"]
    assert 'CAST("compliant" AS integer) AS "compliant"' in node_sql
    assert {c["Name"]: c["Type"] for c in nodes.physical["source"]["CustomSql"]["Columns"]}[
        "last_scan_at"] == "DATETIME"


def test_dry_run_requests_are_valid_for_the_service_models(exports: Exports,
                                                           store: ExportStore) -> None:
    for target in (TARGET, Target(ACCOUNT, "eu-west-1", (), source="athena",
                                  role_arn=f"arn:aws:iam::{ACCOUNT}:role/qs-reader")):
        sources, data_sets = desired(target, store, exports)
        requests = plan(target, sources, data_sets, exports)
        clients = {name: boto3.client(name, region_name=target.region)
                   for name in ("quicksight", "glue")}
        with Stubber(clients["quicksight"]) as qs_stub, Stubber(clients["glue"]) as glue_stub:
            for r in requests:
                stub = qs_stub if r.service == "quicksight" else glue_stub
                response = {} if r.service == "glue" else (
                    aws.created_data_source(target, r.params)
                    if r.operation == "create_data_source"
                    else aws.created_data_set(target, r.params))
                stub.add_response(r.operation, response, r.params)
                getattr(clients[r.service], r.operation)(**r.params)
        operations = [r.operation for r in requests]
        if target.source == "athena":
            assert operations[:2] == ["create_database", "create_table"]
            assert "Permissions" not in requests[-1].params  # no principal given
        assert operations.count("create_data_set") == len(EXPORT_TABLES) + 1


def test_rls_is_required_unless_explicitly_declined(exports: Exports,
                                                    store: ExportStore) -> None:
    without = Exports(tables=exports.tables, rls=None, definitions=exports.definitions)
    with pytest.raises(ProvisionError, match="no row-level security rules are exported"):
        desired(TARGET, store, without)
    _, data_sets = desired(TARGET, store, without, rls=False)
    assert not any(d.rls_arn for d in data_sets)


@pytest.mark.parametrize("target,message", [
    (Target("12345", "us-east-1"), "12 digits"),
    (Target(ACCOUNT, "mars-1"), "not an AWS region"),
    (Target(ACCOUNT, "us-east-1", ("alice",)), "not a QuickSight user or group ARN"),
    (Target(ACCOUNT, "us-east-1", id_prefix="no spaces"), "id prefix"),
    (Target(ACCOUNT, "us-east-1", role_arn="qs-role"), "IAM role ARN"),
    (Target(ACCOUNT, "us-east-1", glue_database="Bad-Name"), "Glue database name"),
    (Target(ACCOUNT, "us-east-1", athena_workgroup="a b"), "Athena workgroup"),
])
def test_bad_targets_are_refused(target: Target, message: str) -> None:
    with pytest.raises(ProvisionError, match=message):
        validate(target)
