"""R10 merge records: replay arrivals where a late event may have bridged visible incidents.

Incidents are a function of the events (order independence), but a merge record is history:
an incident that was visible before a late event bridged it to an earlier one records
`merged_into` the earlier one. An event that arrives after every event of its key (in event
time) can only extend the latest incident, so only keys with out-of-order arrivals can
merge; those, and only those, are replayed here in arrival order.

The replay keeps the key's arrived events in (event time, ingest_seq) order and a sequential
walk over them. An in-order arrival is fed to the walk. A late one restarts the walk from the
last restartable event before it (nothing open, every incident's window long closed: a walk
started empty there decides everything after it the same way), and compares the incidents
visible before the arrival with those after: visible incidents whose first events now share
an incident are merged into the earliest of them (SEMANTICS.md "Precise readings", R10).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right, insort
from dataclasses import dataclass

import numpy as np
import pandas as pd

from warehouse.correlation.admission import ADMITTED, Admission
from warehouse.correlation.events import POINT, RESOLVED, SEVERITIES
from warehouse.correlation.rules import OPENS, R5B
from warehouse.correlation.sequential import Inc, Rows, SequentialPass
from warehouse.correlation.sessions import NONE, STATUSES, EventTime, status_of
from warehouse.correlation.timeline import SettingsTimeline


@dataclass
class Merge:
    record: dict[str, object]  # the merged incident as it was visible (INCIDENTS fields)
    survivor_event_id: str  # first event of the incident it merged into
    arrival_seq: int = 0  # ingest_seq of the arrival that bridged them


class _Context:
    """What a snapshot record needs beyond the walk: names, thresholds, version labels."""

    def __init__(self, adm: Admission, timeline: SettingsTimeline) -> None:
        self.adm = adm
        self.event_ids = adm.table.column("event_id")
        self.threshold = np.array([v.settings.threshold for v in timeline.versions])
        self.labels = [v.label for v in timeline.versions]

    def visible(self, inc: Inc, r: Rows) -> bool:
        return inc.counted >= self.threshold[self.adm.version[r.rows[inc.first]]]

    def record(self, inc: Inc, walk: SequentialPass, clock: int) -> dict[str, object]:
        """`inc` as a row of INCIDENTS at `clock`, as the model's `_record` makes it."""
        adm, r = self.adm, walk.r
        first = r.rows[inc.first]
        tenant = adm.tenants[adm.tenant[first]]
        severity = inc.severity(r)
        status, resolved_at = status_of(*(np.array([v]) for v in (
            len(inc.occs), inc.resolved, inc.last_resolve(), inc.open_until(), inc.last,
            r.window[inc.first], clock)))
        linked = None
        if inc.linked_to >= 0:
            linked = self.incident_id(walk.incidents[inc.linked_to], walk)
        return {
            "incident_id": self.incident_id(inc, walk), "tenant_id": tenant,
            "agg_key": adm.keys[inc.key].as_py(), "first_seen": _dt(inc.first_time),
            "last_activity": _dt(inc.last),
            "resolved_at": None if resolved_at[0] == NONE else _dt(int(resolved_at[0])),
            "status": STATUSES[int(status[0])],
            "severity": SEVERITIES[severity] if severity >= 0 else "unknown",
            "event_count": len(inc.rows), "alert_count": len(inc.occs) + inc.points,
            "flap_count": inc.flaps, "merged_into": None, "linked_to": linked,
            "visible": True, "missing_asset": inc.missing,
            "settings_version": self.labels[adm.version[first]],
            "first_event_id": self.event_ids[first].as_py(),
        }

    def incident_id(self, inc: Inc, walk: SequentialPass) -> str:
        first = walk.r.rows[inc.first]
        tenant = self.adm.tenants[self.adm.tenant[first]]
        text = f"{tenant}\x00{self.adm.keys[inc.key].as_py()}\x00{self.event_ids[first].as_py()}"
        return "inc_" + hashlib.sha256(text.encode()).hexdigest()[:20]


