"""R10 merge records: replay arrivals where a late event may have bridged visible incidents.

Incidents are a function of the events (order independence), but a merge record is history:
an incident that was visible before a late event bridged it to an earlier one records
`merged_into` the earlier one. An event that arrives after every event of its key (in event
time) can only extend the latest incident, so only keys with out-of-order arrivals can
merge; those, and only those, are replayed here in arrival order.

The replay keeps the key's arrived events in (event time, ingest_seq) order and a few
sequential walks over them (`sequential.SequentialPass` with its undo log), fed lazily: an
in-order arrival only joins the list, and the walk that takes a late one catches up to just
before the late one's place (rewinding there instead, undoing in reverse the logged changes of
the rows after it, when it is already further: the walk over (event time, ingest_seq)-sorted
rows is deterministic, so that is exactly the walk over the rows before it). The other walks
leave the arrival out, marked dirty with how far its effect reaches (`_Cursor`), so a walk
kept near the end and one kept hours back do not cross the rows between them for each
arrival.

From there the rows after the late arrival are walked twice, without it and with it, and
after each row the two are compared on everything later rows read (the latest incident of
each key touched, the current occurrence of each alert touched: `SequentialPass.describe`).
Once they agree, every later row decides the same in both walks, so an incident of "before"
that the arrival bridged into an earlier one (SEMANTICS.md "Precise readings", R10: merged
into the earliest) must be one whose first event was walked already; and since nothing later
touches it, its record is complete. If no two of those first events (with the latest
incident of each key before the arrival) now share an incident, the arrival merged nothing
and the walk stays where the two agreed: a late event usually changes a few decisions next
to it, not the rows after. Otherwise, or when the two do not agree within a few hundred rows,
the exact path walks every arrived row before and after, reads the incidents visible before
(with their records, at the tenant clock) and merges those whose first events now share an
incident into the earliest of them. Only incidents whose first event lies after the late
arrival can lose (first events before it keep their incidents), and only the latest incident
of each key before it can take later first events, so only those are read.

What a walk logs is bounded from the known future: every row's rank in (event time,
ingest_seq) order is known, so a row fed when no later arrival of its component ranks below
it is never rewound over, and its changes are not logged (unless the walk has dirty rows: it
may be rewound to them). Once no arrival still to come ranks below a row that opens a
restartable incident of a single-key component in the end (a stretch start, or a quiet
incident: `sequential`), the rows below it are final, so they are dropped with the walks
that have not passed them, and a walk restarts empty there if none is left (rows before it
are never walked). Rows after a component's last late arrival are not walked at all.
Components never interact, so each is replayed on its own from a self-contained job (`_Job`,
its rows numbered locally), and `helper.replay_all` gives a share of them to a helper process
on the machine's other core.

Where the replay's time goes now: arrivals whose effect does not settle within
`Replay.SPANS` (a shifted cap boundary changes every incident to the end of its stretch)
take the exact path, which walks every row after them (twice, unless the other walk is
already at the end).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse.correlation.admission import ADMITTED, Admission
from warehouse.correlation.events import RESOLVED, SEVERITIES
from warehouse.correlation.rules import OPENS
from warehouse.correlation.sequential import Inc, Rows, SequentialPass
from warehouse.correlation.sessions import NONE, STATUSES, EventTime, status_of
from warehouse.correlation.timeline import SettingsTimeline


@dataclass
class Merge:
    record: dict[str, object]  # the merged incident as it was visible (INCIDENTS fields)
    survivor_event_id: str  # first event of the incident it merged into
    arrival_seq: int = 0  # ingest_seq of the arrival that bridged them


class _Context:
    """What a snapshot record needs beyond the walk, for one component's rows (local row
    numbers): event ids, settings versions, the tenant, key names, thresholds, labels."""

    def __init__(self, job: _Job) -> None:
        self.event_ids = job.event_ids
        self.version = job.version
        self.tenant = job.tenant
        self.keys = job.keys
        self.threshold = job.threshold
        self.labels = job.labels

    def visible(self, inc: Inc, r: Rows) -> bool:
        return inc.counted >= self.threshold[self.version[r.rows[inc.first]]]

    def thresholded(self, inc: Inc, r: Rows) -> bool:
        """Whether `inc` needs more than its first event to be visible (R13)."""
        return bool(self.threshold[self.version[r.rows[inc.first]]] > 1)

    def record(self, inc: Inc, walk: SequentialPass, clock: int) -> dict[str, object]:
        """`inc` as a row of INCIDENTS at `clock`, as the model's `_record` makes it."""
        r = walk.r
        first = r.rows[inc.first]
        severity = inc.severity(r)
        status, resolved_at = status_of(*(np.array([v]) for v in (
            len(inc.occs), inc.resolved, inc.last_resolve(), inc.open_until(), inc.last,
            r.window[inc.first], clock)))
        linked = None
        if inc.linked_to >= 0:
            linked = self.incident_id(walk.incidents[inc.linked_to], walk)
        return {
            "incident_id": self.incident_id(inc, walk), "tenant_id": self.tenant,
            "agg_key": self.keys[inc.key], "first_seen": _dt(inc.first_time),
            "last_activity": _dt(inc.last),
            "resolved_at": None if resolved_at[0] == NONE else _dt(int(resolved_at[0])),
            "status": STATUSES[int(status[0])],
            "severity": SEVERITIES[severity] if severity >= 0 else "unknown",
            "event_count": len(inc.rows), "alert_count": len(inc.occs) + inc.points,
            "flap_count": inc.flaps, "merged_into": None, "linked_to": linked,
            "visible": True, "missing_asset": inc.missing,
            "settings_version": self.labels[self.version[first]],
            "first_event_id": self.event_ids[first].as_py(),
        }

    def incident_id(self, inc: Inc, walk: SequentialPass) -> str:
        first = walk.r.rows[inc.first]
        text = f"{self.tenant}\x00{self.keys[inc.key]}\x00{self.event_ids[first].as_py()}"
        return "inc_" + hashlib.sha256(text.encode()).hexdigest()[:20]


