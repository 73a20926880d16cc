"""The Resource Data Sync reader on a local directory laid out as SSM writes it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from tests.ssm.stubs import NOW
from warehouse.ssm.resource_data_sync import (
    UNMAPPED_TENANT_ID,
    SyncReadError,
    list_sync_objects,
    read_resource_data_sync,
)

ACCOUNT, OTHER = "111111111111", "999999999999"
WEB, HYBRID, GONE, FRESH = ("i-0a1b2c3d4e5f60001", "mi-0a1b2c3d4e5f60003",
                            "i-0a1b2c3d4e5f60009", "i-0a1b2c3d4e5f60004")
Put = Callable[..., None]


@pytest.fixture
def sync(tmp_path: Path) -> tuple[Path, Put]:
    """A sync root and `put(type, node, *records, account=, region=)` writing JSON lines."""
    root = tmp_path / "sync"

    def put(type_name: str, node: str, *records: dict[str, Any], account: str = ACCOUNT,
            region: str = "us-east-1", raw: str | None = None) -> None:
        path = (root / "inventory" / type_name / f"accountid={account}" / f"region={region}"
                / "resourcetype=ManagedInstanceInventory" / f"{node}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        body = raw if raw is not None else "".join(json.dumps(r) + "\n" for r in records)
        path.write_text(body)

    return root / "inventory", put


def info(node: str, status: str = "Active", **extra: str) -> dict[str, str]:
    return {"AgentType": "amazon-ssm-agent", "AgentVersion": "3.3.40.0", "ComputerName": node,
            "InstanceId": node, "InstanceStatus": status, "IpAddress": "10.0.0.1",
            "PlatformName": "Amazon Linux", "PlatformType": "Linux", "PlatformVersion": "2023",
            "ResourceType": "ManagedInstance" if node.startswith("mi-") else "EC2Instance",
            "resourceId": node, "captureTime": "2026-11-02T05:00:00Z", "schemaVersion": "1.0",
            **extra}


def summary(node: str, end: str = "2026-11-01T03:05:00Z", **counts: str) -> dict[str, str]:
    return {"PatchGroup": "prod-web", "BaselineId": "pb-0123456789abcdef0", "SnapshotId": "",
            "InstalledCount": "40", "InstalledOtherCount": "2", "InstalledRejectedCount": "0",
            "InstalledPendingRebootCount": "0", "NotApplicableCount": "300",
            "MissingCount": "0", "FailedCount": "0", "CriticalNonCompliantCount": "0",
            "SecurityNonCompliantCount": "0", "OtherNonCompliantCount": "0",
            "OperationType": "Scan", "OperationStartTime": "2026-11-01T03:00:00Z",
            "OperationEndTime": end, "RebootOption": "RebootIfNeeded", "resourceId": node,
            "captureTime": end, "schemaVersion": "1.0", **counts}


def compliance(node: str, status: str, **extra: str) -> dict[str, str]:
    levels = ("Critical", "High", "Medium", "Low", "Informational", "Unspecified")
    return {"ComplianceType": "Patch", "PatchGroup": "prod-web", "Status": status,
            "PatchBaselineId": "pb-0123456789abcdef0", "OverallSeverity": "CRITICAL",
            "ExecutionId": "e-1", "ExecutionType": "Command",
            "ExecutionTime": "2026-11-01T03:00:00Z",
            **{f"Compliant{lv}Count": "0" for lv in levels},
            **{f"NonCompliant{lv}Count": "0" for lv in levels},
            "resourceId": node, "captureTime": "2026-11-01T03:05:00Z", "schemaVersion": "1.0",
            **extra}


def item(node: str, kb: str, state: str, **extra: str) -> dict[str, str]:
    return {"ComplianceType": "Patch", "ExecutionId": "e-1", "ExecutionType": "Command",
            "ExecutionTime": "2026-11-01T03:00:00Z", "Id": kb, "Title": f"{kb} title",
            "Status": "NON_COMPLIANT", "Severity": "CRITICAL", "DocumentName": "",
            "DocumentVersion": "", "Classification": "Security", "PatchBaselineId": "pb-1",
            "PatchSeverity": "Critical", "PatchState": state, "PatchGroup": "prod-web",
            "InstalledTime": "", "resourceId": node, "captureTime": "2026-11-01T03:05:00Z",
            "schemaVersion": "1.0", **extra}


def read(root: Path, accounts: dict[str, str] | None = None) -> Any:
    return read_resource_data_sync(pafs.LocalFileSystem(), str(root),
                                   accounts or {ACCOUNT: "acme"}, NOW)


def test_reads_every_type_with_case_insensitive_keys(sync: tuple[Path, Put]) -> None:
    root, put = sync
    put("AWS:InstanceInformation", WEB, info(WEB))
    # Keys in another case (Athena's SerDe ignores key case, so may SSM's writer).
    put("AWS:InstanceInformation", HYBRID,
        {k.lower(): v for k, v in info(HYBRID, IpAddress="192.168.1.5").items()})
    put("AWS:PatchSummary", WEB, summary(WEB))
    put("AWS:PatchSummary", HYBRID, {"RESOURCEID": HYBRID, "PATCHGROUP": "prod-db",
                                     "BASELINEID": "pb-0fedcba9876543210", "MISSINGCOUNT": "3",
                                     "CRITICALNONCOMPLIANTCOUNT": "2", "OPERATIONTYPE": "INSTALL",
                                     "OPERATIONENDTIME": "2026-10-20T01:00:00Z"})
    put("AWS:ComplianceSummary", WEB, compliance(WEB, "COMPLIANT", CompliantMediumCount="42"))
    put("AWS:ComplianceSummary", HYBRID,
        compliance(HYBRID, "NON_COMPLIANT", NonCompliantCriticalCount="2",
                   NonCompliantHighCount="1"))
    put("AWS:ComplianceItem", HYBRID,
        item(HYBRID, "openssl", "Missing", CVEIds="CVE-2026-1"),
        item(HYBRID, "kernel", "InstalledPendingReboot", InstalledTime="2026-10-20T00:59:00Z"),
        item(HYBRID, "bash", "Installed", Status="COMPLIANT", Severity="MEDIUM",
             PatchSeverity="", Classification=""))
    snap = read(root)
    assert snap.row_counts() == {"nodes": 2, "patch_states": 2, "compliance": 2, "patches": 3,
                                 "patch_groups": 2, "errors": 0}
    for table in snap:
        assert {(r["tenant_id"], r["account_id"], r["region"], r["source"], r["snapshot_at"])
                for r in snap.rows(table)} <= {("acme", ACCOUNT, "us-east-1",
                                                "resource_data_sync", NOW)}
    nodes = {r["node_id"]: r for r in snap.rows("nodes")}
    assert nodes[HYBRID]["is_hybrid"] and nodes[HYBRID]["ip_address"] == "192.168.1.5"
    assert nodes[WEB]["node_state"] == "active" and nodes[WEB]["ping_status"] is None
    states = {r["node_id"]: r for r in snap.rows("patch_states")}
    assert (states[WEB]["installed_count"], states[WEB]["not_applicable_count"],
            states[WEB]["operation"]) == (40, 300, "Scan")
    assert states[WEB]["operation_end_at"] == datetime(2026, 11, 1, 3, 5, tzinfo=UTC)
    assert (states[HYBRID]["missing_count"], states[HYBRID]["critical_noncompliant_count"],
            states[HYBRID]["operation"], states[HYBRID]["installed_count"]) == (
        3, 2, "Install", None)
    rows = {r["node_id"]: r for r in snap.rows("compliance")}
    assert (rows[WEB]["compliant_count"], rows[WEB]["noncompliant_count"]) == (42, 0)
    assert (rows[HYBRID]["noncompliant_count"], rows[HYBRID]["noncompliant_critical"]) == (3, 2)
    patches = {p["kb_id"]: p for p in snap.rows("patches")}
    assert {k: p["state"] for k, p in patches.items()} == {
        "openssl": "Missing", "kernel": "InstalledPendingReboot", "bash": "Installed"}
    assert patches["openssl"]["cve_ids"] == "CVE-2026-1"
    assert patches["openssl"]["installed_at"] is None  # empty string
    assert patches["kernel"]["installed_at"] == datetime(2026, 10, 20, 0, 59, tzinfo=UTC)
    assert (patches["bash"]["severity"], patches["bash"]["classification"]) == (None, None)
    assert {(g["patch_group"], g["baseline_id"]) for g in snap.rows("patch_groups")} == {
        ("prod-web", "pb-0123456789abcdef0"), ("prod-db", "pb-0fedcba9876543210")}


def test_terminated_and_never_scanned_nodes(sync: tuple[Path, Put]) -> None:
    root, put = sync
    put("AWS:InstanceInformation", GONE, info(GONE, status="Terminated"))
    put("AWS:PatchSummary", GONE, summary(GONE, end="2026-09-01T03:05:00Z", MissingCount="4"))
    put("AWS:ComplianceSummary", GONE, compliance(GONE, "NON_COMPLIANT"))
    put("AWS:ComplianceItem", GONE, item(GONE, "glibc", "Missing"))
    put("AWS:InstanceInformation", FRESH, info(FRESH))  # registered, never scanned
    put("AWS:InstanceInformation", "i-0a1b2c3d4e5f60007", info("i-0a1b2c3d4e5f60007",
                                                               status="Stopped"))
    snap = read(root)
    states = {r["node_id"]: r["node_state"] for r in snap.rows("nodes")}
    assert states == {GONE: "terminated", FRESH: "active", "i-0a1b2c3d4e5f60007": "stopped"}
    # The terminated node's lingering data is kept (the marts exclude it by node_state).
    assert [r["node_id"] for r in snap.rows("patch_states")] == [GONE]
    assert [r["node_id"] for r in snap.rows("patches")] == [GONE]
    assert FRESH not in {r["node_id"] for r in snap.rows("compliance")}


def test_only_patch_compliance_of_noncompliant_nodes_is_read(sync: tuple[Path, Put]) -> None:
    root, put = sync
    put("AWS:ComplianceSummary", WEB,
        {"ComplianceType": "Association", "Status": "NON_COMPLIANT", "resourceId": WEB},
        compliance(WEB, "COMPLIANT"))
    put("AWS:ComplianceItem", WEB, item(WEB, "bash", "Installed"),
        {**item(WEB, "assoc-1", "Missing"), "ComplianceType": "Association"})
    put("AWS:ComplianceSummary", HYBRID, compliance(HYBRID, "NON_COMPLIANT"))
    put("AWS:ComplianceItem", HYBRID, item(HYBRID, "kernel", "MISSING"),
        {**item(HYBRID, "assoc-2", "Missing"), "ComplianceType": "Custom:Inventory"})
    snap = read(root)
    assert [(r["node_id"], r["status"]) for r in snap.rows("compliance")] == [
        (WEB, "COMPLIANT"), (HYBRID, "NON_COMPLIANT")]
    # WEB is compliant: its items are not patches to report; HYBRID's Patch item only.
    assert [(p["node_id"], p["kb_id"], p["state"]) for p in snap.rows("patches")] == [
        (HYBRID, "kernel", "Missing")]


def test_unmapped_accounts_are_skipped_and_reported(sync: tuple[Path, Put]) -> None:
    root, put = sync
    put("AWS:InstanceInformation", WEB, info(WEB))
    for region in ("us-east-1", "eu-west-1"):
        put("AWS:InstanceInformation", HYBRID, info(HYBRID), account=OTHER, region=region)
        put("AWS:PatchSummary", HYBRID, summary(HYBRID), account=OTHER, region=region)
    snap = read(root)
    assert {r["account_id"] for r in snap.rows("nodes")} == {ACCOUNT}
    assert snap.row_counts()["patch_states"] == 0
    assert [(e["tenant_id"], e["account_id"], e["region"], e["stage"])
            for e in snap.rows("errors")] == [
        (UNMAPPED_TENANT_ID, OTHER, "eu-west-1", "unmapped_account"),
        (UNMAPPED_TENANT_ID, OTHER, "us-east-1", "unmapped_account")]
    assert "2 object(s)" in snap.rows("errors")[0]["message"]


def test_probes_other_types_and_stray_files_are_skipped(sync: tuple[Path, Put]) -> None:
    root, put = sync
    put("AWS:InstanceInformation", WEB, info(WEB))
    put("AWS:InstanceInformation", "test", raw="{\"test\": \"test\"}\n")
    (root / "AWS:PatchSummary").mkdir(parents=True)
    (root / "AWS:PatchSummary" / "test.json").write_text("probe")
    put("AWS:Application", WEB, {"Name": "curl", "resourceId": WEB})
    (root / "AWS:InstanceInformation" / "README.txt").write_text("not sync data")
    objects = list_sync_objects(pafs.LocalFileSystem(), str(root) + "/")
    assert [(o.type_name, o.account_id, o.region, o.resource_type, o.node_id)
            for o in objects] == [("AWS:InstanceInformation", ACCOUNT, "us-east-1",
                                   "ManagedInstanceInventory", WEB)]
    assert read(root).row_counts()["nodes"] == 1


def test_bad_lines_are_reported_and_the_rest_kept(sync: tuple[Path, Put]) -> None:
    root, put = sync
    good = json.dumps(item(HYBRID, "kernel", "Missing"))
    put("AWS:ComplianceSummary", HYBRID, compliance(HYBRID, "NON_COMPLIANT"))
    put("AWS:ComplianceItem", HYBRID, raw=f"{good}\n{{truncated\n\n[1, 2]\n")
    put("AWS:ComplianceSummary", WEB, compliance(WEB, ""))  # no status: cannot decide
    snap = read(root)
    assert [p["kb_id"] for p in snap.rows("patches")] == ["kernel"]
    assert sorted((e["stage"], e["error_code"]) for e in snap.rows("errors")) == [
        ("read", "InvalidJson"), ("read", "MissingStatus")]
    assert [r["node_id"] for r in snap.rows("compliance")] == [HYBRID]


def test_a_missing_sync_location_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SyncReadError, match="cannot list"):
        read(tmp_path / "nowhere")
