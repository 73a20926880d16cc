"""The reference model against SEMANTICS.md, rule by rule, both sides of every boundary.

Events are written as `ev("10:02:15", ...)`; their ids are e1, e2, ... by position in the
case and their ingest_seq is their position unless `seq=` says otherwise.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.correlation.engine_adapter import check
from tests.correlation.reference import (
    Event,
    ReferenceCorrelator,
    Result,
    constant_settings,
    correlate,
)
from warehouse.correlation.timeline import SettingsTimeline, Version, to_us
from warehouse.correlation_settings import CorrelationSettings

SEC, MIN, HOUR = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)
DAY0 = datetime(2026, 11, 26, tzinfo=UTC)


def at(clock: str) -> datetime:
    h, m, s = (int(x) for x in clock.split(":"))
    return DAY0 + timedelta(hours=h, minutes=m, seconds=s)


def ev(clock: str | None, status: str = "point", **kw: object) -> Event:
    """An event at `clock` (None: no event time); keyword arguments override fields."""
    occurred = at(clock) if clock else None
    fields: dict[str, object] = {
        "tenant_id": "t1", "event_id": "", "ingest_seq": -1, "source": "nagios",
        "source_fingerprint": "A", "asset": "web01", "signature": "disk_full",
        "severity": "warning", "status": status,
        "occurred_at": occurred, "received_at": occurred or DAY0,
    }
    if "seq" in kw:
        kw["ingest_seq"] = kw.pop("seq")
    fields.update(kw)
    return Event(**fields)  # type: ignore[arg-type]


def run(*events: Event, cfg: CorrelationSettings | None = None, **kw: object) -> Result:
    numbered = []
    for i, e in enumerate(events, start=1):
        eid = e.event_id or f"e{i}"
        numbered.append(replace(
            e, event_id=eid, ingest_seq=e.ingest_seq if e.ingest_seq >= 0 else i,
            body_sha256=e.body_sha256 or hashlib.sha256(eid.encode()).hexdigest(),
        ))
    return check(numbered, SettingsTimeline.constant(cfg or CorrelationSettings(), "v1"),
                 **kw)  # type: ignore[arg-type]


def groups(result: Result) -> list[list[str]]:
    """Member event ids of each live incident, incidents in first_seen order."""
    out = []
    for inc in result.incidents:
        if inc.merged_into is None:
            out.append(sorted(
                (m.event_id for m in result.memberships.values()
                 if m.incident_id == inc.incident_id),
                key=lambda x: int(x[1:]),
            ))
    return out


def live(result: Result) -> list:
    return [i for i in result.incidents if i.merged_into is None]


CFG = CorrelationSettings
P = "point"
F, R = "firing", "resolved"

GROUPING_CASES = [
    # R5 illustration: 10:00:00, 10:02:15, 10:05:30 -> one incident
    ([ev("10:00:00"), ev("10:02:15"), ev("10:05:30")], None, [["e1", "e2", "e3"]]),
    # R5(b) boundary, outside: 10:20:31 is more than W after 10:05:30 -> a second incident
    ([ev("10:00:00"), ev("10:02:15"), ev("10:05:30"), ev("10:20:31")], None,
     [["e1", "e2", "e3"], ["e4"]]),
    # R5(b) boundary, inclusive: 10:20:30 = last_activity + W joins
    ([ev("10:00:00"), ev("10:02:15"), ev("10:05:30"), ev("10:20:30")], None,
     [["e1", "e2", "e3", "e4"]]),
    # R5(a): an open firing member holds the incident open past W
    ([ev("10:00:00", F), ev("11:00:00", P)], None, [["e1", "e2"]]),
    # R5(a) other side: once resolved, only W counts
    ([ev("10:00:00", F), ev("10:10:00", R), ev("11:00:00", P)], None, [["e1", "e2"], ["e3"]]),
    # R5(a)+R8: open at exactly T_stale after the last event (inclusive)
    ([ev("10:00:00", F), ev("10:30:00", P)], CFG(stale_after="30m"), [["e1", "e2"]]),
    # R5(a)+R8: one second after T_stale the member is stale and no longer holds it open
    ([ev("10:00:00", F), ev("10:30:01", P)], CFG(stale_after="30m"), [["e1"], ["e2"]]),
    # R6: t = first_seen + M still joins (inclusive)
    ([ev(f"10:{m}:00") for m in ("00", "10", "20", "30", "40", "50")] + [ev("11:00:00")],
     CFG(cap="1h"), [["e1", "e2", "e3", "e4", "e5", "e6", "e7"]]),
    # R6: one second after first_seen + M starts a new (linked) incident
    ([ev(f"10:{m}:00") for m in ("00", "10", "20", "30", "40", "50")] + [ev("11:00:01")],
     CFG(cap="1h"), [["e1", "e2", "e3", "e4", "e5", "e6"], ["e7"]]),
    # R4: norm trims and lower-cases asset and signature
    ([ev("10:00:00", asset=" WEB01 "), ev("10:01:00", signature="Disk_Full ")], None,
     [["e1", "e2"]]),
    # R4: another signature is another key by default
    ([ev("10:00:00"), ev("10:01:00", signature="cpu_high")], None, [["e1"], ["e2"]]),
    # R4: key = asset only pools signatures
    ([ev("10:00:00"), ev("10:01:00", signature="cpu_high")], CFG(key=["asset"]),
     [["e1", "e2"]]),
    # R4: key with a label: different label values are different keys
    ([ev("10:00:00", labels={"env": "prod"}), ev("10:01:00", labels={"env": "dev"})],
     CFG(key=["asset", "label:env"]), [["e1"], ["e2"]]),
    # R4: key with a label: same value (normalized) is one key
    ([ev("10:00:00", labels={"env": "prod"}), ev("10:01:00", labels={"env": " PROD"})],
     CFG(key=["asset", "label:env"]), [["e1", "e2"]]),
    # R4: no asset -> the source fingerprint stands in: same fingerprint pools
    ([ev("10:00:00", asset=None), ev("10:01:00", asset="  ")], None, [["e1", "e2"]]),
    # R4: no asset, different fingerprints -> different keys
    ([ev("10:00:00", asset=None), ev("10:01:00", asset=None, source_fingerprint="B")], None,
     [["e1"], ["e2"]]),
    # R4: neither asset nor fingerprint -> each its own incident, never one shared bucket
    ([ev("10:00:00", asset="", source_fingerprint=""),
      ev("10:00:01", asset=None, source_fingerprint=" ")], None, [["e1"], ["e2"]]),
    # R1: the same key in two tenants never joins
    ([ev("10:00:00"), ev("10:01:00", tenant_id="t2")], None, [["e1"], ["e2"]]),
    # R10: a late event inside [first_seen - W, ...] joins (and becomes the first event)
    ([ev("10:00:00"), ev("09:45:00")], None, [["e1", "e2"]]),
    # R10: a late event before first_seen - W does not
    ([ev("10:00:00"), ev("09:44:59")], None, [["e2"], ["e1"]]),
    # R10: a late event bridging two incidents of the key merges them
    ([ev("10:00:00"), ev("10:30:00"), ev("10:15:00")], None, [["e1", "e2", "e3"]]),
    # R14: equal times in ingest order: the resolve (seq 1) comes first and is an orphan
    ([ev("10:00:00", R, seq=1), ev("10:00:00", F, seq=2)], None, [["e2"]]),
    # R14: the other order: firing (seq 1) then resolve (seq 2) at the same time resolves
    ([ev("10:00:00", F, seq=1), ev("10:00:00", R, seq=2)], None, [["e1", "e2"]]),
]


@pytest.mark.parametrize(("events", "cfg", "expected"), GROUPING_CASES)
def test_grouping(events: list[Event], cfg: CorrelationSettings | None, expected: list) -> None:
    assert groups(run(*events, cfg=cfg)) == expected


def test_r6_cap_links_the_new_incident_to_the_previous_one() -> None:
    # R6: the incident started by the cap records linked_to the one it continues
    r = run(ev("10:00:00", F), ev("11:00:01", F), cfg=CFG(cap="1h"))
    first, second = live(r)
    assert (first.linked_to, second.linked_to) == (None, first.incident_id)
    assert r.memberships["e2"].rule == "R6-cap"


def test_r4_missing_asset_is_flagged_and_counted() -> None:
    # R4: neither asset nor fingerprint -> own incident flagged missing_asset
    r = run(ev("10:00:00", asset=None, source_fingerprint=""), ev("10:00:30", asset=None))
    assert [i.missing_asset for i in live(r)] == [True, False]
    assert live(r)[1].agg_key == "t1|fp:nagios/A|disk_full"  # R4 fallback (choice)
    assert r.memberships["e1"].rule == "R4-missing-asset"
    assert r.funnel["t1"].missing_asset == 2  # both events lack an asset


def test_r1_funnels_are_per_tenant() -> None:
    # R1: dedup never crosses tenants; each tenant has its own funnel
    r = run(ev("10:00:00", delivery_id="d"), ev("10:00:00", tenant_id="t2", delivery_id="d"))
    assert {t: (f.events_accepted, f.duplicates, f.incidents) for t, f in r.funnel.items()} == {
        "t1": (1, 0, 1), "t2": (1, 0, 1)}


@pytest.mark.parametrize(
    ("second", "duplicate"),
    [
        ({"delivery_id": "d1"}, True),  # R2: same tenant, source and delivery id
        ({"delivery_id": "d1", "received_at": at("10:00:00") + 720 * HOUR}, True),  # R2: forever
        ({"delivery_id": "d1", "source": "zabbix"}, False),  # R2: delivery id is per source
        ({"delivery_id": "d2"}, False),  # R2: another delivery id
        ({"body_sha256": "h", "received_at": at("10:00:00") + 24 * HOUR}, True),  # R2: inclusive
        ({"body_sha256": "h", "received_at": at("10:00:00") + 24 * HOUR + SEC}, False),  # R2: after
        ({"body_sha256": "h", "tenant_id": "t2"}, False),  # R2: body hash is per tenant
        ({"duplicate": True}, True),  # R2: already flagged by the ingest service
    ],
)
def test_r2_duplicates(second: dict, duplicate: bool) -> None:
    first_fields = {"delivery_id": "d1"} if "delivery_id" in second else {"body_sha256": "h"}
    r = run(ev("10:00:00", **first_fields), ev("10:00:00", **second))
    assert (r.memberships["e2"].disposition == "duplicate") is duplicate
    assert sum(f.duplicates for f in r.funnel.values()) == int(duplicate)


def test_r2_duplicates_run_before_r9() -> None:
    # R2 before R9: a duplicate of a too-late event is only a duplicate
    old = {"received_at": at("10:00:00") + 48 * HOUR, "delivery_id": "d"}
    r = run(ev("10:00:00", **old), ev("10:00:00", **old))
    assert (r.funnel["t1"].too_late, r.funnel["t1"].duplicates) == (1, 1)


def test_r2_body_hash_window_counts_from_the_accepted_holder() -> None:
    # R2: a re-send at 20 h is a duplicate; one at 40 h is 40 h after the accepted holder
    r = run(*(ev("10:00:00", body_sha256="h", received_at=at("10:00:00") + h * HOUR)
              for h in (0, 20, 40)), cfg=CFG(lateness="3d"))
    assert [r.memberships[e].disposition for e in ("e1", "e2", "e3")] == [
        "member", "duplicate", "member"]


@pytest.mark.parametrize(
    ("events", "alerts"),
    [
        ([ev("10:00:00", F), ev("10:05:00", F)], 1),  # R3: a re-sent firing is the same alert
        ([ev("10:00:00", F), ev("10:05:00", R), ev("10:06:00", F)], 2),  # R3: fires again
        ([ev("10:00:00"), ev("10:01:00"), ev("10:02:00")], 3),  # R3: each point its own alert
        ([ev("10:00:00", F), ev("10:30:01", F)], 2),  # R3+R8: firing after staleness is new
        ([ev("10:00:00", F), ev("10:30:00", F)], 1),  # R3+R8: at T_stale it is still the same
        ([ev("10:00:00", F), ev("10:01:00", F, source_fingerprint="B")], 2),  # R3: identity
    ],
)
def test_r3_alert_occurrences(events: list[Event], alerts: int) -> None:
    r = run(*events, cfg=CFG(stale_after="30m"))
    assert r.funnel["t1"].alerts == alerts
    assert sum(i.alert_count for i in live(r)) == alerts


def test_r7_resolved_when_every_stateful_member_resolved() -> None:
    # R7: resolved_at is the latest member resolve; points never block resolution
    r = run(ev("10:00:00", F), ev("10:01:00", F, source_fingerprint="B"), ev("10:02:00"),
            ev("10:03:00", R), ev("10:04:00", R, source_fingerprint="B"))
    (inc,) = live(r)
    assert (inc.status, inc.resolved_at, inc.event_count, inc.alert_count) == (
        "resolved", at("10:04:00"), 5, 3)


def test_r7_one_member_still_firing_keeps_it_open() -> None:
    # R7: not every stateful member resolved -> open
    r = run(ev("10:00:00", F), ev("10:01:00", F, source_fingerprint="B"), ev("10:03:00", R))
    assert [(i.status, i.resolved_at) for i in live(r)] == [("open", None)]


@pytest.mark.parametrize(
    ("third", "flaps", "incidents", "status"),
    [
        (ev("10:20:00", F), 1, 1, "open"),  # R7: firing within W of a resolved incident reopens
        (ev("10:20:00", F, source_fingerprint="B"), 1, 1, "open"),  # R7: any alert of the key
        (ev("10:20:01", F), 0, 2, "resolved"),  # R7: after W it is a new incident, no flap
        (ev("10:20:00", P), 0, 1, "resolved"),  # R7: a point joins but never reopens
    ],
)
def test_r7_reopen_and_flap(third: Event, flaps: int, incidents: int, status: str) -> None:
    r = run(ev("10:00:00", F), ev("10:05:00", R), third, as_of=at("10:30:00"))
    assert [i.flap_count for i in live(r)][0] == flaps
    assert len(live(r)) == incidents
    assert live(r)[0].status == status


@pytest.mark.parametrize(
    ("as_of", "status"),
    [
        ("10:30:00", "open"),  # R8: exactly T_stale after the last event: still firing
        ("10:30:01", "stale"),  # R8: one second later: closed as stale, not resolved
    ],
)
def test_r8_staleness_as_of(as_of: str, status: str) -> None:
    r = run(ev("10:00:00", F), cfg=CFG(stale_after="30m"), as_of=at(as_of))
    assert [(i.status, i.resolved_at) for i in live(r)] == [(status, None)]


def test_r8_stale_after_per_source() -> None:
    # R8: T_stale per source
    cfg = CFG(stale_after="30m", stale_after_by_source={"zabbix": "2h"})
    r = run(ev("10:00:00", F, source="zabbix"), cfg=cfg, as_of=at("11:00:00"))
    assert live(r)[0].status == "open"


def test_r8_resolve_after_staleness_is_an_orphan() -> None:
    # R8+R12: the alert closed stale; its resolve finds no open alert
    r = run(ev("10:00:00", F), ev("10:31:00", R), cfg=CFG(stale_after="30m"))
    assert r.memberships["e2"].disposition == "orphan_resolved"
    assert live(r)[0].status == "stale"


def test_points_only_incident_resolves_when_its_window_closes() -> None:
    # R7 (choice): an incident of points only is open until last_activity + W, then resolved
    assert live(run(ev("10:00:00"), as_of=at("10:15:00")))[0].status == "open"
    inc = live(run(ev("10:00:00"), as_of=at("10:15:01")))[0]
    assert (inc.status, inc.resolved_at) == ("resolved", at("10:00:00"))


@pytest.mark.parametrize(
    ("occurred", "received", "event_time", "skew", "too_late"),
    [
        ("10:05:00", "10:00:00", "10:05:00", False, False),  # R9: exactly F ahead is kept
        ("10:05:01", "10:00:00", "10:00:00", True, False),  # R9: beyond F: clamped, flagged
        ("10:00:00", "11:00:00", "10:00:00", False, False),  # R9: exactly L old is correlated
        ("09:59:59", "11:00:00", "09:59:59", False, True),  # R9: older than L: too late
        (None, "10:00:00", "10:00:00", False, False),  # R9: no event time -> receive time
    ],
)
def test_r9_event_time(occurred, received, event_time, skew, too_late) -> None:
    e = ev(occurred, received_at=at(received))
    r = run(e, cfg=CFG(lateness="1h"))
    row, funnel = r.memberships["e1"], r.funnel["t1"]
    assert (row.event_time, row.clock_skew) == (at(event_time), skew)
    assert (row.disposition == "too_late", funnel.too_late, funnel.clock_skew) == (
        too_late, int(too_late), int(skew))
    assert (funnel.events_accepted, funnel.incidents) == (1, int(not too_late))


def test_r9_too_late_takes_no_other_part() -> None:
    # R9: a too-late firing opens no alert, so the resolve after it is an orphan
    late = {"received_at": at("12:00:00")}
    r = run(ev("10:00:00", F, **late), ev("11:30:00", R, **late), cfg=CFG(lateness="1h"))
    f = r.funnel["t1"]
    assert (f.events_accepted, f.too_late, f.orphan_resolved, f.alerts, f.incidents) == (
        2, 1, 1, 0, 0)


def test_r10_merge_records_follow_arrival_order() -> None:
    # R10: visible 10:30 incident is bridged by a late 10:15 event -> merged_into the 10:00 one
    r = run(ev("10:00:00"), ev("10:30:00"), ev("10:15:00"))
    survivor, merged = r.incidents
    assert (merged.merged_into, merged.first_seen, merged.visible) == (
        survivor.incident_id, at("10:30:00"), False)
    assert r.funnel["t1"].incidents == 1


def test_r10_event_time_arrival_produces_no_merge() -> None:
    # R10: the same events arriving in event-time order never merge
    r = run(ev("10:00:00", seq=1), ev("10:30:00", seq=3), ev("10:15:00", seq=2))
    assert [i.merged_into for i in r.incidents] == [None]


def test_r10_below_threshold_candidate_is_not_a_merge() -> None:
    # R10+R13: only an incident that was visible before records merged_into
    r = run(ev("10:00:00"), ev("10:01:00"), ev("10:30:00"), ev("10:15:00"), cfg=CFG(threshold=2))
    assert [i.merged_into for i in r.incidents] == [None]


@pytest.mark.parametrize(
    ("order", "stale"),
    [
        ((1, 2, 3), True),  # R11: the later firing (10:20) was received before the resolve
        ((1, 3, 2), False),  # R11: the resolve arrived first: it resolves, 10:20 fires anew
    ],
)
def test_r11_stale_resolves(order: tuple[int, ...], stale: bool) -> None:
    evs = [ev("10:00:00", F), ev("10:20:00", F), ev("10:10:00", R)]
    r = run(*(replace(e, ingest_seq=s) for e, s in zip(evs, order, strict=True)))
    assert (r.memberships["e3"].disposition == "stale_resolve") is stale
    assert r.funnel["t1"].stale_resolves == int(stale)
    assert r.funnel["t1"].alerts == (1 if stale else 2)


def test_r12_orphan_resolves() -> None:
    # R12: a resolve with no open alert creates nothing and is counted
    r = run(ev("10:00:00", R))
    assert (r.incidents, r.funnel["t1"].orphan_resolved) == ([], 1)


def test_r12_decided_in_event_time() -> None:
    # R12: a resolve arriving before its earlier firing still resolves it
    r = run(ev("10:10:00", R, seq=1), ev("10:00:00", F, seq=2))
    assert r.funnel["t1"].orphan_resolved == 0
    assert [(i.status, i.event_count) for i in live(r)] == [("resolved", 2)]


@pytest.mark.parametrize(
    ("events", "visible", "below"),
    [
        ([ev("10:00:00")], 0, 1),  # R13: one point below N = 2
        ([ev("10:00:00"), ev("10:01:00")], 1, 0),  # R13: two points reach N
        ([ev("10:00:00", F), ev("10:01:00", R)], 0, 2),  # R13: resolves do not count
        ([ev("10:00:00", F), ev("10:01:00", F)], 1, 0),  # R13: re-sends count
        ([ev("10:00:00", delivery_id="d"), ev("10:01:00", delivery_id="d")], 0, 1),  # R13 after R2
    ],
)
def test_r13_threshold(events: list[Event], visible: int, below: int) -> None:
    r = run(*events, cfg=CFG(threshold=2))
    assert (r.funnel["t1"].incidents, r.funnel["t1"].below_threshold) == (visible, below)
    assert [i.visible for i in live(r)] == [bool(visible)]


def test_r15_settings_in_force_at_event_time() -> None:
    # R15: W = 15m before 11:00 (v1), 30m from 11:00 (v2); each event uses its own version
    timeline = SettingsTimeline({"t1": [
        Version("v1", to_us(at("00:00:00")), CFG()),
        Version("v2", to_us(at("11:00:00")), CFG(window="30m")),
    ]})
    evs = [ev("10:00:00"), ev("10:20:00"), ev("11:00:00"), ev("11:25:00")]
    numbered = [replace(e, event_id=f"e{i}", ingest_seq=i) for i, e in enumerate(evs, 1)]
    r = check(numbered, timeline)
    assert groups(r) == [["e1"], ["e2"], ["e3", "e4"]]
    row = r.memberships["e4"]
    assert (row.rule, row.gap, row.window, row.settings_version) == ("R5b", 25 * MIN, 30 * MIN,
                                                                    "v2")


def test_severity_is_the_highest_member_and_ignores_resolves() -> None:
    # Severity: max of firing/point members (a resolve's severity is not an alert state)
    r = run(ev("10:00:00", F, severity="warning"), ev("10:01:00", severity="high"),
            ev("10:02:00", R, severity="critical"))
    assert live(r)[0].severity == "high"


def test_counts_exclude_duplicates_orphans_and_stale_resolves() -> None:
    # Counts: event_count = firings, re-sends, effective resolves, points
    r = run(ev("10:00:00", F), ev("10:02:00", F), ev("10:01:00", R), ev("10:03:00", R),
            ev("10:04:00", delivery_id="x"), ev("10:04:00", delivery_id="x"))
    (inc,) = live(r)
    assert (inc.event_count, inc.alert_count) == (4, 2)  # e1, e2, e4, e5; alert + point
    f = r.funnel["t1"]
    assert (f.events_accepted, f.duplicates, f.stale_resolves) == (6, 1, 1)


def test_explanation_of_each_join() -> None:
    # Explainability: the rule and the gap to the previous activity, per event
    r = run(ev("10:00:00"), ev("10:02:15"), ev("10:20:31"))
    rows = [(r.memberships[e].rule, r.memberships[e].gap) for e in ("e1", "e2", "e3")]
    assert rows == [("new", None), ("R5b", 135 * SEC), ("new", timedelta(minutes=18, seconds=16))]


# --- properties of the reference itself -------------------------------------------------

PROPERTY_CFGS = [
    CFG(window="15m", cap="1h", stale_after="30m", lateness="1h", threshold=1),
    CFG(window="10m", cap="30m", stale_after="20m", lateness="1h", threshold=2),
]


@st.composite
def event_sets(draw: st.DrawFn, duplicates: bool = False) -> list[Event]:
    """Up to 12 events of two tenants, few keys, distinct event times (whole seconds)."""
    n = draw(st.integers(1, 12))
    offsets = draw(st.lists(st.integers(0, 90 * 60), min_size=n, max_size=n, unique=True))
    events = []
    for i, offset in enumerate(offsets, start=1):
        t = at("10:00:00") + offset * SEC
        delay = draw(st.sampled_from([0, 0, 0, 60, 600, 4000, -400]))  # late, skewed
        events.append(Event(
            tenant_id=draw(st.sampled_from(["t1", "t1", "t1", "t2"])),
            event_id=f"e{i}", ingest_seq=i,
            source="nagios", source_fingerprint=draw(st.sampled_from(["A", "B", ""])),
            asset=draw(st.sampled_from(["web01", "web01", "web01", "db01", None])),
            signature="disk_full",
            severity=draw(st.sampled_from(["info", "warning", "high", "critical"])),
            status=draw(st.sampled_from([F, F, R, P])), occurred_at=t,
            received_at=t + delay * SEC, body_sha256=f"b{i}",
        ))
    if duplicates and events:
        copies = draw(st.lists(st.sampled_from(events), max_size=3))
        events += [replace(c, event_id=f"e{len(events) + j}", ingest_seq=len(events) + j)
                   for j, c in enumerate(copies, start=1)]
    return events


def _effective_times_distinct(events: list[Event]) -> bool:
    times = [min(e.occurred_at, e.received_at) if e.occurred_at - e.received_at > 5 * MIN
             else e.occurred_at for e in events]
    return len(set(times)) == len(times)


def _arrival(events: list[Event], order: list[int]) -> list[Event]:
    """Re-number arrival by `order`, but keep each alert's events in event-time order."""
    seqs = {e.event_id: s for e, s in zip(events, order, strict=True)}
    by_alert: dict[tuple, list[Event]] = {}
    for e in events:
        if e.status != P:
            by_alert.setdefault((e.tenant_id, e.source, e.source_fingerprint), []).append(e)
    for members in by_alert.values():
        slots = sorted(seqs[e.event_id] for e in members)
        for e, s in zip(sorted(members, key=lambda e: e.occurred_at), slots, strict=True):
            seqs[e.event_id] = s
    return [replace(e, ingest_seq=seqs[e.event_id]) for e in events]


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(data=st.data(), events=event_sets(), cfg=st.sampled_from(PROPERTY_CFGS))
def test_property_arrival_order_does_not_change_incidents(data, events, cfg) -> None:
    # R10: permuting arrival (R11 kept out: each alert's events arrive in event-time order)
    assume(_effective_times_distinct(events))
    order = data.draw(st.permutations(range(1, len(events) + 1)))
    as_of = at("23:00:00")
    settings_at = constant_settings(cfg)
    base = correlate(_arrival(events, list(range(1, len(events) + 1))), settings_at, as_of)
    other = correlate(_arrival(events, list(order)), settings_at, as_of)
    assert live(other) == live(base)
    assert other.memberships == base.memberships
    assert other.funnel == base.funnel


