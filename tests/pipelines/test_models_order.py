"""A model scheduled without its parents (an orchestrator skipping parents whose inputs never
changed) still builds: missing upstream models are built first; publishing builds any mart
no run built."""

from __future__ import annotations

from warehouse import models, staging
from warehouse.correlation.state import CorrelationState
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.store import WarehouseStore


def test_a_mart_builds_its_missing_parents_first(tmp_path) -> None:
    store = WarehouseStore(tmp_path / "build.duckdb", tmp_path / "warehouse.duckdb")
    with store.writer() as con:
        staging.ensure_schema(con)
        models.ensure_schemas(con)
        state = CorrelationState(con, SettingsTimeline())  # what the correlation step makes
        models.write_tenants(con, [], SettingsTimeline())
        models.write_incidents(con, state)
        risk = models.model("marts.fct_patch_risk_assets")
        assert models.build(con, risk).rows == 0  # no data, but every parent exists now
        tables = {f"{s}.{t}" for s, t in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables()").fetchall()}
        assert {"marts.fct_patch_compliance_node_daily",
                "intermediate.int_patch_nodes_daily"} <= tables
        assert models.ensure_built(con, ["marts.fct_patch_risk_assets"]) == []