def _dt(us: int) -> object:
    return pd.Timestamp(us, unit="us", tz="UTC").to_pydatetime()


DONE, LONGER, MAY_MERGE = "done", "longer", "may merge"  # outcomes of `Replay._bounded`
UNKNOWN = 1 << 62  # the end of a dirty row's reach when it is not known


class _Cursor:
    """One walk over the arrived rows: `order[:fed]`, less its dirty rows.

    `marks[k]` is the length of the walk's undo log just before `order[k]` was fed, so
    rewinding the log to `marks[k]` leaves the walk over `order[:k]` (less the dirty rows
    there). A dirty row is an arrival another walk took and inserted below `fed`, which this
    walk has not fed; `low` is the position of the first (None without any), and from every
    position after `reach` on (-1 without dirty rows), this walk describes every key and
    alert as the walk over all arrived rows does (`SequentialPass.describe`), which is all a
    bounded walk reads (`exact_at`).

    `reach` holds by induction. The walk that takes an arrival finds the last position where
    it decides differently (its bounded walk, or UNKNOWN after the exact path): a walk that
    leaves it dirty takes the larger of the two reaches (past both, it describes the rows
    before the arrival as the full walk does, and those as the rows with it). A walk that will
    feed it itself (it lands at or past `fed`) keeps its reach when the arrival lands after
    the reach (from there on both walks feed the same rows from alike states), and cannot
    know it otherwise (UNKNOWN)."""

    def __init__(self, rows: Rows, seeds: list[int] | None = None) -> None:
        self.walk = SequentialPass(rows, journal=True)
        for i in seeds or ():  # a walk from the component's start (`Replay.seeds`)
            self.walk.seed(i)
        self.log: list[tuple] = self.walk.log  # type: ignore[assignment]
        self.fed = 0
        self.marks: list[int] = []
        self.low: int | None = None
        self.reach = -1

    def exact_at(self, at: int) -> bool:
        """Whether this walk describes everything as the full walk does at `order[at]`."""
        return at > self.reach

    def cost(self, at: int, front: int) -> int:
        """Rows to undo and feed to bring this walk to `order[at]` (from its first dirty row
        when `at` is not past its reach); for the walk furthest on (at `front`), also the
        way back there, which the next arrival at the end will need."""
        moves = abs(self.fed - at)
        if not self.exact_at(at):
            assert self.low is not None
            moves = self.fed - self.low + at - self.low
        if self.fed == front and at < front:
            moves += front - at
        return moves

    def goes_on_after(self, cut: int) -> bool:
        """The arrived rows before `order[cut]` were dropped: whether this walk goes on (it
        is past them and has no dirty row among them), its positions moved down."""
        if self.fed <= cut or (self.low is not None and self.low < cut):
            return False
        del self.marks[:cut]
        self.fed -= cut
        if self.low is not None:
            self.low -= cut
            if self.reach != UNKNOWN:
                self.reach -= cut
        return True

    def inserted(self, at: int, reach: int) -> None:
        """Another walk inserted an arrival at `order[at]` that decides nothing differently
        after position `reach`."""
        if at < self.fed:
            self.marks.insert(at, self.marks[at])
            self.fed += 1
            self.low = at if self.low is None else min(self.low, at)
            if self.reach >= at and self.reach != UNKNOWN:
                self.reach += 1
            self.reach = max(self.reach, reach)
        elif not self.exact_at(at):
            self.reach = UNKNOWN


