"""The change log that lets the big models refresh only what a correlation step changed.

A late event can change incidents of any earlier day (R10), so the marts cannot be refreshed
by "today's partition". What changed is known exactly at the source instead:

- the correlation state records every event whose explanation a batch (re)wrote
  (`corr.changed_events`) and which incidents it may have rewritten
  (`corr.rewritten_incidents`), in the batch's own transaction;
- the correlation asset turns each of its steps into a **version**: it moves those event ids
  to `pipeline.changed_events` and compares the incidents (status at the tenant clock
  included, so an incident that went stale counts) with the previous ones into
  `pipeline.changed_incidents`, in one transaction. Only the incidents that can differ are
  compared (`incidents_in_question`): those rewritten, and those open before (a status moves
  with the clock only from open: resolved and stale are final while the incident's row
  stays as it is);
- every model records the version its inputs were at when it was built
  (`pipeline.model_versions`, with a digest of its SQL). An incremental model refreshes the
  rows in scope of the versions after its own, up to the oldest version among its parents
  (a parent that lags is caught up with on the next refresh, never skipped).

Scopes, derived from the changed events and incidents of a version range (temporary tables
the models' SQL reads on lines marked `-- incremental only`):

- `scope_events`: the changed events;
- `scope_alerts`: the alerts (tenant, source, fingerprint, kind) those events belong to,
  each from the last occurrence that started before its earliest changed event (occurrence
  numbers run over an alert's history and continue from there);
- `scope_incidents`: the changed incidents (their rows before and after the change), the
  incidents those events belong to, and the next counted incident of the key after each of
  them (recurrence looks at a key's previous incident);
- `scope_days`: the (tenant, day) pairs of the daily marts that read only events and
  incidents: the days of the changed events (an event's day never changes) and the
  `first_seen` days of the incidents in scope, before and after their change.

Versions that every model has consumed are pruned; a model older than the pruned floor
(or with other SQL) is rebuilt whole.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from warehouse.store import run, scalar

DDL = [
    "CREATE SCHEMA IF NOT EXISTS pipeline",
    """CREATE TABLE IF NOT EXISTS pipeline.change_versions (
        version BIGINT PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL,
        events BIGINT NOT NULL, incidents BIGINT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS pipeline.changed_events (version BIGINT, event_id VARCHAR)",
    """CREATE TABLE IF NOT EXISTS pipeline.changed_incidents (
        version BIGINT, incident_id VARCHAR, tenant_id VARCHAR, agg_key VARCHAR,
        first_seen TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS pipeline.model_versions (
        model VARCHAR PRIMARY KEY, version BIGINT NOT NULL, sql_sha256 VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS pipeline.change_floor (
        id INTEGER PRIMARY KEY, version BIGINT NOT NULL)""",
    # scope tables worked out once per step and version range (`_shared`)
    """CREATE TABLE IF NOT EXISTS pipeline.shared_scopes (
        name VARCHAR PRIMARY KEY, after BIGINT NOT NULL, upto BIGINT NOT NULL,
        at_version BIGINT NOT NULL)""",
]
# The scopes an incremental model can declare: the columns its rows are matched by, and for
# alerts the occurrence a refresh starts from.
SCOPES: dict[str, tuple[str, ...]] = {
    "events": ("event_id",),
    "alerts": ("tenant_id", "source", "source_fingerprint", "kind"),
    "incidents": ("incident_id",),
    "days": ("tenant_id", "day"),
}
_FROM = {"alerts": " AND x.occurrence_no >= s.from_no"}


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The change log's tables (the functions below expect them)."""
    for statement in DDL:
        run(con, statement)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The latest correlation step's version (0 before the first)."""
    return int(scalar(con, "SELECT coalesce(max(version), 0) FROM pipeline.change_versions")
               or 0)


def floor(con: duckdb.DuckDBPyConnection) -> int:
    """Changes of versions at or below this one were pruned."""
    return int(scalar(con, "SELECT coalesce(max(version), 0) FROM pipeline.change_floor") or 0)


def _int_incidents_exists(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = "
                            "'intermediate' AND table_name = 'int_incidents'"))


