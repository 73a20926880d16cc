"""The SQL models, layered staging → intermediate → marts (STYLE.md §5), and how they build.

Each model is one `SELECT` in `warehouse/models/<layer>/<name>.sql` whose leading `--` comment
states its grain; it becomes `<layer>.<name>` in the build file (staging models and marts
marked `-- @view` are views, the rest tables). Its dependencies are the `<schema>.<table>`
names it reads, so the build order and the Dagster asset graph come from the SQL itself.
Parameters are bound (`$name`), never formatted into the text.

Three inputs are written from Python because they come from outside DuckDB: the tenants
(`staging.stg_tenants`, from the registry), their settings versions (`staging.stg_settings`)
and the incidents with their status at each tenant's clock (`intermediate.int_incidents`,
from the correlation state).

**Incremental models.** The models of one row per event, alert or incident grow with the
whole history, while a correlation step changes a small part of it (which part is exact, not
"today": a late event changes earlier days, `warehouse.changes`). Such a model declares
`-- @incremental scope=<events|alerts|incidents|days>` (and optionally `also=<predicate>`: its own
rows to refresh every time, e.g. alerts still open, whose status moves with the clock). Its
SQL marks the lines that restrict it to the scope with `-- incremental only`; a full build
drops those lines. A refresh deletes the rows in scope and inserts them recomputed, in one
transaction; it falls back to a full build the first time, when its SQL changed, when the
change log it needs was pruned, or when the scope is a large share of the table.

**Views.** A mart that only adds derived columns to one wide table declares `-- @view`: in
the build file it is a view of that table (`marts.fct_incident_events`: ten million rows
that would otherwise be stored twice, and refreshed twice a run), while the published
snapshot holds it as a table like every mart. Its scope still says which snapshot rows a
publish refreshes; its `-- incremental only` lines then select them from its source.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa

from warehouse import changes
from warehouse.correlation.state import CorrelationState
from warehouse.correlation.timeline import EPOCH, SettingsTimeline
from warehouse.ssm import store as ssm_store
from warehouse.store import replace_table, run, scalar

MODELS_DIR = Path(__file__).parent / "models"
LAYERS = ("staging", "intermediate", "marts")
PARAMS: dict[str, object] = {"recurrence_days": 7, "top_days": 7, "stale_scan_days": 7}
_REF = re.compile(r"\b(lake|corr|staging|intermediate|marts)\.([a-z_][a-z0-9_]*)\b")
_PARAM = re.compile(r"\$([a-z_]+)")
_INCREMENTAL = re.compile(r"^-- @incremental scope=(\w+)(?: also=(.+))?$", re.M)
_VIEW = re.compile(r"^-- @view$", re.M)
INCREMENTAL_ONLY = "-- incremental only"
FULL_REBUILD_SHARE = 0.3  # a refresh whose scope is beyond this share of the rows rebuilds

# Unique keys of every table model (asset checks test them; the README documents them).
KEYS: dict[str, tuple[str, ...]] = {
    "intermediate.int_event_decisions": ("event_id",),
    "intermediate.int_alerts": ("tenant_id", "source", "source_fingerprint", "is_point",
                                "occurrence_no"),
    "intermediate.int_incident_visibility": ("incident_id",),
    "marts.fct_incidents": ("incident_id",),
    "marts.fct_incident_events": ("event_id",),
    "marts.fct_alerts": ("alert_id",),
    "marts.fct_noise_daily": ("tenant_id", "day"),
    "marts.fct_noise_msp_daily": ("day",),
    "marts.dim_tenants": ("tenant_id",),
    "marts.fct_noisy_keys_daily": ("tenant_id", "day", "agg_key"),
    "marts.fct_top_noisy_keys": ("tenant_id", "agg_key"),
    "marts.fct_source_noise_daily": ("tenant_id", "day", "source"),
    "marts.fct_alert_quality_daily": ("tenant_id", "day", "source"),
    "intermediate.int_patch_nodes_daily": ("tenant_id", "snapshot_date", "node_id"),
    "marts.fct_patch_compliance_node_daily": ("tenant_id", "snapshot_date", "node_id"),
    "marts.fct_patch_compliance_daily": ("tenant_id", "snapshot_date"),
    "marts.fct_patch_compliance_group_daily": ("tenant_id", "snapshot_date", "patch_group"),
    "marts.fct_patch_risk_assets": ("tenant_id", "asset"),
}
PYTHON_MODELS = ("staging.stg_tenants", "staging.stg_settings", "intermediate.int_incidents")


@dataclass(frozen=True)
class Model:
    name: str  # "<layer>.<table>"
    sql: str
    description: str
    deps: tuple[str, ...]
    params: tuple[str, ...]
    scope: str | None = None  # incremental: the change scope it refreshes by
    also: str | None = None  # incremental: own rows refreshed on every run
    view: bool = False  # a view in the build file (staging models, and marts marked @view)

    @property
    def kind(self) -> str:
        return "VIEW" if self.view else "TABLE"

    @property
    def sql_sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statement(self, incremental: bool) -> str:
        """The SELECT, restricted to the scope tables or (full build) not."""
        lines = self.sql.splitlines()
        if not incremental:
            lines = [line for line in lines if INCREMENTAL_ONLY not in line]
        return "\n".join(lines)

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def key(self) -> tuple[str, ...]:
        return KEYS.get(self.name, ())


@cache
def catalog() -> tuple[Model, ...]:
    """Every SQL model, in an order where each comes after what it reads."""
    found: dict[str, Model] = {}
    for layer in LAYERS:
        for path in sorted((MODELS_DIR / layer).glob("*.sql")):
            text = path.read_text()
            name = f"{layer}.{path.stem}"
            comment = [line[2:].strip() for line in text.splitlines()
                       if line.startswith("--") and not line.startswith("-- @")]
            deps = tuple(sorted({f"{s}.{t}" for s, t in _REF.findall(text)} - {name}))
            params = tuple(sorted(set(_PARAM.findall(text))))
            declared = _INCREMENTAL.search(text)
            scope, also = (declared.group(1), declared.group(2)) if declared else (None, None)
            if scope is not None and (scope not in changes.SCOPES
                                      or INCREMENTAL_ONLY not in text):
                raise ValueError(f"{path}: an incremental model needs a known scope "
                                 f"({', '.join(changes.SCOPES)}) and `{INCREMENTAL_ONLY}` lines")
            view = layer == "staging" or bool(_VIEW.search(text))
            if view and (params or also):
                raise ValueError(f"{path}: a view takes no parameters and has no `also` rows")
            found[name] = Model(name, text, " ".join(comment), deps, params, scope, also, view)
    return tuple(_ordered(found))


def _ordered(models: Mapping[str, Model]) -> list[Model]:
    out: list[Model] = []
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done or name not in models:
            return
        if name in path:
            raise ValueError(f"models depend on each other in a cycle: {' -> '.join(path)}")
        for dep in models[name].deps:
            visit(dep, (*path, name))
        done.add(name)
        out.append(models[name])

    for name in models:
        visit(name, ())
    return out


def model(name: str) -> Model:
    for m in catalog():
        if m.name == name:
            return m
    raise KeyError(name)


def marts() -> list[Model]:
    return [m for m in catalog() if m.layer == "marts"]


def ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    for layer in LAYERS:
        run(con, f"CREATE SCHEMA IF NOT EXISTS {layer}")
    run(con, "SET TimeZone = 'UTC'")
    ssm_store.ensure_tables(con)
    changes.ensure_tables(con)


@dataclass(frozen=True)
class Built:
    """What one build of a model did."""

    rows: int
    mode: str  # "full", "incremental", "unchanged" or "view"
    version: int  # the change version its inputs were at
    refreshed: int = 0  # incremental: scope rows refreshed
    why: str = ""


def build(con: duckdb.DuckDBPyConnection, m: Model,
          params: Mapping[str, object] | None = None) -> Built:
    """(Re)build one model in a transaction, incrementally when it can.

    An upstream model that was never built (an orchestrator may schedule a model without the
    parents whose own inputs never changed, e.g. the compliance models before any SSM data)
    is built first: models are pure functions of their inputs, so this is the same table a
    run of the parent would have made."""
    ensure_schemas(con)
    ensure_built(con, m.deps)
    values = {**PARAMS, **(params or {})}
    bound = {p: values[p] for p in m.params}
    target = _input_version(con, m)
    mode, refreshed, why = "full", 0, "not incremental"
    if m.view:
        mode, why = "view", "a view: read from its inputs as they are"
    elif m.scope is not None and not params:
        mode, refreshed, why = _refresh(con, m, bound, target)
    if mode in ("full", "view"):
        # a build file from before a model became a view (or stopped being one) holds the
        # other kind of object under its name
        other = "TABLE" if m.view else "VIEW"
        drop: list[tuple[str, dict[str, object]]] = \
            [(f"DROP {other} {m.name}", {})] if _exists(con, m.name, other) else []
        _in_transaction(con, [*drop, (f"CREATE OR REPLACE {m.kind} {m.name} AS "
                                      f"{m.statement(False)}", bound)])
    changes.set_model_version(con, m.name, target, m.sql_sha256)
    rows = int(scalar(con, f"SELECT count(*) FROM {m.name}") or 0)
    return Built(rows, mode, target, refreshed, why)


def _refresh(con: duckdb.DuckDBPyConnection, m: Model, bound: dict[str, object],
             target: int) -> tuple[str, int, str]:
    """Refresh the rows of `m` in scope of the versions since its last build. Returns (mode,
    scope rows, why): mode "full" when it has to be rebuilt whole instead."""
    assert m.scope is not None
    before = changes.model_version(con, m.name)
    if before is None or not _exists(con, m.name, "TABLE"):
        return "full", 0, "first build"
    if before[1] != m.sql_sha256:
        return "full", 0, "its SQL changed"
    if before[0] < changes.floor(con):
        return "full", 0, "the change log it needed was pruned"
    if before[0] >= target:
        return "unchanged", 0, "no change since its last build"
    n = changes.prepare_scope(con, m.scope, before[0], target,
                              (m.name, m.also) if m.also else None)
    share = _scope_share(con, m, n)
    if share > FULL_REBUILD_SHARE:
        return "full", n, f"{n:,} {m.scope} in scope, {share:.0%} of the work of a full build"
    _in_transaction(con, [
        (f"DELETE FROM {m.name} WHERE {changes.in_scope(m.scope, m.name)}", {}),
        (f"INSERT INTO {m.name} BY NAME {m.statement(True)}", bound),
    ])
    return "incremental", n, f"{n:,} {m.scope} in scope of versions {before[0] + 1}–{target}"


def _scope_share(con: duckdb.DuckDBPyConnection, m: Model, n: int) -> float:
    """About how much of a full build's work a refresh of `n` scope rows is. An alert in
    scope is recomputed from one of its occurrences on, so alerts weigh by those events; a
    day in scope by the mart's rows of that day."""
    if m.scope == "alerts":
        n = int(scalar(con, """
            SELECT count(*) FROM corr.events e JOIN scope_alerts s
              ON s.tenant_id = e.tenant_id AND s.source = e.source
             AND s.source_fingerprint = e.source_fingerprint
             AND s.kind = CASE WHEN e.status = 'point' THEN 'point' ELSE 'stateful' END
            WHERE s.from_time IS NULL OR e.event_time_us >= epoch_us(s.from_time)""") or 0)
        total = int(scalar(con, "SELECT count(*) FROM corr.events") or 0)
    elif m.scope == "days":  # a day holds many rows of a mart by key or source
        n = int(scalar(con, f"SELECT count(*) FROM {m.name} WHERE "
                            f"{changes.in_scope('days', m.name)}") or 0)
        total = int(scalar(con, f"SELECT count(*) FROM {m.name}") or 0)
    else:
        total = int(scalar(con, f"SELECT count(*) FROM {m.name}") or 0)
    return n / max(total, 1)


