"""A demo Resource Data Sync layout, so the platform shows patch compliance with no AWS account.

`write_demo_sync` writes what a real sync would hold for a few demo tenants: the same object
layout, file format (newline-delimited JSON, every value a string) and field names that
`resource_data_sync` reads. The fleet's shape is fixed so that its numbers can be checked by
hand; `seed` only varies node ids, IP addresses and the minutes of the operation times.

Per account and region (two regions by default):

- `web-1`: EC2 Windows, prod-web, COMPLIANT (3 installed), Scan 1 day ago.
- `web-2`: EC2 Linux, prod-web, NON_COMPLIANT: 2 Missing (1 critical), 3 installed; Scan
  1 day ago.
- `db-1`: EC2 Linux, prod-db, NON_COMPLIANT: 1 Failed, 1 InstalledPendingReboot (critical),
  2 installed; Install 2 days ago.
- `db-2`: hybrid `mi-`, prod-db, COMPLIANT (2 installed); Scan 10 days ago (a stale scan).

and in each account's first region only: `new-1`, a node that was never scanned (instance
information only), and `old-1`, a terminated node whose old NON_COMPLIANT data (1 critical
Missing, 1 installed) lingers. `web-1` also has an `Association` compliance summary (which
the reader must ignore), and `test.json` probe objects sit beside the data.
"""

from __future__ import annotations

import json
import posixpath
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow.fs as pafs

from warehouse.ssm.normalize import snapshot_now

DEFAULT_TENANTS: Mapping[str, tuple[str, ...]] = {
    "acme": ("111111111111", "222222222222"),
    "globex": ("333333333333",),
    "initech": ("444444444444",),
}
DEFAULT_REGIONS = ("us-east-1", "eu-west-1")
RESOURCE_TYPE_DIR = "ManagedInstanceInventory"
_TS = "%Y-%m-%dT%H:%M:%SZ"

# (KB id, title, classification, vendor severity, compliance severity, state)
Patch = tuple[str, str, str, str, str, str]
_WIN_INSTALLED: list[Patch] = [
    ("KB5034439", "2024-01 Servicing Stack Update for Windows Server 2022", "SecurityUpdates",
     "Important", "MEDIUM", "Installed"),
    ("KB5034129", "2024-01 Cumulative Update for Windows Server 2022", "SecurityUpdates",
     "Critical", "MEDIUM", "Installed"),
    ("KB890830", "Windows Malicious Software Removal Tool x64", "UpdateRollups", "",
     "MEDIUM", "Installed"),
]
_AL2023_INSTALLED: list[Patch] = [
    ("bash.x86_64", "bash.x86_64:0:5.2.15-1.amzn2023.0.2", "Bugfix", "", "MEDIUM", "Installed"),
    ("curl.x86_64", "curl.x86_64:0:8.5.0-1.amzn2023.0.2", "Security", "Medium", "MEDIUM",
     "Installed"),
    ("tzdata.noarch", "tzdata.noarch:0:2024a-1.amzn2023.0.1", "Bugfix", "", "MEDIUM",
     "Installed"),
]
_WEB2_MISSING: list[Patch] = [
    ("kernel.x86_64", "kernel.x86_64:0:6.1.79-99.164.amzn2023", "Security", "Critical",
     "CRITICAL", "Missing"),
    ("openssl-libs.x86_64", "openssl-libs.x86_64:1:3.0.8-1.amzn2023.0.12", "Security",
     "Important", "HIGH", "Missing"),
]
_DB1_PATCHES: list[Patch] = [
    ("linux-image-generic", "linux-image-generic 5.15.0.97.94", "Security", "Critical",
     "CRITICAL", "InstalledPendingReboot"),
    ("libssl3", "libssl3 3.0.2-0ubuntu1.14", "Security", "Important", "HIGH", "Failed"),
    ("curl", "curl 7.81.0-1ubuntu1.15", "Security", "Medium", "MEDIUM", "Installed"),
    ("tzdata", "tzdata 2024a-0ubuntu0.22.04", "Recommended", "", "MEDIUM", "Installed"),
]
_DB2_INSTALLED: list[Patch] = _AL2023_INSTALLED[:2]
_OLD1_PATCHES: list[Patch] = [
    ("glibc.x86_64", "glibc.x86_64:0:2.26-64.amzn2.0.1", "Security", "Critical", "CRITICAL",
     "Missing"),
    ("bash.x86_64", "bash.x86_64:0:4.2.46-34.amzn2", "Bugfix", "", "MEDIUM", "Installed"),
]
_CVES = {"kernel.x86_64": "CVE-2024-1086", "glibc.x86_64": "CVE-2023-4911",
         "openssl-libs.x86_64": "CVE-2023-5678", "libssl3": "CVE-2023-5678"}


