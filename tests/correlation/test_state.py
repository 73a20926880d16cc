"""Incremental = full: the stored state after any batching equals one full recompute."""

from __future__ import annotations

from dataclasses import replace

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.correlation.engine_adapter import events_table
from tests.correlation.reference import Event
from tests.correlation.test_engine_properties import T0, histories, timelines
from warehouse.correlation.engine import correlate
from warehouse.correlation.state import CorrelationState
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.correlation_settings import CorrelationSettings


def assert_same(state: CorrelationState, events: list[Event],
                timeline: SettingsTimeline) -> None:
    full = correlate(events_table(events), timeline)
    got = state.result()
    try:
        assert got.funnel == full.funnel
        assert got.memberships.to_pylist() == full.memberships.to_pylist()
        assert got.incidents.to_pylist() == full.incidents.to_pylist()
    except AssertionError as exc:
        lines = [f"{e.ingest_seq} {e.event_id} {e.status} {e.source}/{e.source_fingerprint} "
                 f"{e.asset!r} {e.signature} occ={e.occurred_at} rcv={e.received_at} "
                 f"did={e.delivery_id} body={e.body_sha256} dup={e.duplicate} {dict(e.labels)}"
                 for e in sorted(events, key=lambda e: e.ingest_seq)]
        lines.append(repr([(v.label, v.effective_us, v.settings.to_dict())
                           for v in timeline.versions]))
        raise AssertionError(f"{exc}\n" + "\n".join(lines)) from exc


def assert_batches_equal_full(events: list[Event], timeline: SettingsTimeline,
                              data: st.DataObject) -> None:
    """Apply `events` in arrival order, cut into up to five batches drawn from `data`; the
    state must equal one full recompute."""
    ordered = sorted(events, key=lambda e: e.ingest_seq)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(ordered)), max_size=4)))
    state = CorrelationState(duckdb.connect(), timeline)
    start = 0
    for cut in [*cuts, len(ordered)]:
        state.apply(events_table(ordered[start:cut]))
        start = cut
    assert_same(state, events, timeline)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=histories(), timeline=timelines(), data=st.data())
def test_batches_equal_the_full_recompute(events: list[Event], timeline: SettingsTimeline,
                                          data: st.DataObject) -> None:
    # Incremental = full, for any split of the arrival sequence into batches
    assert_batches_equal_full(events, timeline, data)


def test_a_batch_must_arrive_after_the_stored_events() -> None:
    # Incremental runs take arrivals in ingest order; an older batch is refused, not merged
    state = CorrelationState(duckdb.connect(), SettingsTimeline.constant(CorrelationSettings()))
    first = Event("t1", "a", 5, "nagios", "A", "web01", "disk_full", "warning", "point", T0, T0)
    state.apply(events_table([first]))
    with pytest.raises(ValueError, match="ingest order"):
        state.apply(events_table([replace(first, event_id="b")]))
    assert state.result().funnel["t1"]["events_accepted"] == 1
