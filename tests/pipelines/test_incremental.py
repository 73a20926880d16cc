"""The correlation step on staged rows equals a full recompute whatever order lake files are
staged in: days staged newest first (rows out of ingest order → the tenant is recomputed), and
tenants whose new rows interleave with another tenant's stored ones (applied per tenant)."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.pipelines.conftest import build_store, lake_history
from warehouse import incremental, staging
from warehouse.correlation.engine import correlate
from warehouse.correlation.state import CorrelationState
from warehouse.correlation.synthetic import history
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.store import WarehouseStore
from warehouse.synthetic_lake import write_events


def _equal_to_full(con, table) -> None:
    timeline = SettingsTimeline()
    got = CorrelationState(con, timeline).result()
    full = correlate(table, timeline)
    assert got.funnel == full.funnel
    assert got.incidents.sort_by("incident_id").equals(full.incidents.sort_by("incident_id"))
    key = [("event_id", "ascending")]
    assert got.memberships.sort_by(key).equals(full.memberships.sort_by(key))


def test_days_staged_newest_first_equal_the_full_recompute(lake, tmp_path) -> None:
    table, files, days = lake_history(lake, 6_000, days=4, tenants=3, seed=21)
    recomputed: dict[str, str] = {}
    with build_store(tmp_path).writer() as con:
        for day in reversed(days):  # newest first: every later day brings rows of lower ingest_seq
            staging.load_day(con, lake, day, files)
            step = incremental.correlate_staged(con, SettingsTimeline())
            recomputed.update(step.recomputed)
        assert set(recomputed.values()) == {"rows staged out of ingest order"}
        _equal_to_full(con, table)


def test_interleaved_tenants_are_applied_one_by_one(lake, tmp_path) -> None:
    table = history(4_000, days=2, tenants=2, seed=5).sort_by("ingest_seq")
    tenants = sorted(set(table.column("tenant_id").to_pylist()))
    a, b = (table.filter(pc.equal(table.column("tenant_id"), t)) for t in tenants)
    half = a.num_rows // 2
    # tenant A's first half alone; then A's second half with all of B, whose early rows have
    # lower ingest_seq than A's stored ones: one batch would misplace them, so each tenant
    # is applied on its own
    write_events(lake, a.slice(0, half), prefix="a1")
    store = WarehouseStore(tmp_path / "build.duckdb", tmp_path / "warehouse.duckdb")
    with store.writer() as con:
        for day in sorted({f.day for f in staging.lake_files(lake)}):
            staging.load_day(con, lake, day)
        incremental.correlate_staged(con, SettingsTimeline())
        write_events(lake, a.slice(half), prefix="a2")
        write_events(lake, b, prefix="b")
        for day in sorted({f.day for f in staging.lake_files(lake)}):
            staging.load_day(con, lake, day)
        step = incremental.correlate_staged(con, SettingsTimeline())
        assert step.applies == 2 and step.recomputed == {}
        _equal_to_full(con, table)


def test_loading_a_day_twice_stages_nothing_new(lake, tmp_path) -> None:
    write_events(lake, history(500, days=1, tenants=1, seed=1))
    day: date = staging.lake_files(lake)[0].day
    store = WarehouseStore(tmp_path / "build.duckdb", tmp_path / "warehouse.duckdb")
    with store.writer() as con:
        first = staging.load_day(con, lake, day)
        again = staging.load_day(con, lake, day)
    assert first.files >= 1 and sum(first.rows.values()) == 500
    assert again.files == 0 and again.load_id is None


def test_batches_of_bounded_size_equal_one_batch(lake, tmp_path) -> None:
    # small batches: tenants packed together, and the biggest split into ingest-order slices
    table, files, days = lake_history(lake, 6_000, days=3, tenants=3, seed=8)
    with build_store(tmp_path).writer() as con:
        staging.load_days(con, lake, days, files)
        step = incremental.correlate_staged(con, SettingsTimeline(), batch_events=700)
        assert step.applies >= 6000 // 700 and step.events == 6_000
        _equal_to_full(con, table)


def test_a_recompute_beside_new_rows_in_small_batches_equals_the_full_recompute(
        lake, tmp_path) -> None:
    # one step recomputes tenant T from the lake (its earliest day staged late) while the
    # other tenants bring new rows; batches smaller than a tenant mix both kinds of rows
    table, files, days = lake_history(lake, 6_000, days=4, tenants=3, seed=23)
    late_tenant = files[0].tenant_id
    first = [f for f in files if f.day in days[1:3]]
    second = [f for f in files if f.day == days[3]
              or (f.day == days[0] and f.tenant_id == late_tenant)]
    with build_store(tmp_path).writer() as con:
        staging.load_days(con, lake, days[1:3], first)
        incremental.correlate_staged(con, SettingsTimeline(), batch_events=400)
        staging.load_days(con, lake, [days[0], days[3]], second)
        step = incremental.correlate_staged(con, SettingsTimeline(), batch_events=400)
        assert step.recomputed == {late_tenant: "rows staged out of ingest order"}
        assert step.applies > 2 and len(step.tenants) == 3
        received = pc.cast(table.column("received_at"), pa.date32())  # the lake's UTC day
        unstaged = pc.and_(pc.equal(received, days[0]),
                           pc.not_equal(table.column("tenant_id"), late_tenant))
        _equal_to_full(con, table.filter(pc.invert(unstaged)))


def test_a_recompute_interrupted_after_forgetting_is_finished_next_time(lake, tmp_path,
                                                                          monkeypatch) -> None:
    table, files, days = lake_history(lake, 4_000, days=4, tenants=2, seed=13)
    with build_store(tmp_path).writer() as con:
        staging.load_days(con, lake, days[1:], files)
        incremental.correlate_staged(con, SettingsTimeline())
        staging.load_day(con, lake, days[0], files)  # earlier rows: the tenants recompute

        def crash(self, batch):  # the process dies after forgetting, before re-applying
            raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr(CorrelationState, "apply", crash)
            patch.setattr(CorrelationState, "correlate_fresh", crash)  # fresh tenants' path
            with pytest.raises(KeyboardInterrupt):
                incremental.correlate_staged(con, SettingsTimeline())
        step = incremental.correlate_staged(con, SettingsTimeline())
        assert all("interrupted before" in why for why in step.recomputed.values())
        _equal_to_full(con, table)


def test_a_step_interrupted_after_some_batches_stores_each_row_once(lake, tmp_path,
                                                                     monkeypatch) -> None:
    # The process dies after the first of several batches was stored, before the step was
    # recorded: the next step applies only the rows not stored yet, never one twice
    # one tenant: the first batch is its first slice, so it holds the lowest new ingest_seq
    table, files, days = lake_history(lake, 4_000, days=2, tenants=1, seed=17)
    with build_store(tmp_path).writer() as con:
        staging.load_days(con, lake, days, files)
        # the first slice is stored by the fresh tenants' path, the next ones by `apply`
        stores = {"apply": CorrelationState.apply,
                  "store_fresh": CorrelationState.store_fresh}
        calls = []

        def dies_after_one(name):
            def store(self, batch, *rest):
                if calls:
                    raise KeyboardInterrupt
                calls.append(batch.num_rows)
                return stores[name](self, batch, *rest)
            return store

        with monkeypatch.context() as patch:
            for name in stores:
                patch.setattr(CorrelationState, name, dies_after_one(name))
            with pytest.raises(KeyboardInterrupt):
                incremental.correlate_staged(con, SettingsTimeline(), batch_events=1_000)
        step = incremental.correlate_staged(con, SettingsTimeline(), batch_events=1_000)
        assert calls and step.events == 4_000 - calls[0] and step.recomputed == {}
        _equal_to_full(con, table)


@pytest.mark.parametrize(("batch_events", "fails"), [(1_000, 2), (5_000, 1)])
def test_a_batch_stored_behind_the_engine_that_fails_fails_the_step(
        lake, tmp_path, monkeypatch, batch_events, fails) -> None:
    # Fresh tenants' batches are stored on a second connection while the engine computes the
    # next one: a store that fails there fails the step (nothing of that batch is stored),
    # also when it is the last one (5,000: one batch), and the next step applies exactly
    # what is missing.
    table, files, days = lake_history(lake, 4_000, days=2, tenants=3, seed=29)
    with build_store(tmp_path).writer() as con:
        staging.load_days(con, lake, days, files)
        store_fresh = CorrelationState.store_fresh
        stored: list[int] = []

        def fails_at(self, batch, out):
            if len(stored) + 1 == fails:
                raise RuntimeError("disk full")
            stored.append(batch.num_rows)
            return store_fresh(self, batch, out)

        with monkeypatch.context() as patch:
            patch.setattr(CorrelationState, "store_fresh", fails_at)
            with pytest.raises(RuntimeError, match="disk full"):
                incremental.correlate_staged(con, SettingsTimeline(), batch_events=batch_events)
        assert con.execute("SELECT count(*) FROM corr.events").fetchall() == [(sum(stored),)]
        step = incremental.correlate_staged(con, SettingsTimeline(), batch_events=batch_events)
        assert step.events == 4_000 - sum(stored)
        _equal_to_full(con, table)