def incidents_in_question(con: duckdb.DuckDBPyConnection) -> str | None:
    """A temporary table of the ids of the incidents whose row in
    `intermediate.int_incidents` can differ from the correlation state's now: those the state
    rewrote since the last step (`corr.rewritten_incidents`: a key's from its restart on, a
    tenant's, single incidents), as they were and as they are; every merge record of those
    keys and tenants; and every incident open before. None when every incident is in
    question (a first step, or a store that has not recorded what it rewrote)."""
    if not _int_incidents_exists(con) or scalar(
            con, "SELECT count(*) FROM corr.rewritten_incidents WHERE tenant_id IS NULL "
                 "AND agg_key IS NULL AND incident_id IS NULL"):
        return None
    run(con, """CREATE OR REPLACE TEMP TABLE rewritten_keys AS
                SELECT agg_key, min(since_us) AS since_us FROM corr.rewritten_incidents
                WHERE agg_key IS NOT NULL GROUP BY agg_key""")
    tenants = "tenant_id IN (SELECT tenant_id FROM corr.rewritten_incidents)"
    since = "JOIN rewritten_keys k USING (agg_key) WHERE epoch_us(i.first_seen) >= k.since_us"
    run(con, f"""CREATE OR REPLACE TEMP TABLE incidents_in_question AS
                 SELECT i.incident_id FROM corr.incidents i {since}
                 UNION SELECT i.incident_id FROM intermediate.int_incidents i {since}
                 UNION SELECT incident_id FROM corr.incidents WHERE {tenants}
                 UNION SELECT incident_id FROM intermediate.int_incidents
                 WHERE {tenants} OR status = 'open'
                 UNION SELECT incident_id FROM corr.merges
                 WHERE {tenants} OR agg_key IN (SELECT agg_key FROM rewritten_keys)
                 UNION SELECT incident_id FROM corr.rewritten_incidents
                 WHERE incident_id IS NOT NULL""")
    return "incidents_in_question"


def record_step(con: duckdb.DuckDBPyConnection, incidents: pa.Table,
                among: str | None = None) -> tuple[int, int, int]:
    """A new version: the events the correlation state rewrote since the last step, and the
    incidents that differ from `intermediate.int_incidents`, which is then brought equal to
    `incidents` (every incident, or those of the ids in table `among`:
    `incidents_in_question`). Call inside the caller's transaction. Returns (version, changed
    events, changed incidents)."""
    version = current_version(con) + 1
    con.register("new_incidents", incidents)
    if _int_incidents_exists(con):
        # the row before and the row after (a key's next incident depends on both places);
        # only those are deleted and inserted: rewriting every incident each step would
        # cost more than the comparison
        before = "intermediate.int_incidents" + (
            f" WHERE incident_id IN (SELECT incident_id FROM {among})" if among else "")
        run(con, f"""CREATE OR REPLACE TEMP TABLE incidents_after AS
                     SELECT * FROM new_incidents EXCEPT SELECT * FROM {before}""")
        run(con, f"""CREATE OR REPLACE TEMP TABLE incidents_before AS
                     SELECT * FROM {before} EXCEPT SELECT * FROM new_incidents""")
        run(con, """
            INSERT INTO pipeline.changed_incidents
            SELECT DISTINCT ?, incident_id, tenant_id, agg_key, first_seen FROM (
                SELECT * FROM incidents_after UNION ALL SELECT * FROM incidents_before)""",
            [version])
        run(con, """DELETE FROM intermediate.int_incidents
                    WHERE incident_id IN (SELECT incident_id FROM incidents_before)""")
        run(con, "INSERT INTO intermediate.int_incidents SELECT * FROM incidents_after")
        run(con, "DROP TABLE incidents_after")
        run(con, "DROP TABLE incidents_before")
    else:
        run(con, "INSERT INTO pipeline.changed_incidents SELECT ?, incident_id, tenant_id, "
                 "agg_key, first_seen FROM new_incidents", [version])
        run(con, "CREATE TABLE intermediate.int_incidents AS SELECT * FROM new_incidents")
    con.unregister("new_incidents")
    run(con, "INSERT INTO pipeline.changed_events SELECT DISTINCT ?, event_id "
             "FROM corr.changed_events", [version])
    run(con, "DELETE FROM corr.changed_events")
    run(con, "DELETE FROM corr.rewritten_incidents")
    events = int(scalar(con, "SELECT count(*) FROM pipeline.changed_events WHERE version = ?",
                        [version]) or 0)
    changed = int(scalar(con, "SELECT count(DISTINCT incident_id) FROM "
                              "pipeline.changed_incidents WHERE version = ?", [version]) or 0)
    run(con, "INSERT INTO pipeline.change_versions VALUES (?, now(), ?, ?)",
        [version, events, changed])
    return version, events, changed


def model_version(con: duckdb.DuckDBPyConnection, model: str) -> tuple[int, str] | None:
    """(version, SQL digest) the model was last built at, if it was."""
    rows = con.execute("SELECT version, sql_sha256 FROM pipeline.model_versions "
                       "WHERE model = ?", [model]).fetchall()
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