@FAST
@given(data=st.data(), events=event_sets(duplicates=True), cfg=st.sampled_from(PROPERTY_CFGS))
def test_property_prefix_then_rest_equals_all_at_once(data, events, cfg) -> None:
    # Incremental = full: any split of the arrival sequence gives the same result
    cut = data.draw(st.integers(0, len(events)))
    settings_at = constant_settings(cfg)
    correlator = ReferenceCorrelator(settings_at)
    correlator.add(events[:cut])
    correlator.add(events[cut:])
    assert correlator.result() == correlate(events, settings_at)


@FAST
@given(events=event_sets(), cfg=st.sampled_from(PROPERTY_CFGS))
def test_property_event_time_arrival_never_merges(events, cfg) -> None:
    # R10: arriving in event-time order, nothing that was visible is ever merged
    ordered = sorted(events, key=lambda e: e.occurred_at)
    arrived = [replace(e, ingest_seq=i) for i, e in enumerate(ordered, start=1)]
    assume(all(e.received_at >= e.occurred_at - 5 * MIN for e in arrived))  # no clamping
    result = correlate(arrived, constant_settings(cfg))
    assert all(i.merged_into is None for i in result.incidents)


def test_r10_late_first_event_renames_the_incident_without_a_merge() -> None:
    # R10 (choice): a late event before first_seen becomes the first event, so the id changes
    before = run(ev("10:00:00"))
    after = run(ev("10:00:00"), ev("09:50:00"))
    (old,), (new,) = before.incidents, after.incidents
    assert new.incident_id != old.incident_id
    assert (new.first_seen, new.merged_into) == (at("09:50:00"), None)


