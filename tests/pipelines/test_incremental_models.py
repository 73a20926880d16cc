"""Incremental models equal a full build after every correlation step: late events that change
earlier days, incidents and alerts going stale as a tenant's clock moves, a tenant recomputed
(new settings version, rows staged out of ingest order), and the change log pruned."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pyarrow.compute as pc
import pytest

from tests.correlation.test_state import assert_int_incidents_complete
from tests.pipelines.conftest import build_store, lake_history
from warehouse import changes, incremental, models, staging
from warehouse.correlation.state import CorrelationState
from warehouse.correlation.timeline import SettingsTimeline, Version, to_us
from warehouse.correlation_settings import CorrelationSettings

INCREMENTAL = [m for m in models.catalog() if m.scope is not None]
REFRESHED = [m for m in INCREMENTAL if not m.view]  # a view has no rows of its own


@pytest.fixture(autouse=True)
def _always_incremental(monkeypatch: pytest.MonkeyPatch) -> None:
    """These small histories would often hit the "scope is most of the table" fallback; the
    incremental path is what is under test."""
    monkeypatch.setattr(models, "FULL_REBUILD_SHARE", 10.0)


def _step(con: duckdb.DuckDBPyConnection, timeline: SettingsTimeline) -> dict[str, str]:
    """One pipeline pass: correlate, write the Python inputs, build every SQL model."""
    incremental.correlate_staged(con, timeline)
    models.write_tenants(con, [], timeline)
    models.write_incidents(con, CorrelationState(con, timeline))
    # (compared only where the state says it rewrote them)
    assert_int_incidents_complete(CorrelationState(con, timeline))
    return {m.name: models.build(con, m).mode for m in models.catalog()}


def _assert_equal_to_full(con: duckdb.DuckDBPyConnection) -> None:
    for m in INCREMENTAL:
        full = f"({m.statement(False)})"
        bound = {p: models.PARAMS[p] for p in m.params}
        extra = con.execute(f"SELECT count(*) FROM (SELECT * FROM {m.name} EXCEPT ALL "
                            f"SELECT * FROM {full})", bound).fetchall()[0][0]
        missing = con.execute(f"SELECT count(*) FROM (SELECT * FROM {full} EXCEPT ALL "
                              f"SELECT * FROM {m.name})", bound).fetchall()[0][0]
        assert (extra, missing) == (0, 0), f"{m.name}: {extra} extra, {missing} missing rows"


def test_every_incremental_model_equals_a_full_build_day_after_day(lake, tmp_path) -> None:
    _, files, days = lake_history(lake, 12_000, days=6, tenants=3, seed=11)
    timeline = SettingsTimeline()
    modes: dict[str, set[str]] = {m.name: set() for m in REFRESHED}
    with build_store(tmp_path).writer() as con:
        for day in days:
            staging.load_day(con, lake, day, files)
            built = _step(con, timeline)
            for name in modes:
                modes[name].add(built[name])
            _assert_equal_to_full(con)
        # the clock alone moves (no new rows): alerts and incidents still open can go stale
        con.execute("UPDATE corr.clocks SET clock_us = clock_us + ?",
                    [to_us_delta(timedelta(days=2))]).fetchall()
        _step(con, timeline)
        _assert_equal_to_full(con)
        stale = con.execute("SELECT count(*) FROM marts.fct_alerts WHERE status = 'stale'"
                            ).fetchall()[0][0]
        assert stale > 0
    for name, seen in modes.items():
        assert "incremental" in seen, f"{name} never refreshed incrementally: {seen}"


def to_us_delta(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1_000_000)


def test_a_recomputed_tenant_and_out_of_order_days_equal_a_full_build(lake, tmp_path) -> None:
    table, files, days = lake_history(lake, 8_000, days=4, tenants=3, seed=23)
    with build_store(tmp_path).writer() as con:
        # the last day first, then the others: rows out of ingest order recompute tenants
        for day in [days[-1], *days[:-1]]:
            staging.load_day(con, lake, day, files)
            _step(con, SettingsTimeline())
            _assert_equal_to_full(con)
        # a new settings version for one tenant, effective in the past (R15): recomputed
        tenant = sorted(set(pc.unique(table.column("tenant_id")).to_pylist()))[0]
        start = pc.min(table.column("occurred_at")).as_py() + timedelta(days=1)
        narrow = CorrelationSettings(window=timedelta(minutes=2))
        timeline = SettingsTimeline({tenant: [Version("v1", to_us(start), narrow)]})
        _step(con, timeline)
        _assert_equal_to_full(con)


def test_a_model_behind_the_pruned_change_log_is_rebuilt_whole(lake, tmp_path) -> None:
    _, files, days = lake_history(lake, 3_000, days=3, tenants=2, seed=3)
    events = models.model("intermediate.int_event_decisions")
    with build_store(tmp_path).writer() as con:
        staging.load_day(con, lake, days[0], files)
        _step(con, SettingsTimeline())
        # the model misses two steps while the others move on and the log is pruned
        changes.set_model_version(con, events.name, 0, events.sql_sha256)
        for day in days[1:]:
            staging.load_day(con, lake, day, files)
            incremental.correlate_staged(con, SettingsTimeline())
            models.write_incidents(con, CorrelationState(con, SettingsTimeline()))
        changes.prune(con, changes.current_version(con))
        assert models.build(con, events).mode == "full"
        for m in models.catalog():
            models.build(con, m)
        _assert_equal_to_full(con)
        # nothing new: nothing to do
        assert models.build(con, events).mode == "unchanged"


def test_a_late_event_changes_the_recurrence_of_the_next_incident(lake, tmp_path) -> None:
    # recurrence: a counted incident of the key in the 7 days before. With threshold 2, a
    # late event makes the day-5 candidate visible: the day-10 incident, whose own events
    # and row are unchanged, now recurs.
    from tests.pipelines.conftest import DAY, write

    day, minute = timedelta(days=1), timedelta(minutes=1)
    timeline = SettingsTimeline({"acme": [Version("v1", 0, CorrelationSettings(
        lateness=timedelta(days=30), threshold=2))]})
    with build_store(tmp_path).writer() as con:
        write(lake, [{"id": "a1", "t": DAY}, {"id": "a2", "t": DAY + minute},
                     {"id": "x", "t": DAY + 5 * day},
                     {"id": "b1", "t": DAY + 10 * day}, {"id": "b2", "t": DAY + 10 * day + minute}],
              prefix="one")
        for d in sorted({f.day for f in staging.lake_files(lake)}):
            staging.load_day(con, lake, d)
        _step(con, timeline)
        assert con.execute("SELECT list(recurs ORDER BY first_seen) FROM marts.fct_incidents "
                           "WHERE counted").fetchall()[0][0] == [False, False]
        write(lake, [{"id": "late", "t": DAY + 5 * day - minute,
                      "received": DAY + 10 * day + 2 * minute}], first_seq=6, prefix="two")
        for d in sorted({f.day for f in staging.lake_files(lake)}):
            staging.load_day(con, lake, d)
        assert _step(con, timeline)["marts.fct_incidents"] == "incremental"
        assert con.execute("SELECT list(recurs ORDER BY first_seen) FROM marts.fct_incidents "
                           "WHERE counted").fetchall()[0][0] == [False, True, True]
        _assert_equal_to_full(con)


def test_incremental_publishes_equal_the_build(lake, tmp_path, monkeypatch) -> None:
    from warehouse import publish

    monkeypatch.setattr(publish, "FULL_EVERY", 4)
    _, files, days = lake_history(lake, 8_000, days=6, tenants=3, seed=17)
    store = build_store(tmp_path)
    modes = []
    with store.writer() as con:
        for day in days:
            staging.load_day(con, lake, day, files)
            _step(con, SettingsTimeline())
            done = publish.publish(con, store.published_path, models.marts())
            modes.append(done.mode)
            con.execute(f"ATTACH '{store.published_path.resolve()}' AS snap (READ_ONLY)"
                        ).fetchall()
            for m in models.marts():
                differ = con.execute(f"""SELECT count(*) FROM (
                    (SELECT * FROM {m.name} EXCEPT ALL SELECT * FROM snap.{m.name})
                    UNION ALL
                    (SELECT * FROM snap.{m.name} EXCEPT ALL SELECT * FROM {m.name}))"""
                                     ).fetchall()[0][0]
                assert differ == 0, f"{m.name} differs from the build in {differ} rows"
            con.execute("DETACH snap").fetchall()
    # a fresh snapshot first and after every FULL_EVERY - 1 copies
    assert modes == ["full", "incremental", "incremental", "incremental", "full",
                     "incremental"]


def test_a_publish_brings_a_view_mart_to_its_source_built_without_it(lake, tmp_path) -> None:
    # A run that refreshed int_event_decisions but not the fct_incident_events view (a
    # partial selection) still publishes the events as the view shows them.
    from warehouse import publish

    view = models.model("marts.fct_incident_events")
    _, files, days = lake_history(lake, 4_000, days=3, tenants=2, seed=5)
    store = build_store(tmp_path)
    with store.writer() as con:
        for i, day in enumerate(days):
            staging.load_day(con, lake, day, files)
            incremental.correlate_staged(con, SettingsTimeline())
            models.write_tenants(con, [], SettingsTimeline())
            models.write_incidents(con, CorrelationState(con, SettingsTimeline()))
            for m in models.catalog():
                if m.name != view.name or i == 0:
                    models.build(con, m)
            publish.publish(con, store.published_path, models.marts())
        con.execute(f"ATTACH '{store.published_path.resolve()}' AS snap (READ_ONLY)").fetchall()
        differ = con.execute(f"""SELECT count(*) FROM (
            (SELECT * FROM {view.name} EXCEPT ALL SELECT * FROM snap.{view.name})
            UNION ALL (SELECT * FROM snap.{view.name} EXCEPT ALL SELECT * FROM {view.name}))"""
                             ).fetchall()[0][0]
        assert differ == 0
