"""Incremental = full: the stored state after any batching equals one full recompute."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.correlation.engine_adapter import events_table
from tests.correlation.reference import Event
from tests.correlation.test_engine_properties import T0, histories, timelines
from warehouse import changes
from warehouse.correlation.engine import correlate
from warehouse.correlation.state import Applied, CorrelationState
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.correlation_settings import CorrelationSettings
from warehouse.correlation_settings import CorrelationSettings as CFG


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
    state must equal one full recompute, and the pipeline's incidents, brought up to date
    after each batch only where the state says it rewrote them, every incident of it."""
    ordered = sorted(events, key=lambda e: e.ingest_seq)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(ordered)), max_size=4)))
    state = CorrelationState(duckdb.connect(), timeline)
    start = 0
    for cut in [*cuts, len(ordered)]:
        state.apply(events_table(ordered[start:cut]))
        assert_change_log_current(state)
        start = cut
    assert_same(state, events, timeline)


def assert_change_log_current(state: CorrelationState) -> None:
    """`intermediate.int_incidents` after the change log's step (which compares only the
    incidents in question: `warehouse.changes.incidents_in_question`) is every incident."""
    con = state.con
    changes.ensure_tables(con)
    con.execute("CREATE SCHEMA IF NOT EXISTS intermediate").fetchall()
    among = changes.incidents_in_question(con)
    changes.record_step(con, state.incidents(among)[0], among)
    assert_int_incidents_complete(state)


def assert_int_incidents_complete(state: CorrelationState) -> None:
    """`intermediate.int_incidents` holds every incident of the state as it is now."""
    con = state.con
    every, _ = state.incidents()
    con.register("every_incident", every)
    for a, b in (("intermediate.int_incidents", "every_incident"),
                 ("every_incident", "intermediate.int_incidents")):
        left = con.execute(f"SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}").fetchall()
        assert not left, f"rows of {a} not in {b}: {left}"
    con.unregister("every_incident")


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


@pytest.mark.parametrize(("key", "stored"), [(["asset", "signature"], 0),
                                              (["asset", "label:env"], 2)])
def test_labels_are_stored_only_when_a_setting_keys_by_one(key: list[str], stored: int) -> None:
    # R4: labels matter to the engine only as key fields; a batch re-walked later reads them
    # back from the stored events, so they are kept exactly when some version keys by one
    state = CorrelationState(duckdb.connect(), SettingsTimeline.constant(CFG(key=key)))
    events = [Event("t1", f"e{n}", n, "nagios", "A", "web01", "disk_full", "warning",
                    "point", T0 + n * timedelta(minutes=1), T0 + n * timedelta(minutes=1),
                    labels={"env": "prod"}) for n in (1, 2)]
    state.apply(events_table(events))
    assert state.con.execute("SELECT count(labels) FROM corr.events").fetchall() == [(stored,)]


MINUTE = timedelta(minutes=1)
CAPPED = SettingsTimeline.constant(CFG(window="15m", cap="1h", stale_after="30m"))


def timed(plan: list[tuple[int, str, str]], first_seq: int = 1) -> list[Event]:
    """Events of one key from (minute, status, fingerprint), arriving in this order."""
    return [Event("t1", f"e{first_seq + n}", first_seq + n, "nagios", fingerprint, "web01",
                  "disk_full", "warning", status, T0 + minute * MINUTE,
                  T0 + max(minute, 0) * MINUTE)
            for n, (minute, status, fingerprint) in enumerate(plan)]


def stored_then(stored: list[Event], batch: list[Event]) -> tuple[CorrelationState, Applied]:
    """`stored` then `batch` applied under CAPPED; the state equals the full recompute."""
    state = CorrelationState(duckdb.connect(), CAPPED)
    state.apply(events_table(stored))
    applied = state.apply(events_table(batch))
    assert_same(state, stored + batch, CAPPED)
    return state, applied


# A key busy for over an hour: its first incident reaches the cap M=1h, and the point at
# 65 min opens the linked one (R6). The stored part in both cases below:
BUSY = [(0, "firing", "A"), (5, "resolved", "A"), (10, "firing", "A"), (12, "resolved", "A"),
        (20, "point", ""), (30, "point", ""), (40, "point", ""), (50, "point", ""),
        (55, "firing", "B")]