@dataclass(frozen=True)
class _Node:
    name: str
    hybrid: bool
    platform: tuple[str, str, str]  # PlatformType, PlatformName, PlatformVersion
    group: str | None
    patches: list[Patch]
    operation: str = "Scan"
    age_days: float = 1.0
    status: str = "Active"  # InstanceStatus
    first_region_only: bool = False


_WINDOWS = ("Windows", "Microsoft Windows Server 2022 Datacenter", "10.0.20348")
_AL2023 = ("Linux", "Amazon Linux", "2023")
_UBUNTU = ("Linux", "Ubuntu", "22.04")
_NODES = (
    _Node("web-1", False, _WINDOWS, "prod-web", _WIN_INSTALLED),
    _Node("web-2", False, _AL2023, "prod-web", _WEB2_MISSING + _AL2023_INSTALLED),
    _Node("db-1", False, _UBUNTU, "prod-db", _DB1_PATCHES, operation="Install", age_days=2),
    _Node("db-2", True, _AL2023, "prod-db", _DB2_INSTALLED, age_days=10),
    _Node("new-1", False, _AL2023, None, [], first_region_only=True),
    _Node("old-1", False, ("Linux", "Amazon Linux", "2"), "prod-web", _OLD1_PATCHES,
          age_days=40, status="Terminated", first_region_only=True),
)
_NONCOMPLIANT = ("Missing", "Failed", "InstalledPendingReboot", "InstalledRejected")


def write_demo_sync(
    fs: pafs.FileSystem,
    root: str,
    now: datetime,
    seed: int = 0,
    *,
    tenants: Mapping[str, Sequence[str]] = DEFAULT_TENANTS,
    regions: Sequence[str] = DEFAULT_REGIONS,
) -> dict[str, str]:
    """Write the demo sync under `root` (a directory, or `bucket/prefix` on S3).

    Returns the account id → tenant id mapping to read it back with.
    """
    at = snapshot_now(now)
    root = root.rstrip("/")
    mapping = {account: tenant for tenant, accounts in tenants.items() for account in accounts}
    writer = _Writer(fs, root)
    for type_name in ("AWS:InstanceInformation", "AWS:PatchSummary", "AWS:ComplianceSummary",
                      "AWS:ComplianceItem"):
        writer.put(posixpath.join(root, type_name, "test.json"), [{"test": "test"}])
    for account in sorted(mapping):
        for index, region in enumerate(regions):
            rng = random.Random(f"{seed}:{account}:{region}")
            for node in _NODES:
                if node.first_region_only and index > 0:
                    continue
                _write_node(writer, account, region, node, at, rng)
            # A probe beside real node objects too: the reader skips it by name.
            writer.put_node("AWS:InstanceInformation", account, region, "test",
                            [{"test": "test"}])
    return mapping


class _Writer:
    def __init__(self, fs: pafs.FileSystem, root: str) -> None:
        self.fs, self.root = fs, root
        self.local = isinstance(fs, pafs.LocalFileSystem)

    def put(self, path: str, records: list[dict[str, str]]) -> None:
        if self.local:  # S3 needs no directories (and pyarrow would write marker objects)
            self.fs.create_dir(posixpath.dirname(path), recursive=True)
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        with self.fs.open_output_stream(path) as out:
            out.write(body.encode())

    def put_node(self, type_name: str, account: str, region: str, node_id: str,
                 records: list[dict[str, str]]) -> None:
        directory = posixpath.join(self.root, type_name, f"accountid={account}",
                                   f"region={region}", f"resourcetype={RESOURCE_TYPE_DIR}")
        self.put(posixpath.join(directory, f"{node_id}.json"), records)