def _input_version(con: duckdb.DuckDBPyConnection, m: Model) -> int:
    """The change version `m`'s inputs are at: the oldest of its table parents' (a parent
    that lags is caught up with next time), else the latest correlation step's. Staging
    views read the staged lake directly and are never behind."""
    latest = changes.current_version(con)
    versions = [latest]
    views = {v.name for v in catalog() if v.layer == "staging"}
    for dep in m.deps:
        if dep.split(".", 1)[0] in ("staging", "intermediate", "marts") and dep not in views:
            recorded = changes.model_version(con, dep)
            if recorded is not None:
                versions.append(recorded[0])
    return min(versions)


def _exists(con: duckdb.DuckDBPyConnection, name: str, kind: str) -> bool:
    """Whether `name` exists as a TABLE or as a VIEW."""
    schema, table = name.split(".", 1)
    catalog_rows = "duckdb_tables() WHERE table_name" if kind == "TABLE" \
        else "duckdb_views() WHERE view_name"
    return bool(scalar(con, f"SELECT count(*) FROM {catalog_rows} = ? AND schema_name = ? "
                            "AND database_name = current_database()", [table, schema]))


def _in_transaction(con: duckdb.DuckDBPyConnection,
                    statements: list[tuple[str, dict[str, object]]]) -> None:
    run(con, "BEGIN TRANSACTION")
    try:
        for sql, bound in statements:
            con.execute(sql, bound).fetchall()
        run(con, "COMMIT")
    except BaseException:
        run(con, "ROLLBACK")
        raise