class Replay:
    """One key's (or component's) arrivals, in ingest_seq order, with walks over them.

    `order` holds the arrived rows in (event time, ingest_seq) order. A late arrival at
    position k takes one of up to `CURSORS` walks (`_Cursor`), the one cheapest to bring to k
    (feeding or rewinding), then walks the rows after k twice, without it and with it ("before"
    and "after"), comparing what later decisions read (`SequentialPass.describe` of every key
    and alert either walk touched). Once the two agree, every later row decides the same in
    both, so incidents first seen from there on are the same, and an incident that lost its
    first event to another stopped changing before there: merges are found among the openers
    walked so far. Most late arrivals agree again within a few rows; one that can merge
    something, or that does not agree within `SPANS`, takes the exact path (walk every arrived
    row before and after).

    Several walks, because arrivals at the end and arrivals hours late interleave on busy
    keys: one walk would go back over thousands of rows for each late one and forward again
    for the next. The walks that did not take an arrival do not feed it: they mark it dirty,
    with the position after which nothing decides differently (`_Cursor.reach`), and are
    rewound to their first dirty row (and fed again) only when they are needed at or before
    that position, or when the exact path reads the visibility (R13) of an incident that may
    hold dirty rows (`_visible_before`).

    `starts` (single-key components only) are the ranks of the rows that open a restartable
    incident in the end (`sessions`: a stretch start, nothing of the key open and more than W
    after its previous event; or a quiet incident, `sequential`). When
    every row ranked below such a row has arrived (no arrival still to come ranks below it),
    the arrived rows below it are exactly the final ones, so a walk started empty there decides
    everything after it as the full walk does: the rows below it are dropped with the walks
    that have not passed it, a walk restarts empty there if none is left, and the rows before
    it are never walked.
    """

    SPANS = (16, 256)  # rows walked "before" in the bounded attempts
    CURSORS = 2  # walks at most: one near the end, one back where late arrivals land

    def __init__(self, rows: Rows, context: _Context, by_rank: list[int],
                 starts: list[int] | None = None, seeds: list[int] | None = None) -> None:
        self.r = rows
        # seed rows (`sessions`) of a key started at an incident that is not quiet: a walk
        # from the start takes them; one from a restart point (quiet) does not need them
        self.seeds = seeds or []
        self.context = context
        self.row_of_rank = by_rank  # the rows in (event time, ingest_seq) order
        self.rank = [0] * len(by_rank)  # of each row in that order
        for position, row in enumerate(by_rank):
            self.rank[row] = position
        self.starts = starts
        self.order: list[tuple[int, int, int]] = []  # (time, seq, local row), arrived
        self.cursors = [_Cursor(rows, self.seeds)]
        self.cur = self.cursors[0]  # the walk taking the current arrival
        self.replayed = 0

    def arrive(self, i: int, clock: int, horizon: int) -> list[Merge]:
        """Add local row i; `clock` is the tenant clock the visible incidents are read at;
        no later arrival ranks below `horizon`, so changes for rows below it are not logged."""
        r, order, rank = self.r, self.order, self.rank
        entry = (r.time[i], r.seq[i], i)
        if not order or entry > order[-1]:
            order.append(entry)
            return []
        at = bisect_right(order, entry)
        lowest = min(rank[i], horizon)  # no arrival from this one on ranks below it
        at -= self._restart(lowest)
        self.cur = self._choose(at)
        if not self.cur.exact_at(at):
            assert self.cur.low is not None
            self._rewind(self.cur.low)
        if self.cur.fed > at:
            self._rewind(at)
        else:
            self._feed(at, lowest)
        for span in self.SPANS:
            if span >= len(order) - at:
                break
            outcome, end = self._bounded(entry, at, span)
            if outcome is DONE:
                self._inserted(at, end)
                return []
            if outcome is MAY_MERGE:
                break
        merges = self._exact(entry, at, clock, lowest)
        self._inserted(at, UNKNOWN)
        return merges

    def _choose(self, at: int) -> _Cursor:
        """The walk cheapest to bring to `order[at]`, or a new one (fed from the start)."""
        front = max(cursor.fed for cursor in self.cursors)
        cursor = min(self.cursors, key=lambda c: c.cost(at, front))
        if len(self.cursors) < self.CURSORS and at < cursor.cost(at, front):
            cursor = _Cursor(self.r, self.seeds)
            self.cursors.append(cursor)
        return cursor

    def _inserted(self, at: int, reach: int) -> None:
        """The current walk inserted an arrival at `order[at]` that decides nothing
        differently after position `reach`: the other walks take note (`_Cursor`)."""
        for cursor in self.cursors:
            if cursor is not self.cur:
                cursor.inserted(at, reach)

    def _restart(self, lowest: int) -> int:
        """Drop the arrived rows below the last restart point ranked below `lowest` (nothing
        still to come lands there) and the walks that have not passed it or have dirty rows
        there; walks past it go on from where they are, and with none, a fresh walk starts
        there. Returns how many arrived rows were dropped."""
        if self.starts is None:
            return 0
        k = bisect_left(self.starts, lowest) - 1
        if k < 0:
            return 0
        row = self.row_of_rank[self.starts[k]]
        cut = bisect_left(self.order, (self.r.time[row], self.r.seq[row], row))
        if cut == 0:
            return 0
        assert self.order[cut][2] == row  # every row ranked below `lowest` has arrived
        del self.order[:cut]
        self.seeds = []
        kept = [cursor for cursor in self.cursors if cursor.goes_on_after(cut)]
        self.cursors = kept or [_Cursor(self.r, self.seeds)]
        self.cur = self.cursors[0]
        return cut

    def _feed(self, stop: int, lowest: int) -> None:
        """Feed `order[fed:stop]` to the current walk, marking each row's place in the log
        and logging only rows ranked above `lowest` (nothing later rewinds below it), or
        every row while the walk has dirty rows (it may be rewound to them)."""
        cursor, rank, order = self.cur, self.rank, self.order
        walk, log, marks = cursor.walk, cursor.log, cursor.marks
        if cursor.low is not None:
            lowest = -1
        for k in range(cursor.fed, stop):
            row = order[k][2]
            marks.append(len(log))
            walk.log = log if rank[row] > lowest else None
            walk.feed(row)
        walk.log = log
        cursor.fed = max(cursor.fed, stop)

    def _rewind(self, at: int) -> None:
        """Bring the current walk back to `order[:at]`; dirty rows from there on are no
        longer dirty (the walk feeds them as it goes forward again)."""
        cursor = self.cur
        if at >= cursor.fed:
            return
        cursor.walk.undo_to(cursor.marks[at])
        del cursor.marks[at:]
        cursor.fed = at
        if cursor.low is not None and cursor.low >= at:
            cursor.low, cursor.reach = None, -1

    def _bounded(self, entry: tuple[int, int, int], at: int, span: int) -> tuple[str, int]:
        """Walk up to `span` rows after `at` without the arrival, then with it, until the
        two agree on everything later rows read. DONE (the arrival inserted, the walk fed to
        where they agreed, and the last position that decided differently) when they agree
        and no incident visible before can have merged; otherwise (MAY_MERGE, or LONGER when
        they did not agree within `span`) the walk is back at `at` and the arrival not
        inserted: every change here is logged for that."""
        walk, order = self.cur.walk, self.order
        survivors = [walk.incidents[index].first for index in walk.latest.values()]
        base: dict[int, tuple | None] = {}  # the state at `at`, of everything touched
        steps: list[list[tuple[int, tuple | None]]] = []
        openers: list[int] = []  # of "before", by position after `at`
        for k in range(at, at + span):  # before: the rows without the arrival
            row = order[k][2]
            touched = walk.touches(row)
            for thing in touched:
                if thing not in base:
                    base[thing] = walk.describe(thing)
            self._feed(k + 1, -1)
            if walk.rule.get(row) in OPENS:
                openers.append(k - at)
            steps.append([(thing, walk.describe(thing)) for thing in touched])
        self._rewind(at)
        order.insert(at, entry)
        before: dict[int, tuple | None] = {}
        after: dict[int, tuple | None] = {}
        differ: set[int] = set()

        def compare(thing: int) -> None:
            if before.get(thing, base[thing]) == after.get(thing, base[thing]):
                differ.discard(thing)
            else:
                differ.add(thing)

        agreed = -1  # rows of "before" walked when the two agreed
        for k in range(at, at + span + 1):  # after: the arrival, then the same rows
            touched = walk.touches(order[k][2])
            for thing in touched:
                if thing not in base:
                    base[thing] = walk.describe(thing)
            self._feed(k + 1, -1)
            for thing in touched:
                after[thing] = walk.describe(thing)
                compare(thing)
            if k > at:
                for thing, state in steps[k - at - 1]:
                    before[thing] = state
                    compare(thing)
            if not differ:
                agreed = k - at
                break
        self.replayed += span + (agreed + 1 if agreed >= 0 else span + 1)
        outcome = LONGER
        if agreed >= 0:
            outcome = MAY_MERGE if self._may_have_merged(
                survivors + [order[at + 1 + k][2] for k in openers if k < agreed]) else DONE
        if outcome is not DONE:
            self._rewind(at)
            del order[at]
        return outcome, at + agreed

    def _may_have_merged(self, firsts: list[int]) -> bool:
        """Whether two of these rows (first rows of incidents before the arrival: the
        latest of each key before it, and the openers after it that "before" walked) now
        share an incident."""
        incident_of = self.cur.walk.incident_of
        seen: set[int] = set()
        for first in firsts:
            index = incident_of[first]
            if index in seen:
                return True
            seen.add(index)
        return False

    def _exact(self, entry: tuple[int, int, int], at: int, clock: int, lowest: int
               ) -> list[Merge]:
        """Walk every arrived row after `at` without the arrival (reading the incidents
        visible before it), then with it, and compare. Another walk already at the end, whose
        reach ends before `at`, reads the incidents visible before instead."""
        order, walker = self.order, self.cur
        before = None
        for cursor in self.cursors:
            if cursor is not walker and cursor.fed == len(order) and cursor.exact_at(at):
                self.cur = cursor
                before = self._visible_before(at, clock)
                self.cur = walker
                break
        if before is None:
            self._feed(len(order), lowest)
            self.replayed += len(order) - at
            before = self._visible_before(at, clock)
        if before is None:  # an incident it reads may hold dirty rows: feed them first
            assert self.cur.low is not None
            self._rewind(self.cur.low)
            self._feed(len(order), lowest)
            before = self._visible_before(at, clock)
            assert before is not None
        self._rewind(at)
        order.insert(at, entry)
        self._feed(len(order), lowest)
        self.replayed += len(order) - at
        return self._merges(before)

    def _visible_before(self, start: int, clock: int
                        ) -> dict[int, tuple[tuple[int, int], dict[str, object] | None]] | None:
        """Incidents visible now (before the arrival) that the walk from `start` can merge:
        those whose first event is at or after `start` (with their records, as they are now),
        and the latest incident of each key before `start` (it may take later first events;
        only its first event id is needed, as a survivor). None when one of those latest
        incidents needs more than one event to be visible and may hold a dirty row (its first
        event is not past the walk's reach): its count, and so its visibility, may differ.
        Incidents first seen at or after `start` hold no dirty row and decide alike: the
        walk's reach ends before `start`."""
        r, walk, context, order = self.r, self.cur.walk, self.context, self.order
        reach = self.cur.reach
        cut = order[start][:2]
        incidents = walk.incidents
        k = len(incidents)
        while k and (r.time[incidents[k - 1].first], r.seq[incidents[k - 1].first]) >= cut:
            k -= 1
        before: dict[int, tuple[tuple[int, int], dict[str, object] | None]] = {}
        for inc in incidents[k:]:
            if context.visible(inc, r):
                before[inc.first] = ((r.time[inc.first], r.seq[inc.first]),
                                     context.record(inc, walk, clock))
        for indexes in walk.by_key.values():
            last = bisect_left(indexes, k) - 1
            if last >= 0:
                inc = incidents[indexes[last]]
                position = (r.time[inc.first], r.seq[inc.first])
                if (reach >= 0 and context.thresholded(inc, r)
                        and bisect_left(order, (*position, inc.first)) <= reach):
                    return None
                if context.visible(inc, r):
                    before[inc.first] = (position, None)
        return before

    def _merges(self, before: dict[int, tuple[tuple[int, int], dict[str, object] | None]]
                ) -> list[Merge]:
        """Visible incidents whose first events now share an incident merge into the
        earliest of them (incidents in creation order, merged ones in event-time order)."""
        groups: dict[int, list[tuple[tuple[int, int], int, dict[str, object] | None]]] = {}
        for first, (position, record) in before.items():
            groups.setdefault(self.cur.walk.incident_of[first], []).append(
                (position, first, record))
        merges: list[Merge] = []
        for index in sorted(groups):
            bridged = sorted(groups[index], key=lambda item: item[0])
            if len(bridged) < 2:
                continue
            survivor = self.context.event_ids[self.r.rows[bridged[0][1]]].as_py()
            for _, _, record in bridged[1:]:
                assert record is not None  # only the earliest can come from before `start`
                merges.append(Merge(record, str(survivor)))
        return merges


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


