"""Reference model of SEMANTICS.md R1-R15: a plain loop, obviously correct, slow on purpose.

The future DuckDB engine is compared with this model by property tests; README.md in this
folder lists every interpretation choice. How it works, in two layers:

1. Arrival (ingest_seq order): each event is admitted once, against the events that arrived
   before it: R2 duplicates, R9 clock skew and lateness, R11 stale resolves. These decisions
   depend only on earlier arrivals, so they never change later.
2. Event time: after each arrival, the tenant's admitted events are correlated from scratch in
   (event time, ingest_seq) order (R14). The result is a function of the admitted events only,
   which is R10's order independence by construction. "Visible before" (R10 merges) is the
   state after the previous arrival: two incidents visible then whose first events now share
   one incident are a merge, and the later one records `merged_into` the earlier one.

Recomputing from scratch per arrival is quadratic; that is the price of being obviously right.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from warehouse.correlation_settings import CorrelationSettings

SettingsAt = Callable[[str, datetime], tuple[str, CorrelationSettings]]
SEVERITY_RANK = {"info": 0, "warning": 1, "high": 2, "critical": 3}
BODY_DEDUP_WINDOW = timedelta(hours=24)  # R2: inclusive, on receive time


@dataclass(frozen=True)
class Event:
    """One canonical event as the engine reads it (warehouse.schema.ALERT_EVENTS)."""

    tenant_id: str
    event_id: str
    ingest_seq: int
    source: str
    source_fingerprint: str
    asset: str | None
    signature: str
    severity: str
    status: str  # firing | resolved | point
    occurred_at: datetime | None  # None: the receive time (R9)
    received_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    delivery_id: str | None = None
    body_sha256: str = ""  # empty: no body hash known, never a body-hash duplicate
    duplicate: bool = False  # already found a duplicate by the ingest service (R2)


@dataclass(frozen=True)
class Membership:
    """Why one event is (or is not) part of an incident: the explainability row."""

    event_id: str
    tenant_id: str
    disposition: str  # member | duplicate | too_late | orphan_resolved | stale_resolve
    rule: str  # R2, R9, R11, R12, new, R4-missing-asset, R5a, R5b, R6-cap, R7-reopen, R7-resolve
    event_time: datetime | None = None  # after R9 clamping; None for duplicates
    clock_skew: bool = False
    incident_id: str | None = None
    agg_key: str | None = None
    gap: timedelta | None = None  # event time minus the key's previous last_activity
    window: timedelta | None = None
    settings_version: str | None = None
    flap: bool = False


@dataclass(frozen=True)
class Incident:
    incident_id: str
    tenant_id: str
    agg_key: str
    first_seen: datetime
    last_activity: datetime
    resolved_at: datetime | None
    status: str  # open | resolved | stale
    severity: str
    event_count: int
    alert_count: int
    flap_count: int
    merged_into: str | None
    linked_to: str | None
    visible: bool
    missing_asset: bool
    settings_version: str


@dataclass(frozen=True)
class Funnel:
    events_accepted: int = 0
    duplicates: int = 0
    alerts: int = 0
    incidents: int = 0
    below_threshold: int = 0  # member events of candidates below N (S_r is per event)
    too_late: int = 0
    clock_skew: int = 0
    orphan_resolved: int = 0
    missing_asset: int = 0
    stale_resolves: int = 0


@dataclass(frozen=True)
class Result:
    incidents: list[Incident]  # live incidents, then merge records, each sorted by id
    memberships: dict[str, Membership]  # by event_id
    funnel: dict[str, Funnel]  # by tenant_id


@dataclass
class _Admitted:
    event: Event
    time: datetime
    version: str
    settings: CorrelationSettings
    skew: bool
    stale_resolve: bool


def incident_id(tenant_id: str, agg_key: str, first_event_id: str) -> str:
    """Deterministic id from the tenant, the key and the incident's first event."""
    digest = hashlib.sha256(f"{tenant_id}\x00{agg_key}\x00{first_event_id}".encode())
    return "inc_" + digest.hexdigest()[:20]


def _norm(value: str | None) -> str:
    return (value or "").strip().lower()


def aggregation_key(event: Event, key_fields: Iterable[str]) -> tuple[str, bool]:
    """R4: (agg_key, missing_asset). A key with no asset nor fingerprint is the event's own."""
    parts = [event.tenant_id]
    for name in key_fields:
        if name == "asset":
            asset = _norm(event.asset)
            if not asset:
                fingerprint = event.source_fingerprint.strip()
                if not fingerprint:
                    return f"{event.tenant_id}|missing-asset:{event.event_id}", True
                # The alert identity is (source, fingerprint): keep both, and a prefix no
                # real asset name can be mistaken for.
                asset = f"fp:{event.source}/{fingerprint}"
            parts.append(asset)
        elif name in ("signature", "source"):
            parts.append(_norm(getattr(event, name)))
        else:  # label:<name>; an absent label is an empty component
            parts.append(_norm(event.labels.get(name.removeprefix("label:"))))
    return "|".join(parts), False


@dataclass(eq=False)
class _Occurrence:
    """R3: one stateful alert occurrence, identified by (source, fingerprint)."""

    stale_after: timedelta
    last_time: datetime
    state: str = "firing"  # firing | resolved | stale
    resolved_at: datetime | None = None

    def open_at(self, t: datetime) -> bool:
        # R8: stale once no event for T_stale; an event exactly T_stale later still counts.
        return self.state == "firing" and t <= self.last_time + self.stale_after


