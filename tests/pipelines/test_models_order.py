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


def test_a_mart_that_became_a_view_replaces_the_table_of_an_older_build(tmp_path) -> None:
    import dataclasses

    store = WarehouseStore(tmp_path / "build.duckdb", tmp_path / "warehouse.duckdb")
    events = models.model("marts.fct_incident_events")
    assert events.view
    with store.writer() as con:
        staging.ensure_schema(con)
        models.ensure_schemas(con)
        models.write_tenants(con, [], SettingsTimeline())
        models.write_incidents(con, CorrelationState(con, SettingsTimeline()))
        models.ensure_built(con, events.deps)
        # what a build file from before holds: the mart as a table
        con.execute(f"CREATE TABLE {events.name} AS {events.statement(False)}").fetchall()
        assert models.build(con, events).mode == "view"
        kinds = con.execute("SELECT 'view' FROM duckdb_views() WHERE view_name = ? UNION ALL "
                            "SELECT 'table' FROM duckdb_tables() WHERE table_name = ?",
                            [events.table, events.table]).fetchall()
        assert kinds == [("view",)]
        # and back: a mart that stops being a view is a table again
        as_table = dataclasses.replace(events, view=False)
        assert models.build(con, as_table).mode == "full"
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?",
                           [events.table]).fetchall() == [(0,)]
