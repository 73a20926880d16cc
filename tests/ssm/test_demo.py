"""The demo Resource Data Sync round-trips through the reader with hand-checked numbers.

The demo fleet (see `warehouse.ssm.demo`): 4 accounts (acme has two) × 2 regions, each with
web-1 (compliant), web-2 (2 Missing, 1 critical), db-1 (1 Failed + 1 pending reboot, 1
critical), db-2 (hybrid, compliant, scanned 10 days ago); plus, in each account's first
region, new-1 (never scanned) and old-1 (terminated, non-compliant, 1 critical Missing).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from tests.ssm.stubs import NOW
from warehouse.ssm.demo import DEFAULT_TENANTS, write_demo_sync
from warehouse.ssm.resource_data_sync import read_resource_data_sync
from warehouse.ssm.snapshot import Snapshot

# Hand-checked: 8 account-regions × 4 nodes + 4 accounts × 2 first-region-only nodes.
EXPECTED_COUNTS = {
    "nodes": 8 * 4 + 4 * 2,  # 40
    "patch_states": 8 * 4 + 4,  # never-scanned new-1 has none: 36
    "compliance": 8 * 4 + 4,  # 36
    # Patches of non-compliant nodes only: web-2 5 items + db-1 4 items per account-region,
    # old-1 2 items per account.
    "patches": 8 * (5 + 4) + 4 * 2,  # 80
    "patch_groups": 8 * 2,  # prod-web and prod-db per account-region
    "errors": 0,
}


def demo(tmp_path: Path, seed: int = 7) -> tuple[Snapshot, dict[str, str], Path]:
    root = tmp_path / "demo-sync"
    fs = pafs.LocalFileSystem()
    mapping = write_demo_sync(fs, str(root), NOW, seed)
    return read_resource_data_sync(fs, str(root), mapping, NOW), mapping, root


def assert_demo_numbers(snap: Snapshot) -> None:
    """The hand-checked figures of the demo fleet (shared with the S3 test)."""
    assert snap.row_counts() == EXPECTED_COUNTS
    nodes = snap.rows("nodes")
    assert Counter(n["tenant_id"] for n in nodes) == {"acme": 20, "globex": 10, "initech": 10}
    assert Counter(n["node_state"] for n in nodes) == {"active": 36, "terminated": 4}
    assert sum(n["is_hybrid"] for n in nodes) == 8
    assert Counter(r["status"] for r in snap.rows("compliance")) == {
        "NON_COMPLIANT": 8 * 2 + 4, "COMPLIANT": 8 * 2}
    states = snap.rows("patch_states")
    # Critical non-compliant: web-2 1 + db-1 1 per account-region, old-1 1 per account.
    assert sum(s["critical_noncompliant_count"] for s in states) == 8 * 2 + 4
    assert sum(s["missing_count"] for s in states) == 8 * 2 + 4
    assert sum(s["failed_count"] for s in states) == 8
    stale = {s["node_id"] for s in states if NOW - s["operation_end_at"] > timedelta(days=7)}
    names = {n["node_id"]: n["computer_name"].split(".")[0] for n in nodes}
    assert Counter(names[n] for n in stale) == {"db-2": 8, "old-1": 4}
    scanned = {s["node_id"] for s in states}
    assert Counter(names[n["node_id"]] for n in nodes if n["node_id"] not in scanned) == {
        "new-1": 4}
    assert Counter(p["state"] for p in snap.rows("patches")) == {
        "Missing": 8 * 2 + 4, "Installed": 8 * 3 + 8 * 2 + 4, "Failed": 8,
        "InstalledPendingReboot": 8}


def test_demo_round_trips_with_hand_checked_numbers(tmp_path: Path) -> None:
    snap, mapping, _ = demo(tmp_path)
    assert mapping == {"111111111111": "acme", "222222222222": "acme",
                       "333333333333": "globex", "444444444444": "initech"}
    assert_demo_numbers(snap)


def test_per_tenant_compliance_as_the_marts_would_compute_it(tmp_path: Path) -> None:
    snap, _, _ = demo(tmp_path)
    in_scope = {(n["tenant_id"], n["node_id"]) for n in snap.rows("nodes")
                if n["node_state"] not in ("terminated", "stopped")}
    compliant = {(c["tenant_id"], c["node_id"]) for c in snap.rows("compliance")
                 if c["status"] == "COMPLIANT"}
    per_tenant: dict[str, list[int]] = {}
    for tenant, node in in_scope:
        hits = per_tenant.setdefault(tenant, [0, 0])
        hits[0] += (tenant, node) in compliant
        hits[1] += 1
    # Per account: 2 regions × 2 compliant of 4, and new-1 counts against (never scanned).
    assert per_tenant == {"acme": [8, 18], "globex": [4, 9], "initech": [4, 9]}


def test_seed_changes_ids_not_shape(tmp_path: Path) -> None:
    a, _, root_a = demo(tmp_path / "a", seed=1)
    b, _, _ = demo(tmp_path / "b", seed=2)
    again, _, root_again = demo(tmp_path / "c", seed=1)
    assert a.row_counts() == b.row_counts() == EXPECTED_COUNTS
    assert {n["node_id"] for n in a.rows("nodes")} != {n["node_id"] for n in b.rows("nodes")}

    def files(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*.json")}
    assert files(root_a) == files(root_again)  # same seed, same bytes


def test_the_layout_is_what_a_sync_writes(tmp_path: Path) -> None:
    _, _, root = demo(tmp_path)
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*.json"))
    data = [p for p in paths if not p.endswith("test.json")]
    assert {p.split("/")[0] for p in paths} == {"AWS:InstanceInformation", "AWS:PatchSummary",
                                               "AWS:ComplianceSummary", "AWS:ComplianceItem"}
    for path in data:
        _, account, region, kind, _name = path.split("/")
        assert account.startswith("accountid=") and region.startswith("region=")
        assert kind == "resourcetype=ManagedInstanceInventory"
    assert sum(p.endswith("test.json") for p in paths) == 4 + 8  # type roots + each region
    sample = (root / data[0]).read_text().splitlines()[0]
    record: dict[str, Any] = json.loads(sample)
    assert all(isinstance(v, str) for v in record.values())  # every value a string
    assert {"resourceId", "captureTime", "schemaVersion"} <= set(record)


def test_a_partial_mapping_reports_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "s"
    tenants = {"acme": DEFAULT_TENANTS["acme"], "globex": ("333333333333",)}
    mapping = write_demo_sync(pafs.LocalFileSystem(), str(root), NOW, tenants=tenants)
    assert set(mapping) == {"111111111111", "222222222222", "333333333333"}
    del mapping["333333333333"]
    snap = read_resource_data_sync(pafs.LocalFileSystem(), str(root), mapping, NOW)
    assert {n["tenant_id"] for n in snap.rows("nodes")} == {"acme"}
    assert [(e["account_id"], e["stage"]) for e in snap.rows("errors")] == [
        ("333333333333", "unmapped_account")] * 2
