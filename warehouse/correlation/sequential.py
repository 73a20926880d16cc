"""The event-time pass as a plain sequential walk, for the few places that need it.

The vectorized pass (`sessions.py`) handles every stretch of a key where no incident reaches
its cap M. A stretch that does, and the arrival replay that finds R10 merges, walk here in
(event time, ingest_seq) order, exactly as SEMANTICS.md reads: R3 occurrences, R5 joins, R6
caps, R7 resolves and reopens, R8 staleness. It starts from an empty state, so it is only ever
started where nothing is open: at the start of a key or of a stretch.

Open-member checks use a lazy max-heap per incident of (end of openness, occurrence), so a
storm of thousands of open alerts costs a logarithm per event, not a scan.

For the merge replay a walk can keep an undo log (`journal=True`): each change to its state is
logged as a function and arguments that undo it, so `undo_to(mark)` rewinds the walk to any
earlier point exactly (lazily dropped heap entries are pushed back; an undone push marks its
entry cancelled, and cancelled entries are dropped like stale ones). A caller may switch the
log off (`log = None`) while feeding rows it will never rewind over.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from warehouse.correlation.events import FIRING, POINT, RESOLVED
from warehouse.correlation.rules import CAP, MISSING_ASSET, NEW, R5A, R5B, REOPEN, RESOLVE

NONE = np.iinfo(np.int64).min


@dataclass(eq=False)
class Occ:
    """R3: one stateful occurrence; `end` is its last event time plus T_stale."""

    key: int
    missing: bool
    end: int
    resolved_at: int | None = None
    superseded: bool = False
    incidents: list[int] = field(default_factory=list)
    fires: list[int] = field(default_factory=list)  # firing times, ascending


@dataclass(eq=False)
class Inc:
    key: int
    first: int  # row of the first event
    first_time: int
    missing: bool
    linked_to: int  # incident index or -1
    last: int  # last_activity
    rows: list[int] = field(default_factory=list)
    occs: list[Occ] = field(default_factory=list)
    counted: int = 0  # R13: firing and point members
    points: int = 0
    flaps: int = 0
    resolved: int = 0  # member occurrences resolved so far
    heap: list[tuple[int, int, Occ]] = field(default_factory=list)

    def severity(self, r: Rows) -> int:
        """The highest member severity; resolves do not count."""
        return max((r.severity[i] for i in self.rows if r.status[i] != RESOLVED), default=-1)

    def last_resolve(self) -> int:
        return max((o.resolved_at for o in self.occs if o.resolved_at is not None),
                   default=NONE)

    def open_until(self) -> int:
        """The latest end of a member still firing: open while the clock is not past it."""
        return max((o.end for o in self.occs if o.resolved_at is None and not o.superseded),
                   default=NONE)


@dataclass
class Rows:
    """Column lists of the rows one walk reads, indexed locally 0..n-1; `rows` maps a local
    index back to the caller's row number."""

    rows: list[int]
    time: list[int]
    seq: list[int]
    status: list[int]
    alert: list[int]
    key: list[int]  # the event's own key code
    key_missing: list[bool]
    window: list[int]
    cap: list[int]
    stale_after: list[int]
    severity: list[int]

    @classmethod
    def take(cls, index: np.ndarray, **columns: np.ndarray) -> Rows:
        return cls(rows=index.tolist(),
                   **{name: values[index].tolist() for name, values in columns.items()})


def _restore(table: dict, key: object) -> tuple:
    """The undo step of `table[key] = ...`: put back the old value, or remove the key."""
    if key in table:
        return (dict.__setitem__, table, key, table[key])
    return (dict.pop, table, key)


