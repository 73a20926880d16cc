"""`aw pipeline run`: bring the published warehouse up to date once, in-process, then exit.

It stages the receive days that have unstaged lake files, then, when anything the marts
depend on changed (new staged rows, a tenant or a settings version, a model's SQL) or nothing
is published yet, materializes every downstream asset in graph order (with its checks) and
publishes. Runs are recorded in the Dagster instance of `DAGSTER_HOME` (so `dagster dev`
shows them), or in a temporary one when it is not set.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg
import duckdb

from pipelines import progress
from pipelines.assets import ALL_ASSETS, RAW, SSM_SNAPSHOT, raw_events, ssm_snapshot
from pipelines.checks import ALL_CHECKS
from pipelines.resources import PlatformResource, resources
from pipelines.sensors import RANGE_END, RANGE_START
from warehouse import incremental, models, staging
from warehouse.ssm import store as ssm_store
from warehouse.store import run as run_sql
from warehouse.store import scalar

Echo = Callable[[str], None]
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}  # failures: ours


class PipelineFailed(RuntimeError):
    """A step or a blocking check failed; the published warehouse was left as it was."""


@dataclass
class RunSummary:
    days_staged: list[str] = field(default_factory=list)
    steps: dict[str, dict[str, object]] = field(default_factory=dict)
    checks_run: int = 0
    checks_failed: list[str] = field(default_factory=list)
    up_to_date: bool = False
    seconds: float = 0.0


def inputs_signature(platform: PlatformResource) -> str:
    """What the marts are a function of: staged loads, tenants and settings, the model SQL."""
    tenants, timeline = platform.tenants()
    with platform.build() as con:
        staging.ensure_schema(con)
        newest = scalar(con, "SELECT coalesce(max(load_id), 0) FROM lake.files")
    fingerprints = incremental.settings_fingerprints(timeline, [t.tenant_id for t in tenants])
    parts = [str(newest), repr(sorted(fingerprints.items())),
             repr(ssm_store.lake_listing(platform.lake())),
             repr(sorted((t.tenant_id, t.name) for t in tenants)),
             *(m.sql for m in models.catalog())]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _published_signature(platform: PlatformResource) -> str | None:
    if not platform.store().published_path.exists():
        return None
    with platform.build() as con:
        _signature_table(con)
        value = scalar(con, "SELECT signature FROM pipeline.published WHERE id = 1")
    return str(value) if value else None


def _record_signature(platform: PlatformResource, signature: str) -> None:
    with platform.build() as con:
        _signature_table(con)
        run_sql(con, "INSERT OR REPLACE INTO pipeline.published VALUES (1, ?)", [signature])


def _signature_table(con: duckdb.DuckDBPyConnection) -> None:
    run_sql(con, "CREATE SCHEMA IF NOT EXISTS pipeline")
    run_sql(con, "CREATE TABLE IF NOT EXISTS pipeline.published "
                 "(id INTEGER PRIMARY KEY, signature VARCHAR)")


def run_once(echo: Echo = print, instance: dg.DagsterInstance | None = None) -> RunSummary:
    """Stage, correlate, build and publish whatever is missing or stale."""
    started = time.monotonic()
    summary = RunSummary()
    platform = PlatformResource()
    instance = instance or _instance()
    files = staging.lake_files(platform.lake())
    with platform.build() as con:
        pending = staging.pending(con, files)
    days = sorted({f.day.isoformat() for f in pending})
    if days:
        echo(f"staging {len(pending)} new lake file(s) of {len(days)} receive day(s): "
             f"{days[0]} … {days[-1]}")
        _materialize([raw_events], [RAW], instance, summary, echo,
                     tags={RANGE_START: days[0], RANGE_END: days[-1]})
        summary.days_staged = days
    if _ssm_snapshot_due(platform):
        today = datetime.now(UTC).date().isoformat()
        echo(f"taking today's SSM patch snapshot ({today})")
        _materialize([ssm_snapshot], [SSM_SNAPSHOT], instance, summary, echo,
                     partition_key=today)
    signature = inputs_signature(platform)
    if _published_signature(platform) == signature:
        summary.up_to_date = True
        summary.seconds = time.monotonic() - started
        echo("the published warehouse is up to date")
        return summary
    # one run for the whole graph below the staged days: a Dagster run per asset costs more
    # than most of the SQL models themselves
    _materialize([*ALL_ASSETS, *ALL_CHECKS], _downstream_order(), instance, summary, echo)
    _record_signature(platform, signature)
    summary.seconds = time.monotonic() - started
    echo(f"{summary.checks_run - len(summary.checks_failed)} of {summary.checks_run} checks "
         f"passed; published {platform.store().published_path} in {summary.seconds:.1f} s")
    return summary


def _downstream_order() -> list[dg.AssetKey]:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    order: list[dg.AssetKey] = []
    done: set[dg.AssetKey] = {RAW, SSM_SNAPSHOT}  # partitioned: run on their own
    for key in graph.toposorted_asset_keys:
        if key in done:
            continue
        node = graph.get(key)
        if node.group_name == "exports":
            continue  # QuickSight exports: hourly in Dagster, or `aw export quicksight`
        # a multi-asset runs once for all of its keys
        siblings = [k for k in node.execution_set_asset_keys if k not in done]
        done.update(siblings)
        order.append(key)
    return order


def _ssm_snapshot_due(platform: PlatformResource) -> bool:
    from warehouse.ssm.collect import snapshot_due

    return snapshot_due(platform.settings(), datetime.now(UTC))


def _materialize(assets: list[object], keys: list[dg.AssetKey], instance: dg.DagsterInstance,
                 summary: RunSummary, echo: Echo, tags: dict[str, str] | None = None,
                 partition_key: str | None = None) -> None:
    """One in-process run of `keys` (and their checks), echoing each asset as it finishes."""
    last = [time.monotonic()]

    def finished(name: str, metadata: Mapping[str, object]) -> None:
        now = time.monotonic()
        summary.steps[name] = {k: getattr(v, "value", v) for k, v in metadata.items()}
        rows = summary.steps[name].get("dagster/row_count")
        echo(f"  ✓ {name}" + (f"  {rows:,} rows" if isinstance(rows, int) else "")
             + f"  ({now - last[0]:.1f} s)")
        last[0] = now

    selection = dg.AssetSelection.assets(*keys).required_multi_asset_neighbors()
    with progress.listening(finished):
        result = dg.materialize(assets, selection=selection, resources=resources(),  # type: ignore[arg-type]
                                instance=instance, tags=tags, raise_on_error=False,
                                partition_key=partition_key, run_config=QUIET)
    for evaluation in result.get_asset_check_evaluations():
        summary.checks_run += 1
        if not evaluation.passed:
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            summary.checks_failed.append(name)
            echo(f"  ✗ check {name}: {evaluation.description}")
    blocking = [c for c in summary.checks_failed if not c.endswith("raw_data_fresh")]
    if blocking:
        raise PipelineFailed(f"check(s) failed: {', '.join(blocking)}; nothing was published")
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        detail = failure.step_failure_data.error.message.strip() if failure and \
            failure.step_failure_data and failure.step_failure_data.error else "see the run log"
        step = failure.step_key.replace("__", "/") if failure and failure.step_key \
            else keys[0].to_user_string()
        raise PipelineFailed(f"{step} failed: {detail}")


def _instance() -> dg.DagsterInstance:
    import os

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()