def test_a_batch_restarts_the_key_at_a_quiet_cap() -> None:
    # Incremental = full (R6): B resolved before the cap, so nothing after the cap reaches the
    # first incident; the next batch (a late point at 70 min, one at 80) re-walks the key
    # from the cap only, and the cap keeps its rule, gap and link
    stored = timed([*BUSY, (58, "resolved", "B"), (65, "point", ""), (75, "point", "")])
    batch = timed([(80, "point", ""), (70, "point", "")], first_seq=len(stored) + 1)
    state, applied = stored_then(stored, batch)
    assert applied.region_rows == 2  # the stored rows at 65 and 75 min
    incidents = state.result().incidents.to_pylist()
    assert [i["linked_to"] for i in incidents] == [None, incidents[0]["incident_id"]]
    rules = {m["event_id"]: m["rule"] for m in state.result().memberships.to_pylist()}
    assert rules[stored[10].event_id] == "R6-cap"


def test_an_alert_gone_stale_before_the_cap_does_not_hold_the_restart_back() -> None:
    # Incremental = full (R6, R8): C fired once and went stale (T_stale 30 min) long before
    # the cap; its next firing, in the next batch, starts a new occurrence and closes the old
    # one, which changes no status of the first incident: the key re-walks from the cap
    stored = timed([(2, "firing", "C"), *BUSY, (58, "resolved", "B"), (65, "point", ""),
                    (75, "point", "")])
    batch = timed([(80, "firing", "C"), (70, "point", "")], first_seq=len(stored) + 1)
    state, applied = stored_then(stored, batch)
    assert applied.region_rows == 2
    assert state.result().incidents.to_pylist()[0]["status"] == "stale"


def test_a_cap_with_an_alert_still_firing_is_not_a_restart_point() -> None:
    # Incremental = full (R6, R7): B still fires at the cap, so its resolve in the next batch
    # reaches the first incident (resolved_at, status): the key re-walks from its beginning
    stored = timed([*BUSY, (65, "point", ""), (75, "point", "")])
    batch = timed([(78, "resolved", "B"), (80, "point", "")], first_seq=len(stored) + 1)
    state, applied = stored_then(stored, batch)
    assert applied.region_rows == len(stored)
    first = state.result().incidents.to_pylist()[0]
    assert (first["status"], first["resolved_at"]) == ("resolved", T0 + 78 * MINUTE)


def test_a_key_starts_at_a_cap_with_an_alert_still_firing_seeded_with_it() -> None:
    # Incremental = full (R3, R6, R8): B still fires at the cap and does not resolve in the
    # next batch, so the key re-walks from the cap only, its walk seeded with B's occurrence
    # (B's re-send at 78 min joins the capped incident as a re-send, not a new alert). The
    # re-send keeps B open until 108 min, and the first incident with it: at the clock of
    # 100 min it is open, not stale as its stored end (85 min) alone would make it
    stored = timed([*BUSY, (65, "point", ""), (75, "point", "")])
    batch = timed([(78, "firing", "B"), (100, "point", "")], first_seq=len(stored) + 1)
    state, applied = stored_then(stored, batch)
    assert applied.region_rows == 2  # the stored rows at 65 and 75 min
    new_alert = {m["event_id"]: m["new_alert"] for m in state.result().memberships.to_pylist()}
    assert not new_alert[batch[0].event_id]
    assert [i["status"] for i in state.result().incidents.to_pylist()] == ["open", "open"]


def test_a_seeded_occurrence_that_resolves_after_all_restarts_the_key_from_before_it() -> None:
    # Incremental = full (R7, R12): B's resolve at 95 min was an orphan (B went stale at
    # 85); B's late re-send at 80 min makes it effective, which resolves the first incident
    # too: the seeded walk from the cap cannot, so the key re-walks from its beginning
    stored = timed([*BUSY, (65, "point", ""), (75, "point", ""), (95, "resolved", "B")])
    batch = timed([(80, "firing", "B")], first_seq=len(stored) + 1)
    state, applied = stored_then(stored, batch)
    assert applied.region_rows == len(stored)
    first = state.result().incidents.to_pylist()[0]
    assert (first["status"], first["resolved_at"]) == ("resolved", T0 + 95 * MINUTE)


def test_a_store_written_before_the_alert_keys_table_gets_it_from_its_events() -> None:
    # Incremental = full: a store of an earlier version has no (key, alert) pairs; opening it
    # builds them from the stored events, so the next batch still reaches the key through
    # its alert (B's resolve belongs to the incident of the first batch) and re-walks it
    con = duckdb.connect()
    stored = timed([*BUSY, (65, "point", ""), (75, "point", "")])
    CorrelationState(con, CAPPED).apply(events_table(stored))
    con.execute("DROP TABLE corr.alert_keys")
    state = CorrelationState(con, CAPPED)
    assert con.execute("SELECT count(*) FROM corr.alert_keys").fetchall() == [(3,)]
    batch = timed([(78, "resolved", "B"), (80, "point", "")], first_seq=len(stored) + 1)
    state.apply(events_table(batch))
    assert_same(state, stored + batch, CAPPED)
    state.forget(["t1"])
    assert con.execute("SELECT count(*) FROM corr.alert_keys").fetchall() == [(0,)]