def set_model_version(con: duckdb.DuckDBPyConnection, model: str, version: int,
                      sql_sha256: str) -> None:
    run(con, "INSERT OR REPLACE INTO pipeline.model_versions VALUES (?, ?, ?)",
        [model, version, sql_sha256])


def prepare_scope(con: duckdb.DuckDBPyConnection, scope: str, after: int, upto: int,
                  also: tuple[str, str] | None = None) -> int:
    """The temporary scope tables of versions (after, upto]; returns the rows in `scope`.

    `also` = (table, predicate): rows of that table (the model's own, or the published
    copy of it) to refresh as well."""
    run(con, """CREATE OR REPLACE TEMP TABLE scope_events AS
                SELECT DISTINCT event_id FROM pipeline.changed_events
                WHERE version > ? AND version <= ?""", [after, upto])
    if scope == "events" and also:
        run(con, f"INSERT INTO scope_events SELECT event_id FROM {also[0]} WHERE {also[1]}")
    elif scope == "alerts":
        _alert_scope(con, after, upto, also)
    elif scope == "incidents":
        _shared(con, "scope_incidents", after, upto, """
            WITH places AS (
                SELECT incident_id, tenant_id, agg_key, first_seen
                FROM pipeline.changed_incidents WHERE version > ? AND version <= ?
                UNION
                SELECT i.incident_id, i.tenant_id, i.agg_key, i.first_seen
                FROM intermediate.int_incidents i SEMI JOIN (
                    SELECT m.incident_id FROM corr.memberships m
                    SEMI JOIN scope_events USING (event_id)) USING (incident_id)),
            counted AS (SELECT incident_id, tenant_id, agg_key, first_seen
                        FROM intermediate.int_incidents
                        WHERE visible AND merged_into IS NULL),
            following AS (  -- each place's next counted incident on its key
                SELECT arg_min(c.incident_id, (c.first_seen, c.incident_id)) AS incident_id
                FROM places p JOIN counted c USING (tenant_id, agg_key)
                WHERE c.first_seen > p.first_seen
                   OR (c.first_seen = p.first_seen AND c.incident_id > p.incident_id)
                GROUP BY p.incident_id, p.first_seen)
            SELECT incident_id FROM places
            UNION SELECT incident_id FROM following""", [after, upto])
        if also:
            run(con, f"INSERT INTO scope_incidents SELECT incident_id FROM {also[0]} "
                     f"WHERE {also[1]}")
    elif scope == "days":
        prepare_scope(con, "incidents", after, upto)
        # shared like the incidents: it reads `int_event_decisions`, which a step refreshes,
        # but only the days of the changed events, which are in it from their version on
        # and never move
        _shared(con, "scope_days", after, upto, f"""
            SELECT DISTINCT tenant_id, day FROM (
                SELECT tenant_id, day FROM intermediate.int_event_decisions
                WHERE {in_scope("events", "intermediate.int_event_decisions")}
                UNION ALL
                SELECT tenant_id, CAST(first_seen AS DATE) FROM pipeline.changed_incidents
                WHERE version > ? AND version <= ?
                UNION ALL
                SELECT tenant_id, CAST(first_seen AS DATE) FROM intermediate.int_incidents
                WHERE incident_id IN (SELECT incident_id FROM scope_incidents))""",
                [after, upto])
    return int(scalar(con, f"SELECT count(*) FROM scope_{scope}") or 0)


