"""`aw export quicksight` and `aw quicksight provision` as a user runs them: progress and JSON
output, and every bad input answered by a one-line error, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner, Result

from tests.exports.test_provision import queue_existing
from tests.support.servers import MotoServer
from warehouse.config import platform_settings
from warehouse.exports import aws as aws_clients
from warehouse.exports.catalog import EXPORT_TABLES
from warehouse.exports.provision import desired, read_exports
from warehouse.exports.quicksight_requests import Target
from warehouse.exports.store import ExportStore
from warehouse.lake import open_lake

ACCOUNT = "123456789012"
ALICE = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:user/default/alice"


def run(*args: str) -> Result:
    from service.quicksight_cli import export, quicksight

    group = export if args[0] == "export" else quicksight
    result = CliRunner().invoke(group, list(args[1:]))
    # a click error exits with SystemExit; anything else would be a traceback for the user
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    return result


@pytest.fixture
def rls_file(tmp_path: Path) -> Path:
    path = tmp_path / "rls.json"
    path.write_text(json.dumps({"users": {"alice": ["acme"]}, "groups": {"msp": ["*"]}}))
    return path


def test_export_quicksight_json(env: pytest.MonkeyPatch, rls_file: Path) -> None:
    result = run("export", "quicksight", "--rls-file", str(rls_file), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    tables = {t["table"]: t for t in summary["tables"]}
    assert set(tables) == {t.split(".")[1] for t in EXPORT_TABLES} | {"rls_tenant_permissions"}
    assert tables["fct_noise_daily"]["rows"] == 2 and tables["fct_noise_daily"]["bytes"] > 0
    assert "✓ fct_noise_daily" in result.stderr  # progress goes to stderr with --json


def test_export_quicksight_text_names_the_manifests(env: pytest.MonkeyPatch,
                                                    rls_file: Path) -> None:
    env.setenv("AW_QUICKSIGHT_RLS_FILE", str(rls_file))
    result = run("export", "quicksight")
    assert result.exit_code == 0, result.output
    assert "exported 10 mart(s) (" in result.stdout and "and the RLS rules" in result.stdout
    assert "/exports/quicksight/fct_patch_compliance_daily/manifest.json" in result.stdout


@pytest.mark.parametrize("content,message", [
    ("{not json", "is not valid JSON"),
    ('{"users": {"alice": ["Not A Tenant!"]}}', "is not a tenant id"),
    ('{"people": {}}', "unknown key(s) in the RLS mapping: people"),
    (None, "cannot read the RLS mapping"),
])
def test_bad_rls_mapping_is_a_clear_error(env: pytest.MonkeyPatch, tmp_path: Path,
                                          content: str | None, message: str) -> None:
    path = tmp_path / "mapping.json"
    if content is not None:
        path.write_text(content)
    result = run("export", "quicksight", "--rls-file", str(path))
    assert result.exit_code == 1 and message in result.stderr


def test_export_without_a_published_warehouse(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("AW_WAREHOUSE_PATH", str(tmp_path / "nothing.duckdb"))
    platform_settings.cache_clear()
    result = run("export", "quicksight")
    assert result.exit_code == 1 and "run `aw pipeline run`" in result.stderr


@pytest.mark.parametrize("args,message", [
    (["--aws-account-id", "1234"], "12 digits"),
    (["--aws-account-id", ACCOUNT, "--principal", "alice"], "not a QuickSight user"),
    (["--aws-account-id", ACCOUNT, "--region", "nowhere"], "not an AWS region"),
    (["--aws-account-id", ACCOUNT, "--source", "redshift"], "Invalid value for '--source'"),
])
def test_provision_refuses_bad_input(env: pytest.MonkeyPatch, args: list[str],
                                     message: str) -> None:
    result = run("quicksight", "provision", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_provision_needs_an_s3_lake(env: pytest.MonkeyPatch) -> None:
    result = run("quicksight", "provision", "--aws-account-id", ACCOUNT, "--dry-run")
    assert result.exit_code == 1 and "QuickSight and Athena read S3 only" in result.stderr


@pytest.fixture
def s3_env(env: pytest.MonkeyPatch, moto: MotoServer, s3_lake: Any) -> pytest.MonkeyPatch:
    _, bucket = s3_lake
    env.setenv("AW_LAKE_URI", f"s3://{bucket}/lake")
    env.setenv("AW_S3_ENDPOINT_URL", moto.endpoint_url)
    platform_settings.cache_clear()
    return env


@pytest.mark.e2e
def test_provision_dry_run_prints_the_requests_without_calling_aws(
        s3_env: pytest.MonkeyPatch, rls_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_aws(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a dry run must not create an AWS client")

    monkeypatch.setattr(aws_clients, "client", no_aws)
    assert run("quicksight", "provision", "--aws-account-id", ACCOUNT,
               "--dry-run").exit_code == 1  # nothing exported yet: a clear error
    assert run("export", "quicksight", "--rls-file", str(rls_file)).exit_code == 0
    result = run("quicksight", "provision", "--aws-account-id", ACCOUNT, "--principal", ALICE,
                 "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    requests = json.loads(result.stdout)["requests"]
    operations = [r["operation"] for r in requests]
    assert operations.count("create_data_source") == operations.count("create_data_set") == 11
    first = requests[0]["params"]
    assert first["DataSourceParameters"]["S3Parameters"]["ManifestFileLocation"]["Key"] == (
        "lake/exports/quicksight/rls_tenant_permissions/manifest.json")
    text = run("quicksight", "provision", "--aws-account-id", ACCOUNT, "--dry-run")
    assert text.stdout.startswith("# quicksight.create_data_source\n{")


@pytest.mark.e2e
def test_provision_second_run_reports_unchanged_and_aws_errors_are_one_line(
        s3_env: pytest.MonkeyPatch, rls_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("export", "quicksight", "--rls-file", str(rls_file)).exit_code == 0
    s = platform_settings()
    store = ExportStore(open_lake(s.resolved_lake_uri, s.s3_endpoint_url))
    target = Target(ACCOUNT, "us-east-1", (ALICE,))
    sources, data_sets = desired(target, store, read_exports(store, EXPORT_TABLES))
    qs = boto3.client("quicksight", region_name="us-east-1")
    monkeypatch.setattr(aws_clients, "client", lambda *_a, **_k: qs)
    with Stubber(qs) as stub:
        queue_existing(stub, sources, data_sets)
        result = run("quicksight", "provision", "--aws-account-id", ACCOUNT,
                     "--principal", ALICE)
        stub.assert_no_pending_responses()
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("unchanged: nothing to do")
    with Stubber(qs) as stub:
        stub.add_client_error("describe_data_source", "AccessDeniedException",
                              "User is not authorized to perform quicksight:DescribeDataSource",
                              403)
        result = run("quicksight", "provision", "--aws-account-id", ACCOUNT, "--json")
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(
        "Error: DescribeDataSource failed: AccessDeniedException: User is not authorized to "
        "perform quicksight:DescribeDataSource")