@dataclass
class _Job:
    """One component's replay with everything it reads, its rows numbered locally in arrival
    order: self-contained, so that the replay helper process (`helper.py`) can take it."""

    columns: dict[str, np.ndarray]  # `_columns` at the component's rows
    late: np.ndarray  # arrived after a row of its component ranked above it, in this run
    opens: np.ndarray  # opens a restartable incident of its key in the end
    earlier: np.ndarray  # arrived in an earlier run: loaded as state, never looked at again
    clock: np.ndarray  # the tenant clock before its arrival (`_clocks_before`)
    event_ids: pa.Array
    version: np.ndarray  # settings version of each row
    tenant: str
    keys: dict[int, str]  # agg_key of each key code of the component
    threshold: np.ndarray  # R13 N of each settings version
    labels: list[str]  # of each settings version
    seeds: dict[str, np.ndarray] | None = None  # `_columns` at the seed rows of its key

    @property
    def size(self) -> int:
        return len(self.late)

    def __getstate__(self) -> dict[str, object]:
        """Pickled (for the helper) with its own rows only: numpy slices copy just their
        rows, an Arrow slice would carry every event id of the group."""
        return {**self.__dict__, "event_ids": pa.concat_arrays([self.event_ids])}


def find_merges(adm: Admission, timeline: SettingsTimeline, et: EventTime, as_of: int | None,
                base_clock: np.ndarray, quiet_below: int | None = None,
                ) -> tuple[list[Merge], int]:
    """Merge records of every key with late arrivals, and how many rows were replayed.
    Rows with `ingest_seq < quiet_below` arrived in an earlier run: they are loaded as the
    state before this run's arrivals, without looking for merges again. Components are
    replayed independently, a share of them in the helper process when there are many rows
    (`helper.replay_all`)."""
    from warehouse.correlation.helper import replay_all

    rows = np.flatnonzero((adm.fate == ADMITTED) & ~adm.stale_resolve & ~adm.context
                          & ~adm.seed)
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
    columns = _columns(adm, timeline)
    event_ids = adm.table.column("event_id").combine_chunks()
    threshold = np.array([v.settings.threshold for v in timeline.versions])
    labels = [v.label for v in timeline.versions]
    # rows that open a restartable incident of their key in the end: restart points
    opens = np.zeros(len(adm.seq), bool)
    opens[et.incidents.first_row[et.incidents.restartable]] = True
    # the candidates' rows, a component after another, each in arrival order
    by_component = np.argsort(component, kind="stable")
    picked = by_component[np.isin(component[by_component], candidates)]
    index = rows[picked]
    bounds = np.flatnonzero(np.diff(component[picked])) + 1
    picked_columns = {name: values[index] for name, values in columns.items()}
    picked_late, picked_opens, picked_clock = late[picked], opens[index], clock[index]
    picked_ids = event_ids.take(pa.array(index))
    picked_version, picked_tenant = adm.version[index], adm.tenant[index]
    picked_earlier = (adm.seq[index] < quiet_below if quiet_below is not None
                      else np.zeros(len(index), bool))
    picked_keys = np.unique(picked_columns["key"])
    key_names = dict(zip(picked_keys.tolist(),
                         adm.keys.take(pa.array(picked_keys)).to_pylist(), strict=True))
    seed_rows = np.flatnonzero(adm.seed)
    jobs = []
    for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(index)], strict=True):
        keys = np.unique(picked_columns["key"][lo:hi]).tolist()
        seeds = seed_rows[np.isin(adm.key[seed_rows], keys)]
        jobs.append(_Job(
            columns={name: values[lo:hi] for name, values in picked_columns.items()},
            late=picked_late[lo:hi], opens=picked_opens[lo:hi], earlier=picked_earlier[lo:hi],
            clock=picked_clock[lo:hi], event_ids=picked_ids.slice(lo, hi - lo),
            version=picked_version[lo:hi], tenant=adm.tenants[picked_tenant[lo]],
            keys={key: key_names[key] for key in keys},
            threshold=threshold, labels=labels,
            seeds={name: values[seeds] for name, values in columns.items()} if len(seeds)
            else None))
    merges: list[Merge] = []
    replayed = 0
    for found, rows_replayed in replay_all(jobs):
        merges.extend(found)
        replayed += rows_replayed
    return merges, replayed