def test_a_store_written_before_the_rewrite_log_has_every_incident_compared_once() -> None:
    # Incremental = full for the pipeline's change log: a store of an earlier version does
    # not say which incidents its last batches rewrote, so its next step compares them all
    state = CorrelationState(duckdb.connect(), CAPPED)
    state.apply(events_table(timed([*BUSY, (65, "point", "")])))
    assert_change_log_current(state)
    state.con.execute("DROP TABLE corr.rewritten_incidents").fetchall()
    state.con.execute("DELETE FROM intermediate.int_incidents").fetchall()  # (out of date)
    state = CorrelationState(state.con, CAPPED)
    assert changes.incidents_in_question(state.con) is None
    assert_change_log_current(state)
    assert changes.incidents_in_question(state.con) is not None


@pytest.mark.parametrize(("hours", "duplicate"), [(23, True), (24, True), (25, False)])
def test_a_body_hash_stored_within_24h_makes_a_later_batch_event_a_duplicate(
        hours: int, duplicate: bool) -> None:
    # Incremental = full (R2): without a delivery id, the same body received within 24 h
    # (inclusive) of its stored holder is a duplicate. A batch reads back only the stored
    # bodies received from 24 h before its earliest receive time; the holder is not in the
    # re-walked region (the key restarts at the later point's incident)
    def point(seq: int, at: timedelta, body: str) -> Event:
        return Event("t1", f"e{seq}", seq, "zabbix", "", "web01", "disk_full", "warning",
                     "point", None, T0 + at, body_sha256=body * 64)

    stored = [point(1, timedelta(0), "b"), point(2, timedelta(hours=2), "c")]
    batch = [point(3, timedelta(hours=hours), "b"), point(4, timedelta(hours=hours + 30), "b")]
    state = CorrelationState(duckdb.connect(), CAPPED)
    state.apply(events_table(stored))
    state.apply(events_table(batch))
    assert_same(state, stored + batch, CAPPED)
    assert state.result().funnel["t1"]["duplicates"] == int(duplicate)


@st.composite
def busy_keys(draw: st.DrawFn) -> list[Event]:
    """One key kept busy for hours (each event within minutes of the last), so incidents end
    at the cap; alerts resolve, go stale and fire again; some events arrive late."""
    n = draw(st.integers(5, 60))
    # resolved often (caps with nothing unresolved: restart points), now and then, or
    # hardly ever (alerts firing across caps: keys started seeded at a cap, `state.py`)
    statuses = draw(st.sampled_from([
        ["point", "point", "firing", "firing", "resolved"],
        ["point", "point", "firing", "firing", "resolved", "resolved", "resolved"],
        ["point"] * 4 + ["firing"] * 14 + ["resolved"],
        ["point", "firing", "firing"],
    ]))
    minute = 0
    events = []
    for i in range(1, n + 1):
        minute += draw(st.integers(0, 6))
        status = draw(st.sampled_from(statuses))
        late = draw(st.sampled_from([0, 0, 0, 0, 7, 25]))
        events.append(Event("t1", f"e{i}", i, "nagios", draw(st.sampled_from(["A", "B"])),
                            "web01", "disk_full", "warning", status, T0 + minute * MINUTE,
                            T0 + (minute + late) * MINUTE))
    events.sort(key=lambda e: (e.received_at, e.ingest_seq))
    return [replace(e, ingest_seq=seq) for seq, e in enumerate(events, 1)]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=busy_keys(), cap=st.sampled_from(["20m", "30m", "45m"]),
       stale=st.sampled_from(["5m", "15m", "45m"]), data=st.data())
def test_batches_of_a_busy_key_equal_the_full_recompute(
        events: list[Event], cap: str, stale: str, data: st.DataObject) -> None:
    # Incremental = full on a key that is never idle (R6 caps; restarts at quiet caps, or
    # seeded at caps with alerts still firing)
    timeline = SettingsTimeline.constant(CFG(window="10m", cap=cap, stale_after=stale))
    assert_batches_equal_full(events, timeline, data)
