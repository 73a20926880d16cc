"""Patch compliance marts on a small fleet with hand-computed scorecards: two accounts, two
regions, two patch groups, a hybrid node, a stale scan, a never-scanned node, a terminated
node, a failed account; and the noisy-and-unpatched assets with each matching rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from pipelines.run import run_once
from tests.pipelines.conftest import at, rows, write
from warehouse.ssm.schema import TABLES
from warehouse.ssm.store import write_snapshot

D1, D2 = date(2026, 11, 1), date(2026, 11, 2)
TAKEN = {D1: datetime(2026, 11, 1, 6, tzinfo=UTC), D2: datetime(2026, 11, 2, 6, tzinfo=UTC)}
A, B = "111111111111", "222222222222"


def _table(name: str, rows_: list[dict[str, object]], day: date) -> pa.Table:
    schema = TABLES[name]
    full = [{"tenant_id": "acme", "source": "api", "snapshot_at": TAKEN[day], **r}
            for r in rows_]
    return pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in schema} for r in full], schema=schema)


def _node(node: str, account: str, region: str, **extra: object) -> dict[str, object]:
    return {"node_id": node, "account_id": account, "region": region,
            "is_hybrid": node.startswith("mi-"), **extra}


def _state(node: str, account: str, region: str, group: str | None, critical: int,
           missing: int, scanned: datetime) -> dict[str, object]:
    return {"node_id": node, "account_id": account, "region": region, "patch_group": group,
            "critical_noncompliant_count": critical, "missing_count": missing,
            "operation": "Scan", "operation_end_at": scanned}


def _compliance(node: str, account: str, region: str, status: str) -> dict[str, object]:
    return {"node_id": node, "account_id": account, "region": region, "status": status}


def _fleet(lake) -> None:
    d2 = TAKEN[D2]
    nodes = [_node("i-a1", A, "us-east-1", computer_name="web-a1.corp.example"),
             _node("i-a2", A, "us-east-1", computer_name="web-a2.corp.example"),
             _node("mi-h1", A, "us-east-1", computer_name="onprem-h1",
                   resource_type="ManagedInstance"),
             _node("i-a3", A, "eu-west-1", computer_name="db-a3.corp.example"),
             _node("i-a4", A, "eu-west-1", node_state="terminated"),
             _node("i-b1", B, "us-east-1", computer_name="web-b1",
                   tags=[("Patch Group", "prod-web")]),  # tagged, never scanned
             _node("i-b2", B, "us-east-1", computer_name="batch-b2")]
    states = [_state("i-a1", A, "us-east-1", "prod-web", 0, 0, d2 - timedelta(hours=4)),
              _state("i-a2", A, "us-east-1", "prod-web", 2, 3, d2 - timedelta(hours=3)),
              _state("mi-h1", A, "us-east-1", "prod-db", 0, 0,
                     datetime(2026, 10, 20, 6, tzinfo=UTC)),
              _state("i-a3", A, "eu-west-1", "prod-db", 1, 1, d2 - timedelta(hours=6)),
              _state("i-a4", A, "eu-west-1", "prod-db", 5, 5, d2 - timedelta(hours=6)),
              _state("i-b2", B, "us-east-1", None, 0, 0, d2 - timedelta(hours=1))]
    compliance = [_compliance("i-a1", A, "us-east-1", "COMPLIANT"),
                  _compliance("i-a2", A, "us-east-1", "NON_COMPLIANT"),
                  _compliance("mi-h1", A, "us-east-1", "COMPLIANT"),
                  _compliance("i-a3", A, "eu-west-1", "NON_COMPLIANT"),
                  _compliance("i-a4", A, "eu-west-1", "NON_COMPLIANT"),
                  _compliance("i-b2", B, "us-east-1", "COMPLIANT")]
    errors = [{"account_id": "333333333333", "region": "us-east-1", "stage": "assume_role",
               "error_code": "AccessDenied", "message": "not authorized to assume the role"}]
    write_snapshot(lake, {"nodes": _table("nodes", nodes, D2),
                          "patch_states": _table("patch_states", states, D2),
                          "compliance": _table("compliance", compliance, D2),
                          "errors": _table("errors", errors, D2)}, D2)
    d1 = TAKEN[D1]
    write_snapshot(lake, {
        "nodes": _table("nodes", nodes[:2], D1),
        "patch_states": _table("patch_states", [
            _state("i-a1", A, "us-east-1", "prod-web", 0, 0, d1 - timedelta(hours=1)),
            _state("i-a2", A, "us-east-1", "prod-web", 0, 0, d1 - timedelta(hours=1))], D1),
        "compliance": _table("compliance", [_compliance("i-a1", A, "us-east-1", "COMPLIANT"),
                                            _compliance("i-a2", A, "us-east-1", "COMPLIANT")],
                             D1)}, D1)


@pytest.fixture
def built(lake, published):
    _fleet(lake)
    write(lake, [
        {"id": "e1", "t": at("03:00:00"), "asset": " I-A2 ", "signature": "cpu"},
        {"id": "e2", "t": at("03:01:00"), "asset": "db-a3", "signature": "disk"},
        {"id": "e3", "t": at("03:02:00"), "asset": "checkout", "signature": "latency",
         "labels": {"instance": "db-a3.corp.example:9100"}},
        {"id": "e4", "t": at("03:03:00"), "asset": "i-a1", "signature": "cpu"},
        {"id": "e5", "t": at("03:04:00"), "asset": "onprem-h1", "signature": "cpu"},
    ])
    run_once(echo=lambda _line: None)
    return published()


def test_scorecard_hand_computed(built) -> None:
    d1, d2 = rows(built, "SELECT * FROM marts.fct_patch_compliance_daily ORDER BY snapshot_date")
    assert (d1["snapshot_date"], d1["in_scope_nodes"], d1["compliance_pct"]) == (D1, 2, 100.0)
    assert d2["snapshot_date"] == D2
    # in scope: a1 a2 h1 a3 b1 b2 (a4 terminated); compliant: a1 h1 b2
    assert (d2["in_scope_nodes"], d2["compliant_nodes"], d2["noncompliant_nodes"]) == (6, 3, 3)
    assert d2["compliance_pct"] == pytest.approx(50.0)
    assert d2["compliance_pct_strict"] == pytest.approx(100 * 2 / 6)  # h1's scan is stale
    assert d2["critical_noncompliant_count"] == 3  # a2 2 + a3 1; terminated a4 not counted
    assert d2["nodes_missing_critical"] == 2
    assert d2["oldest_scan_age_hours"] == pytest.approx(13 * 24)  # h1 scanned 10-20 06:00
    assert (d2["stale_scan_nodes"], d2["never_scanned_nodes"]) == (1, 1)  # h1; b1
    assert (d2["hybrid_nodes"], d2["out_of_scope_nodes"]) == (1, 1)
    assert (d2["accounts"], d2["regions"], d2["collection_errors"]) == (2, 2, 1)


def test_patch_groups_hand_computed(built) -> None:
    groups = {r["patch_group"]: r for r in rows(built, """
        SELECT * FROM marts.fct_patch_compliance_group_daily WHERE snapshot_date = '2026-11-02'
    """)}
    assert {g: (r["in_scope_nodes"], r["compliant_nodes"], r["critical_noncompliant_count"])
            for g, r in groups.items()} == {
        "prod-web": (3, 1, 2), "prod-db": (2, 1, 1), "(none)": (1, 1, 0)}
    assert groups["prod-web"]["compliance_pct"] == pytest.approx(100 / 3)


def test_node_rows(built) -> None:
    nodes = {r["node_id"]: r for r in rows(built, """
        SELECT * FROM marts.fct_patch_compliance_node_daily WHERE snapshot_date = '2026-11-02'
    """)}
    assert nodes["i-b1"]["compliance_status"] == "NOT_SCANNED" and nodes["i-b1"]["never_scanned"]
    assert not nodes["i-a4"]["in_scope"]
    assert nodes["mi-h1"]["is_hybrid"] and nodes["mi-h1"]["stale_scan"]
    assert nodes["i-a2"]["scan_age_hours"] == pytest.approx(3.0)


def test_noisy_and_unpatched_assets(built) -> None:
    risk = rows(built, """SELECT asset, node_id, matched_by, critical_noncompliant_count,
                                 incidents_7d, risk_rank
                          FROM marts.fct_patch_risk_assets ORDER BY risk_rank""")
    assert risk == [
        {"asset": "i-a2", "node_id": "i-a2", "matched_by": "node_id",
         "critical_noncompliant_count": 2, "incidents_7d": 1, "risk_rank": 1},
        {"asset": "checkout", "node_id": "i-a3", "matched_by": "label:computer_name",
         "critical_noncompliant_count": 1, "incidents_7d": 1, "risk_rank": 2},
        {"asset": "db-a3", "node_id": "i-a3", "matched_by": "short_name",
         "critical_noncompliant_count": 1, "incidents_7d": 1, "risk_rank": 3},
    ]  # i-a1 and onprem-h1 match nodes that miss no critical patch
