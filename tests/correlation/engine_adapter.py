"""Run the engine on reference-model events and read its answer as the model's `Result`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from tests.correlation.reference import (
    Event,
    Funnel,
    Incident,
    Membership,
    Result,
    SettingsAt,
    correlate,
)
from warehouse.correlation.engine import correlate as engine_correlate
from warehouse.correlation.events import EVENTS
from warehouse.correlation.timeline import SettingsTimeline, to_us

US = timedelta(microseconds=1)


def events_table(events: list[Event]) -> pa.Table:
    return pa.Table.from_pylist([{
        "tenant_id": e.tenant_id, "event_id": e.event_id, "ingest_seq": e.ingest_seq,
        "source": e.source, "source_fingerprint": e.source_fingerprint, "asset": e.asset,
        "signature": e.signature, "severity": e.severity, "status": e.status,
        "occurred_at": e.occurred_at, "received_at": e.received_at,
        "labels": list(e.labels.items()), "delivery_id": e.delivery_id,
        "body_sha256": e.body_sha256, "duplicate": e.duplicate,
    } for e in events], schema=EVENTS)


def settings_at(timeline: SettingsTimeline) -> SettingsAt:
    """The model's `settings_at` answering from the same timeline the engine reads."""
    def lookup(tenant_id: str, t: datetime) -> tuple[str, object]:
        import numpy as np
        index = timeline.lookup(np.zeros(1, np.int64), [tenant_id], np.array([to_us(t)]))[0]
        version = timeline.versions[int(index)]
        return version.label, version.settings
    return lookup  # type: ignore[return-value]


def engine_result(events: list[Event], timeline: SettingsTimeline,
                  as_of: datetime | None = None) -> Result:
    out = engine_correlate(events_table(events), timeline,
                           None if as_of is None else to_us(as_of))
    incidents = [Incident(**{k: v for k, v in row.items() if k != "first_event_id"})
                 for row in out.incidents.to_pylist()]
    memberships = {}
    for row in out.memberships.to_pylist():
        gap = row["gap_us"]
        window = row["window_us"]
        memberships[row["event_id"]] = Membership(
            event_id=row["event_id"], tenant_id=row["tenant_id"],
            disposition=row["disposition"], rule=row["rule"], event_time=row["event_time"],
            clock_skew=row["clock_skew"], incident_id=row["incident_id"],
            agg_key=row["agg_key"], gap=None if gap is None else gap * US,
            window=None if window is None else window * US,
            settings_version=row["settings_version"], flap=row["flap"])
    funnel = {t: Funnel(**f) for t, f in out.funnel.items()}
    return Result(incidents, memberships, funnel)


def check(events: list[Event], timeline: SettingsTimeline,
          as_of: datetime | None = None) -> Result:
    """The model's result, after asserting the engine gives exactly the same."""
    expected = correlate(events, settings_at(timeline), as_of)
    got = engine_result(events, timeline, as_of)
    try:
        _compare(got, expected)
    except AssertionError as exc:  # name the history, so a shrunk example can be read
        lines = ["events (seq order):"]
        lines += [f"  {e.ingest_seq:>3} {e.event_id:>4} {e.tenant_id} {e.status:8} "
                  f"fp={e.source}/{e.source_fingerprint!r} asset={e.asset!r} "
                  f"sig={e.signature} occ={e.occurred_at and e.occurred_at.time()} "
                  f"rcv={e.received_at.time()} did={e.delivery_id} body={e.body_sha256!r} "
                  f"dup={e.duplicate} labels={dict(e.labels)}"
                  for e in sorted(events, key=lambda e: e.ingest_seq)]
        lines.append(f"as_of {as_of} " + repr([(v.label, v.effective_us, v.settings.to_dict())
                                              for v in timeline.versions]))
        raise AssertionError(f"{exc}\n" + "\n".join(lines)) from exc
    return expected


def _compare(got: Result, expected: Result) -> None:
    assert got.funnel == expected.funnel
    for event_id, row in expected.memberships.items():
        assert got.memberships[event_id] == row, event_id
    assert [vars(i) for i in got.incidents] == [vars(i) for i in expected.incidents]


__all__ = ["check", "engine_result", "events_table", "settings_at", "UTC"]