def _dt(us: int) -> object:
    return pd.Timestamp(us, unit="us", tz="UTC").to_pydatetime()


class Replay:
    """One key's arrivals, in ingest_seq order, with the walk kept current."""

    def __init__(self, rows: Rows, context: _Context, max_window: int) -> None:
        self.r = rows
        self.context = context
        self.max_window = max_window
        self.order: list[tuple[int, int, int]] = []  # (time, seq, local row), arrived
        self.restart: dict[int, bool] = {}
        self.incidents: list[tuple[Inc, SequentialPass]] = []
        self.walk = SequentialPass(rows)
        self.replayed = 0

    def _feed(self, i: int) -> None:
        self.restart[i] = self.walk.restartable(i, self.max_window)
        before = len(self.walk.incidents)
        self.walk.feed(i)
        self.incidents.extend((inc, self.walk) for inc in self.walk.incidents[before:])

    def arrive(self, i: int, clock: int) -> list[Merge]:
        """Add local row i; `clock` is the tenant clock the visible incidents are read at."""
        entry = (self.r.time[i], self.r.seq[i], i)
        at = bisect_right(self.order, entry)
        if at == len(self.order):
            self.order.append(entry)
            self._feed(i)
            return []
        if self._absorb(i, at):
            insort(self.order, entry)
            return []
        start = at - 1
        while start >= 0 and not self.restart[self.order[start][2]]:
            start -= 1
        start = max(start, 0)
        cut = self.order[start][:2] if self.order else (0, 0)
        r = self.r
        kept, before = [], []
        for inc, walk in self.incidents:
            at_first = (r.time[inc.first], r.seq[inc.first])
            if at_first < cut:
                kept.append((inc, walk))
            elif self.context.visible(inc, self.r):
                before.append((at_first, inc, walk))
        records = {inc.first: (pos, self.context.record(inc, walk, clock))
                   for pos, inc, walk in before}
        insort(self.order, entry)
        self.incidents = kept
        self.walk = SequentialPass(self.r)
        for _, _, row in self.order[start:]:
            self._feed(row)
            self.replayed += 1
        merges: list[Merge] = []
        for inc in self.walk.incidents:
            members = set(inc.rows)
            bridged = sorted((records[first] for first in records if first in members),
                             key=lambda item: item[0])
            survivor = bridged[0][1]["first_event_id"] if bridged else None
            merges.extend(Merge(record, str(survivor)) for _, record in bridged[1:])
        return merges


    def _absorb(self, i: int, at: int) -> bool:
        """Add a late point, or a late re-send inside its open occurrence, to the incident
        that holds the events around it, when that provably changes nothing else: no new
        occurrence, no later end of openness, no new last_activity, no reopen, no cap."""
        r, walk = self.r, self.walk
        status, t = r.status[i], r.time[i]
        if status == RESOLVED:
            return False
        after = next((row for _, _, row in self.order[at:] if r.status[row] != RESOLVED), None)
        if after is None or after not in walk.incident_of:
            return False
        if walk.rule[after] in OPENS:
            return False
        index = walk.incident_of[after]
        inc = walk.incidents[index]
        if t > inc.first_time + r.cap[i]:
            return False
        occ = None
        if status == POINT:
            if r.key_missing[i] or r.key[i] != inc.key:
                return False
        else:
            occ = next((o for o in reversed(walk.history.get(r.alert[i], []))
                        if o.fires[0] <= t), None)
            if occ is None or occ.key != inc.key or index not in occ.incidents:
                return False
            later = bisect_right(occ.fires, t)
            if later == len(occ.fires) or occ.fires[later] > t + r.stale_after[i]:
                return False  # the last firing, or one its T_stale would not reach
            insort(occ.fires, t)
        inc.rows.append(i)
        inc.counted += 1
        inc.points += status == POINT
        walk.incident_of[i] = index
        walk.rule[i] = R5B
        self.restart[i] = False
        return True


