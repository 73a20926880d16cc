"""The merge replay's shortcuts against the reference model: rewinds, absorbs and restarts.

`merges.Replay` rewinds its walk to a late arrival instead of replaying the key, absorbs late
re-sends and points, and drops its walk for a fresh one at a stretch start once no arrival
still to come ranks below it. These histories make those paths common: one key, bursts of
alerts with idle gaps between them (stretch starts), and late arrivals across the gaps.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.correlation.engine_adapter import check
from tests.correlation.reference import Event
from tests.correlation.test_engine_properties import T0, timelines
from tests.correlation.test_state import assert_batches_equal_full
from warehouse.correlation.timeline import SettingsTimeline

SEC = timedelta(seconds=1)


@st.composite
def bursty(draw: st.DrawFn, max_events: int = 40) -> list[Event]:
    n = draw(st.integers(2, max_events))
    bursts = sorted(draw(st.lists(st.integers(0, 24), min_size=1, max_size=6)))
    events = []
    for i in range(1, n + 1):
        if draw(st.integers(0, 2)):  # in a burst (bursts start 15 min apart at least)
            offset = draw(st.sampled_from(bursts)) * 15 * 60 + draw(st.integers(0, 12)) * 30
        else:  # anywhere: may bridge two bursts
            offset = draw(st.integers(0, 25 * 30)) * 30
        t = T0 + offset * SEC
        delay = draw(st.sampled_from([0, 0, 0, 0, 60, 600, 1200, 2400, 5400]))
        events.append(Event(
            tenant_id="t1", event_id=f"e{i}", ingest_seq=i, source="nagios",
            source_fingerprint=draw(st.sampled_from(["A", "A", "B", "C"])), asset="web01",
            signature="disk_full", severity=draw(st.sampled_from(["info", "high"])),
            status=draw(st.sampled_from(["firing", "firing", "resolved", "point"])),
            occurred_at=t, received_at=t + delay * SEC, labels={"env": "prod"},
            delivery_id=None, body_sha256=f"b{i}", duplicate=False))
    # arrival order: by receive time, ties broken at random
    order = draw(st.permutations(range(n)))
    ranked = sorted(range(n), key=lambda k: (events[k].received_at, order[k]))
    seq = {k: s + 1 for s, k in enumerate(ranked)}
    return [replace(e, ingest_seq=seq[k]) for k, e in enumerate(events)]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=bursty(), timeline=timelines())
def test_replay_shortcuts_equal_the_reference(events: list[Event],
                                              timeline: SettingsTimeline) -> None:
    # R10 merge records (and everything else) as the model finds them, arrival by arrival
    check(events, timeline)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=bursty(), timeline=timelines(), data=st.data())
def test_replay_shortcuts_in_batches_equal_the_full_recompute(
        events: list[Event], timeline: SettingsTimeline, data: st.DataObject) -> None:
    # Incremental = full on the same histories: stored rows replay as history (quiet_below)
    assert_batches_equal_full(events, timeline, data)