def replay(job: _Job) -> tuple[list[Merge], int]:
    """One component's merge records (in arrival order) and how many rows were replayed."""
    seqs, times = job.columns["seq"], job.columns["time"]
    earlier = job.earlier
    # earlier rows first, in event-time order (never late, never a merge), then arrivals
    sequence = np.concatenate([np.flatnonzero(earlier)[np.lexsort((seqs[earlier],
                                                                   times[earlier]))],
                               np.flatnonzero(~earlier)])
    # nothing after the last late arrival can merge: those rows are not walked
    arrived_late = job.late[sequence]
    sequence = sequence[:int(np.flatnonzero(arrived_late)[-1]) + 1]
    by_rank = np.lexsort((seqs, times))
    rank = np.empty(job.size, np.int64)
    rank[by_rank] = np.arange(job.size)
    # the lowest (time, seq) rank of the arrivals after each one: rows above it are the only
    # ones a later arrival can rewind over, so the only ones whose changes are logged
    horizon = np.append(np.minimum.accumulate(rank[sequence][::-1])[::-1][1:], job.size)
    starts = None
    keys = job.columns["key"]
    if (keys == keys[0]).all():  # one key: its restart points in the end, by rank
        starts = np.sort(rank[job.opens]).tolist()
    # seed rows, if any, after the component's rows (`Replay.seeds`)
    seeds = job.seeds or {}
    n_seeds = len(seeds.get("seq", ()))
    rows = Rows(rows=list(range(job.size + n_seeds)),
                **{name: values.tolist() + (seeds[name].tolist() if n_seeds else [])
                   for name, values in job.columns.items()})
    component = Replay(rows, _Context(job), by_rank.tolist(), starts,
                       list(range(job.size, job.size + n_seeds)))
    clocks = np.where(earlier, NONE, job.clock)[sequence]
    # a row that is not late comes after every row arrived before it in (event time,
    # ingest_seq) order: it only joins the arrived rows (`Replay.arrive`), so runs of them
    # are appended at once and only the late ones are taken one by one
    entries = list(zip(times[sequence].tolist(), seqs[sequence].tolist(), sequence.tolist(),
                       strict=True))
    merges: list[Merge] = []
    done = 0
    for k in np.flatnonzero(arrived_late[:len(sequence)]).tolist():
        component.order.extend(entries[done:k])
        local = entries[k][2]
        found = component.arrive(local, int(clocks[k]), int(horizon[k]))
        for merge in found:
            merge.arrival_seq = int(seqs[local])
        merges.extend(found)
        done = k + 1
    return merges, component.replayed


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
