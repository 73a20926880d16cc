"""The SQL models, layered staging → intermediate → marts (STYLE.md §5), and how they build.

Each model is one `SELECT` in `warehouse/models/<layer>/<name>.sql` whose leading `--` comment
states its grain; it becomes `<layer>.<name>` in the build file (staging models are views,
the rest tables). Its dependencies are the `<schema>.<table>` names it reads, so the build
order and the Dagster asset graph come from the SQL itself. Parameters are bound (`$name`),
never formatted into the text.

Three inputs are written from Python because they come from outside DuckDB: the tenants
(`staging.stg_tenants`, from the registry), their settings versions (`staging.stg_settings`)
and the incidents with their status at each tenant's clock (`intermediate.int_incidents`,
from the correlation state).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa

from warehouse.correlation.state import CorrelationState
from warehouse.correlation.timeline import EPOCH, SettingsTimeline
from warehouse.ssm import store as ssm_store
from warehouse.store import replace_table, run, scalar

MODELS_DIR = Path(__file__).parent / "models"
LAYERS = ("staging", "intermediate", "marts")
PARAMS: dict[str, object] = {"recurrence_days": 7, "top_days": 7, "stale_scan_days": 7}
_REF = re.compile(r"\b(lake|corr|staging|intermediate|marts)\.([a-z_][a-z0-9_]*)\b")
_PARAM = re.compile(r"\$([a-z_]+)")

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
                       if line.startswith("--")]
            deps = tuple(sorted({f"{s}.{t}" for s, t in _REF.findall(text)} - {name}))
            params = tuple(sorted(set(_PARAM.findall(text))))
            found[name] = Model(name, text, " ".join(comment), deps, params)
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


def build(con: duckdb.DuckDBPyConnection, m: Model,
          params: Mapping[str, object] | None = None) -> int:
    """(Re)build one model in a transaction; returns its row count.

    An upstream model that was never built (an orchestrator may schedule a model without the
    parents whose own inputs never changed, e.g. the compliance models before any SSM data)
    is built first: models are pure functions of their inputs, so this is the same table a
    run of the parent would have made."""
    ensure_schemas(con)
    ensure_built(con, m.deps)
    values = {**PARAMS, **(params or {})}
    bound = {p: values[p] for p in m.params}
    kind = "VIEW" if m.layer == "staging" else "TABLE"
    run(con, "BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE OR REPLACE {kind} {m.name} AS {m.sql}", bound).fetchall()
        run(con, "COMMIT")
    except BaseException:
        run(con, "ROLLBACK")
        raise
    return int(scalar(con, f"SELECT count(*) FROM {m.name}") or 0)


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


def write_incidents(con: duckdb.DuckDBPyConnection, state: CorrelationState) -> int:
    """`intermediate.int_incidents`: every incident with its status at its tenant's clock."""
    ensure_schemas(con)
    incidents, _ = state.incidents()
    replace_table(con, "intermediate.int_incidents", incidents)
    return incidents.num_rows


def _us(value: object) -> int:
    from datetime import timedelta

    assert isinstance(value, timedelta)
    return int(value.total_seconds() * 1_000_000)


def _from_us(us: int) -> datetime:
    from datetime import timedelta

    return EPOCH + timedelta(microseconds=us)
