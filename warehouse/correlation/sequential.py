"""The event-time pass as a plain sequential walk, for the few places that need it.

The vectorized pass (`sessions.py`) handles every stretch of a key where no incident reaches
its cap M. A stretch that does, and the arrival replay that finds R10 merges, walk here in
(event time, ingest_seq) order, exactly as SEMANTICS.md reads: R3 occurrences, R5 joins, R6
caps, R7 resolves and reopens, R8 staleness. It starts from an empty state, so it is only ever
started where nothing is open: at the start of a key or of a stretch, or at a quiet incident.

An incident is quiet when it opens while every earlier occurrence of its key is resolved,
superseded (closed stale by its alert's next occurrence) or past its end (`_quiet`). Nothing
after it then reaches an earlier incident of the key: rows join the key's latest incident, and
a resolve or re-send only reaches its own occurrence's incidents, none of which takes events
any more. So a walk started empty there decides every later row as the whole walk does; only
the quiet incident's first row differs (NEW instead of CAP, no gap) and the incident has no
`linked_to`. A key that is never idle (each episode within W of the last, incidents ending at
the cap) is usually quiet at many of its caps: incremental runs restart there instead of at
the key's beginning (`state.py`), and the merge replay restarts its walk there (`merges.py`).

Open-member checks use a lazy max-heap per incident of (end of openness, occurrence), so a
storm of thousands of open alerts costs a logarithm per event, not a scan.

A walk can also start at an incident that is not quiet, seeded with the occurrences of its
key still open there (`seed`, `state.py`): each one's latest firing, as a re-send of an
occurrence that joined only earlier incidents. Such a walk decides every later row as the whole
walk does. What it cannot do is change those earlier incidents: the caller extends their
openness to each seeded occurrence's end at the end of the walk (re-sends only move it later),
and a seeded occurrence that resolves, or whose end a re-send moves earlier (a shorter
T_stale), raises `SeedReachesBack`: the caller restarts earlier.

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


@dataclass(eq=False, slots=True)
class Occ:
    """R3: one stateful occurrence; `end` is its last event time plus T_stale."""

    key: int
    missing: bool
    end: int
    first: int  # row of its first firing
    where: int = -1  # the incident it joined last
    resolved_at: int | None = None
    superseded: bool = False
    incidents: list[int] = field(default_factory=list)  # ascending (joined in time order)
    seeded: bool = False  # open where the walk started (`SequentialPass.seed`)


@dataclass(eq=False, slots=True)
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
    quiet: bool = False  # opened with every earlier occurrence of its key closed (restart point)

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


def _restore(table: dict, key: object) -> tuple:
    """The undo step of `table[key] = ...`: put back the old value, or remove the key."""
    if key in table:
        return (dict.__setitem__, table, key, table[key])
    return (dict.pop, table, key)


class SeedReachesBack(Exception):
    """A walk started at an incident that is not quiet resolved one of its seeded
    occurrences, or moved its end earlier: the earlier incidents it joined change too."""


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
        self.latest: dict[int, int] = {}  # key -> incident index
        self.current: dict[int, Occ] = {}  # alert -> latest occurrence
        self.incident_of: dict[int, int] = {}  # row -> incident index (orphans: none)
        self.rule: dict[int, int] = {}
        self.gap: dict[int, int | None] = {}
        self.results = (self.incident_of, self.rule, self.gap)  # per row (undo steps)
        self.log: list[tuple] | None = [] if journal else None
        self.by_key: dict[int, list[int]] = {}  # key -> its incident indexes
        # key -> its occurrences neither resolved nor superseded (`_quiet`)
        self.unresolved: dict[int, set[Occ]] = {}
        self.cancelled: set[int] = set()  # heap entries (by tick) whose push was undone
        self._tick = 0

    def seed_end(self, i: int) -> int:
        """The end of the occurrence seeded at row i, NONE once superseded (closed stale:
        the earlier incidents' status does not change, `_quiet`)."""
        occ = self.current[self.r.alert[i]]
        if occ.first != i:  # superseded by a later occurrence of its alert
            return NONE
        return NONE if occ.superseded else occ.end

    def seed(self, i: int) -> None:
        """Before any row is fed: row i (the latest firing of an occurrence of its key that
        is still unresolved where the walk starts) as that occurrence, open until row i's
        time plus its T_stale, having joined only incidents before the walk (`where` -1).
        Not logged: rewinding never goes before it."""
        r = self.r
        occ = Occ(r.key[i], False, r.time[i] + r.stale_after[i], i, seeded=True)
        self.current[r.alert[i]] = occ
        self.unresolved.setdefault(occ.key, set()).add(occ)

    def undo_to(self, mark: int) -> None:
        """Undo every change logged after the first `mark` steps (journal only)."""
        log = self.log
        assert log is not None
        while len(log) > mark:
            step = log.pop()
            step[0](*step[1:])

    def _open_until(self, inc: Inc) -> int:
        """The latest end of a live member of `inc` (R5(a): open at t while t is not past
        it), NONE without one. Entries of the lazy heap that no longer describe a live member
        are dropped on the way."""
        heap, cancelled, log = inc.heap, self.cancelled, self.log
        while heap:
            end, tick, occ = heap[0]
            if (occ.resolved_at is None and not occ.superseded and -end == occ.end
                    and tick not in cancelled):
                return -end
            entry = heapq.heappop(heap)
            if log is not None:
                log.append((heapq.heappush, heap, entry))
        return NONE

    def _quiet(self, key: int, t: int) -> bool:
        """Whether an incident of `key` opening at t is quiet: every earlier occurrence of
        the key resolved, superseded, or past its end (stale by t). Nothing after it can then
        reach an earlier incident of the key's: later rows join the latest incident, and an
        occurrence past its end takes no more events (a firing starts a new occurrence, a
        resolve is an orphan). Superseding one only drops an end already before the clock
        from its incidents' `open_until`, which changes no status."""
        return all(occ.end < t for occ in self.unresolved.get(key, ()))

    def touches(self, i: int) -> tuple[int, ...]:
        """What feeding row i can change that later decisions read, as `describe` names it:
        the key it joins (its own, or its open occurrence's) and its alert (`~alert`)."""
        r = self.r
        key = r.key[i]
        if r.status[i] == POINT:
            return (key,)
        occ = self.current.get(r.alert[i])
        if occ is None or occ.key == key:
            return (key, ~r.alert[i])
        return (key, occ.key, ~r.alert[i])

    def describe(self, thing: int) -> tuple | None:
        """What later rows read of a key (thing >= 0: its latest incident) or an alert
        (thing < 0, `~alert`: its current occurrence), and what they can change there.

        Two walks that describe every key and alert alike decide every later row alike.
        Incidents are named by their first rows, so walks over different rows compare; an
        occurrence is not named: a resolved one is never read or changed again (it reads as
        none), and an open one is read only for its key, its end and the incidents it
        joined. An incident's members count only as "any, and how many unresolved" (R7: a
        reopen needs all resolved; later rows add and resolve members alike in both walks)."""
        if thing >= 0:
            index = self.latest.get(thing)
            if index is None:
                return None
            inc = self.incidents[index]
            return (inc.first, inc.last, self._open_until(inc), bool(inc.occs),
                    len(inc.occs) - inc.resolved)
        occ = self.current.get(~thing)
        if occ is None or occ.resolved_at is not None or occ.superseded:
            return ()  # the next firing starts an occurrence; a resolve is an orphan
        incidents = self.incidents
        where = incidents[occ.where].first if occ.where >= 0 else -1  # -1: seeded, not joined
        return (occ.key, occ.missing, occ.end, where,
                tuple(incidents[k].first for k in occ.incidents))

    def feed(self, i: int) -> None:
        if self.r.status[i] == RESOLVED:
            self._resolve(i)
        else:
            self._join(i)

    def _resolve(self, i: int) -> None:
        r, log = self.r, self.log
        t = r.time[i]
        occ = self.current.get(r.alert[i])
        if occ is None or occ.resolved_at is not None or occ.superseded or t > occ.end:
            return  # R12, in event time: an orphan (no incident, no rule)
        if occ.seeded:
            raise SeedReachesBack(f"row {r.rows[i]} resolves an occurrence seeded at row "
                                  f"{r.rows[occ.first]}")
        incidents = self.incidents
        index = occ.where
        inc = incidents[index]
        last = inc.last
        if log is not None:
            log.append((_unresolve, self.results, incidents, self.unresolved, i, occ, inc,
                        last))
        occ.resolved_at = t
        self.unresolved[occ.key].discard(occ)
        for k in occ.incidents:
            incidents[k].resolved += 1
        self.gap[i] = t - last
        if t > last:
            inc.last = t
        inc.rows.append(i)
        self.incident_of[i] = index
        self.rule[i] = RESOLVE

    def _join(self, i: int) -> None:
        r, log = self.r, self.log
        t, status = r.time[i], r.status[i]
        key, missing = r.key[i], r.key_missing[i]
        occ = self.current.get(r.alert[i]) if status == FIRING else None
        live = False
        if occ is not None and occ.resolved_at is None and not occ.superseded and t <= occ.end:
            live = True
            key, missing = occ.key, occ.missing  # a re-send stays with its occurrence
        incidents = self.incidents
        index = self.latest.get(key)
        if index is None:
            cur, gap = None, None
            rule = MISSING_ASSET if missing else NEW
        else:  # R5(b) fails only with nothing open; then R6; then R5(a), R7 reopen, R5(b)
            cur = incidents[index]
            gap = t - cur.last
            open_member = t <= self._open_until(cur)
            if not open_member and gap > r.window[i]:  # R5(b), inclusive
                rule = NEW
            elif t > cur.first_time + r.cap[i]:  # R6, inclusive
                rule = CAP
            elif open_member:
                rule = R5A
            elif status == FIRING and cur.occs and cur.resolved == len(cur.occs):
                rule = REOPEN
            else:
                rule = R5B
        if rule == NEW or rule == CAP or rule == MISSING_ASSET:
            linked = index if rule == CAP and index is not None else -1
            cur = Inc(key, i, t, missing, linked, t, quiet=self._quiet(key, t))
            index = len(incidents)
            indexes = self.by_key.setdefault(key, [])
            if log is not None:
                log += [(list.pop, indexes), (list.pop, incidents),
                        _restore(self.latest, key)]
            indexes.append(index)
            incidents.append(cur)
            self.latest[key] = index
        assert cur is not None and index is not None
        if log is not None:
            log.append((_unjoin, self.results, i, cur, cur.counted, cur.last, cur.flaps,
                        cur.points))
        if rule == REOPEN:
            cur.flaps += 1
        cur.rows.append(i)
        cur.counted += 1
        if t > cur.last:
            cur.last = t
        self.incident_of[i] = index
        self.rule[i] = rule
        self.gap[i] = gap
        if status == POINT:
            cur.points += 1
        else:
            self._fire(i, t, index, cur, key, missing, occ if live else None, occ)

    def _fire(self, i: int, t: int, index: int, inc: Inc, key: int, missing: bool,
              occ: Occ | None, previous: Occ | None) -> None:
        """Row i, a firing, joined incident `index`: re-send of the live occurrence `occ`,
        or (None) a new one, closing `previous` stale (R8) if it was left open (R3)."""
        r, log = self.r, self.log
        end = t + r.stale_after[i]
        if occ is None:  # R3: a new occurrence
            alert = r.alert[i]
            unresolved = self.unresolved
            if previous is not None and previous.resolved_at is None:
                if log is not None:
                    log.append((_unsupersede, unresolved, previous))
                previous.superseded = True  # R8: closed stale
                unresolved[previous.key].discard(previous)
            occ = Occ(key, missing, end, i)
            if log is not None:
                log += [_restore(self.current, alert), (_uncount, unresolved, occ)]
            self.current[alert] = occ
            unresolved.setdefault(key, set()).add(occ)
        elif occ.seeded and end < occ.end:
            raise SeedReachesBack(f"row {r.rows[i]} moves the end of an occurrence seeded at "
                                  f"row {r.rows[occ.first]} earlier")
        joined = occ.incidents
        new_incident = not joined or joined[-1] != index  # incidents join in index order
        self._tick += 1
        if log is not None:
            log.append((_unfire, self.cancelled, occ, inc, occ.end, occ.where, new_incident,
                        self._tick))
        occ.end = end
        occ.where = index
        if new_incident:
            joined.append(index)
            inc.occs.append(occ)
        heapq.heappush(inc.heap, (-end, self._tick, occ))


# Undo steps of one row's changes (each logged as one step: most rows are logged). They hold
# the walk's tables, never the walk: a step holding the walk would make walk -> log -> step ->
# walk a reference cycle, and every finished walk would wait for the cyclic collector.


def _unjoin(results: tuple[dict, dict, dict], i: int, inc: Inc, counted: int, last: int,
            flaps: int, points: int) -> None:
    inc.rows.pop()
    inc.counted, inc.last, inc.flaps, inc.points = counted, last, flaps, points
    for table in results:
        del table[i]


def _unfire(cancelled: set[int], occ: Occ, inc: Inc, end: int, where: int,
            new_incident: bool, tick: int) -> None:
    occ.end, occ.where = end, where
    if new_incident:
        occ.incidents.pop()
        inc.occs.pop()
    cancelled.add(tick)  # an undone push leaves a cancelled entry, dropped lazily


def _unresolve(results: tuple[dict, dict, dict], incidents: list[Inc],
               unresolved: dict[int, set[Occ]], i: int, occ: Occ, inc: Inc, last: int) -> None:
    occ.resolved_at = None
    unresolved[occ.key].add(occ)
    for k in occ.incidents:
        incidents[k].resolved -= 1
    inc.last = last
    inc.rows.pop()
    for table in results:
        del table[i]


def _unsupersede(unresolved: dict[int, set[Occ]], occ: Occ) -> None:
    occ.superseded = False
    unresolved[occ.key].add(occ)


def _uncount(unresolved: dict[int, set[Occ]], occ: Occ) -> None:
    unresolved[occ.key].discard(occ)