@dataclass(eq=False)
class _Incident:
    tenant_id: str
    agg_key: str
    first: _Admitted
    missing_asset: bool
    linked_to: _Incident | None
    last_activity: datetime = field(init=False)
    members: list[_Admitted] = field(default_factory=list)
    occurrences: list[_Occurrence] = field(default_factory=list)
    points: int = 0
    counted: int = 0  # R13: firing and point members
    flap_count: int = 0

    def __post_init__(self) -> None:
        self.last_activity = self.first.time

    @property
    def id(self) -> str:
        return incident_id(self.tenant_id, self.agg_key, self.first.event.event_id)

    def is_resolved(self) -> bool:
        """R7: every stateful member resolved (an incident of points only never is)."""
        return bool(self.occurrences) and all(o.state == "resolved" for o in self.occurrences)

    def open_member_at(self, t: datetime) -> bool:
        return any(o.open_at(t) for o in self.occurrences)


class _EventTimePass:
    """Correlate one tenant's admitted events in (event time, ingest_seq) order."""

    def __init__(self, admitted: list[_Admitted]) -> None:
        self.incidents: list[_Incident] = []
        self.rows: dict[str, Membership] = {}
        self.occurrences: list[_Occurrence] = []
        self.alert_count = 0
        self._current: dict[tuple[str, str], _Occurrence] = {}  # (source, fp) -> latest
        self._where: dict[int, _Incident] = {}  # id(occurrence) -> incident it joined last
        self._latest: dict[str, _Incident] = {}  # agg_key -> latest incident
        for a in sorted(admitted, key=lambda a: (a.time, a.event.ingest_seq)):  # R14
            if a.event.status == "resolved":
                self._resolve(a)
            else:
                self._join(a)

    def _row(self, a: _Admitted, disposition: str, rule: str, **extra: object) -> None:
        self.rows[a.event.event_id] = Membership(
            a.event.event_id, a.event.tenant_id, disposition, rule, a.time, a.skew,
            settings_version=a.version, window=a.settings.window, **extra,  # type: ignore[arg-type]
        )

    def _resolve(self, a: _Admitted) -> None:
        if a.stale_resolve:  # R11, decided at arrival
            self._row(a, "stale_resolve", "R11")
            return
        occ = self._current.get((a.event.source, a.event.source_fingerprint))
        if occ is None or not occ.open_at(a.time):  # R12 in event time; a stale alert too
            self._row(a, "orphan_resolved", "R12")
            return
        occ.state, occ.resolved_at, occ.last_time = "resolved", a.time, a.time
        inc = self._where[id(occ)]
        gap = a.time - inc.last_activity
        inc.members.append(a)
        inc.last_activity = max(inc.last_activity, a.time)
        self._row(a, "member", "R7-resolve", incident_id=inc.id, agg_key=inc.agg_key, gap=gap)

    def _join(self, a: _Admitted) -> None:
        key, missing = aggregation_key(a.event, a.settings.key)
        cur = self._latest.get(key)
        gap = a.time - cur.last_activity if cur else None
        rule, flap = self._decide(a, cur)
        if rule in ("new", "R4-missing-asset", "R6-cap"):
            inc = _Incident(a.event.tenant_id, key, a, missing, cur if rule == "R6-cap" else None)
            self.incidents.append(inc)
            self._latest[key] = inc
        else:
            assert cur is not None
            inc = cur
        inc.flap_count += flap
        inc.members.append(a)
        inc.counted += 1
        inc.last_activity = max(inc.last_activity, a.time)
        if a.event.status == "point":
            inc.points += 1  # R3: each point event is its own alert
            self.alert_count += 1
        else:
            self._fire(a, inc)
        self._row(a, "member", rule, incident_id=inc.id, agg_key=key, gap=gap, flap=bool(flap))

    def _decide(self, a: _Admitted, cur: _Incident | None) -> tuple[str, int]:
        missing = aggregation_key(a.event, a.settings.key)[1]
        if cur is None:
            return ("R4-missing-asset" if missing else "new"), 0
        open_member = cur.open_member_at(a.time)  # R5(a)
        if not open_member and a.time > cur.last_activity + a.settings.window:  # R5(b)
            return "new", 0
        if a.time > cur.first.time + a.settings.cap:  # R6, inclusive boundary
            return "R6-cap", 0
        if open_member:
            return "R5a", 0
        if a.event.status == "firing" and cur.is_resolved():
            return "R7-reopen", 1
        return "R5b", 0

    def _fire(self, a: _Admitted, inc: _Incident) -> None:
        alert = (a.event.source, a.event.source_fingerprint)
        occ = self._current.get(alert)
        if occ is None or not occ.open_at(a.time):  # R3: a new occurrence
            if occ is not None and occ.state == "firing":
                occ.state = "stale"  # R8: closed, superseded by the new occurrence
            occ = _Occurrence(a.settings.stale_after_for(a.event.source), a.time)
            self._current[alert] = occ
            self.occurrences.append(occ)
            self.alert_count += 1
        occ.last_time = a.time
        occ.stale_after = a.settings.stale_after_for(a.event.source)
        self._where[id(occ)] = inc
        if all(o is not occ for o in inc.occurrences):
            inc.occurrences.append(occ)
