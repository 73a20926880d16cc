"""Scale: a million synthetic events, added day by day, equal one full recompute.

The history (`warehouse.correlation.synthetic`) has 50 tenants, Zipf-skewed keys, storms,
flapping, duplicates, late and skewed arrivals; its daily batches follow the receive date,
so late events of one day land in incidents of earlier days (R10) and caps cut incidents
that run past 24 h (R6).
"""

from __future__ import annotations

import duckdb
import pyarrow.compute as pc

from warehouse.correlation.engine import correlate
from warehouse.correlation.state import CorrelationState
from warehouse.correlation.synthetic import day_batches, history
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.correlation_settings import CorrelationSettings


def test_a_million_events_in_daily_batches_equal_the_full_recompute() -> None:
    # Incremental = full at scale, with every rule in play
    table = history(1_000_000, days=30, seed=11)
    timeline = SettingsTimeline.constant(CorrelationSettings())
    full = correlate(table, timeline)
    state = CorrelationState(duckdb.connect(), timeline)
    batches = day_batches(table)
    for batch in batches:
        state.apply(batch)
    got = state.result()
    assert got.funnel == full.funnel
    assert got.incidents.equals(full.incidents)
    assert got.memberships.equals(full.memberships)
    # the history exercised what it should: caps, merges, late and duplicate events
    rules = set(full.memberships.column("rule").to_pylist())
    assert {"R2", "R9", "R5a", "R5b", "R6-cap", "R7-resolve", "R7-reopen"} <= rules
    assert pc.sum(pc.is_valid(full.incidents.column("merged_into"))).as_py() > 0
    assert len(batches) >= 30
