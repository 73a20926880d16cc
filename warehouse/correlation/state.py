"""Incremental correlation: stored results brought up to date batch by batch, exactly as a
full recompute would leave them, touching only the keys and time ranges a batch affects.

State lives in DuckDB tables (schema `corr`): the events with their arrival decisions, the
live incidents with their lifecycle, every event's explanation, the merge log, each
tenant's clock, the keys each alert's events were correlated under (`alert_keys`), the ids
of the events whose explanation a batch (re)wrote (`changed_events`) and the incidents it
may have rewritten (`rewritten_incidents`: a key's from a time on, a tenant's, one incident,
or with nothing named every incident), both collected by the pipeline's change log
(`warehouse.changes`). `apply(batch)` takes events that arrived after everything
stored (higher `ingest_seq`, any event times):

1. Arrival decisions (R2, R9, R11) depend only on earlier events of the same delivery id,
   body hash or alert; those stored rows are read as context with their stored decisions
   (for R11 only each resolved alert's latest accepted firing: a resolve is stale when an
   earlier arrival fired after it, so the latest event time is all that counts).
2. The keys the batch touches (its events' own keys, and the keys of its alerts' stored
   events) are recomputed from their last restartable incident at or before the batch's
   earliest event time on that key: an incident opened with nothing of its key open, or
   with every earlier occurrence of the key resolved, superseded or past its end (a quiet
   incident, `sequential`; usually a cap), so everything before it stays as stored; that
   incident keeps its stored link, and its first event its stored rule and gap. Keys an alert
   spans together restart from their beginning.
   A key whose latest incident there is not quiet (an alert of it fires across the cap,
   often for weeks, so its last quiet incident lies far back) starts at that incident
   instead, its walk seeded with the latest firing of each occurrence possibly open there
   (`_SEEDED`); the incidents before it those occurrences joined stay open as long as they
   do (their `open_until_us` is raised to each one's end after the walk). Not when one of
   them resolves (stored, in the batch, or made effective by the batch: `SeedReachesBack`,
   and the batch is applied again without seeds).
3. Merge replay (R10) runs on those keys with the stored rows as history.

Statuses depend on the tenant clock, so they are computed when results are read, from each
incident's stored lifecycle. `result()` returns the same `Correlation` shape as `correlate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.correlation.admission import BODY_WINDOW_US, admit
from warehouse.correlation.engine import (
    FUNNEL_FIELDS,
    INCIDENTS,
    LIFECYCLE,
    MEMBERSHIPS,
    MERGE_LOG,
    Correlation,
    correlate,
)
from warehouse.correlation.events import EVENTS, conform
from warehouse.correlation.sequential import SeedReachesBack
from warehouse.correlation.sessions import NONE, STATUSES, status_of
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.correlation_settings import PLAIN_KEY_FIELDS

SCHEMA = "corr"
_FATES = "CASE disposition WHEN 'duplicate' THEN 1 WHEN 'too_late' THEN 2 ELSE 0 END"
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.events (
    tenant_id VARCHAR, event_id VARCHAR, ingest_seq BIGINT, source VARCHAR,
    source_fingerprint VARCHAR, asset VARCHAR, signature VARCHAR, severity VARCHAR,
    status VARCHAR, occurred_at TIMESTAMPTZ, received_at TIMESTAMPTZ,
    labels MAP(VARCHAR, VARCHAR), delivery_id VARCHAR, body_sha256 VARCHAR, duplicate BOOLEAN,
    fate TINYINT, stale_resolve BOOLEAN, agg_key VARCHAR, event_time_us BIGINT,
    alert VARCHAR, delivery VARCHAR, body VARCHAR);
CREATE TABLE IF NOT EXISTS {SCHEMA}.clocks (tenant_id VARCHAR PRIMARY KEY, clock_us BIGINT);
CREATE TABLE IF NOT EXISTS {SCHEMA}.changed_events (event_id VARCHAR);
CREATE TABLE IF NOT EXISTS {SCHEMA}.rewritten_incidents (
    tenant_id VARCHAR, agg_key VARCHAR, since_us BIGINT, incident_id VARCHAR);
"""
# Which keys each alert's stored events were correlated under, one row per (key, alert): what
# a batch's touched keys and shared keys are worked out from, a twentieth of the events' rows.
# A pair is added when a stored event first carries it and never removed (an event whose key
# changes leaves its old pair): a pair too many only restarts a key more, or earlier. Made in
# one statement from the stored events, so a store written before the table existed gets it
# whole, once.
_ALERT_KEYS = f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.alert_keys AS
    SELECT DISTINCT tenant_id, agg_key, alert FROM {SCHEMA}.events WHERE agg_key IS NOT NULL"""


@dataclass
class Applied:
    """What one batch touched (the benchmark and the tests read it)."""

    events: int
    keys: int
    region_rows: int
    context_rows: int
    slow_rows: int
    replayed_rows: int


def _alert(prefix: str = "") -> str:
    p = prefix
    return f"{p}tenant_id || chr(31) || {p}source || chr(31) || {p}source_fingerprint"


class CorrelationState:
    """Stored correlation results on a DuckDB connection, kept equal to a full recompute."""

    def __init__(self, con: duckdb.DuckDBPyConnection, timeline: SettingsTimeline) -> None:
        self.con = con
        self.timeline = timeline
        new_log = not con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? "
            "AND table_name = 'rewritten_incidents'", [SCHEMA]).fetchall()[0][0]
        for statement in _DDL.split(";"):
            if statement.strip():
                _run(con, statement)
        if new_log:  # (a store from before the table: its next change log compares all)
            _run(con, f"INSERT INTO {SCHEMA}.rewritten_incidents VALUES (NULL, NULL, NULL, NULL)")
        _run(con, _ALERT_KEYS)
        self._create_like("incidents", pa.unify_schemas([INCIDENTS, LIFECYCLE]))
        self._create_like("memberships", MEMBERSHIPS)
        self._create_like("merges", MERGE_LOG)

    def _create_like(self, name: str, schema: pa.Schema) -> None:
        self.con.register("empty_like", schema.empty_table())
        _run(self.con,
             f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{name} AS SELECT * FROM empty_like LIMIT 0")
        self.con.unregister("empty_like")

    # ---- writing ------------------------------------------------------------------------

    def apply(self, batch: pa.Table) -> Applied:
        """Bring the stored results up to date with `batch` (all later arrivals)."""
        batch = conform(batch)
        if batch.num_rows == 0:
            return Applied(0, 0, 0, 0, 0, 0)
        # Arrival order matters within a tenant only (R1): the batch must come after every
        # stored event of the tenants it holds.
        self.con.register("batch_tenants", batch.select(["tenant_id"]))
        stored_max = self.con.execute(
            f"SELECT max(ingest_seq) FROM {SCHEMA}.events WHERE tenant_id IN "
            "(SELECT tenant_id FROM batch_tenants)").fetchall()[0][0]
        self.con.unregister("batch_tenants")
        first_seq = pc.min(batch.column("ingest_seq")).as_py()
        if stored_max is not None and first_seq <= stored_max:
            raise ValueError(f"batch ingest_seq {first_seq} is not after the stored "
                             f"{stored_max}: batches must arrive in ingest order")
        con = self.con
        _run(con, "BEGIN TRANSACTION")
        try:
            try:
                applied = self._apply(batch, first_seq, fresh=stored_max is None)
            except SeedReachesBack:  # (nothing written yet) restart at quiet incidents
                applied = self._apply(batch, first_seq, fresh=False, seeded=False)
            _run(con, "COMMIT")
        except BaseException:
            _run(con, "ROLLBACK")
            raise
        return applied

    def correlate_fresh(self, batch: pa.Table) -> tuple[pa.Table, Correlation]:
        """The engine's answer for a batch of tenants with nothing stored (R1: the other
        tenants do not matter), without touching the database: `store_fresh` stores it. The
        pipeline stores one batch on a second connection while the engine computes the next.
        Returns the batch as stored and the answer."""
        batch = conform(batch)
        return batch, correlate(batch, self.timeline)

    def store_fresh(self, batch: pa.Table, out: Correlation) -> Applied:
        """Store `correlate_fresh`'s answer, in one transaction; its tenants must still have
        nothing stored."""
        _run(self.con, "BEGIN TRANSACTION")
        try:
            self.con.register("batch_tenants", batch.select(["tenant_id"]))
            stored = self.con.execute(
                f"SELECT count(*) FROM {SCHEMA}.events WHERE tenant_id IN "
                "(SELECT tenant_id FROM batch_tenants)").fetchall()[0][0]
            self.con.unregister("batch_tenants")
            if stored:
                raise ValueError("store_fresh: a tenant of the batch has stored events")
            self._store(out, batch, restart_rows=None)
            _run(self.con, "COMMIT")
        except BaseException:
            _run(self.con, "ROLLBACK")
            raise
        return Applied(batch.num_rows, 0, 0, 0, out.slow_rows, out.replayed_rows)

    def _apply(self, batch: pa.Table, first_seq: int, fresh: bool, seeded: bool = True
               ) -> Applied:
        con = self.con
        if fresh:  # nothing stored of these tenants (R1: the others do not matter)
            out = correlate(batch, self.timeline)
            self._store(out, batch, restart_rows=None)
            return Applied(batch.num_rows, 0, 0, 0, out.slow_rows, out.replayed_rows)
        adm = admit(batch, self.timeline)
        con.register("info", pa.table({
            "own_key": adm.keys.take(pa.array(adm.key)),
            "alert": pc.binary_join_element_wise(
                adm.table.column("tenant_id"), adm.table.column("source"),
                adm.table.column("source_fingerprint"), "\x1f"),
            "time_us": pa.array(adm.time), "status": adm.table.column("status"),
            "admitted": pa.array(adm.fate == 0),
        }))
        con.register("incoming", batch)
        _run(con, "CREATE OR REPLACE TEMP TABLE b_info AS SELECT * FROM info")
        # only what the engine and the restart rows read: not the stored lookup strings
        # (alert, delivery, body), and labels only as key fields (R4); unread, labels cost a
        # third of reading the stored rows back
        read = ", ".join(
            "NULL::MAP(VARCHAR, VARCHAR) AS labels"
            if name == "labels" and not self._label_keys() else name
            for name in [*EVENTS.names[:-1], "fate", "stale_resolve", "agg_key",
                         "event_time_us"])
        # R2: a body hash matters only within 24 h of receipt (a literal, so the scan skips
        # row groups received earlier)
        since = pc.min(batch.column("received_at")).value - BODY_WINDOW_US
        body_since = f"make_timestamptz({since}::BIGINT)"
        for sql in _TOUCHED:
            _run(con, sql.format(read=read, body_since=body_since))
        for sql in _SEEDED if seeded else _UNSEEDED:
            _run(con, sql.format(read=read))
        for sql in _READ:
            _run(con, sql.format(read=read, body_since=body_since))
        context = con.sql(_INPUT).to_arrow_table()
        _run(con, _COMPARED)
        restart_rows = con.sql(f"""
            SELECT m.event_id, m.gap_us, m.rule FROM {SCHEMA}.memberships m
            JOIN region e USING (event_id) JOIN restart r ON e.agg_key = r.agg_key
            WHERE e.event_time_us = r.time_us AND e.ingest_seq = r.seq""").to_arrow_table()
        base = dict(con.execute(f"SELECT tenant_id, clock_us FROM {SCHEMA}.clocks").fetchall())
        rows = pa.concat_tables([
            context.cast(_INPUT_SCHEMA),
            batch.append_column("stale_resolve", pa.nulls(batch.num_rows, pa.bool_()))
                 .append_column("context_only", pa.array([False] * batch.num_rows))
                 .append_column("seed_key", pa.nulls(batch.num_rows, pa.string())),
        ])
        out = correlate(rows, self.timeline, base_clock=base, quiet_below=first_seq)
        keys = self._count("restart")
        # each key's incidents from its restart on are deleted and stored again (the batch's
        # new keys are touched keys too)
        _run(con, f"""INSERT INTO {SCHEMA}.rewritten_incidents
                      SELECT NULL, agg_key, time_us, NULL FROM restart""")
        _run(con, f"""
            DELETE FROM {SCHEMA}.incidents i USING restart r
            WHERE i.agg_key = r.agg_key AND (epoch_us(i.first_seen) > r.time_us OR
                  (epoch_us(i.first_seen) = r.time_us AND i.first_seq >= r.seq))""")
        self._store(out, batch, restart_rows)
        # a restart incident opened by a cap keeps its link to the incident before
        _run(con, f"""UPDATE {SCHEMA}.incidents i SET linked_to = r.linked_to FROM restart r
                        WHERE r.linked_to IS NOT NULL AND i.agg_key = r.agg_key
                          AND epoch_us(i.first_seen) = r.time_us AND i.first_seq = r.seq""")
        if out.seed_ends is not None:
            # the incidents before a seeded start stay open while an occurrence they hold
            # does (R8): each one's end after the walk (re-sends only move it later)
            con.register("seed_ends", out.seed_ends)
            _run(con, """
                CREATE OR REPLACE TEMP TABLE seeded_ends AS
                SELECT si.incident_id, max(se.end_us) AS end_us
                FROM seed_incidents si JOIN seeds s USING (agg_key, alert)
                JOIN seed_ends se ON se.event_id = s.event_id
                WHERE se.end_us IS NOT NULL GROUP BY si.incident_id""")
            _run(con, f"""
                UPDATE {SCHEMA}.incidents i
                SET open_until_us = greatest(coalesce(i.open_until_us, e.end_us), e.end_us)
                FROM seeded_ends e WHERE i.incident_id = e.incident_id""")
            _run(con, f"""INSERT INTO {SCHEMA}.rewritten_incidents
                          SELECT NULL, NULL, NULL, incident_id FROM seeded_ends""")
        n_context = int(pc.sum(context.column("context_only")).as_py() or 0)
        return Applied(batch.num_rows, keys, self._count("region"), n_context, out.slow_rows,
                       out.replayed_rows)

    def _store(self, out: Correlation, batch: pa.Table, restart_rows: pa.Table | None) -> None:
        """Store the engine's answer for `batch`: whole for a first batch (`restart_rows`
        None), else as `_store_changed` compares it."""
        con = self.con
        con.register("live", out.incidents.filter(pc.is_null(out.incidents.column("merged_into"))))
        con.register("lifecycle", out.lifecycle)
        con.register("batch", batch)
        con.register("memberships", out.memberships)
        if restart_rows is None:  # a first batch: every explanation is new
            _run(con, f"INSERT INTO {SCHEMA}.memberships BY NAME SELECT * FROM memberships")
            _run(con, f"INSERT INTO {SCHEMA}.changed_events SELECT event_id FROM memberships")
            _run(con, f"""INSERT INTO {SCHEMA}.rewritten_incidents
                          SELECT DISTINCT tenant_id, NULL, NULL, NULL FROM batch""")
        else:
            self._store_changed(restart_rows, pc.min(batch.column("ingest_seq")).as_py())
        _run(con, f"""INSERT INTO {SCHEMA}.incidents BY NAME
                        SELECT * FROM live JOIN lifecycle USING (incident_id)""")
        # labels are read back only as key fields (R4); without a settings version keyed by
        # one they are not stored (a quarter of the cost of storing a batch): a tenant whose
        # settings start keying by a label is recomputed from the lake, labels and all
        stored = "b.*" if self._label_keys() else \
            "b.* REPLACE (NULL::MAP(VARCHAR, VARCHAR) AS labels)"
        _run(con, f"""
            INSERT INTO {SCHEMA}.events BY NAME
            SELECT {stored}, {_FATES} AS fate, m.disposition = 'stale_resolve' AS stale_resolve,
                   m.agg_key, epoch_us(m.event_time) AS event_time_us,
                   {_alert('b.')} AS alert,
                   CASE WHEN b.delivery_id IS NOT NULL
                        THEN b.tenant_id || chr(31) || b.source || chr(31) || b.delivery_id
                   END AS delivery,
                   CASE WHEN b.delivery_id IS NULL AND b.body_sha256 <> ''
                        THEN b.tenant_id || chr(31) || b.body_sha256 END AS body
            FROM batch b JOIN memberships m USING (event_id)""")
        _add_alert_keys(con, """SELECT b.tenant_id, m.agg_key, b.source, b.source_fingerprint
                                FROM batch b JOIN memberships m USING (event_id)""")
        con.register("merge_log", out.merge_log)
        _run(con, f"INSERT INTO {SCHEMA}.merges BY NAME SELECT * FROM merge_log")
        _run(con, f"""
            INSERT OR REPLACE INTO {SCHEMA}.clocks
            SELECT tenant_id, max(clock) FROM (
                SELECT tenant_id, clock_us AS clock FROM {SCHEMA}.clocks
                UNION ALL SELECT tenant_id, greatest(epoch_us(received_at),
                       coalesce(CASE WHEN disposition IN ('duplicate', 'too_late') THEN NULL
                                     ELSE epoch_us(event_time) END, epoch_us(received_at)))
                FROM memberships
            ) GROUP BY tenant_id""")

    def _store_changed(self, restart_rows: pa.Table, first_seq: int) -> None:
        """Store the explanations of a re-walked region (and the batch) that are new or differ
        from the stored ones, and record their events as changed for the incremental models
        (warehouse.changes), in the batch's own transaction. Most of a region comes out as it
        was, and a region reaches weeks back on a busy key: only changed rows are deleted and
        inserted, so the commit does not rewrite row groups across the whole table.

        A key's walk restarts empty at its restart incident, so that incident's first event
        comes out as opening a new incident with no gap; it keeps its stored rule and gap
        (a cap, and the gap to the incident before).

        Only the region's rows that can differ are compared (`compared`, `_COMPARED`)."""
        con = self.con
        con.register("restart_rows", restart_rows)
        _run(con, f"""CREATE OR REPLACE TEMP TABLE fresh AS
                      SELECT * FROM {SCHEMA}.memberships LIMIT 0""")
        _run(con, """INSERT INTO fresh BY NAME
                     SELECT m.* REPLACE (coalesce(g.rule, m.rule) AS rule,
                                         CASE WHEN g.event_id IS NULL THEN m.gap_us
                                              ELSE g.gap_us END AS gap_us)
                     FROM memberships m LEFT JOIN restart_rows g USING (event_id)""")
        # the batch's explanations are all new (its rows come after every stored one of its
        # tenants, and the region holds only those tenants' keys); only the region's rows
        # that can differ are compared with the stored ones
        con.execute(f"""CREATE OR REPLACE TEMP TABLE changed AS
                        SELECT * FROM fresh WHERE ingest_seq >= $first_seq
                        UNION ALL (
                        SELECT * FROM fresh WHERE ingest_seq < $first_seq
                          AND event_id IN (SELECT event_id FROM compared) EXCEPT
                        SELECT * FROM {SCHEMA}.memberships WHERE rowid IN (
                            SELECT rowid FROM {SCHEMA}.memberships
                            WHERE event_id IN (SELECT event_id FROM compared)))""",
                    {"first_seq": first_seq}).fetchall()
        _run(con, f"DELETE FROM {SCHEMA}.memberships WHERE event_id IN "
                    "(SELECT event_id FROM changed)")
        _run(con, f"INSERT INTO {SCHEMA}.memberships SELECT * FROM changed")
        _run(con, f"INSERT INTO {SCHEMA}.changed_events SELECT event_id FROM changed")
        _run(con, f"""UPDATE {SCHEMA}.events e SET agg_key = c.agg_key
                        FROM changed c WHERE e.event_id = c.event_id
                        AND e.agg_key IS DISTINCT FROM c.agg_key""")
        # (a re-walked row's new key is its occurrence's first firing's, whose pair is stored
        # or comes with the batch: believed redundant, kept as cheap safety)
        _add_alert_keys(con, """SELECT r.tenant_id, c.agg_key, r.source, r.source_fingerprint
                                FROM changed c JOIN region r USING (event_id)""")

    def forget(self, tenants: list[str]) -> None:
        """Drop everything stored for `tenants` (before re-applying their events from scratch:
        changed settings, or events that reached the pipeline out of ingest order)."""
        if not tenants:
            return
        placeholders = ", ".join("?" for _ in tenants)
        _run(self.con, "BEGIN TRANSACTION")
        try:
            for table in ("events", "incidents", "memberships", "merges", "clocks",
                          "alert_keys"):
                self.con.execute(f"DELETE FROM {SCHEMA}.{table} WHERE tenant_id IN "
                                 f"({placeholders})", tenants).fetchall()
            self.con.executemany(
                f"INSERT INTO {SCHEMA}.rewritten_incidents VALUES (?, NULL, NULL, NULL)",
                [[t] for t in tenants])
            _run(self.con, "COMMIT")
        except BaseException:
            _run(self.con, "ROLLBACK")
            raise

    def _label_keys(self) -> bool:
        """Whether any settings version keys incidents by a label (R4)."""
        return any(name not in PLAIN_KEY_FIELDS
                   for v in self.timeline.versions for name in v.settings.key)

    def _count(self, table: str) -> int:
        name = table if table in ("restart", "region") else f"{SCHEMA}.{table}"
        return int(self.con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0])

    # ---- reading ------------------------------------------------------------------------

    def result(self) -> Correlation:
        """The stored results, statuses at each tenant's clock: a full recompute's answer."""
        con = self.con
        incidents, lifecycle = self.incidents()
        memberships = con.sql(
            f"SELECT * FROM {SCHEMA}.memberships ORDER BY ingest_seq, event_id"
        ).to_arrow_table().cast(MEMBERSHIPS)
        merge_log = con.sql(
            f"SELECT * FROM {SCHEMA}.merges ORDER BY arrival_seq").to_arrow_table()
        return Correlation(incidents, memberships, self._funnels(), lifecycle,
                           merge_log.cast(MERGE_LOG))

    def incidents(self, among: str | None = None) -> tuple[pa.Table, pa.Table]:
        """Every incident (INCIDENTS: live ones with their status at the tenant's clock, then
        merge records) and the live ones' LIFECYCLE; only those of the incident ids in table
        `among` if given."""
        con = self.con

        def only(alias: str) -> str:
            return f"{alias}.incident_id IN (SELECT incident_id FROM {among})" if among \
                else "true"

        stored = con.sql(f"""
            SELECT i.*, c.clock_us FROM {SCHEMA}.incidents i JOIN {SCHEMA}.clocks c
            USING (tenant_id) WHERE {only('i')}
            ORDER BY tenant_id, first_seen, incident_id""").to_arrow_table()
        column = {name: _us(stored.column(name)) for name in (
            "occurrences", "resolved_occurrences", "last_resolve_us", "open_until_us",
            "window_us", "clock_us")}
        status, resolved_at = status_of(
            column["occurrences"], column["resolved_occurrences"], column["last_resolve_us"],
            column["open_until_us"], _us(stored.column("last_activity").cast(pa.int64())),
            column["window_us"], column["clock_us"])
        live = stored.select(INCIDENTS.names).set_column(
            INCIDENTS.get_field_index("status"), "status",
            pa.array(STATUSES).take(pa.array(status.astype(np.int64)))).set_column(
            INCIDENTS.get_field_index("resolved_at"), "resolved_at",
            pa.array(resolved_at, pa.int64(), mask=resolved_at == NONE).cast(
                INCIDENTS.field("resolved_at").type)).cast(INCIDENTS)
        lifecycle = stored.select(LIFECYCLE.names).cast(LIFECYCLE)
        merged = con.sql(f"""
            SELECT m.* EXCLUDE (merged_into, visible, survivor_event_id, arrival_seq),
                   o.incident_id AS merged_into, false AS visible
            FROM {SCHEMA}.merges m JOIN {SCHEMA}.memberships o
                 ON o.event_id = m.survivor_event_id
            WHERE m.incident_id NOT IN (SELECT incident_id FROM {SCHEMA}.incidents)
              AND {only('m')}
            QUALIFY row_number() OVER (PARTITION BY m.incident_id ORDER BY m.arrival_seq) = 1
            ORDER BY m.tenant_id, m.first_seen, m.incident_id""").to_arrow_table()
        return pa.concat_tables([live, merged.select(INCIDENTS.names).cast(INCIDENTS)]), lifecycle

    def _funnels(self) -> dict[str, dict[str, int]]:
        rows = self.con.execute(f"""
            WITH e AS (
                SELECT e.tenant_id, m.disposition, m.clock_skew, m.new_alert,
                       e.fate = 0 AND trim(coalesce(e.asset, ''), ' \t\n\r\x0b\x0c') = ''
                           AS no_asset
                FROM {SCHEMA}.events e JOIN {SCHEMA}.memberships m USING (event_id)),
            i AS (SELECT tenant_id, count(*) FILTER (WHERE visible) AS incidents,
                         coalesce(sum(event_count) FILTER (WHERE NOT visible), 0) AS below
                  FROM {SCHEMA}.incidents GROUP BY tenant_id)
            SELECT e.tenant_id, count(*), count(*) FILTER (WHERE disposition = 'duplicate'),
                   count(*) FILTER (WHERE new_alert), coalesce(any_value(i.incidents), 0),
                   coalesce(any_value(i.below), 0),
                   count(*) FILTER (WHERE disposition = 'too_late'),
                   count(*) FILTER (WHERE clock_skew),
                   count(*) FILTER (WHERE disposition = 'orphan_resolved'),
                   count(*) FILTER (WHERE no_asset),
                   count(*) FILTER (WHERE disposition = 'stale_resolve')
            FROM e LEFT JOIN i USING (tenant_id) GROUP BY e.tenant_id ORDER BY e.tenant_id
        """).fetchall()
        return {row[0]: dict(zip(FUNNEL_FIELDS, map(int, row[1:]), strict=True))
                for row in rows}


