"""The SSM patch snapshot: what both collection paths (the SSM API through AssumeRole, and a
Resource Data Sync location) produce, as Arrow tables, one set per tenant, account, region
and snapshot.

SSM keeps only the current state, so the platform takes one snapshot per day and keeps them
all (`raw/ssm/tenant_id=…/date=…/`, one file per table, account and region). Every table
carries the snapshot keys `tenant_id`, `account_id`, `region`, `snapshot_at` (when it was
taken, UTC) and `source` (`api` or `resource_data_sync`). Timestamps are UTC, microseconds.

- `NODES`: one row per managed node SSM knows (EC2 instances `i-…` and hybrid/on-premises
  nodes `mi-…`): identity, agent ping, the node's state where known (`terminated` and
  `stopped` nodes are kept, flagged, and excluded from scope by the marts).
- `PATCH_STATES`: one row per node with a patch state (DescribeInstancePatchStates or
  AWS:PatchSummary): the patch group and baseline, every per-state count, the critical /
  security / other non-compliant counts (compliance severity set by the baseline), and the
  last operation (`Scan` or `Install`) with its start and end times.
- `COMPLIANCE`: one row per node with a `Patch` compliance summary
  (ListResourceComplianceSummaries or AWS:ComplianceSummary): the status (`COMPLIANT` or
  `NON_COMPLIANT`) that decides compliance, the overall severity, the execution time and the
  compliant / non-compliant counts by severity.
- `PATCHES`: one row per node and patch for non-compliant nodes (DescribeInstancePatches or
  AWS:ComplianceItem): state normalized to the PascalCase wire form (`Installed`,
  `InstalledOther`, `InstalledPendingReboot`, `InstalledRejected`, `Missing`,
  `NotApplicable`, `Failed`), empty strings kept as null, an epoch-0 install time as null.
- `PATCH_GROUPS`: one row per patch group and baseline (DescribePatchGroups).
- `ERRORS`: one row per account/region/call that failed (one client's broken role never stops
  the others); messages never contain credentials.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
SOURCES = ("api", "resource_data_sync")
PATCH_STATES_ORDER = ("Installed", "InstalledOther", "InstalledPendingReboot",
                      "InstalledRejected", "Missing", "NotApplicable", "Failed")
# DescribeInstancePatches: the wire sends PascalCase, the botocore model's enum is
# UPPER_SNAKE; both map onto the PascalCase form.
PATCH_STATE_ALIASES = {
    **{s: s for s in PATCH_STATES_ORDER},
    "INSTALLED": "Installed", "INSTALLED_OTHER": "InstalledOther",
    "INSTALLED_PENDING_REBOOT": "InstalledPendingReboot",
    "INSTALLED_REJECTED": "InstalledRejected", "MISSING": "Missing",
    "NOT_APPLICABLE": "NotApplicable", "FAILED": "Failed",
}
# States that count as non-compliant (and, at critical compliance severity, in
# CriticalNonCompliantCount).
NONCOMPLIANT_STATES = ("Missing", "Failed", "InstalledPendingReboot", "InstalledRejected")

_KEYS = [
    pa.field("tenant_id", pa.string(), nullable=False),
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("region", pa.string(), nullable=False),
    pa.field("snapshot_at", TS, nullable=False),
    pa.field("source", pa.string(), nullable=False),
]


def _schema(fields: list[pa.Field], grain: str) -> pa.Schema:
    return pa.schema([*_KEYS, *fields], metadata={"grain": grain})


NODES = _schema([
    pa.field("node_id", pa.string(), nullable=False),
    pa.field("resource_type", pa.string()),  # EC2Instance | ManagedInstance
    pa.field("is_hybrid", pa.bool_(), nullable=False),  # node id starts with mi-
    pa.field("computer_name", pa.string()),
    pa.field("ip_address", pa.string()),
    pa.field("platform_type", pa.string()),  # Windows | Linux | MacOS
    pa.field("platform_name", pa.string()),
    pa.field("platform_version", pa.string()),
    pa.field("agent_version", pa.string()),
    pa.field("ping_status", pa.string()),  # Online | ConnectionLost | Inactive
    pa.field("last_ping_at", TS),
    pa.field("node_state", pa.string()),  # active | stopped | terminated | null (unknown)
    pa.field("tags", pa.map_(pa.string(), pa.string())),
], "one row per managed node")

PATCH_STATES = _schema([
    pa.field("node_id", pa.string(), nullable=False),
    pa.field("patch_group", pa.string()),
    pa.field("baseline_id", pa.string()),
    pa.field("installed_count", pa.int64()),
    pa.field("installed_other_count", pa.int64()),
    pa.field("installed_pending_reboot_count", pa.int64()),
    pa.field("installed_rejected_count", pa.int64()),
    pa.field("missing_count", pa.int64()),
    pa.field("failed_count", pa.int64()),
    pa.field("not_applicable_count", pa.int64()),
    pa.field("unreported_not_applicable_count", pa.int64()),
    pa.field("critical_noncompliant_count", pa.int64()),
    pa.field("security_noncompliant_count", pa.int64()),
    pa.field("other_noncompliant_count", pa.int64()),
    pa.field("operation", pa.string()),  # Scan | Install
    pa.field("operation_start_at", TS),
    pa.field("operation_end_at", TS),
    pa.field("reboot_option", pa.string()),
], "one row per node with a patch state")

COMPLIANCE = _schema([
    pa.field("node_id", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),  # COMPLIANT | NON_COMPLIANT
    pa.field("overall_severity", pa.string()),
    pa.field("execution_at", TS),
    pa.field("compliant_count", pa.int64()),
    pa.field("noncompliant_count", pa.int64()),
    pa.field("noncompliant_critical", pa.int64()),
    pa.field("noncompliant_high", pa.int64()),
    pa.field("noncompliant_medium", pa.int64()),
    pa.field("noncompliant_low", pa.int64()),
    pa.field("noncompliant_informational", pa.int64()),
    pa.field("noncompliant_unspecified", pa.int64()),
], "one row per node with a Patch compliance summary")

PATCHES = _schema([
    pa.field("node_id", pa.string(), nullable=False),
    pa.field("kb_id", pa.string(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("classification", pa.string()),
    pa.field("severity", pa.string()),  # the vendor's severity
    pa.field("state", pa.string(), nullable=False),  # PascalCase, see PATCH_STATES_ORDER
    pa.field("installed_at", TS),  # null for epoch 0 (not applicable, never installed)
    pa.field("cve_ids", pa.string()),
], "one row per node and patch (non-compliant nodes)")

PATCH_GROUPS = _schema([
    pa.field("patch_group", pa.string(), nullable=False),
    pa.field("baseline_id", pa.string()),
    pa.field("baseline_name", pa.string()),
    pa.field("operating_system", pa.string()),
    pa.field("default_baseline", pa.bool_()),
], "one row per patch group and baseline")

ERRORS = _schema([
    pa.field("stage", pa.string(), nullable=False),  # assume_role | <API operation> | read
    pa.field("error_code", pa.string()),
    pa.field("message", pa.string(), nullable=False),
], "one row per failed collection step")

TABLES: dict[str, pa.Schema] = {
    "nodes": NODES, "patch_states": PATCH_STATES, "compliance": COMPLIANCE,
    "patches": PATCHES, "patch_groups": PATCH_GROUPS, "errors": ERRORS,
}
