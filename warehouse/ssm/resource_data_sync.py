"""The Resource Data Sync path: read the inventory a client's accounts sync to S3.

A resource data sync (`SyncToDestination`, `SyncFormat=JsonSerDe`) writes one object per
managed node and inventory type:

    <prefix>/AWS:<Type>/accountid=<12 digits>/region=<region>/resourcetype=<kind>/<node>.json

(`resourcetype=` is `ManagedInstanceInventory` for node inventory.) Each object is
newline-delimited JSON, one object per inventory item, every value a string; Athena's JSON SerDe
reads the keys case-insensitively and so does this reader (`resourceId`/`ResourceId`).

Types read, with the fields AWS documents for them (inventory schema, and the Patch Manager
agent that writes the patch types):
- `AWS:InstanceInformation`: `InstanceId`, `ComputerName`, `IpAddress`, `PlatformType`,
  `PlatformName`, `PlatformVersion`, `AgentVersion`, `ResourceType`, and `InstanceStatus`
  (`Active`, `Stopped`, `Terminated`: terminated nodes linger in the sync and are kept here,
  flagged, for the marts to exclude).
- `AWS:PatchSummary`: `PatchGroup`, `BaselineId`, the per-state counts,
  `Critical/Security/OtherNonCompliantCount`, `OperationType`, `OperationStartTime`,
  `OperationEndTime`, `RebootOption`.
- `AWS:ComplianceSummary` (rows with `ComplianceType` = `Patch`): `Status`,
  `OverallSeverity`, `ExecutionTime`, `Compliant<Severity>Count`, `NonCompliant<Severity>Count`.
- `AWS:ComplianceItem` (`ComplianceType` = `Patch`): `Id` (KB id), `Title`, `Classification`,
  `PatchSeverity` (the vendor's), `PatchState`, `InstalledTime`, `CVEIds`.

Decisions:
- Patches are kept only for nodes whose Patch compliance summary is `NON_COMPLIANT`, the same
  grain as the API path (which lists patches of non-compliant nodes only).
- The sync has no patch-group table: `patch_groups` holds the distinct (PatchGroup,
  BaselineId) pairs seen in the patch summaries; baseline name and OS stay null.
- Accounts missing from the account→tenant mapping are not read: one `errors` row per such
  account and region (stage `unmapped_account`) under the tenant id `_unmapped`, which no
  real tenant can have (tenant ids start with a letter or digit).
- `test.json` objects (the probes written to check the bucket) and other inventory types are
  skipped; an unreadable object or non-JSON lines give an `errors` row (stage `read`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from warehouse.ssm import normalize as nz
from warehouse.ssm.schema import TABLES
from warehouse.ssm.snapshot import Snapshot

SOURCE = "resource_data_sync"
UNMAPPED_TENANT_ID = "_unmapped"
TYPES = ("AWS:InstanceInformation", "AWS:PatchSummary", "AWS:ComplianceSummary",
         "AWS:ComplianceItem")
_TYPE_BY_KEY = {t.lower(): t for t in TYPES}
_PARTITION_KEYS = ("accountid", "region", "resourcetype")
_NODE_STATES = {"active": "active", "stopped": "stopped", "terminated": "terminated"}
_SEVERITIES = ("Critical", "High", "Medium", "Low", "Informational", "Unspecified")

Record = dict[str, str]
Rows = dict[str, list[dict[str, Any]]]


class SyncReadError(OSError):
    """The sync location itself could not be listed (retryable: storage may come back)."""


@dataclass(frozen=True)
class SyncObject:
    """One `<node>.json` object of the sync, with its partition values."""

    path: str
    type_name: str
    account_id: str
    region: str
    resource_type: str
    node_id: str


def list_sync_objects(fs: pafs.FileSystem, root: str) -> list[SyncObject]:
    """Every object of the four patch-related types under `root`, sorted by path."""
    root = root.rstrip("/")
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except (OSError, pa.ArrowException) as exc:
        raise SyncReadError(f"cannot list resource data sync at {root!r}: {exc}") from exc
    objects = [
        obj for info in infos if info.type == pafs.FileType.File
        if (obj := _parse_path(root, info.path)) is not None
    ]
    return sorted(objects, key=lambda o: o.path)


def _parse_path(root: str, path: str) -> SyncObject | None:
    parts = path[len(root):].strip("/").split("/")
    if len(parts) != 5 or parts[0].lower() not in _TYPE_BY_KEY:
        return None
    name = parts[4]
    if not name.lower().endswith(".json") or name.lower() == "test.json":
        return None
    partitions: dict[str, str] = {}
    for part, key in zip(parts[1:4], _PARTITION_KEYS, strict=True):
        found, _, value = part.partition("=")
        if found.lower() != key or not value:
            return None
        partitions[key] = value
    return SyncObject(path, _TYPE_BY_KEY[parts[0].lower()], partitions["accountid"],
                      partitions["region"], partitions["resourcetype"], name[:-len(".json")])


def read_resource_data_sync(
    fs: pafs.FileSystem, root: str, accounts: Mapping[str, str], now: datetime
) -> Snapshot:
    """A snapshot of every mapped account found under `root` (`bucket/prefix` on S3).

    `accounts` maps AWS account id → tenant id; `now` is the snapshot time.
    """
    at = nz.snapshot_now(now)
    rows: Rows = {name: [] for name in TABLES}
    groups: dict[tuple[str, str], list[SyncObject]] = defaultdict(list)
    for obj in list_sync_objects(fs, root):
        groups[(obj.account_id, obj.region)].append(obj)
    for (account_id, region), objects in sorted(groups.items()):
        tenant_id = accounts.get(account_id)
        keys = {"tenant_id": tenant_id or UNMAPPED_TENANT_ID, "account_id": account_id,
                "region": region, "snapshot_at": at, "source": SOURCE}
        if tenant_id is None:
            rows["errors"].append({
                **keys, "stage": "unmapped_account", "error_code": "UnmappedAccount",
                "message": f"account {account_id} is in the sync but mapped to no tenant; "
                           f"{len(objects)} object(s) in {region} not read",
            })
            continue
        _AccountRegion(fs, keys, rows).read(objects)
    return Snapshot.from_rows(rows)


@dataclass
class _AccountRegion:
    fs: pafs.FileSystem
    keys: dict[str, Any]
    rows: Rows

    def read(self, objects: Iterable[SyncObject]) -> None:
        records: dict[str, list[tuple[str, Record]]] = defaultdict(list)
        for obj in objects:
            for record in self._records(obj):
                node_id = record.get("resourceid") or record.get("instanceid") or obj.node_id
                records[obj.type_name].append((node_id, record))
        for node_id, record in records["AWS:InstanceInformation"]:
            self.rows["nodes"].append(_node_row(self.keys, node_id, record))
        summaries = [_patch_state_row(self.keys, n, r) for n, r in records["AWS:PatchSummary"]]
        self.rows["patch_states"].extend(summaries)
        self.rows["patch_groups"].extend(_patch_groups(self.keys, summaries))
        noncompliant = self._compliance(records["AWS:ComplianceSummary"])
        for node_id, record in records["AWS:ComplianceItem"]:
            if node_id in noncompliant and _is_patch(record):
                self._patch(node_id, record)

    def _error(self, code: str, message: str) -> None:
        self.rows["errors"].append(
            {**self.keys, "stage": "read", "error_code": code, "message": message[:1000]}
        )

    def _records(self, obj: SyncObject) -> list[Record]:
        try:
            with self.fs.open_input_stream(obj.path) as stream:
                data = stream.read()
        except (OSError, pa.ArrowException) as exc:
            self._error("ReadFailed", f"{obj.path}: {exc}")
            return []
        records: list[Record] = []
        bad = 0
        for line in data.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                item = None
            if not isinstance(item, dict):
                bad += 1
                continue
            records.append({str(k).lower(): "" if v is None else str(v) for k, v in item.items()})
        if bad:
            self._error("InvalidJson", f"{obj.path}: {bad} line(s) not JSON objects, skipped")
        return records

    def _compliance(self, records: list[tuple[str, Record]]) -> set[str]:
        """Append Patch compliance rows; return the NON_COMPLIANT node ids."""
        noncompliant: set[str] = set()
        for node_id, record in records:
            if not _is_patch(record):
                continue
            row = _compliance_row(self.keys, node_id, record)
            if row["status"] is None:
                self._error("MissingStatus", f"{node_id}: Patch compliance summary without "
                                             "a Status, skipped")
                continue
            self.rows["compliance"].append(row)
            if row["status"] == "NON_COMPLIANT":
                noncompliant.add(node_id)
        return noncompliant

    def _patch(self, node_id: str, record: Record) -> None:
        kb_id = nz.text(record.get("id"))
        state = nz.patch_state(record.get("patchstate"))
        if kb_id is None or state is None:
            self._error("IncompleteItem", f"{node_id}: compliance item without Id or "
                                          "PatchState, skipped")
            return
        self.rows["patches"].append({
            **self.keys, "node_id": node_id, "kb_id": kb_id, "title": nz.text(record.get("title")),
            "classification": nz.text(record.get("classification")),
            "severity": nz.text(record.get("patchseverity")), "state": state,
            "installed_at": nz.utc(record.get("installedtime")),
            "cve_ids": nz.text(record.get("cveids")),
        })


def _is_patch(record: Record) -> bool:
    # Compliance rows of other types (Association, Custom:…) share these folders.
    return (nz.text(record.get("compliancetype")) or "Patch").lower() == "patch"


def _node_row(keys: Mapping[str, Any], node_id: str, record: Record) -> dict[str, Any]:
    status = (nz.text(record.get("instancestatus")) or "").lower()
    return {
        **keys, "node_id": node_id, "resource_type": nz.text(record.get("resourcetype")),
        "is_hybrid": nz.is_hybrid(node_id), "computer_name": nz.text(record.get("computername")),
        "ip_address": nz.text(record.get("ipaddress")),
        "platform_type": nz.text(record.get("platformtype")),
        "platform_name": nz.text(record.get("platformname")),
        "platform_version": nz.text(record.get("platformversion")),
        "agent_version": nz.text(record.get("agentversion")),
        "ping_status": None, "last_ping_at": None,  # the sync carries no agent ping
        "node_state": _NODE_STATES.get(status), "tags": None,
    }


def _patch_state_row(keys: Mapping[str, Any], node_id: str, record: Record) -> dict[str, Any]:
    columns = ("installed_count", "installed_other_count", "installed_pending_reboot_count",
               "installed_rejected_count", "missing_count", "failed_count",
               "not_applicable_count", "unreported_not_applicable_count",
               "critical_noncompliant_count", "security_noncompliant_count",
               "other_noncompliant_count")
    return {
        **keys, "node_id": node_id, "patch_group": nz.text(record.get("patchgroup")),
        "baseline_id": nz.text(record.get("baselineid")),
        # CriticalNonCompliantCount -> key "criticalnoncompliantcount" -> column name
        **{column: nz.count(record.get(column.replace("_", ""))) for column in columns},
        "operation": nz.operation(record.get("operationtype") or record.get("operation")),
        "operation_start_at": nz.utc(record.get("operationstarttime")),
        "operation_end_at": nz.utc(record.get("operationendtime")),
        "reboot_option": nz.text(record.get("rebootoption")),
    }


def _sum_counts(record: Record, total_key: str, prefix: str) -> int | None:
    total = nz.count(record.get(total_key))
    if total is not None:
        return total
    parts = [nz.count(record.get(f"{prefix}{level.lower()}count")) for level in _SEVERITIES]
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def _compliance_row(keys: Mapping[str, Any], node_id: str, record: Record) -> dict[str, Any]:
    return {
        **keys, "node_id": node_id, "status": nz.compliance_status(record.get("status")),
        "overall_severity": nz.text(record.get("overallseverity")),
        "execution_at": nz.utc(record.get("executiontime")),
        "compliant_count": _sum_counts(record, "compliantcount", "compliant"),
        "noncompliant_count": _sum_counts(record, "noncompliantcount", "noncompliant"),
        **{f"noncompliant_{level}": nz.count(record.get(f"noncompliant{level}count"))
           for level in (s.lower() for s in _SEVERITIES)},
    }


def _patch_groups(keys: Mapping[str, Any], states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pairs = sorted({(s["patch_group"], s["baseline_id"]) for s in states if s["patch_group"]},
                   key=lambda p: (p[0], p[1] or ""))
    return [{**keys, "patch_group": group, "baseline_id": baseline, "baseline_name": None,
             "operating_system": None, "default_baseline": None} for group, baseline in pairs]