def _run(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Execute a statement for its effect (DuckDB 2.0 wants every result consumed)."""
    con.execute(sql).fetchall()


def _add_alert_keys(con: duckdb.DuckDBPyConnection, rows: str) -> None:
    """Store the (key, alert) pairs of `rows` (tenant_id, agg_key, source,
    source_fingerprint) not stored yet."""
    _run(con, f"""INSERT INTO {SCHEMA}.alert_keys
                   SELECT n.* FROM (
                       SELECT tenant_id, agg_key, {_alert()} AS alert FROM (
                           SELECT DISTINCT tenant_id, agg_key, source, source_fingerprint
                           FROM ({rows}) WHERE agg_key IS NOT NULL)) n
                   ANTI JOIN {SCHEMA}.alert_keys k
                        ON n.agg_key = k.agg_key AND n.alert = k.alert""")


def _us(column: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(column.cast(pa.int64()), NONE).to_numpy(zero_copy_only=False)


_TOUCHED = [
    # keys the batch touches, with the earliest batch event time on each
    f"""CREATE OR REPLACE TEMP TABLE touched AS
        SELECT k AS agg_key, min(time_us) AS tmin FROM (
            SELECT own_key AS k, time_us FROM b_info WHERE admitted
            UNION ALL
            SELECT e.agg_key, b.time_us
            FROM (SELECT alert, agg_key FROM {SCHEMA}.alert_keys
                  WHERE alert IN (SELECT alert FROM b_info WHERE admitted)) e
            JOIN (SELECT alert, min(time_us) AS time_us FROM b_info WHERE admitted
                  GROUP BY alert) b ON e.alert = b.alert
        ) GROUP BY k""",
    # (key, alert) pairs of those keys; keys an alert spans restart from their beginning
    f"""CREATE OR REPLACE TEMP TABLE pairs AS
        SELECT agg_key, alert FROM {SCHEMA}.alert_keys
        WHERE agg_key IN (SELECT agg_key FROM touched)
        UNION SELECT own_key, alert FROM b_info WHERE admitted""",
    """CREATE OR REPLACE TEMP TABLE shared_keys AS
        SELECT DISTINCT agg_key FROM pairs WHERE alert IN (
            SELECT alert FROM pairs GROUP BY alert HAVING count(DISTINCT agg_key) > 1)""",
    # each touched key's latest incident at or before its earliest batch event, and its
    # latest quiet (restartable) one, in one pass over the stored incidents
    f"""CREATE OR REPLACE TEMP TABLE latest AS
        SELECT agg_key, arg_max(start, pos) FILTER (WHERE restartable) AS quiet,
               arg_max(start, pos) AS start, arg_max(restartable, pos) AS restartable
        FROM (SELECT i.agg_key, i.restartable,
                     struct_pack(time_us := epoch_us(i.first_seen), seq := i.first_seq,
                                 linked_to := i.linked_to) AS start,
                     struct_pack(t := epoch_us(i.first_seen), s := i.first_seq) AS pos
              FROM {SCHEMA}.incidents i JOIN touched t USING (agg_key)
              WHERE epoch_us(i.first_seen) <= t.tmin)
        GROUP BY agg_key""",
    f"""CREATE OR REPLACE TEMP TABLE restart AS
        SELECT t.agg_key,
               CASE WHEN s.agg_key IS NULL THEN coalesce(l.quiet.time_us, {NONE})
                    ELSE {NONE} END AS time_us,
               CASE WHEN s.agg_key IS NULL THEN coalesce(l.quiet.seq, {NONE})
                    ELSE {NONE} END AS seq,
               CASE WHEN s.agg_key IS NULL THEN l.quiet.linked_to END AS linked_to
        FROM touched t LEFT JOIN shared_keys s USING (agg_key)
        LEFT JOIN latest l USING (agg_key)""",
    # the stored rows of those keys from their restart on, found by a scan of a few columns
    # (the region and the seeded starts read their other columns by row id)
    f"""CREATE OR REPLACE TEMP TABLE walked AS
        SELECT e.rowid AS rid, e.agg_key, e.event_time_us, e.ingest_seq
        FROM {SCHEMA}.events e JOIN restart r USING (agg_key)
        WHERE e.event_time_us > r.time_us
           OR (e.event_time_us = r.time_us AND e.ingest_seq >= r.seq)""",
]
# Keys whose latest incident at or before the batch is not quiet (an alert of theirs still
# fires there, often for weeks) start there instead of at their last quiet incident, seeded
# with the latest firing of each of their alerts whose latest row before it is a firing (its
# occurrence may be open there: `sequential.SequentialPass.seed`). Not when one of those
# alerts resolves from there on (stored, or in the batch): the resolve would reach incidents
# before the start. A resolve that only the re-walk makes effective (a stored orphan) raises
# `SeedReachesBack`, and the batch is applied again without seeds.
_SEEDED = [
    """CREATE OR REPLACE TEMP TABLE seeded_start AS
        SELECT agg_key, start.time_us AS time_us, start.seq AS seq,
               start.linked_to AS linked_to
        FROM latest
        WHERE NOT restartable
          AND agg_key NOT IN (SELECT agg_key FROM shared_keys)
          AND agg_key NOT LIKE '%|missing-asset:%'""",
    # the stateful rows of those keys' occurrences (orphans, stale resolves, duplicates and
    # too-late events take no part in one) from their last quiet incident on (every
    # occurrence before it is closed there)
    f"""CREATE OR REPLACE TEMP TABLE seeded_rows AS
        SELECT e.agg_key, e.alert, e.rid, e.event_id, e.status,
               e.event_time_us < s.time_us
               OR (e.event_time_us = s.time_us AND e.ingest_seq < s.seq) AS before,
               e.event_time_us, e.ingest_seq
        FROM (SELECT agg_key, alert, rowid AS rid, event_id, status, event_time_us,
                     ingest_seq, fate, stale_resolve
              FROM {SCHEMA}.events WHERE rowid IN (
                  SELECT rid FROM walked WHERE agg_key IN (SELECT agg_key FROM seeded_start))
             ) e JOIN seeded_start s USING (agg_key)
        WHERE e.fate = 0 AND NOT e.stale_resolve AND e.status <> 'point'""",
    """CREATE OR REPLACE TEMP TABLE seeds AS
        SELECT agg_key, alert, rid, event_id FROM (
            SELECT agg_key, alert, rid, event_id, status,
                   row_number() OVER (PARTITION BY agg_key, alert
                                      ORDER BY event_time_us DESC, ingest_seq DESC) AS rn
            FROM seeded_rows WHERE before)
        WHERE rn = 1 AND status = 'firing'""",
    """DELETE FROM seeded_start WHERE agg_key IN (
        SELECT r.agg_key FROM seeded_rows r JOIN seeds s USING (agg_key, alert)
        WHERE NOT r.before AND r.status = 'resolved'
        UNION ALL
        SELECT s.agg_key FROM seeds s JOIN b_info b USING (alert)
        WHERE b.admitted AND b.status = 'resolved')""",
    "DELETE FROM seeds WHERE agg_key NOT IN (SELECT agg_key FROM seeded_start)",
    """UPDATE restart r SET time_us = s.time_us, seq = s.seq, linked_to = s.linked_to
        FROM seeded_start s WHERE r.agg_key = s.agg_key""",
    # the incidents before the start that each seeded occurrence joined: those of its rows
    # from its first firing (the alert's latest new one) on
    f"""CREATE OR REPLACE TEMP TABLE seed_incidents AS
        WITH o AS (
            SELECT r.agg_key, r.alert, m.incident_id, m.new_alert,
                   sum(m.new_alert::INTEGER) OVER (
                       PARTITION BY r.agg_key, r.alert
                       ORDER BY r.event_time_us DESC, r.ingest_seq DESC
                       ROWS UNBOUNDED PRECEDING) AS firsts
            FROM seeded_rows r SEMI JOIN seeds s ON r.agg_key = s.agg_key AND r.alert = s.alert
            JOIN (SELECT event_id, incident_id, new_alert FROM {SCHEMA}.memberships
                  WHERE rowid IN (SELECT rowid FROM {SCHEMA}.memberships
                                  WHERE agg_key IN (SELECT agg_key FROM seeds))) m
              ON m.event_id = r.event_id
            WHERE r.before)
        SELECT DISTINCT agg_key, alert, incident_id FROM o
        WHERE firsts = 0 OR (firsts = 1 AND new_alert)""",
]
_UNSEEDED = [
    """CREATE OR REPLACE TEMP TABLE seeds AS
        SELECT NULL::VARCHAR AS agg_key, NULL::VARCHAR AS alert, NULL::BIGINT AS rid,
               NULL::VARCHAR AS event_id LIMIT 0""",
]
_READ = [
    # stored rows recomputed: the touched keys from their restart, and orphan resolves of
    # their alerts (a late firing can make one effective)
    # (found by row id first, then read: reading the columns of every stored event to keep a
    # few percent of them costs three times as much)
    # (with the seed rows, read in the same pass and then set apart)
    f"""CREATE OR REPLACE TEMP TABLE region AS
        SELECT {{read}} FROM {SCHEMA}.events WHERE rowid IN (
            SELECT w.rid FROM walked w JOIN restart r USING (agg_key)
            WHERE w.event_time_us > r.time_us
               OR (w.event_time_us = r.time_us AND w.ingest_seq >= r.seq)
            UNION ALL SELECT rid FROM seeds
            UNION ALL
            SELECT e.rowid FROM {SCHEMA}.events e JOIN (
                SELECT p.alert, min(r.time_us) AS time_us
                FROM pairs p JOIN restart r USING (agg_key) GROUP BY p.alert) a USING (alert)
            WHERE e.fate = 0 AND e.agg_key IS NULL AND NOT e.stale_resolve
              AND e.event_time_us >= a.time_us)""",
    """CREATE OR REPLACE TEMP TABLE seed_rows AS
        SELECT * FROM region WHERE event_id IN (SELECT event_id FROM seeds)""",
    "DELETE FROM region WHERE event_id IN (SELECT event_id FROM seeds)",
    # stored rows read for the batch's arrival decisions: R2 groups (same delivery id or
    # body hash) and, for R11, each resolved alert's latest accepted firing (only the latest
    # event time matters: a resolve is stale when an earlier arrival fired after it)
    f"""CREATE OR REPLACE TEMP TABLE history AS
        SELECT {{read}} FROM {SCHEMA}.events WHERE rowid IN (
            SELECT rowid FROM {SCHEMA}.events WHERE delivery IN (
                SELECT tenant_id || chr(31) || source || chr(31) || delivery_id FROM incoming
                WHERE delivery_id IS NOT NULL)
            UNION ALL SELECT rowid FROM {SCHEMA}.events WHERE body IN (
                SELECT tenant_id || chr(31) || body_sha256 FROM incoming
                WHERE delivery_id IS NULL AND body_sha256 <> '')
              AND received_at >= {{body_since}}
            UNION ALL SELECT arg_max(rowid, event_time_us) FROM {SCHEMA}.events
            WHERE status = 'firing' AND fate = 0
              AND alert IN (SELECT alert FROM b_info WHERE status = 'resolved')
            GROUP BY alert)""",
]
# The region's rows whose explanation can differ from the stored one. A walk decides each row
# from the rows before it in (event time, ingest_seq) order, and keys that share no alert are
# walked apart, so a key's stored rows before the batch's earliest event on it (`tmin`, the
# batch's rows coming after every stored one at the same time) decide as they did: a key that
# restarts weeks back (an alert firing all along leaves no quiet incident to restart at)
# re-walks those rows but compares only its last day or so. Keys an alert spans together,
# and orphan resolves, are compared whole.
_COMPARED = """
    CREATE OR REPLACE TEMP TABLE compared AS
    SELECT e.event_id FROM region e LEFT JOIN touched t USING (agg_key)
    WHERE e.agg_key IS NULL OR e.event_time_us IS NULL OR t.tmin IS NULL
       OR e.event_time_us >= t.tmin OR e.agg_key IN (SELECT agg_key FROM shared_keys)"""
_INPUT_SCHEMA = pa.schema(list(EVENTS) + [pa.field("stale_resolve", pa.bool_()),
                                          pa.field("context_only", pa.bool_()),
                                          pa.field("seed_key", pa.string())])
_INPUT = f"""
    SELECT {', '.join(EVENTS.names[:-1])}, fate = 1 AS duplicate, stale_resolve,
           false AS context_only, NULL::VARCHAR AS seed_key FROM region
    UNION ALL
    SELECT {', '.join(EVENTS.names[:-1])}, fate = 1 AS duplicate, stale_resolve,
           true AS context_only, NULL::VARCHAR AS seed_key FROM history
    WHERE event_id NOT IN (SELECT event_id FROM region)
      AND event_id NOT IN (SELECT event_id FROM seed_rows)
    UNION ALL
    SELECT {', '.join(EVENTS.names[:-1])}, fate = 1 AS duplicate, stale_resolve,
           false AS context_only, agg_key AS seed_key FROM seed_rows
    ORDER BY ingest_seq, event_id"""


def batches(table: pa.Table, sizes: list[int]) -> Iterator[pa.Table]:
    """Split `table` (any order) into consecutive ingest_seq batches of the given sizes."""
    ordered = table.sort_by("ingest_seq")
    at = 0
    for size in sizes:
        yield ordered.slice(at, size)
        at += size
