"""The correlation step: staged lake rows into the stored correlation state, incrementally.

`correlate_staged` hands the engine's `CorrelationState` (schema `corr`) every staged event it
has not seen, so the stored incidents always equal a full recompute of everything staged
(issue 4: incremental = full). Two situations need more than "apply the new rows":

- **A tenant's settings changed** (a new version, possibly effective in the past, R15): its
  stored results were computed under other settings, so the tenant is recomputed from all its
  staged events. Each tenant's settings fingerprint is stored to notice this.
- **Rows reached the pipeline out of ingest order** (the flusher writes one file per tenant and
  day; a listing taken mid-flush can stage a later file before an earlier one): arrival order
  decides R2/R9/R11 and merge records, so a tenant whose new rows are not all after its
  stored ones is recomputed as well. Tenants whose new rows interleave with another tenant's
  stored rows are applied one tenant at a time (arrival order is per tenant, R1).

A row is "new" when its load is newer than the last completed step and its event id is not
stored yet, so a step interrupted half-way is finished by the next one, never doubled; a
recompute interrupted after its tenant was forgotten is started again from
`pipeline.recompute_pending`.

**Bounded memory.** The engine holds a batch in memory several times over, so a first build
(or a backfill) of ten million events in one batch would not fit the machine. The rows to
apply are therefore cut into batches of about `BATCH_EVENTS` by their tenant and ingest_seq
alone (whole tenants packed together, and a tenant larger than that in consecutive
ingest-order slices), and each batch is read and sorted when its turn comes. Tenants are
independent (R1) and each slice comes after the last, so the result is the one of a single
batch (incremental = full).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.correlation.engine import Correlation
from warehouse.correlation.events import EVENTS
from warehouse.correlation.helper import without_helper
from warehouse.correlation.state import SCHEMA, Applied, CorrelationState
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.store import run, scalar

BATCH_EVENTS = 1_000_000

STAGED_EVENTS = """
    SELECT tenant_id, event_id, ingest_seq, source, source_fingerprint, asset, signature,
           severity, status, occurred_at, received_at, labels, delivery_id, body_sha256,
           false AS duplicate, load_id
    FROM lake.raw_alerts
    UNION ALL
    SELECT tenant_id, event_id, ingest_seq, source, source_fingerprint, NULL, '', 'warning',
           'point', occurred_at, received_at, NULL, delivery_id, body_sha256, true, load_id
    FROM lake.raw_duplicates"""
DDL = [
    "CREATE SCHEMA IF NOT EXISTS pipeline",
    """CREATE TABLE IF NOT EXISTS pipeline.correlated (
        id INTEGER PRIMARY KEY, load_id BIGINT NOT NULL, finished_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS pipeline.tenant_settings (
        tenant_id VARCHAR PRIMARY KEY, fingerprint VARCHAR NOT NULL)""",
    # tenants whose recompute started: forgotten, not yet re-applied in full
    """CREATE TABLE IF NOT EXISTS pipeline.recompute_pending (
        tenant_id VARCHAR PRIMARY KEY, reason VARCHAR NOT NULL)""",
]


@dataclass
class CorrelateResult:
    """What one step did (materialization metadata)."""

    events: int = 0
    tenants: list[str] = field(default_factory=list)
    recomputed: dict[str, str] = field(default_factory=dict)  # tenant -> why
    applies: int = 0
    keys_touched: int = 0


def settings_fingerprints(timeline: SettingsTimeline, tenants: Sequence[str]) -> dict[str, str]:
    """A digest of the settings versions each tenant is correlated under."""
    out = {}
    for tenant in tenants:
        codes = timeline.tenant_versions(tenant)
        doc = [[v.label, v.effective_us, v.settings.to_dict()]
               for v in (timeline.versions[i] for i in codes)]
        out[tenant] = hashlib.sha256(
            json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return out


def correlate_staged(con: duckdb.DuckDBPyConnection, timeline: SettingsTimeline,
                     batch_events: int | None = None) -> CorrelateResult:
    """Bring the correlation state up to date with every staged row."""
    for statement in DDL:
        run(con, statement)
    state = CorrelationState(con, timeline)
    done = int(scalar(con, "SELECT coalesce(max(load_id), 0) FROM pipeline.correlated") or 0)
    newest = int(scalar(con, "SELECT coalesce(max(load_id), 0) FROM lake.files") or 0)
    _new_rows(con, done, newest)
    new = {t: (n, first) for t, n, first in con.execute(
        "SELECT tenant_id, count(*), min(ingest_seq) FROM staged_new GROUP BY tenant_id"
    ).fetchall()}
    result = CorrelateResult(events=sum(n for n, _ in new.values()))
    stored = dict(con.execute(f"SELECT tenant_id, max(ingest_seq) FROM {SCHEMA}.events "
                              "GROUP BY tenant_id").fetchall())
    known = dict(con.execute("SELECT * FROM pipeline.tenant_settings").fetchall())
    fingerprints = settings_fingerprints(timeline, sorted(set(known) | set(new)))
    result.recomputed = _to_recompute(known, fingerprints, stored,
                                      {t: first for t, (_, first) in new.items()})
    # a recompute interrupted after its tenant was forgotten is started again (its older
    # rows are no longer "new", and nothing else would bring them back)
    for tenant, reason in con.execute("SELECT * FROM pipeline.recompute_pending").fetchall():
        result.recomputed.setdefault(tenant, f"{reason} (interrupted before)")
    recompute = sorted(result.recomputed)
    if recompute:
        run(con, "INSERT OR REPLACE INTO pipeline.recompute_pending "
                 "SELECT * FROM (SELECT unnest(?) AS t, unnest(?) AS r)",
            [recompute, [result.recomputed[t] for t in recompute]])
        state.forget(recompute)
        for tenant in recompute:
            stored.pop(tenant, None)
    if new or recompute:
        rows = _rows_to_apply(con, newest, recompute)
        with _StoredBehind(con, timeline) as behind:
            _apply_batches(con, state, behind, rows, recompute, newest, stored, result,
                           batch_events or BATCH_EVENTS)
        run(con, "DROP TABLE IF EXISTS to_apply")
    run(con, "DROP TABLE IF EXISTS staged_new")
    _record(con, fingerprints, newest)
    return result


def _apply_batches(con: duckdb.DuckDBPyConnection, state: CorrelationState,
                   behind: _StoredBehind, rows: str, recompute: list[str], newest: int,
                   stored: dict[str, int], result: CorrelateResult, size: int) -> None:
    """Apply the rows of `rows` batch by batch; `stored` (tenant → highest stored
    ingest_seq) moves on with them."""
    for ranges in _batch_ranges(con, size):
        con.register("batch_ranges", ranges)
        batch = con.sql(f"""
            SELECT x.* FROM ({rows}) x SEMI JOIN batch_ranges r
                ON x.tenant_id = r.tenant_id AND x.ingest_seq BETWEEN r.low AND r.high
            ORDER BY x.ingest_seq""", params=[recompute, newest, recompute]
        ).to_arrow_table().cast(EVENTS)
        con.unregister("batch_ranges")
        for part in _apply_groups(batch, stored):
            if stored.keys().isdisjoint(pc.unique(part.column("tenant_id")).to_pylist()):
                with without_helper():  # the other core stores the batch before
                    fresh = state.correlate_fresh(part)
                behind.store(*fresh)
            else:  # reads what is stored: the batch being stored first
                behind.wait()
                result.keys_touched += state.apply(part).keys
            result.applies += 1
        grouped = batch.group_by("tenant_id").aggregate([("ingest_seq", "max")])
        stored.update(zip(grouped.column("tenant_id").to_pylist(),
                          grouped.column("ingest_seq_max").to_pylist(), strict=True))
        result.tenants = sorted(set(result.tenants) | set(
            grouped.column("tenant_id").to_pylist()))


class _StoredBehind:
    """Stores a batch of fresh tenants (nothing stored yet: a first build, a backfill, a
    recomputed tenant) on a second connection of the build file while the engine computes
    the next batch.

    The engine is Python on one core and storing is DuckDB, which releases the GIL, so the
    two overlap on the machine's second core: in a first build the storing is about a
    quarter of the step. One batch is stored at a time, in its own transaction, in order;
    a batch whose tenants have stored rows waits for the one being stored (`wait`) before
    it reads them. Errors of a store surface at the next `store`, `wait` or at exit."""

    def __init__(self, con: duckdb.DuckDBPyConnection, timeline: SettingsTimeline) -> None:
        self._cursor = con.cursor()
        self._state = CorrelationState(self._cursor, timeline)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aw-store")
        self._pending: Future[Applied] | None = None

    def store(self, batch: pa.Table, out: Correlation) -> None:
        self.wait()
        self._pending = self._pool.submit(self._state.store_fresh, batch, out)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> _StoredBehind:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self.wait()
            elif self._pending is not None:  # already failing: only let the store finish
                wait([self._pending])
        finally:
            self._pool.shutdown()
            self._cursor.close()


def _new_rows(con: duckdb.DuckDBPyConnection, done: int, newest: int) -> None:
    """The staged rows of the loads after the last step that are not stored yet, in the
    temporary table `staged_new` (a step interrupted half-way stored some). A stored copy of
    a row is the same event with the same ingest_seq, so only stored events from the lowest
    new ingest_seq up are compared, not every stored event id."""
    run(con, f"""CREATE OR REPLACE TEMP TABLE staged_new AS
                 SELECT * FROM ({STAGED_EVENTS}) s WHERE s.load_id > ? AND s.load_id <= ?""",
        [done, newest])
    lowest = scalar(con, "SELECT min(ingest_seq) FROM staged_new")
    if lowest is not None:
        run(con, f"""DELETE FROM staged_new WHERE event_id IN (
                     SELECT event_id FROM {SCHEMA}.events WHERE ingest_seq >= ?)""", [lowest])


def _rows_to_apply(con: duckdb.DuckDBPyConnection, newest: int, recompute: list[str]) -> str:
    """A query of the rows to apply (parameters: `recompute`, `newest`, `recompute`): the new
    rows, and every staged row of the recomputed tenants, which were forgotten. Their tenant
    and ingest_seq alone go into the temporary table `to_apply`, to cut into batches."""
    rows = f"""SELECT * EXCLUDE (load_id) FROM staged_new WHERE tenant_id NOT IN (SELECT unnest(?))
               UNION ALL
               SELECT * EXCLUDE (load_id) FROM ({STAGED_EVENTS}) s
               WHERE s.load_id <= ? AND s.tenant_id IN (SELECT unnest(?))"""
    run(con, f"""CREATE OR REPLACE TEMP TABLE to_apply AS
                 SELECT tenant_id, ingest_seq FROM ({rows})""", [recompute, newest, recompute])
    return rows


def _batch_ranges(con: duckdb.DuckDBPyConnection, size: int) -> list[pa.Table]:
    """The rows of `to_apply` cut into batches of about `size`, each as its ingest_seq ranges
    (tenant_id, low, high): whole tenants packed together in tenant order, and a tenant larger
    than `size` in consecutive ingest-order slices. Only the two key columns are sorted: the
    rows themselves are read a batch at a time (sorting every column of ten million rows into
    numbered batches first took 44 s of a 10M full build)."""
    slices = con.execute("""
        SELECT tenant_id, slice, count(*), min(ingest_seq), max(ingest_seq) FROM (
            SELECT tenant_id, ingest_seq, (row_number() OVER (
                       PARTITION BY tenant_id ORDER BY ingest_seq) - 1) // ? AS slice
            FROM to_apply)
        GROUP BY ALL ORDER BY tenant_id, slice""", [size]).fetchall()
    batches: list[dict[str, list[object]]] = []
    filled = 0
    for tenant, _, n, low, high in slices:  # pack whole tenants, and a big one's slices, in order
        if not batches or (filled and filled + n > size):
            batches.append({"tenant_id": [], "low": [], "high": []})
            filled = 0
        for column, value in zip(("tenant_id", "low", "high"), (tenant, low, high), strict=True):
            batches[-1][column].append(value)
        filled += n
    return [pa.table({"tenant_id": pa.array(b["tenant_id"], pa.string()),
                      "low": pa.array(b["low"], pa.int64()),
                      "high": pa.array(b["high"], pa.int64())}) for b in batches]


def _to_recompute(known: Mapping[str, str], fingerprints: Mapping[str, str],
                  stored: Mapping[str, int], first_new: Mapping[str, int]) -> dict[str, str]:
    """Tenants to recompute from all their staged rows, with the reason."""
    why = {t: "settings changed" for t, digest in known.items()
           if digest != fingerprints[t] and t in stored}
    for tenant, first in first_new.items():
        if tenant in stored and first <= stored[tenant]:
            why.setdefault(tenant, "rows staged out of ingest order")
    return why


def _record(con: duckdb.DuckDBPyConnection, fingerprints: Mapping[str, str], newest: int) -> None:
    """The settings each tenant is now correlated under, and the last load correlated."""
    run(con, "BEGIN TRANSACTION")
    for tenant, digest in fingerprints.items():
        run(con, "INSERT OR REPLACE INTO pipeline.tenant_settings VALUES (?, ?)", [tenant, digest])
    run(con, "INSERT OR REPLACE INTO pipeline.correlated VALUES (1, ?, now())", [newest])
    run(con, "DELETE FROM pipeline.recompute_pending")
    run(con, "COMMIT")


def _apply_groups(batch: pa.Table, stored: Mapping[str, int]) -> list[pa.Table]:
    """One batch when it comes after every stored row of its tenants, else one per tenant."""
    if not batch.num_rows:
        return []
    first = pc.min(batch.column("ingest_seq")).as_py()
    tenants = set(pc.unique(batch.column("tenant_id")).to_pylist())
    if all(stored.get(t, -1) < first for t in tenants):
        return [batch]
    return [batch.filter(pc.equal(batch.column("tenant_id"), t)) for t in sorted(tenants)]