def _may_merge(adm: Admission, timeline: SettingsTimeline, et: EventTime, rows: np.ndarray,
               component: np.ndarray, late: np.ndarray, incremental: bool) -> np.ndarray:
    """Components worth replaying: with a late arrival, and with an event that opened an
    incident when it arrived (its arrived predecessor more than W before it) but does not
    open one in the end, or a late resolve (it can split an occurrence), or a stretch that
    reached its cap, or several keys.

    Without those, no incident visible before a late arrival can have been bridged: the
    first event of a merged incident must have opened it on arrival, and an event that
    joined on arrival (gap <= W) joins forever, as later arrivals only narrow its gap and,
    without late resolves, only widen openness. Nor can a cap open one earlier: an incident
    of an earlier state lies inside one stretch of the end, which never reached its cap. A
    full run may also skip events that open an incident in the end (a record of a live
    incident is dropped); an incremental run cannot know the end, so it does not.
    """
    time = adm.time[rows]
    seq = adm.seq[rows]
    resolve = adm.status[rows] == RESOLVED
    # predecessors are firings and points only: a resolve may be an orphan, in no incident
    candidate_time = np.where(resolve, NONE, time)
    earlier = pd.Series(candidate_time).groupby(component, sort=False).cummax().groupby(
        component, sort=False).shift(1).to_numpy()
    earlier = np.where(earlier == float(NONE), np.nan, earlier)
    out_of_order = time < np.nan_to_num(earlier, nan=float(NONE))
    predecessor = earlier.copy()
    # an out-of-order row's predecessor on arrival: the latest earlier-arrived firing or
    # point not after it
    order = np.lexsort((seq, time, component))
    where = np.empty(len(rows), np.int64)
    where[order] = np.arange(len(rows))
    ordered_component, ordered_seq = component[order], seq[order]
    ordered_resolve = resolve[order]
    for i in np.flatnonzero(out_of_order & ~resolve).tolist():
        j = where[i] - 1
        while j >= 0 and ordered_component[j] == component[i] and (
                ordered_seq[j] > seq[i] or ordered_resolve[j]):
            j -= 1
        found = j >= 0 and ordered_component[j] == component[i]
        predecessor[i] = time[order[j]] if found else np.nan
    window = timeline.column(adm.version[rows], "window")
    opened = np.isnan(predecessor) | (time - np.nan_to_num(predecessor) > window)
    first = np.zeros(len(adm.seq), bool)
    first[et.incidents.first_row] = True
    if not incremental:  # in the end: a record of an incident still live is dropped anyway
        opened &= ~first[rows]
    suspect = (opened & ~resolve) | (late & resolve) | et.walked[rows]
    # an alert spanning keys makes "predecessor" ambiguous: replay such components too
    frame = pd.DataFrame({"c": component, "k": adm.key[rows]})
    keys = frame.groupby("c")["k"].nunique()
    wide = keys.index[keys > 1]
    has_late = np.unique(component[late])
    suspects = np.union1d(np.unique(component[suspect]), wide.to_numpy())
    return np.intersect1d(has_late, suspects)


