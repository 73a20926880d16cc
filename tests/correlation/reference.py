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
    key: str  # R4: the key of its first firing; its later events follow it
    missing_asset: bool
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
        self._where: dict[_Occurrence, _Incident] = {}  # the incident it joined last
        self._latest: dict[str, _Incident] = {}  # agg_key -> latest incident
        for a in sorted(admitted, key=lambda a: (a.time, a.event.ingest_seq)):  # R14
            if a.event.status == "resolved":
                self._resolve(a)
            else:
                self._join(a)

    def _row(
        self, a: _Admitted, disposition: str, rule: str, inc: _Incident | None = None,
        gap: timedelta | None = None, flap: bool = False,
    ) -> None:
        self.rows[a.event.event_id] = Membership(
            a.event.event_id, a.event.tenant_id, disposition, rule, a.time, a.skew,
            incident_id=inc.id if inc else None, agg_key=inc.agg_key if inc else None,
            gap=gap, window=a.settings.window, settings_version=a.version, flap=flap,
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
        inc = self._where[occ]
        gap = a.time - inc.last_activity
        inc.members.append(a)
        inc.last_activity = max(inc.last_activity, a.time)
        self._row(a, "member", "R7-resolve", inc, gap)

    def _join(self, a: _Admitted) -> None:
        key, missing = aggregation_key(a.event, a.settings.key)
        occ = self._current.get((a.event.source, a.event.source_fingerprint))
        if a.event.status == "firing" and occ is not None and occ.open_at(a.time):
            key, missing = occ.key, occ.missing_asset  # a re-send stays with its occurrence
        cur = self._latest.get(key)
        gap = a.time - cur.last_activity if cur else None
        rule, flap = self._decide(a, cur, missing)
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
            self._fire(a, inc, key, missing)
        self._row(a, "member", rule, inc, gap, bool(flap))

    def _decide(self, a: _Admitted, cur: _Incident | None, missing: bool) -> tuple[str, int]:
        """Which rule places the event: a new incident, R6, R5(a), R7 reopen or R5(b)."""
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

    def _fire(self, a: _Admitted, inc: _Incident, key: str, missing: bool) -> None:
        alert = (a.event.source, a.event.source_fingerprint)
        occ = self._current.get(alert)
        if occ is None or not occ.open_at(a.time):  # R3: a new occurrence
            if occ is not None and occ.state == "firing":
                occ.state = "stale"  # R8: closed, superseded by the new occurrence
            occ = _Occurrence(a.settings.stale_after_for(a.event.source), a.time, key, missing)
            self._current[alert] = occ
            self.occurrences.append(occ)
            self.alert_count += 1
        occ.last_time = a.time
        occ.stale_after = a.settings.stale_after_for(a.event.source)
        self._where[occ] = inc
        if all(o is not occ for o in inc.occurrences):
            inc.occurrences.append(occ)


def _status(inc: _Incident, as_of: datetime) -> tuple[str, datetime | None]:
    """R7/R8 as of `as_of`: open, resolved (with resolved_at) or stale."""
    if any(o.state == "firing" and as_of <= o.last_time + o.stale_after for o in inc.occurrences):
        return "open", None
    if not inc.occurrences:  # points only: open while the window can still take an event
        if as_of <= inc.last_activity + inc.first.settings.window:
            return "open", None
        return "resolved", inc.last_activity
    resolves = [o.resolved_at for o in inc.occurrences if o.state == "resolved"]
    if len(resolves) == len(inc.occurrences):
        return "resolved", max(t for t in resolves if t is not None)
    return "stale", None  # some member closed stale: excluded from MTTR


def _record(inc: _Incident, as_of: datetime) -> Incident:
    status, resolved_at = _status(inc, as_of)
    severities = [a.event.severity for a in inc.members if a.event.status != "resolved"]
    return Incident(
        incident_id=inc.id,
        tenant_id=inc.tenant_id,
        agg_key=inc.agg_key,
        first_seen=inc.first.time,
        last_activity=inc.last_activity,
        resolved_at=resolved_at,
        status=status,
        severity=max(severities, key=lambda s: SEVERITY_RANK.get(s, -1)),
        event_count=len(inc.members),
        alert_count=len(inc.occurrences) + inc.points,
        flap_count=inc.flap_count,
        merged_into=None,
        linked_to=inc.linked_to.id if inc.linked_to else None,
        visible=inc.counted >= inc.first.settings.threshold,  # R13, N of the first event
        missing_asset=inc.missing_asset,
        settings_version=inc.first.version,
    )


class ReferenceCorrelator:
    """Feed events in arrival (ingest_seq) order, in batches of any size; read `result()`."""

    def __init__(self, settings_at: SettingsAt, as_of: datetime | None = None) -> None:
        self._settings_at = settings_at
        self._as_of = as_of
        self._last_seq: int | None = None
        self._arrived: dict[str, list[Event]] = {}  # R1: everything below is per tenant
        self._admitted: dict[str, list[_Admitted]] = {}
        self._rows: dict[str, Membership] = {}  # decided at arrival: R2 and R9 too_late
        self._delivery_ids: set[tuple[str, str, str]] = set()
        self._bodies: dict[tuple[str, str], datetime] = {}  # receive time of the holder
        self._latest_firing: dict[tuple[str, str, str], datetime] = {}
        self._visible: dict[str, dict[str, tuple[Incident, _Admitted]]] = {}
        self._merges: list[tuple[Incident, str]] = []  # (record, survivor's first event id)

    def add(self, events: Iterable[Event]) -> None:
        """Process events one at a time in ingest_seq order, each against the state so far."""
        for event in sorted(events, key=lambda e: e.ingest_seq):
            if self._last_seq is not None and event.ingest_seq <= self._last_seq:
                raise ValueError(f"ingest_seq {event.ingest_seq} arrived after {self._last_seq}")
            self._last_seq = event.ingest_seq
            self._arrived.setdefault(event.tenant_id, []).append(event)
            if self._is_duplicate(event):
                self._rows[event.event_id] = Membership(
                    event.event_id, event.tenant_id, "duplicate", "R2"
                )
                continue
            admitted = self._admit(event)
            if admitted is not None:
                self._admitted.setdefault(event.tenant_id, []).append(admitted)
                self._record_merges(event.tenant_id)

    def _is_duplicate(self, e: Event) -> bool:
        """R2, before R9: delivery id per tenant and source forever, else body hash for 24 h."""
        if e.duplicate:
            return True
        if e.delivery_id is not None:
            key = (e.tenant_id, e.source, e.delivery_id)
            if key in self._delivery_ids:
                return True
            self._delivery_ids.add(key)
            return False
        if e.body_sha256:
            held = self._bodies.get((e.tenant_id, e.body_sha256))
            if held is not None and e.received_at - held <= BODY_DEDUP_WINDOW:
                return True
            self._bodies[(e.tenant_id, e.body_sha256)] = e.received_at  # a new holder
        return False

    def _admit(self, e: Event) -> _Admitted | None:
        """R9 (settings at receive time), R15 (settings at event time), R11 (arrival)."""
        _, at_receipt = self._settings_at(e.tenant_id, e.received_at)
        t = e.occurred_at or e.received_at
        skew = t - e.received_at > at_receipt.clock_skew
        if skew:
            t = e.received_at
        if e.received_at - t > at_receipt.lateness:
            self._rows[e.event_id] = Membership(e.event_id, e.tenant_id, "too_late", "R9", t)
            return None
        version, settings = self._settings_at(e.tenant_id, t)
        alert = (e.tenant_id, e.source, e.source_fingerprint)
        latest = self._latest_firing.get(alert)
        stale_resolve = e.status == "resolved" and latest is not None and latest > t
        if e.status == "firing":
            self._latest_firing[alert] = t if latest is None else max(latest, t)
        return _Admitted(e, t, version, settings, skew, stale_resolve)

    def _clock(self, tenant: str) -> datetime:
        if self._as_of is not None:
            return self._as_of
        times = [e.received_at for e in self._arrived[tenant]]
        return max(times + [a.time for a in self._admitted.get(tenant, [])])

    def _record_merges(self, tenant: str) -> None:
        """R10: incidents visible before this arrival whose first events now share one."""
        state = _EventTimePass(self._admitted[tenant])
        as_of = self._clock(tenant)
        before = self._visible.get(tenant, {})
        for inc in state.incidents:
            members = {a.event.event_id for a in inc.members}
            bridged = sorted(
                (v for v in before.values() if v[1].event.event_id in members),
                key=lambda v: (v[1].time, v[1].event.ingest_seq),
            )
            for record, _ in bridged[1:]:  # the later ones record merged_into the earliest
                self._merges.append((record, bridged[0][1].event.event_id))
        records = [(_record(inc, as_of), inc.first) for inc in state.incidents]
        self._visible[tenant] = {r.incident_id: (r, first) for r, first in records if r.visible}

    def result(self) -> Result:
        """Live incidents and merge records of every tenant, memberships and funnels."""
        live: list[Incident] = []
        merged: dict[str, Incident] = {}
        rows = dict(self._rows)
        funnels = {}
        for tenant in sorted(self._arrived):
            state = _EventTimePass(self._admitted.get(tenant, []))
            records = [_record(inc, self._clock(tenant)) for inc in state.incidents]
            rows.update(state.rows)
            owner = {a.event.event_id: inc.id for inc in state.incidents for a in inc.members}
            live_ids = {r.incident_id for r in records}
            for record, survivor in self._merges:
                if record.tenant_id == tenant and record.incident_id not in live_ids:
                    merged.setdefault(
                        record.incident_id,
                        replace(record, merged_into=owner[survivor], visible=False),
                    )
            live.extend(records)
            funnels[tenant] = self._funnel(tenant, state, records)
        order = sorted(live, key=_order) + sorted(merged.values(), key=_order)
        return Result(order, rows, funnels)

    def _funnel(self, tenant: str, state: _EventTimePass, records: list[Incident]) -> Funnel:
        rows = [r for r in self._rows.values() if r.tenant_id == tenant]
        rows += list(state.rows.values())
        admitted = self._admitted.get(tenant, [])

        def count(disposition: str) -> int:
            return sum(r.disposition == disposition for r in rows)

        return Funnel(
            events_accepted=len(self._arrived[tenant]),
            duplicates=count("duplicate"),
            alerts=state.alert_count,
            incidents=sum(r.visible for r in records),
            below_threshold=sum(r.event_count for r in records if not r.visible),
            too_late=count("too_late"),
            clock_skew=sum(a.skew for a in admitted),
            orphan_resolved=count("orphan_resolved"),
            missing_asset=sum(not _norm(a.event.asset) for a in admitted),
            stale_resolves=count("stale_resolve"),
        )


def _order(inc: Incident) -> tuple[str, datetime, str]:
    return inc.tenant_id, inc.first_seen, inc.incident_id


def constant_settings(
    settings: CorrelationSettings | None = None, version: str = "v1"
) -> SettingsAt:
    """A `settings_at` that always answers the same version (most tests)."""
    fixed = (version, settings or CorrelationSettings())
    return lambda tenant_id, t: fixed


def correlate(
    events: Iterable[Event], settings_at: SettingsAt, as_of: datetime | None = None
) -> Result:
    """All events at once, in ingest_seq order: the model's whole answer."""
    correlator = ReferenceCorrelator(settings_at, as_of)
    correlator.add(events)
    return correlator.result()
