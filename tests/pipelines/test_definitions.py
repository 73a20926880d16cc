"""The Dagster code location: it loads, tells the story of the data, and its pieces work
in-process (assets with `dg.materialize`, the sensor with `build_sensor_context`, checks that
fail on bad data)."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from pipelines.assets import ALL_ASSETS, DAILY, RAW, raw_events
from pipelines.checks import ALL_CHECKS
from pipelines.definitions import defs
from pipelines.resources import PlatformResource, resources
from pipelines.run import run_once
from pipelines.sensors import RANGE_END, RANGE_START, lake_files_sensor
from tests.pipelines.conftest import DAY, at, rows, write
from warehouse import models
from warehouse.store import run as run_sql


def _quiet(_line: str) -> None:
    pass


def test_definitions_load_with_every_asset_described_and_grouped() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    for m in models.catalog():
        assert dg.AssetKey(m.name.split(".")) in keys
    for key in keys:
        node = graph.get(key)
        text = (node.description or "").lower()
        assert "grain" in text or "one row per" in text, key  # every asset states its grain
        assert node.group_name != "default", key
    groups = {graph.get(k).group_name for k in keys}
    assert {"raw", "staging", "incidents", "noise", "publish"} <= groups
    assert graph.get(RAW).partitions_def == DAILY
    # the marts read what the SQL says they read
    fct_noise = graph.get(dg.AssetKey(["marts", "fct_noise_daily"]))
    assert dg.AssetKey(["marts", "fct_incidents"]) in fct_noise.parent_keys
    sensors = {s.name for s in defs.sensors or []}
    assert {"lake_files_sensor", "update_marts_on_new_data"} <= sensors


def test_every_mart_has_a_unique_key_check() -> None:
    checked = {c.asset_key for check in ALL_CHECKS for c in check.check_specs}
    for m in models.marts():
        assert m.key, f"{m.name} declares no key"
        assert dg.AssetKey(m.name.split(".")) in checked


def test_raw_partition_stages_only_new_files(lake) -> None:
    write(lake, [{"id": "e1", "t": at("10:00:00")}, {"id": "e2", "t": at("11:00:00")}])
    day = DAY.date().isoformat()
    first = dg.materialize([raw_events], partition_key=day, resources=resources())
    assert first.success
    (mat,) = first.asset_materializations_for_node("raw_events")
    assert mat.metadata["events_staged"].value == 2
    assert mat.metadata["files_staged"].value == 1
    again = dg.materialize([raw_events], partition_key=day, resources=resources())
    (mat,) = again.asset_materializations_for_node("raw_events")
    assert mat.metadata["events_staged"].value == 0  # idempotent: nothing staged twice


def test_sensor_requests_one_range_run_for_new_days_then_nothing(lake) -> None:
    write(lake, [{"id": "e1", "t": at("10:00:00")},
                 {"id": "e2", "t": at("10:00:00", DAY.replace(day=5))}])
    platform = PlatformResource()
    with dg.instance_for_test() as instance:
        # the platform resource has a run lifecycle (the build file kept open for a run), so
        # a sensor context is opened as a context manager, as the daemon does
        with dg.build_sensor_context(instance=instance,
                                     resources={"platform": platform}) as context:
            result = lake_files_sensor(context)
        assert isinstance(result, dg.SensorResult)
        (request,) = result.run_requests or []
        assert request.tags[RANGE_START] == "2026-11-02"
        assert request.tags[RANGE_END] == "2026-11-05"
        cursor = result.cursor
        assert set(json.loads(cursor or "{}")) == {"2026-11-02", "2026-11-05", "ssm"}
        with dg.build_sensor_context(instance=instance, cursor=cursor,
                                     resources={"platform": platform}) as context:
            assert isinstance(lake_files_sensor(context), dg.SkipReason)
        write(lake, [{"id": "e3", "t": at("12:00:00"), "seq": 10}], prefix="more")
        with dg.build_sensor_context(instance=instance, cursor=cursor,
                                     resources={"platform": platform}) as context:
            result = lake_files_sensor(context)
        (request,) = result.run_requests or []
        assert request.tags[RANGE_START] == request.tags[RANGE_END] == "2026-11-02"


def test_key_check_fails_on_a_duplicate_key(lake, published) -> None:
    write(lake, [{"id": "e1", "t": at("10:00:00")}])
    run_once(echo=_quiet)
    with PlatformResource().build() as con:  # corrupt a mart behind the pipeline's back
        run_sql(con, "INSERT INTO marts.fct_incidents SELECT * FROM marts.fct_incidents")
    check = next(c for c in ALL_CHECKS
                 if any(s.asset_key == dg.AssetKey(["marts", "fct_incidents"])
                        for s in c.check_specs))
    result = dg.materialize([*ALL_ASSETS, check],
                            selection=dg.AssetSelection.checks(check), resources=resources(),
                            raise_on_error=False)
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.metadata["failing_rows"].value == 1


def test_key_violations_are_exact(tmp_path) -> None:
    import duckdb

    from pipelines.checks import key_violations

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT i::VARCHAR AS a, i % 7 AS b FROM range(50000) r(i)"
                ).fetchall()

    def violations(*columns: str) -> list[tuple[object, ...]]:
        return sorted(con.execute(key_violations("t", columns)).fetchall(), key=str)

    assert violations("a") == [] and violations("a", "b") == []
    assert len(violations("b")) == 7  # every value of b repeats
    con.execute("INSERT INTO t VALUES ('17', 3), (NULL, 1), ('x', NULL)").fetchall()
    assert violations("a") == [("17", 2), (None, 1)]
    assert violations("a", "b") == [("17", 3, 2), ("x", None, 1), (None, 1, 1)]


def test_funnel_order_check_fails_when_alerts_exceed_events(lake) -> None:
    write(lake, [{"id": "e1", "t": at("10:00:00")}])
    run_once(echo=_quiet)
    with PlatformResource().build() as con:
        run_sql(con, "UPDATE marts.fct_noise_daily SET alerts = unique_events + 1")
    check = next(c for c in ALL_CHECKS if "funnel_order" in {s.name for s in c.check_specs})
    result = dg.materialize([*ALL_ASSETS, check],
                            selection=dg.AssetSelection.checks(check), resources=resources(),
                            raise_on_error=False)
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed


def test_run_once_skips_when_up_to_date_and_rebuilds_on_new_settings(lake, data_dir) -> None:
    from warehouse.config import platform_settings
    from warehouse.registry import Registry

    with Registry.open(platform_settings()) as registry:
        registry.create_tenant("acme", name="Acme Corp")
    write(lake, [{"id": "e1", "t": at("10:00:00")}, {"id": "e2", "t": at("10:10:00")}])
    assert not run_once(echo=_quiet).up_to_date
    assert run_once(echo=_quiet).up_to_date
    with Registry.open(platform_settings()) as registry:
        registry.set_settings("acme", {"window": "5m"}, effective_at=DAY)
    summary = run_once(echo=_quiet)
    assert not summary.up_to_date
    state = summary.steps["corr/correlation_state"]
    assert "acme (settings changed)" in str(state["tenants_recomputed"])


@pytest.mark.parametrize("window,incidents", [("15m", 1), ("5m", 2)])
def test_tenant_settings_decide_the_incidents(lake, published, window, incidents) -> None:
    from warehouse.config import platform_settings
    from warehouse.registry import Registry

    with Registry.open(platform_settings()) as registry:
        registry.create_tenant("acme", name="Acme Corp")
        registry.set_settings("acme", {"window": window}, effective_at=DAY.replace(day=1))
    write(lake, [{"id": "e1", "t": at("10:00:00")}, {"id": "e2", "t": at("10:10:00")}])
    run_once(echo=_quiet)
    con = published()
    assert rows(con, "SELECT incidents FROM marts.fct_noise_daily") == [{"incidents": incidents}]
    (tenant,) = rows(con, "SELECT name, settings_version, window_seconds, "
                          "stale_after_by_source_seconds FROM marts.dim_tenants")
    assert tenant["name"] == "Acme Corp"
    assert tenant["settings_version"] == "v1"
    assert tenant["stale_after_by_source_seconds"] == {}


def test_dim_tenants_shows_the_staleness_overridden_per_source(lake, published) -> None:
    # R8 with per-source T_stale: the tenant's current overrides, in seconds, beside its default
    from warehouse.config import platform_settings
    from warehouse.registry import Registry

    with Registry.open(platform_settings()) as registry:
        registry.create_tenant("acme", name="Acme Corp")
        registry.set_settings("acme", {"stale_after": "30m",
                                       "stale_after_by_source": {"zabbix": "2h",
                                                                 "alertmanager": "15m"}},
                              effective_at=DAY.replace(day=1))
    write(lake, [{"id": "e1", "t": at("10:00:00")}])
    run_once(echo=_quiet)
    (tenant,) = rows(published(), "SELECT stale_after_seconds, stale_after_by_source_seconds "
                                  "FROM marts.dim_tenants")
    assert tenant == {"stale_after_seconds": 1800.0,
                      "stale_after_by_source_seconds": {"alertmanager": 900.0, "zabbix": 7200.0}}


def test_sensor_requests_ssm_staging_when_snapshots_change(lake) -> None:
    import pyarrow as pa

    from warehouse.ssm.schema import NODES
    from warehouse.ssm.store import write_snapshot

    platform = PlatformResource()
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance,
                                     resources={"platform": platform}) as context:
            assert isinstance(lake_files_sensor(context), dg.SkipReason)  # nothing at all yet
        row = {f.name: None for f in NODES} | {
            "tenant_id": "acme", "account_id": "111111111111", "region": "us-east-1",
            "snapshot_at": DAY, "source": "resource_data_sync", "node_id": "i-1",
            "is_hybrid": False}
        write_snapshot(lake, {"nodes": pa.Table.from_pylist([row], schema=NODES)}, DAY.date())
        with dg.build_sensor_context(instance=instance,
                                     resources={"platform": platform}) as context:
            result = lake_files_sensor(context)
        (request,) = result.run_requests or []
        assert request.job_name == "stage_ssm_snapshots"


def test_a_run_opens_the_build_file_once_and_lets_go_of_it_at_the_end(lake, monkeypatch
                                                                        ) -> None:
    import fcntl
    import os

    from warehouse.store import WarehouseStore

    opened: list[str] = []
    writer = WarehouseStore.writer

    def counting(self: WarehouseStore):  # type: ignore[no-untyped-def]
        opened.append(str(self.build_path))
        return writer(self)

    monkeypatch.setattr(WarehouseStore, "writer", counting)
    write(lake, [{"id": "e1", "t": at("10:00:00")}, {"id": "e2", "t": at("10:01:00")}])
    everything_but_ssm = dg.AssetSelection.all() - dg.AssetSelection.assets("ssm_snapshot")
    result = dg.materialize([*ALL_ASSETS], selection=everything_but_ssm,
                            partition_key=DAY.date().isoformat(), resources=resources())
    assert result.success
    assert len(opened) == 1  # every step on one open database, not one each
    store = PlatformResource().store()
    fd = os.open(store.lock_path, os.O_RDWR)
    try:  # the run let go of the build file: its lock is free at once
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    # what the steps committed is in the file, checkpointed (no write-ahead log left over)
    assert not store.build_path.with_name(store.build_path.name + ".wal").exists()
    with PlatformResource().build() as con:
        assert rows(con, "SELECT count(*) AS n FROM marts.fct_incident_events")[0]["n"] == 2
