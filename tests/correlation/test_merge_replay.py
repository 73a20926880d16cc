"""The merge replay's shortcuts against the reference model: bounded walks, rewinds, restarts.

`merges.Replay` feeds its walks lazily, walks the rows after a late arrival without and with it
only until the two agree again (falling back to every arrived row when an incident may have
merged or they do not agree soon), rewinds instead of replaying the key, leaves arrivals
dirty in the walks that did not take them, and drops its walks for a fresh one at a stretch
start once no arrival still to come ranks below it. These histories make those paths common:
one key, bursts of alerts with idle gaps between them (stretch starts), and late arrivals
across the gaps. Each property also runs with tiny bounded spans, so that nearly every late
arrival takes the bounded walk and its fallbacks, and with walks taken at random, so that
walks are used from any state of dirty rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from random import Random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.correlation.engine_adapter import check
from tests.correlation.reference import Event
from tests.correlation.test_engine_properties import CFG, T0, timelines
from tests.correlation.test_state import assert_batches_equal_full
from warehouse.correlation.merges import Replay, _Cursor
from warehouse.correlation.timeline import SettingsTimeline

SEC = timedelta(seconds=1)
SPANS = pytest.mark.parametrize("spans", [Replay.SPANS, (1, 2, 5)], ids=["default", "tiny"])


@contextmanager
def bounded_spans(spans: tuple[int, ...]) -> Iterator[None]:
    kept = Replay.SPANS
    Replay.SPANS = spans
    try:
        yield
    finally:
        Replay.SPANS = kept


@contextmanager
def walks_at_random(rnd: Random, most: int) -> Iterator[None]:
    """Each late arrival takes one of up to `most` walks at random, a new one now and then:
    whichever walk takes it, the result must be the same."""
    kept = Replay._choose, Replay.CURSORS

    def choose(replay: Replay, at: int) -> _Cursor:
        if len(replay.cursors) < most and rnd.random() < 0.3:
            replay.cursors.append(_Cursor(replay.r))
            return replay.cursors[-1]
        return rnd.choice(replay.cursors)

    Replay._choose, Replay.CURSORS = choose, most  # type: ignore[assignment]
    try:
        yield
    finally:
        Replay._choose, Replay.CURSORS = kept  # type: ignore[assignment]


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
@SPANS
def test_replay_shortcuts_equal_the_reference(spans: tuple[int, ...], events: list[Event],
                                              timeline: SettingsTimeline) -> None:
    # R10 merge records (and everything else) as the model finds them, arrival by arrival
    with bounded_spans(spans):
        check(events, timeline)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=bursty(), timeline=timelines(), data=st.data())
@SPANS
def test_replay_shortcuts_in_batches_equal_the_full_recompute(
        spans: tuple[int, ...], events: list[Event], timeline: SettingsTimeline,
        data: st.DataObject) -> None:
    # Incremental = full on the same histories: stored rows replay as history (quiet_below)
    with bounded_spans(spans):
        assert_batches_equal_full(events, timeline, data)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=bursty(), timeline=timelines(), rnd=st.randoms(use_true_random=False),
       most=st.integers(1, 4))
@SPANS
def test_any_walk_taking_each_arrival_equals_the_reference(
        spans: tuple[int, ...], events: list[Event], timeline: SettingsTimeline, rnd: Random,
        most: int) -> None:
    # R10 merge records whichever walk takes each arrival: dirty rows and their reaches
    with bounded_spans(spans), walks_at_random(rnd, most):
        check(events, timeline)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=bursty(), timeline=timelines(), rnd=st.randoms(use_true_random=False),
       data=st.data())
@SPANS
def test_any_walk_taking_each_arrival_in_batches_equals_the_full_recompute(
        spans: tuple[int, ...], events: list[Event], timeline: SettingsTimeline, rnd: Random,
        data: st.DataObject) -> None:
    # Incremental = full with walks taken at random (stored rows replay as history)
    with bounded_spans(spans), walks_at_random(rnd, 3):
        assert_batches_equal_full(events, timeline, data)


def point(i: int, minute: int, seq: int, delay_min: int = 0) -> Event:
    t = T0 + timedelta(minutes=minute)
    return Event(tenant_id="t1", event_id=f"e{i}", ingest_seq=seq, source="nagios",
                 source_fingerprint=f"p{i}", asset="web01", signature="disk_full",
                 severity="high", status="point", occurred_at=t,
                 received_at=t + timedelta(minutes=delay_min), labels={}, delivery_id=None,
                 body_sha256=f"b{i}", duplicate=False)


@pytest.mark.parametrize("spans", [(1,), (2,), (1, 2), (5,)])
def test_a_bridge_found_by_the_bounded_walk_is_a_merge(spans: tuple[int, ...]) -> None:
    # R10: points at 10:00, 10:20, 10:40, 11:00 are four incidents (W = 15 min); a late one
    # at 10:10 bridges the first two. The walks without and with it agree again after
    # 10:40 opens in both, so a span of 2 agrees with an incident merged on the way.
    events = [point(1, 0, 1), point(2, 20, 2), point(3, 40, 3), point(4, 60, 4),
              point(5, 10, 5, delay_min=55)]
    with bounded_spans(spans):
        result = check(events, SettingsTimeline.constant(CFG(), "v1"))
    merged = [i for i in result.incidents if i.merged_into is not None]
    assert len(merged) == 1 and merged[0].first_seen == T0 + timedelta(minutes=20)


def stateful(name: str, fingerprint: str, status: str, minute: int, seq: int) -> Event:
    t = T0 + timedelta(minutes=minute)
    return replace(point(0, minute, seq), event_id=name, source_fingerprint=fingerprint,
                   status=status, body_sha256=f"b{name}", received_at=t)


@pytest.mark.parametrize("spans", [(1,), (2,), (3,), (1, 3, 6)])
def test_a_longer_alert_the_incident_does_not_show_yet_is_followed(
        spans: tuple[int, ...]) -> None:
    # R10 with R5(a), T_stale 30 min, W 15 min: A fires at 10:00 and B at 10:04 and D at
    # 10:09; B resolves at 10:10 and D at 10:20; C fires at 10:36, opening an incident (A is
    # stale since 10:30, 10:20 + W has passed). A late re-send of A at 10:08 keeps A open to
    # 10:38, so C joins and its incident merges. While D is open the incident looks the same
    # with and without the re-send (D ends last); only A's own end differs.
    events = [stateful("a1", "A", "firing", 0, 1), stateful("b1", "B", "firing", 4, 2),
              stateful("d1", "D", "firing", 9, 3), stateful("b2", "B", "resolved", 10, 4),
              stateful("d2", "D", "resolved", 20, 5), stateful("c1", "C", "firing", 36, 6)]
    late = replace(stateful("a2", "A", "firing", 8, 7), received_at=T0 + timedelta(hours=1))
    timeline = SettingsTimeline.constant(CFG(stale_after=timedelta(minutes=30)), "v1")
    with bounded_spans(spans):
        result = check([*events, late], timeline)
    merged = [i for i in result.incidents if i.merged_into is not None]
    assert len(merged) == 1 and merged[0].first_seen == T0 + timedelta(minutes=36)


@contextmanager
def walks_in_turn(turns: list[int | None]) -> Iterator[None]:
    """The k-th late arrival takes walk `turns[k]` (None: a new walk)."""
    kept = Replay._choose
    taken = iter(turns)

    def choose(replay: Replay, at: int) -> _Cursor:
        turn = next(taken)
        if turn is None:
            replay.cursors.append(_Cursor(replay.r))
            return replay.cursors[-1]
        return replay.cursors[turn]

    Replay._choose = choose  # type: ignore[assignment]
    try:
        yield
    finally:
        Replay._choose = kept  # type: ignore[assignment]


def test_a_walk_without_a_late_event_reads_visibility_with_it() -> None:
    # R10 with R13 (threshold 3, W 10 min): points at 10:00 and 10:07 are an incident I not
    # shown yet; 10:20, 10:22, 10:24 an incident J. A late 10:22 is taken by walk 0 (fed to
    # the end), a late 10:03 by a new walk (I now has three events and is shown; walk 0 leaves
    # it dirty, settled by 10:07). A late 10:12 bridges I and J; walk 0 takes it: its own I
    # would still be hidden, so it must feed the dirty 10:03 before reading what was visible.
    events = [point(1, 0, 1), point(2, 7, 2), point(3, 20, 3), point(4, 24, 4),
              point(5, 22, 5, delay_min=10), point(6, 3, 6, delay_min=40),
              point(7, 12, 7, delay_min=40)]
    timeline = SettingsTimeline.constant(CFG(window="10m", cap="24h", threshold=3), "v1")
    with bounded_spans((1,)), walks_in_turn([0, None, 0]):
        result = check(events, timeline)
    merged = [i for i in result.incidents if i.merged_into is not None]
    assert len(merged) == 1 and merged[0].first_seen == T0 + timedelta(minutes=20)


def test_a_walk_that_feeds_an_arrival_inside_a_dirty_reach_no_longer_knows_its_reach() -> None:
    # R10 with R5(a) and R7 (W 10 min, T_stale 30 min): points at 10:00, 10:08, 10:40 (n),
    # 11:00 (m), 11:15, 11:30, resolves of A at 10:12 and of B at 10:45; late: 10:05 (walk 0),
    # a firing of A at 10:02 (a new walk; walk 0 leaves it dirty, settled at n), a firing of B
    # at 10:20 (walk 1: it reopens the first incident and keeps it open to n: n's incident
    # merges). Walk 0 had not reached 10:20: it feeds B itself, without A, where B opens an
    # incident of its own and takes n; so its reach is lost. A late point at 10:50 then
    # bridges to m, and walk 0 must not take it from a walk where the incident is B's.
    def late(event: Event, received_min: int) -> Event:
        return replace(event, received_at=T0 + timedelta(minutes=received_min))

    events = [point(1, 0, 1), point(2, 8, 2), stateful("ra", "A", "resolved", 12, 3),
              point(4, 40, 4), stateful("rb", "B", "resolved", 45, 5), point(6, 60, 6),
              point(7, 75, 7), point(8, 90, 8), late(point(9, 5, 9), 91),
              late(stateful("xa", "A", "firing", 2, 10), 92),
              late(stateful("yb", "B", "firing", 20, 11), 93), late(point(12, 50, 12), 94)]
    timeline = SettingsTimeline.constant(
        CFG(window="10m", cap="24h", stale_after="30m", lateness="3h"), "v1")
    with bounded_spans((4,)), walks_in_turn([0, None, 1, 0]):
        result = check(events, timeline)
    merged = sorted(i.first_seen for i in result.incidents if i.merged_into is not None)
    assert merged == [T0 + timedelta(minutes=40), T0 + timedelta(minutes=60)]