def _shared(con: duckdb.DuckDBPyConnection, name: str, after: int, upto: int, select: str,
            params: list[object]) -> None:
    """The temporary table `name` as `select` computes it for versions (after, upto], worked
    out once per correlation step: the models and the publish that refresh the same versions
    read the copy kept in `pipeline.<name>`. Its inputs (the change log, `corr`, the
    incidents) only change with a new step, which the copy is recorded against."""
    at = current_version(con)
    if scalar(con, "SELECT count(*) FROM pipeline.shared_scopes WHERE name = ? AND after = ? "
                   "AND upto = ? AND at_version = ?", [name, after, upto, at]):
        run(con, f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM pipeline.{name}")
        return
    run(con, f"CREATE OR REPLACE TEMP TABLE {name} AS {select}", params)
    # forgotten first: a copy is never recorded against what it was not computed from
    run(con, "DELETE FROM pipeline.shared_scopes WHERE name = ?", [name])
    run(con, f"CREATE OR REPLACE TABLE pipeline.{name} AS SELECT * FROM {name}")
    run(con, "INSERT INTO pipeline.shared_scopes VALUES (?, ?, ?, ?)", [name, after, upto, at])


def _alert_scope(con: duckdb.DuckDBPyConnection, after: int, upto: int,
                 also: tuple[str, str] | None) -> None:
    """`scope_alerts`: per alert (and kind: points are numbered apart) the first occurrence to
    recompute, `from_no`, with its start (`from_time`, `from_seq`; null from the first). An
    alert is recomputed from the last occurrence that started before its earliest changed
    event: everything before that start is untouched (occurrences follow each other in event
    time), and that occurrence's own start is not a changed event, so the one before it keeps
    its `next_started_at`.

    The restart occurrences of the changed events (`alert_restarts`) are shared by the
    models and the publish that refresh the same versions. `intermediate.int_alerts` may have
    been refreshed in between; that does not change them: a refresh keeps every occurrence
    that started before the alert's earliest changed event, and the one it restarts from
    starts at the same (unchanged) event."""
    _shared(con, "alert_restarts", after, upto, """
        WITH changed AS (
            SELECT e.tenant_id, e.source, e.source_fingerprint,
                   CASE WHEN e.status = 'point' THEN 'point' ELSE 'stateful' END AS kind,
                   min(e.event_time_us) AS time_us,
                   arg_min(e.ingest_seq, (e.event_time_us, e.ingest_seq)) AS seq
            FROM corr.events e SEMI JOIN scope_events USING (event_id)
            WHERE e.event_time_us IS NOT NULL
            GROUP BY ALL)
        SELECT c.tenant_id, c.source, c.source_fingerprint, c.kind,
               coalesce(max(a.occurrence_no), 1) AS from_no
        FROM changed c LEFT JOIN intermediate.int_alerts a
             ON a.tenant_id = c.tenant_id AND a.source = c.source
            AND a.source_fingerprint = c.source_fingerprint AND a.kind = c.kind
            AND (epoch_us(a.started_at) < c.time_us
                 OR (epoch_us(a.started_at) = c.time_us AND a.first_seq < c.seq))
        GROUP BY ALL""", [])
    extra = f"UNION ALL SELECT {', '.join(SCOPES['alerts'])}, occurrence_no FROM {also[0]} " \
            f"WHERE {also[1]}" if also else ""
    run(con, f"""CREATE OR REPLACE TEMP TABLE scope_alerts AS
        WITH first AS (
            SELECT tenant_id, source, source_fingerprint, kind, min(from_no) AS from_no
            FROM (SELECT * FROM alert_restarts {extra}) GROUP BY ALL)
        SELECT f.*, CASE WHEN f.from_no > 1 THEN a.started_at END AS from_time,
               CASE WHEN f.from_no > 1 THEN a.first_seq END AS from_seq
        FROM first f LEFT JOIN intermediate.int_alerts a
             ON a.tenant_id = f.tenant_id AND a.source = f.source
            AND a.source_fingerprint = f.source_fingerprint AND a.kind = f.kind
            AND a.occurrence_no = f.from_no""")


def in_scope(scope: str, table: str) -> str:
    """A predicate on the rows of `table` (the table's full name): the row is in the prepared
    scope. The rows are found by a join on the scope's columns alone, then picked by row id:
    a correlated `EXISTS` (or reading every column of every row to keep a few) costs ten
    times as much on a table of millions of rows."""
    match = " AND ".join(f"s.{c} = x.{c}" for c in SCOPES[scope])
    return (f"rowid IN (SELECT x.rowid FROM {table} x JOIN scope_{scope} s "
            f"ON {match}{_FROM.get(scope, '')})")


def published_versions(con: duckdb.DuckDBPyConnection, marts: list[str]) -> list[int]:
    """The versions the published snapshot holds of `marts` (`warehouse.publish` records
    them; it refreshes a snapshot copy by the same change log)."""
    if not scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'pipeline' "
                       "AND table_name = 'published_marts'"):
        return []
    return [int(r[0]) for r in con.execute(
        "SELECT version FROM pipeline.published_marts WHERE mart IN (SELECT unnest(?))",
        [marts]).fetchall()]


def prune(con: duckdb.DuckDBPyConnection, keep_after: int) -> None:
    """Forget the changes of versions up to `keep_after` (every consumer is past them)."""
    if keep_after <= floor(con):
        return
    run(con, "DELETE FROM pipeline.changed_events WHERE version <= ?", [keep_after])
    run(con, "DELETE FROM pipeline.changed_incidents WHERE version <= ?", [keep_after])
    run(con, "INSERT OR REPLACE INTO pipeline.change_floor VALUES (1, ?)", [keep_after])
