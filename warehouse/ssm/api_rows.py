"""Rows of the snapshot tables from SSM API responses (botocore's parsed dicts).

One function per table; each takes the snapshot keys (tenant, account, region, time, source)
and one item of a response, and returns a row for `Snapshot.from_rows`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from warehouse.ssm import normalize as nz


def node_row(keys: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """A `nodes` row from one DescribeInstanceInformation item."""
    node_id = info["InstanceId"]
    ping = nz.text(info.get("PingStatus"))
    return {
        **keys, "node_id": node_id, "resource_type": nz.text(info.get("ResourceType")),
        "is_hybrid": nz.is_hybrid(node_id), "computer_name": nz.text(info.get("ComputerName")),
        "ip_address": nz.text(info.get("IPAddress")),
        "platform_type": nz.text(info.get("PlatformType")),
        "platform_name": nz.text(info.get("PlatformName")),
        "platform_version": nz.text(info.get("PlatformVersion")),
        "agent_version": nz.text(info.get("AgentVersion")), "ping_status": ping,
        "last_ping_at": nz.utc(info.get("LastPingDateTime")),
        # The API tells only whether the agent answers: Online proves the node runs; a lost
        # connection may be a stopped instance or a broken agent, so the state stays unknown.
        "node_state": "active" if ping == "Online" else None,
        "tags": None,
    }


def patch_state_row(keys: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, Any]:
    """A `patch_states` row from one InstancePatchState (absent counts stay null)."""
    counts = {
        "installed_count": "InstalledCount", "installed_other_count": "InstalledOtherCount",
        "installed_pending_reboot_count": "InstalledPendingRebootCount",
        "installed_rejected_count": "InstalledRejectedCount", "missing_count": "MissingCount",
        "failed_count": "FailedCount", "not_applicable_count": "NotApplicableCount",
        "unreported_not_applicable_count": "UnreportedNotApplicableCount",
        "critical_noncompliant_count": "CriticalNonCompliantCount",
        "security_noncompliant_count": "SecurityNonCompliantCount",
        "other_noncompliant_count": "OtherNonCompliantCount",
    }
    return {
        **keys, "node_id": state["InstanceId"], "patch_group": nz.text(state.get("PatchGroup")),
        "baseline_id": nz.text(state.get("BaselineId")),
        **{column: nz.count(state.get(key)) for column, key in counts.items()},
        "operation": nz.operation(state.get("Operation")),
        "operation_start_at": nz.utc(state.get("OperationStartTime")),
        "operation_end_at": nz.utc(state.get("OperationEndTime")),
        "reboot_option": nz.text(state.get("RebootOption")),
    }


def compliance_row(keys: Mapping[str, Any], item: Mapping[str, Any]) -> dict[str, Any]:
    """A `compliance` row from one ResourceComplianceSummaryItem."""
    compliant = item.get("CompliantSummary") or {}
    noncompliant = item.get("NonCompliantSummary") or {}
    severities = noncompliant.get("SeveritySummary") or {}
    return {
        **keys, "node_id": item["ResourceId"], "status": nz.compliance_status(item.get("Status")),
        "overall_severity": nz.text(item.get("OverallSeverity")),
        "execution_at": nz.utc((item.get("ExecutionSummary") or {}).get("ExecutionTime")),
        "compliant_count": nz.count(compliant.get("CompliantCount")),
        "noncompliant_count": nz.count(noncompliant.get("NonCompliantCount")),
        **{f"noncompliant_{level.lower()}": nz.count(severities.get(f"{level}Count"))
           for level in ("Critical", "High", "Medium", "Low", "Informational", "Unspecified")},
    }


def patch_row(keys: Mapping[str, Any], node_id: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    """A `patches` row from one PatchComplianceData (state PascalCase, epoch 0 as null)."""
    return {
        **keys, "node_id": node_id, "kb_id": patch["KBId"], "title": nz.text(patch.get("Title")),
        "classification": nz.text(patch.get("Classification")),
        "severity": nz.text(patch.get("Severity")), "state": nz.patch_state(patch.get("State")),
        "installed_at": nz.utc(patch.get("InstalledTime")),
        "cve_ids": nz.text(patch.get("CVEIds")),
    }


def patch_group_row(keys: Mapping[str, Any], mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A `patch_groups` row from one PatchGroupPatchBaselineMapping."""
    baseline = mapping.get("BaselineIdentity") or {}
    default = baseline.get("DefaultBaseline")
    return {
        **keys, "patch_group": nz.text(mapping.get("PatchGroup")),
        "baseline_id": nz.text(baseline.get("BaselineId")),
        "baseline_name": nz.text(baseline.get("BaselineName")),
        "operating_system": nz.text(baseline.get("OperatingSystem")),
        "default_baseline": None if default is None else bool(default),
    }