def _components(adm: Admission, rows: np.ndarray) -> np.ndarray:
    """The replay unit of each row: its own key, with keys joined when one alert's events
    carry several (an occurrence's events follow its first firing's key)."""
    key = adm.key[rows]
    alert = adm.alert[rows]
    pairs = pd.DataFrame({"alert": alert, "key": key}).drop_duplicates()
    shared = pairs[pairs.duplicated("alert", keep=False)]
    if shared.empty:
        return key
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    for _, group in shared.groupby("alert"):
        keys = group["key"].tolist()
        for other in keys[1:]:
            a, b = find(keys[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return np.array([find(k) for k in key.tolist()], np.int64)


def find_merges(adm: Admission, timeline: SettingsTimeline, et: EventTime, as_of: int | None,
                base_clock: np.ndarray, quiet_below: int | None = None,
                ) -> tuple[list[Merge], int]:
    """Merge records of every key with late arrivals, and how many rows were replayed.
    Rows with `ingest_seq < quiet_below` arrived in an earlier run: they are loaded as the
    state before this run's arrivals, without looking for merges again."""
    rows = np.flatnonzero((adm.fate == ADMITTED) & ~adm.stale_resolve & ~adm.context)
    if not len(rows):
        return [], 0
    component = _components(adm, rows)
    time = adm.time[rows]
    latest = pd.Series(time).groupby(component, sort=False).cummax()
    earlier = latest.groupby(component, sort=False).shift(1).to_numpy()
    late = time < np.nan_to_num(earlier, nan=float(NONE))
    if quiet_below is not None:
        late &= adm.seq[rows] >= quiet_below
    candidates = _may_merge(adm, timeline, et, rows, component, late, quiet_below is not None)
    if not len(candidates):
        return [], 0
    clock = _clocks_before(adm, as_of, base_clock)
    context = _Context(adm, timeline)
    columns = _columns(adm, timeline)
    max_window = max(int(v.settings.window.total_seconds() * 1_000_000)
                     for v in timeline.versions)
    merges: list[Merge] = []
    replayed = 0
    by_component = np.argsort(component, kind="stable")  # rows stay in arrival order
    bounds = np.searchsorted(component[by_component], candidates)
    ends = np.searchsorted(component[by_component], candidates, side="right")
    for lo, hi in zip(bounds.tolist(), ends.tolist(), strict=True):
        index = rows[by_component[lo:hi]]
        replay = Replay(Rows.take(index, **columns), context, max_window)
        seqs = adm.seq[index]
        earlier = seqs < quiet_below if quiet_below is not None else np.zeros(len(index), bool)
        for local in np.flatnonzero(earlier)[np.lexsort((seqs[earlier],
                                                         adm.time[index][earlier]))].tolist():
            replay.arrive(local, NONE)  # in event-time order: never late, never a merge
        for local in np.flatnonzero(~earlier).tolist():
            found = replay.arrive(local, int(clock[index[local]]))
            for merge in found:
                merge.arrival_seq = int(seqs[local])
            merges.extend(found)
        replayed += replay.replayed
    return merges, replayed


def _columns(adm: Admission, timeline: SettingsTimeline) -> dict[str, np.ndarray]:
    from warehouse.correlation.sessions import stale_after_of
    return {"time": adm.time, "seq": adm.seq, "status": adm.status, "alert": adm.alert,
            "key": adm.key, "key_missing": adm.key_missing,
            "window": timeline.column(adm.version, "window"),
            "cap": timeline.column(adm.version, "cap"),
            "stale_after": stale_after_of(adm, timeline), "severity": adm.severity}


def _clocks_before(adm: Admission, as_of: int | None, base: np.ndarray) -> np.ndarray:
    """For each row, the tenant clock after the previous admitted arrival of its tenant: the
    moment at which the incidents visible before this arrival are read. `base` is each
    tenant's clock before these rows (earlier runs)."""
    if as_of is not None:
        return np.full(len(adm.seq), as_of, np.int64)
    admitted = adm.fate == ADMITTED
    value = np.where(admitted, np.maximum(adm.received, adm.time), adm.received)
    value = np.maximum(value, base[adm.tenant])
    after = pd.Series(value).groupby(adm.tenant, sort=False).cummax().to_numpy()
    rows = np.flatnonzero(admitted)
    previous = pd.Series(after[rows]).groupby(adm.tenant[rows], sort=False).shift(1)
    out = np.full(len(adm.seq), NONE, np.int64)
    out[rows] = np.nan_to_num(previous.to_numpy(), nan=float(NONE)).astype(np.int64)
    return out