def ensure_built(con: duckdb.DuckDBPyConnection, names: Iterable[str]) -> list[str]:
    """Build the named models (and, first, their own missing parents) that do not exist yet;
    returns what was built. Names of non-SQL inputs (lake.*, corr.*, Python models) are
    skipped."""
    existing = {f"{schema}.{table}" for schema, table in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() UNION ALL "
        "SELECT schema_name, view_name FROM duckdb_views()").fetchall()}
    by_name = {m.name: m for m in catalog()}
    built: list[str] = []
    for name in names:
        if name in by_name and name not in existing:
            build(con, by_name[name])  # builds its own missing parents first
            built.append(name)
    return built


# ---- the inputs written from Python ------------------------------------------------------

@dataclass(frozen=True)
class TenantRow:
    tenant_id: str
    name: str
    created_at: datetime | None


def write_tenants(con: duckdb.DuckDBPyConnection, tenants: Sequence[TenantRow],
                  timeline: SettingsTimeline) -> None:
    """`staging.stg_tenants` (registry tenants, plus any tenant seen only in the data) and
    `staging.stg_settings` (every settings version each can be correlated under)."""
    ensure_schemas(con)
    seen = {t.tenant_id for t in tenants}
    extra = []
    if scalar(con, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'corr' "
                   "AND table_name = 'clocks'"):
        extra = [TenantRow(r[0], r[0], None) for r in con.execute(
            "SELECT tenant_id FROM corr.clocks ORDER BY tenant_id").fetchall()
            if r[0] not in seen]
    rows = [*tenants, *extra]
    tenant_table = pa.table({
        "tenant_id": pa.array([t.tenant_id for t in rows], pa.string()),
        "name": pa.array([t.name for t in rows], pa.string()),
        "created_at": pa.array([t.created_at for t in rows], pa.timestamp("us", tz="UTC")),
    })
    settings_rows: dict[str, list[object]] = {k: [] for k in (
        "tenant_id", "label", "version", "effective_at", "window_us", "cap_us", "threshold",
        "key_fields", "lateness_us", "stale_after_us", "clock_skew_us",
        "stale_after_by_source")}
    for t in rows:
        for index in timeline.tenant_versions(t.tenant_id):
            v = timeline.versions[index]
            s = v.settings
            values = [t.tenant_id, v.label, int(v.label.lstrip("v") or 0),
                      EPOCH if index == 0 else _from_us(v.effective_us),
                      _us(s.window), _us(s.cap), int(s.threshold), list(s.key),
                      _us(s.lateness), _us(s.stale_after), _us(s.clock_skew),
                      [(k, _us(d)) for k, d in sorted(s.stale_after_by_source.items())]]
            for column, value in zip(settings_rows, values, strict=True):
                settings_rows[column].append(value)
    settings_table = pa.table({
        **{k: settings_rows[k] for k in ("tenant_id", "label")},
        "version": pa.array(settings_rows["version"], pa.int64()),
        "effective_at": pa.array(settings_rows["effective_at"], pa.timestamp("us", tz="UTC")),
        **{k: pa.array(settings_rows[k], pa.int64()) for k in (
            "window_us", "cap_us", "threshold", "lateness_us", "stale_after_us",
            "clock_skew_us")},
        "key_fields": pa.array(settings_rows["key_fields"], pa.list_(pa.string())),
        "stale_after_by_source": pa.array(settings_rows["stale_after_by_source"],
                                          pa.map_(pa.string(), pa.int64())),
    })
    replace_table(con, "staging.stg_tenants", tenant_table)
    replace_table(con, "staging.stg_settings", settings_table)