def test_r6_cap_moves_a_long_running_alert_to_the_linked_incident() -> None:
    # R6 (choice): the occurrence continues in the linked incident; both share its state
    resends = [ev(f"{h}:{m}:00", F) for h, m in (("10", "00"), ("10", "20"), ("10", "40"),
                                                 ("11", "00"), ("11", "20"))]
    r = run(*resends, ev("11:30:00", R), cfg=CFG(cap="1h", stale_after="30m"))
    assert groups(r) == [["e1", "e2", "e3", "e4"], ["e5", "e6"]]
    assert [(i.status, i.resolved_at, i.alert_count) for i in live(r)] == [
        ("resolved", at("11:30:00"), 1), ("resolved", at("11:30:00"), 1)]
    assert r.funnel["t1"].alerts == 1


def test_r2_duplicate_does_not_refresh_staleness() -> None:
    # R2/R8 (choice): a duplicate takes no part in event-time staleness
    r = run(ev("10:00:00", F, delivery_id="d"), ev("10:25:00", F, delivery_id="d"),
            cfg=CFG(stale_after="30m"), as_of=at("10:30:01"))
    assert live(r)[0].status == "stale"


def test_r4_fallback_only_when_asset_is_a_key_field() -> None:
    # R4: with key = signature only, events without an asset pool by signature
    r = run(ev("10:00:00", asset=None, source_fingerprint=""), ev("10:01:00", asset=None),
            cfg=CFG(key=["signature"]))
    assert groups(r) == [["e1", "e2"]]
    assert not live(r)[0].missing_asset


@FAST
@given(events=event_sets(duplicates=True), cfg=st.sampled_from(PROPERTY_CFGS))
def test_property_tenants_are_independent(events, cfg) -> None:
    # R1: a tenant's result is the same with or without the other tenants' events
    settings_at = constant_settings(cfg)
    everything = correlate(events, settings_at)
    alone = correlate([e for e in events if e.tenant_id == "t1"], settings_at)
    assert [i for i in everything.incidents if i.tenant_id == "t1"] == alone.incidents
    assert {k: m for k, m in everything.memberships.items() if m.tenant_id == "t1"} == (
        alone.memberships)
    assert everything.funnel.get("t1") == alone.funnel.get("t1")


def test_r7_joining_a_stale_incident_is_not_a_flap() -> None:
    # R7 (choice): A went stale at 10:30, so the incident is not resolved when B joins (R5(b))
    r = run(ev("10:00:00", F), ev("10:20:00"), ev("10:35:00", F, source_fingerprint="B"),
            cfg=CFG(stale_after="30m"))
    assert [(i.flap_count, i.event_count) for i in live(r)] == [(0, 3)]
    assert r.memberships["e3"].rule == "R5b"
