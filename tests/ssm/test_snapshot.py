"""`Snapshot`: typed tables of the SSM contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from warehouse.ssm.schema import TABLES
from warehouse.ssm.snapshot import Snapshot, SnapshotError

AT = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
KEYS = {"tenant_id": "acme", "account_id": "111111111111", "region": "us-east-1",
        "snapshot_at": AT, "source": "api"}


def node(node_id: str, **extra: Any) -> dict[str, Any]:
    return {**KEYS, "node_id": node_id, "is_hybrid": node_id.startswith("mi-"), **extra}


def test_empty_has_every_table_with_its_schema() -> None:
    snap = Snapshot.empty()
    assert list(snap) == list(TABLES)
    assert snap.row_counts() == dict.fromkeys(TABLES, 0)
    for name, schema in TABLES.items():
        assert snap[name].schema.equals(schema, check_metadata=True)


def test_from_rows_casts_and_fills_missing_columns_with_null() -> None:
    snap = Snapshot.from_rows({"nodes": [node("i-1", tags={"env": "prod"}), node("mi-2")]})
    assert snap.row_counts()["nodes"] == 2
    assert snap["nodes"].schema.field("snapshot_at").type == pa.timestamp("us", tz="UTC")
    first, second = snap.rows("nodes")
    assert first["tags"] == [("env", "prod")] and first["ping_status"] is None
    assert second["is_hybrid"] is True


@pytest.mark.parametrize("rows, message", [
    ({"nodes": [{**node("i-1"), "node_id": None}]}, "node_id.*declared not null"),
    ({"nodes": [{**node("i-1"), "nodename": "x"}]}, "unknown column"),
    ({"instances": []}, "unknown ssm table"),
    ({"compliance": [{**KEYS, "node_id": "i-1", "status": None}]}, "status.*not null"),
])
def test_from_rows_refuses_rows_outside_the_contract(rows: Any, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        Snapshot.from_rows(rows)


def test_concat_keeps_order_and_counts() -> None:
    a = Snapshot.from_rows({"nodes": [node("i-1")]})
    b = Snapshot.from_rows({"nodes": [node("i-2"), node("i-3")],
                            "errors": [{**KEYS, "stage": "read", "message": "m"}]})
    both = Snapshot.concat([a, Snapshot.empty(), b])
    assert [r["node_id"] for r in both.rows("nodes")] == ["i-1", "i-2", "i-3"]
    assert both.row_counts() == {**dict.fromkeys(TABLES, 0), "nodes": 3, "errors": 1}
    assert Snapshot.concat([]).row_counts() == Snapshot.empty().row_counts()


def test_constructor_checks_tables_and_schemas() -> None:
    tables = dict(Snapshot.empty().tables)
    with pytest.raises(SnapshotError, match="exactly the tables"):
        Snapshot({k: v for k, v in tables.items() if k != "errors"})
    with pytest.raises(SnapshotError, match="schema of the contract"):
        Snapshot({**tables, "errors": pa.table({"x": [1]})})