def write_incidents(con: duckdb.DuckDBPyConnection, state: CorrelationState
                    ) -> tuple[int, int, int, int]:
    """`intermediate.int_incidents`: every incident with its status at its tenant's clock, as a
    new change version (`warehouse.changes`) in one transaction. Returns (incidents,
    version, changed events, changed incidents)."""
    ensure_schemas(con)
    among = changes.incidents_in_question(con)
    incidents, _ = state.incidents(among)
    run(con, "BEGIN TRANSACTION")
    try:
        version, events, changed = changes.record_step(con, incidents, among)
        for name in PYTHON_MODELS:
            changes.set_model_version(con, name, version, "python")
        # changes every built incremental model and the published snapshot have consumed
        # are not needed any more (a model never built starts with a full build)
        incremental = [m.name for m in catalog() if m.scope is not None]
        built = [v[0] for v in (changes.model_version(con, name) for name in incremental)
                 if v is not None]
        changes.prune(con, min([*built, *changes.published_versions(con, incremental)],
                               default=version))
        run(con, "COMMIT")
    except BaseException:
        run(con, "ROLLBACK")
        raise
    return (int(scalar(con, "SELECT count(*) FROM intermediate.int_incidents") or 0), version,
            events, changed)


def _us(value: object) -> int:
    from datetime import timedelta

    assert isinstance(value, timedelta)
    return int(value.total_seconds() * 1_000_000)


def _from_us(us: int) -> datetime:
    from datetime import timedelta

    return EPOCH + timedelta(microseconds=us)