def _write_node(
    writer: _Writer, account: str, region: str, node: _Node, now: datetime, rng: random.Random
) -> None:
    node_id = ("mi-" if node.hybrid else "i-") + f"{rng.getrandbits(68):017x}"[:17]
    end = now - timedelta(days=node.age_days, minutes=rng.randint(0, 180))
    start = end - timedelta(minutes=rng.randint(2, 25))
    capture = {"resourceId": node_id, "captureTime": end.strftime(_TS), "schemaVersion": "1.0"}
    ip = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    writer.put_node("AWS:InstanceInformation", account, region, node_id, [{
        "AgentType": "amazon-ssm-agent", "AgentVersion": "3.3.40.0",
        "ComputerName": f"{node.name}.{region}.demo.internal", "InstanceId": node_id,
        "InstanceStatus": node.status, "IpAddress": ip, "PlatformType": node.platform[0],
        "PlatformName": node.platform[1], "PlatformVersion": node.platform[2],
        "ResourceType": "ManagedInstance" if node.hybrid else "EC2Instance",
        **capture, "captureTime": (now - timedelta(hours=1)).strftime(_TS),
    }])
    if node.group is None:
        return  # never scanned: the agent reports itself, Patch Manager never ran
    baseline = f"pb-0{random.Random(f'{account}:{node.group}').getrandbits(64):016x}"
    times = {"start": start.strftime(_TS), "end": end.strftime(_TS)}
    noncompliant = [p for p in node.patches if p[5] in _NONCOMPLIANT]
    writer.put_node("AWS:PatchSummary", account, region, node_id,
                    [{**_summary(node, baseline, times), **capture}])
    writer.put_node("AWS:ComplianceSummary", account, region, node_id,
                    _compliance_summaries(node, baseline, times["start"], noncompliant, capture))
    writer.put_node("AWS:ComplianceItem", account, region, node_id, [{
        "ComplianceType": "Patch", "ExecutionId": f"{node_id}-scan",
        "ExecutionType": "Command", "ExecutionTime": times["start"], "Id": kb, "Title": title,
        "Status": "NON_COMPLIANT" if state in _NONCOMPLIANT else "COMPLIANT",
        "Severity": compliance_severity, "DocumentName": "", "DocumentVersion": "",
        "Classification": classification, "PatchBaselineId": baseline,
        "PatchSeverity": vendor_severity, "PatchState": state, "PatchGroup": node.group or "",
        "InstalledTime": times["end"] if state.startswith("Installed") else "",
        **({"CVEIds": _CVES[kb]} if kb in _CVES and state in ("Missing", "Failed") else {}),
        **capture,
    } for kb, title, classification, vendor_severity, compliance_severity, state
        in node.patches])


def _summary(node: _Node, baseline: str, times: Mapping[str, str]) -> dict[str, str]:
    states = [p[5] for p in node.patches]
    noncompliant = [p for p in node.patches if p[5] in _NONCOMPLIANT]
    critical = sum(p[4] == "CRITICAL" for p in noncompliant)
    security = sum(p[2].lower() == "security" for p in noncompliant)
    other = sum(p[4] != "CRITICAL" and p[2].lower() != "security" for p in noncompliant)
    return {
        "PatchGroup": node.group or "", "BaselineId": baseline, "SnapshotId": "",
        "InstalledCount": str(states.count("Installed")), "InstalledOtherCount": "0",
        "InstalledPendingRebootCount": str(states.count("InstalledPendingReboot")),
        "InstalledRejectedCount": "0", "MissingCount": str(states.count("Missing")),
        "FailedCount": str(states.count("Failed")), "NotApplicableCount": "112",
        "CriticalNonCompliantCount": str(critical), "SecurityNonCompliantCount": str(security),
        "OtherNonCompliantCount": str(other), "OperationType": node.operation,
        "OperationStartTime": times["start"], "OperationEndTime": times["end"],
        "RebootOption": "NoReboot" if node.operation == "Install" else "RebootIfNeeded",
    }


def _compliance_summaries(
    node: _Node, baseline: str, start: str, noncompliant: list[Patch], capture: Mapping[str, str]
) -> list[dict[str, str]]:
    levels = ("Critical", "High", "Medium", "Low", "Informational", "Unspecified")
    compliant = [p for p in node.patches if p not in noncompliant]
    order = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNSPECIFIED"]
    worst = min((order.index(p[4]) for p in noncompliant), default=None)
    patch = {
        "ComplianceType": "Patch", "PatchGroup": node.group or "", "PatchBaselineId": baseline,
        "Status": "NON_COMPLIANT" if noncompliant else "COMPLIANT",
        "OverallSeverity": order[worst] if worst is not None else "UNSPECIFIED",
        "ExecutionId": f"{capture['resourceId']}-scan", "ExecutionType": "Command",
        "ExecutionTime": start,
        **{f"Compliant{lv}Count": str(sum(p[4] == lv.upper() for p in compliant))
           for lv in levels},
        **{f"NonCompliant{lv}Count": str(sum(p[4] == lv.upper() for p in noncompliant))
           for lv in levels},
        **capture,
    }
    if node.name != "web-1":
        return [patch]
    association = {"ComplianceType": "Association", "Status": "COMPLIANT",
                   "OverallSeverity": "UNSPECIFIED", "ExecutionTime": start, **capture}
    return [association, patch]
