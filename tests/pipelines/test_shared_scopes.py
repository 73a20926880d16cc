"""Scope tables worked out once per correlation step (`warehouse.changes._shared`): a copy is
only reused for the step it was computed at."""

from datetime import UTC, datetime, timedelta

import duckdb

from warehouse import changes
from warehouse.store import run

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _incident(con: duckdb.DuckDBPyConnection, incident_id: str, hours: int) -> None:
    run(con, "INSERT INTO intermediate.int_incidents VALUES (?, 't1', 'host|cpu', ?, true, NULL)",
        [incident_id, T0 + timedelta(hours=hours)])


def _step(con: duckdb.DuckDBPyConnection, version: int, incident_id: str) -> None:
    run(con, "INSERT INTO pipeline.change_versions VALUES (?, now(), 0, 1)", [version])
    run(con, "INSERT INTO pipeline.changed_incidents SELECT ?, incident_id, tenant_id, agg_key, "
             "first_seen FROM intermediate.int_incidents WHERE incident_id = ?",
        [version, incident_id])


def _scope(con: duckdb.DuckDBPyConnection) -> set[str]:
    changes.prepare_scope(con, "incidents", 0, 1)
    return {r[0] for r in con.execute("SELECT incident_id FROM scope_incidents").fetchall()}


def test_a_shared_scope_is_worked_out_again_after_a_new_step() -> None:
    con = duckdb.connect()
    changes.ensure_tables(con)
    for schema in ("intermediate", "corr"):
        run(con, f"CREATE SCHEMA {schema}")
    run(con, """CREATE TABLE intermediate.int_incidents (incident_id VARCHAR, tenant_id VARCHAR,
                agg_key VARCHAR, first_seen TIMESTAMPTZ, visible BOOLEAN, merged_into VARCHAR)""")
    run(con, "CREATE TABLE corr.memberships (event_id VARCHAR, incident_id VARCHAR)")
    _incident(con, "inc_a", 0)
    _step(con, 1, "inc_a")
    assert _scope(con) == {"inc_a"}
    assert _scope(con) == {"inc_a"}  # the shared copy, same step
    # the next step opens the key's next incident: recurrence of the range's incident's
    # successor now matters, so a model still refreshing versions (0, 1] must see it
    _incident(con, "inc_b", 30)
    _step(con, 2, "inc_b")
    assert _scope(con) == {"inc_a", "inc_b"}