class SequentialPass:
    """Feed rows in (event time, ingest_seq) order; read `incidents` and the per-row results.

    With `journal=True` every change the walk makes to its state is logged as an undo step
    (a function and its arguments) in `log`, so `undo_to(mark)` brings the walk back exactly to
    the state it had when the log was `mark` long: after feeding the same rows, in the same
    order, as then. The merge replay uses it to rewind a walk to just before a late arrival.
    """

    def __init__(self, rows: Rows, journal: bool = False) -> None:
        self.r = rows
        self.incidents: list[Inc] = []
        self.occs: list[Occ] = []
        self.latest: dict[int, int] = {}  # key -> incident index
        self.current: dict[int, Occ] = {}  # alert -> latest occurrence
        self.history: dict[int, list[Occ]] = {}  # alert -> its occurrences, in time order
        self.where: dict[int, int] = {}  # id(occ) -> incident it joined last
        self.incident_of: dict[int, int] = {}  # row -> incident index
        self.rule: dict[int, int] = {}
        self.gap: dict[int, int | None] = {}
        self.flap: set[int] = set()
        self.orphans: set[int] = set()
        self.log: list[tuple] | None = [] if journal else None
        self.by_key: dict[int, list[int]] = {}  # key -> its incident indexes
        self.cancelled: set[int] = set()  # heap entries (by tick) whose push was undone
        self._tick = 0

    def undo_to(self, mark: int) -> None:
        """Undo every change logged after the first `mark` steps (journal only)."""
        log = self.log
        assert log is not None
        while len(log) > mark:
            step = log.pop()
            step[0](*step[1:])

    def _live(self, occ: Occ, t: int) -> bool:
        return occ.resolved_at is None and not occ.superseded and t <= occ.end

    def _open_member(self, inc: Inc, t: int) -> bool:
        """R5(a): a member occurrence of `inc` still firing and not stale at t. Entries of
        the lazy heap that no longer describe a live member are dropped on the way."""
        heap, cancelled, log = inc.heap, self.cancelled, self.log
        while heap:
            end, tick, occ = heap[0]
            if (occ.resolved_at is None and not occ.superseded and -end == occ.end
                    and tick not in cancelled):
                return t <= -end  # the latest end of a live member
            entry = heapq.heappop(heap)
            if log is not None:
                log.append((heapq.heappush, heap, entry))
        return False

    def feed(self, i: int) -> None:
        if self.r.status[i] == RESOLVED:
            self._resolve(i)
        else:
            self._join(i)

    def _push(self, heap: list[tuple[int, int, Occ]], occ: Occ) -> None:
        self._tick += 1
        heapq.heappush(heap, (-occ.end, self._tick, occ))
        if self.log is not None:  # an undone push leaves a cancelled entry, dropped lazily
            self.log.append((set.add, self.cancelled, self._tick))

    def _resolve(self, i: int) -> None:
        r, log = self.r, self.log
        t = r.time[i]
        occ = self.current.get(r.alert[i])
        if occ is None or not self._live(occ, t):  # R12, in event time
            self.orphans.add(i)
            if log is not None:
                log.append((set.discard, self.orphans, i))
            return
        index = self.where[id(occ)]
        inc = self.incidents[index]
        if log is not None:
            log.append((setattr, occ, "resolved_at", occ.resolved_at))
            log.extend((setattr, self.incidents[k], "resolved", self.incidents[k].resolved)
                       for k in occ.incidents)
            log += [(setattr, inc, "last", inc.last), (list.pop, inc.rows),
                    (dict.pop, self.gap, i), (dict.pop, self.incident_of, i),
                    (dict.pop, self.rule, i)]
        occ.resolved_at = t
        for k in occ.incidents:
            self.incidents[k].resolved += 1
        self.gap[i] = t - inc.last
        inc.last = max(inc.last, t)
        inc.rows.append(i)
        self.incident_of[i] = index
        self.rule[i] = RESOLVE

    def _join(self, i: int) -> None:
        r, log = self.r, self.log
        t, status = r.time[i], r.status[i]
        key, missing = r.key[i], r.key_missing[i]
        occ = self.current.get(r.alert[i]) if status == FIRING else None
        if occ is not None and self._live(occ, t):
            key, missing = occ.key, occ.missing  # a re-send stays with its occurrence
        index = self.latest.get(key)
        cur = self.incidents[index] if index is not None else None
        gap = t - cur.last if cur is not None else None
        rule = self._decide(i, cur, missing)
        if rule in (NEW, MISSING_ASSET, CAP):
            linked = index if rule == CAP and index is not None else -1
            cur = Inc(key, i, t, missing, linked, t)
            index = len(self.incidents)
            indexes = self.by_key.setdefault(key, [])
            if log is not None:
                log += [(list.pop, indexes), (list.pop, self.incidents),
                        _restore(self.latest, key)]
            indexes.append(index)
            self.incidents.append(cur)
            self.latest[key] = index
        assert cur is not None and index is not None
        if log is not None:
            log += [(list.pop, cur.rows), (setattr, cur, "counted", cur.counted),
                    (setattr, cur, "last", cur.last), (dict.pop, self.incident_of, i),
                    (dict.pop, self.rule, i), (dict.pop, self.gap, i)]
            if rule == REOPEN:
                log += [(setattr, cur, "flaps", cur.flaps), (set.discard, self.flap, i)]
            if status == POINT:
                log.append((setattr, cur, "points", cur.points))
        if rule == REOPEN:
            cur.flaps += 1
            self.flap.add(i)
        cur.rows.append(i)
        cur.counted += 1
        cur.last = max(cur.last, t)
        self.incident_of[i] = index
        self.rule[i] = rule
        self.gap[i] = gap
        if status == POINT:
            cur.points += 1
        else:
            self._fire(i, index, key, missing)

    def _decide(self, i: int, cur: Inc | None, missing: bool) -> int:
        r = self.r
        t = r.time[i]
        if cur is None:
            return MISSING_ASSET if missing else NEW
        open_member = self._open_member(cur, t)
        if not open_member and t > cur.last + r.window[i]:  # R5(b), inclusive
            return NEW
        if t > cur.first_time + r.cap[i]:  # R6, inclusive
            return CAP
        if open_member:
            return R5A
        if r.status[i] == FIRING and cur.occs and cur.resolved == len(cur.occs):
            return REOPEN
        return R5B

    def _fire(self, i: int, index: int, key: int, missing: bool) -> None:
        r, log = self.r, self.log
        t = r.time[i]
        alert = r.alert[i]
        occ = self.current.get(alert)
        if occ is None or not self._live(occ, t):  # R3: a new occurrence
            if occ is not None and occ.resolved_at is None:
                if log is not None:
                    log.append((setattr, occ, "superseded", False))
                occ.superseded = True  # R8: closed stale
            occ = Occ(key, missing, t + r.stale_after[i])
            if log is not None:
                occurrences = self.history.setdefault(alert, [])
                log += [_restore(self.current, alert), (list.pop, occurrences),
                        (list.pop, self.occs)]
            self.current[alert] = occ
            self.history.setdefault(alert, []).append(occ)
            self.occs.append(occ)
        inc = self.incidents[index]
        if log is not None:
            log += [(setattr, occ, "end", occ.end), (list.pop, occ.fires),
                    _restore(self.where, id(occ))]
            if index not in occ.incidents:
                log += [(list.pop, occ.incidents), (list.pop, inc.occs)]
        occ.end = t + r.stale_after[i]
        occ.fires.append(t)
        self.where[id(occ)] = index
        if index not in occ.incidents:
            occ.incidents.append(index)
            inc.occs.append(occ)
        self._push(inc.heap, occ)
