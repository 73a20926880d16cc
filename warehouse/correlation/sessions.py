"""The event-time pass (R3-R8, R13, R14), vectorized: occurrences per alert, then incidents
per aggregation key, on sorted arrays.

1. Occurrences (R3, R8, R12). Per alert in (event time, ingest_seq) order, a firing starts a
   new occurrence when it is the alert's first event, follows a resolve, or comes more than
   T_stale after the previous event; a resolve is effective when the previous event is a
   firing no more than T_stale before it, else it is an orphan. Each decision looks at one
   neighbour only, so it is a shifted comparison, not a loop. An occurrence belongs to the key
   of its first firing, and is open from that firing until its resolve, or until its last
   firing plus T_stale.
2. Incidents (R5, R7, R13). Per key in (event time, ingest_seq) order, an event opens a new
   incident when no occurrence of the key is open at it and it comes more than W after the
   previous event of the key; openness is a running maximum of the occurrences' ends. This
   is exact while no incident reaches its cap: every occurrence open at an event then belongs
   to the key's current incident. A stretch (between two openings) in which some event comes
   more than M after the stretch's first event is walked by `sequential.SequentialPass`.

Incremental runs (`state.py`) may start a key at an incident that is not quiet, with seed rows
(`Admission.seed`): the latest firing of each of its occurrences still unresolved there. A
seed row takes part in its alert's occurrences (the key's rows after it re-send it) and in no
incident; a seeded key is walked whole, its walk seeded with them (`SequentialPass.seed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from warehouse.correlation.admission import ADMITTED, Admission
from warehouse.correlation.events import FIRING, POINT, RESOLVED
from warehouse.correlation.rules import (
    MISSING_ASSET,
    NEW,
    R5A,
    R5B,
    REOPEN,
    RESOLVE,
)
from warehouse.correlation.sequential import Rows, SequentialPass
from warehouse.correlation.timeline import SettingsTimeline

NONE = np.iinfo(np.int64).min
OPEN, RESOLVED_STATUS, STALE = 0, 1, 2
STATUSES = ("open", "resolved", "stale")


@dataclass
class Incidents:
    """One entry per incident, in the order fast stretches then walked stretches."""

    key: np.ndarray
    first_row: np.ndarray
    first_time: np.ndarray
    last: np.ndarray
    events: np.ndarray
    counted: np.ndarray
    alerts: np.ndarray
    flaps: np.ndarray
    severity: np.ndarray
    linked_to: np.ndarray  # incident index or -1
    missing: np.ndarray
    # lifecycle, enough to tell the status at any later clock (`status_of`)
    occurrences: np.ndarray  # member occurrences (R3)
    resolved: np.ndarray  # of which resolved
    last_resolve: np.ndarray  # NONE when none
    open_until: np.ndarray  # latest end of an unresolved member (R8), NONE when none
    window: np.ndarray  # W of the first event (points-only incidents)
    # a walk started empty at its first event decides everything after it alike (but that
    # event's rule and gap, and the incident's link): nothing of its key open there (a
    # stretch start), or every earlier occurrence of its key closed (a quiet incident,
    # usually a cap: `sequential`)
    restartable: np.ndarray


@dataclass
class EventTime:
    """Per-row results (arrays in admission order) and the incidents."""

    incident: np.ndarray  # incident index or -1
    rule: np.ndarray  # rules code or -1
    gap: np.ndarray  # µs, NONE when the key had no incident before
    flap: np.ndarray
    orphan: np.ndarray
    key: np.ndarray  # the key the row was correlated under (its occurrence's for re-sends)
    window: np.ndarray
    incidents: Incidents
    first_firing: np.ndarray  # rows that start an occurrence (R3 alerts)
    slow_rows: int  # rows walked sequentially (the benchmark reports it)
    walked: np.ndarray  # per row: in a stretch walked sequentially (an incident hit its cap)
    # per row: at a seed row, the end of its occurrence after the walk (NONE once superseded:
    # `SequentialPass.seed_end`); NONE elsewhere
    seed_end: np.ndarray


def _previous(values: np.ndarray, same: np.ndarray, fill: int = NONE) -> np.ndarray:
    out = np.empty(len(values), dtype=np.int64)
    if len(values):
        out[0] = fill
        out[1:] = values[:-1]
    return np.where(same, out, fill)


def _exclusive(x: np.ndarray, start: np.ndarray, stretch: np.ndarray) -> np.ndarray:
    """How many of x are set before each row within its stretch."""
    c = np.cumsum(x)
    before = c - x
    return before - before[start][stretch]


def stale_after_of(adm: Admission, timeline: SettingsTimeline) -> np.ndarray:
    """T_stale of each row: its source's override in its version, else `stale_after`."""
    n_sources = max(len(adm.sources), 1)
    pairs, inverse = np.unique(adm.version * n_sources + adm.source, return_inverse=True)
    values = np.array([
        int(timeline.versions[p // n_sources].settings
            .stale_after_for(adm.sources[p % n_sources]).total_seconds() * 1_000_000)
        for p in pairs.tolist()
    ], dtype=np.int64)
    return values[inverse.reshape(-1)]


def status_of(occurrences: np.ndarray, resolved: np.ndarray, last_resolve: np.ndarray,
              open_until: np.ndarray, last: np.ndarray, window: np.ndarray,
              clock: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R7/R8 at each incident's tenant clock: open, resolved (with resolved_at) or stale.
    An incident of points only is open while its window can still take an event."""
    points_only = occurrences == 0
    status = np.where(clock <= open_until, OPEN, np.where(
        points_only, np.where(clock <= last + window, OPEN, RESOLVED_STATUS),
        np.where(resolved == occurrences, RESOLVED_STATUS, STALE)))
    resolved_at = np.where(status != RESOLVED_STATUS, NONE,
                           np.where(points_only, last, last_resolve))
    return status.astype(np.int8), resolved_at


def correlate_event_time(adm: Admission, timeline: SettingsTimeline,
                         as_of: np.ndarray) -> EventTime:
    """Occurrences and incidents of every tenant; `as_of[tenant]` is its clock (R8)."""
    n = len(adm.seq)
    time = adm.time
    stale_after = stale_after_of(adm, timeline)
    window = timeline.column(adm.version, "window")
    cap = timeline.column(adm.version, "cap")
    live = (adm.fate == ADMITTED) & ~adm.stale_resolve & ~adm.context
    seed = adm.seed

    # 1. occurrences, per alert in (time, seq) order (rows are in seq order; lexsort is stable)
    stateful = np.flatnonzero(live & (adm.status != POINT))
    order = stateful[np.lexsort((time[stateful], adm.alert[stateful]))]
    t, st = time[order], adm.status[order]
    same = np.zeros(len(order), bool)
    same[1:] = adm.alert[order][1:] == adm.alert[order][:-1]
    prev_status = _previous(st.astype(np.int64), same, -1)
    within = same & (t <= _previous(t, same) + _previous(stale_after[order], same, 0))
    starts = (st == FIRING) & ~(within & (prev_status == FIRING))
    effective = (st == RESOLVED) & within & (prev_status == FIRING)
    occ_sorted = np.cumsum(starts) - 1  # a resolve's is that of the firing before it
    orphan = np.zeros(n, bool)
    orphan[order[(st == RESOLVED) & ~effective]] = True
    keep = (st == FIRING) | effective
    occ = np.full(n, -1, np.int64)
    occ[order[keep]] = occ_sorted[keep]
    first_firing = order[starts]
    key = adm.key.copy()  # an occurrence's events take the key of its first firing (R4)
    key_missing = adm.key_missing.copy()
    key[order[keep]] = adm.key[first_firing][occ_sorted[keep]]
    key_missing[order[keep]] = adm.key_missing[first_firing][occ_sorted[keep]]
    n_occ = len(first_firing)
    occ_resolved_at = np.full(n_occ, NONE, np.int64)
    occ_resolved_at[occ_sorted[effective]] = t[effective]
    occ_resolve_row = np.full(n_occ, -1, np.int64)
    occ_resolve_row[occ_sorted[effective]] = order[effective]
    # open until its last firing plus T_stale (that firing's settings: a re-send may shorten it)
    occ_end = np.full(n_occ, NONE, np.int64)
    fire_rows = np.flatnonzero(st == FIRING)
    occ_of_fire = occ_sorted[fire_rows]
    last_fire = np.append(occ_of_fire[1:] != occ_of_fire[:-1], True)[:len(fire_rows)]
    occ_end[occ_of_fire[last_fire]] = (t + stale_after[order])[fire_rows[last_fire]]

    # 2. incidents, per key in (time, seq) order
    members = np.flatnonzero(live & ~orphan & ~seed)
    korder = members[np.lexsort((time[members], key[members]))]
    m = len(korder)
    position = np.full(n, -1, np.int64)
    position[korder] = np.arange(m)
    k, t, st, occ_k = key[korder], time[korder], adm.status[korder], occ[korder]
    same = np.zeros(m, bool)
    same[1:] = k[1:] == k[:-1]
    prev_t = _previous(t, same)
    firing = st == FIRING
    has_occ = occ_k >= 0
    safe_occ = np.where(has_occ, occ_k, 0)
    resolved_occ = has_occ & (occ_resolved_at[safe_occ] != NONE) if n_occ else has_occ
    # Is an occurrence of the key open before each row? Unresolved ones until a time,
    # resolved ones until their resolve's row.
    until_time = np.where(firing & ~resolved_occ, occ_end[safe_occ] if n_occ else NONE, NONE)
    run_time = pd.Series(until_time).groupby(k, sort=False).cummax().to_numpy()
    until_row = np.where(firing & resolved_occ,
                         position[occ_resolve_row[safe_occ]] if n_occ else -1, -1)
    run_row = np.maximum.accumulate(until_row) if m else until_row
    open_ = (_previous(run_time, same) >= t) | (_previous(run_row, same, -1) > np.arange(m))
    w = window[korder]
    seeded = np.zeros(len(adm.keys), bool)  # keys walked whole from their seeds
    seeded[key[seed]] = True
    opens = ~same | ((st != RESOLVED) & ~open_ & (t > prev_t + w) & ~seeded[k])
    stretch = np.cumsum(opens) - 1
    start = np.flatnonzero(opens)
    capped = (st != RESOLVED) & ~opens & (t > t[start][stretch] + cap[korder])
    slow = np.zeros(len(start), bool)
    slow[stretch[capped]] = True
    slow[seeded[k[start]]] = True

    is_first = np.zeros(n, bool)
    is_first[first_firing] = True
    occ_starts = is_first[korder].astype(np.int64)
    n_started = _exclusive(occ_starts, start, stretch)
    n_resolved = _exclusive((st == RESOLVED).astype(np.int64), start, stretch)
    all_resolved = (n_started > 0) & (n_started == n_resolved)
    rule = np.where(st == RESOLVED, RESOLVE, np.where(
        opens, np.where(key_missing[korder], MISSING_ASSET, NEW), np.where(
            open_, R5A, np.where(firing & all_resolved, REOPEN, R5B))))

    out_incident = np.full(n, -1, np.int64)
    out_rule = np.full(n, -1, np.int64)
    out_gap = np.full(n, NONE, np.int64)
    out_rule[korder] = rule
    out_gap[korder] = np.where(same, t - prev_t, NONE)
    fast = ~slow
    renumber = np.cumsum(fast) - 1
    on_fast = fast[stretch]
    out_incident[korder[on_fast]] = renumber[stretch[on_fast]]

    # fast stretches: one incident each, aggregated with reduceat
    ends = np.append(start[1:], m)
    fs, fe = start[fast], ends[fast]
    fast_rows = np.flatnonzero(on_fast)
    local_start = np.searchsorted(fast_rows, fs)
    def per(x: np.ndarray, ufunc: np.ufunc = np.add) -> np.ndarray:
        return ufunc.reduceat(x[fast_rows], local_start) if len(fs) else x[:0]
    not_resolve = (st != RESOLVED).astype(np.int64)
    occ_member = position[first_firing] >= 0  # not a seed
    occ_stretch = stretch[np.maximum(position[first_firing], 0)] if m else \
        np.zeros(n_occ, np.int64)
    occ_fast = fast[occ_stretch] & occ_member if n_occ else np.zeros(0, bool)
    occ_inc = renumber[occ_stretch[occ_fast]]
    n_f = len(fs)
    last_resolve = np.full(n_f, NONE, np.int64)
    np.maximum.at(last_resolve, occ_inc, occ_resolved_at[occ_fast])
    open_until = np.full(n_f, NONE, np.int64)
    # a firing alert superseded by its next occurrence was closed stale (R8)
    occ_alert = adm.alert[first_firing]
    superseded = np.zeros(n_occ, bool)
    superseded[:-1] = occ_alert[:-1] == occ_alert[1:]
    unresolved = occ_resolved_at[occ_fast] == NONE
    still = unresolved & ~superseded[occ_fast]
    np.maximum.at(open_until, occ_inc[still], occ_end[occ_fast][still])
    n_occ_inc = np.bincount(occ_inc, minlength=n_f)
    fast_inc = Incidents(
        key=k[fs], first_row=korder[fs], first_time=t[fs], last=t[fe - 1],
        events=fe - fs, counted=per(not_resolve),
        alerts=n_occ_inc + per((st == POINT).astype(np.int64)),
        flaps=per((rule == REOPEN).astype(np.int64)),
        severity=per(np.where(st != RESOLVED, adm.severity[korder], -1), np.maximum),
        linked_to=np.full(n_f, -1, np.int64), missing=key_missing[korder[fs]],
        occurrences=n_occ_inc,
        resolved=np.bincount(occ_inc, weights=~unresolved, minlength=n_f).astype(np.int64),
        last_resolve=last_resolve, open_until=open_until, window=w[fs],
        restartable=np.ones(n_f, bool),
    )

    # capped stretches: walked one by one (a share of them in the helper process)
    from warehouse.correlation.helper import run_all

    columns = {"time": time, "seq": adm.seq, "status": adm.status, "alert": adm.alert,
               "key": adm.key, "key_missing": adm.key_missing, "window": window, "cap": cap,
               "stale_after": stale_after, "severity": adm.severity}
    spans = list(zip(start[slow].tolist(), ends[slow].tolist(), strict=True))
    seeds_of: dict[int, np.ndarray] = {}
    if seed.any():
        seed_rows = np.flatnonzero(seed)
        by_key = seed_rows[np.argsort(key[seed_rows], kind="stable")]
        bounds = np.flatnonzero(np.diff(key[by_key])) + 1
        seeds_of = {int(key[part[0]]): part for part in np.split(by_key, bounds) if len(part)}
    jobs = []
    for lo, hi in spans:
        seeds = seeds_of.get(int(k[lo]), korder[:0]) if lo == 0 or not same[lo] else korder[:0]
        walk_rows = np.concatenate([seeds, korder[lo:hi]])
        jobs.append((walk_rows, {name: values[walk_rows] for name, values in columns.items()},
                     int(k[lo]), len(seeds)))
    walked: list[Incidents] = []
    base = n_f
    walked_rows = np.zeros(n, bool)
    seed_end = np.full(n, NONE, np.int64)
    walks = run_all(walk_stretch, jobs, [hi - lo for lo, hi in spans])
    for (lo, hi), job, stretch_walk in zip(spans, jobs, walks, strict=True):
        rows = korder[lo:hi]
        walked_rows[rows] = True
        seed_end[job[0][:job[3]]] = stretch_walk.seed_ends
        out_incident[rows] = base + stretch_walk.incident
        out_rule[rows] = stretch_walk.rule
        out_gap[rows[1:]] = stretch_walk.gap[1:]  # the first keeps its gap to the stretch before
        if hi < m and same[hi]:  # the next stretch's gap is to this one's latest incident
            out_gap[korder[hi]] = t[hi] - stretch_walk.last
        inc = stretch_walk.incidents
        inc.linked_to = np.where(inc.linked_to >= 0, inc.linked_to + base, -1)
        walked.append(inc)
        base += len(inc.key)
    slow_rows = sum(hi - lo for lo, hi in spans)
    incidents = concat_incidents([fast_inc, *walked])
    out_flap = out_rule == REOPEN
    return EventTime(out_incident, out_rule, out_gap, out_flap, orphan, key, window,
                     incidents, first_firing[occ_member], slow_rows, walked_rows, seed_end)


@dataclass
class StretchWalk:
    """A capped stretch walked (`walk_stretch`): per row its incident (local index), rule and
    gap (NONE for none), the last activity of the stretch's latest incident, its incidents."""

    incident: np.ndarray
    rule: np.ndarray
    gap: np.ndarray
    last: int
    incidents: Incidents  # linked_to local
    seed_ends: np.ndarray  # of its seeds, in order (`SequentialPass.seed_end`)


def walk_stretch(job: tuple[np.ndarray, dict[str, np.ndarray], int, int]) -> StretchWalk:
    """Walk one stretch of one key: `job` holds its rows (the caller's row numbers), the
    `Rows` columns at them, in (event time, ingest_seq) order, the key it correlates under
    (a re-send's own key may differ: it follows its occurrence's), and how many of the rows
    are seeds (first: `SequentialPass.seed`, not walked nor in the answer)."""
    rows, columns, key, n_seeds = job
    walk = SequentialPass(Rows(rows=rows.tolist(),
                               **{name: values.tolist() for name, values in columns.items()}))
    for i in range(n_seeds):
        walk.seed(i)
    fed = range(n_seeds, len(rows))
    for i in fed:
        walk.feed(i)
    # the first's gap is to the stretch before
    gaps = [None] + [walk.gap[i] for i in fed[1:]]
    return StretchWalk(
        incident=np.array([walk.incident_of[i] for i in fed], np.int64),
        rule=np.array([walk.rule[i] for i in fed], np.int64),
        gap=np.array([NONE if g is None else g for g in gaps], np.int64),
        last=walk.incidents[walk.latest[key]].last,
        incidents=walked_incidents(walk),
        seed_ends=np.array([walk.seed_end(i) for i in range(n_seeds)], np.int64))


def walked_incidents(walk: SequentialPass) -> Incidents:
    """The incidents of a sequential walk as arrays (`linked_to` indexes them)."""
    r = walk.r
    incs = walk.incidents

    def column(values: list, dtype: type = np.int64) -> np.ndarray:
        return np.array(values, dtype)

    return Incidents(
        key=column([inc.key for inc in incs]),
        first_row=column([r.rows[inc.first] for inc in incs]),
        first_time=column([inc.first_time for inc in incs]),
        last=column([inc.last for inc in incs]),
        events=column([len(inc.rows) for inc in incs]),
        counted=column([inc.counted for inc in incs]),
        alerts=column([len(inc.occs) + inc.points for inc in incs]),
        flaps=column([inc.flaps for inc in incs]),
        severity=column([inc.severity(r) for inc in incs]),
        linked_to=column([inc.linked_to for inc in incs]),
        missing=column([inc.missing for inc in incs], bool),
        occurrences=column([len(inc.occs) for inc in incs]),
        resolved=column([inc.resolved for inc in incs]),
        last_resolve=column([inc.last_resolve() for inc in incs]),
        open_until=column([inc.open_until() for inc in incs]),
        window=column([r.window[inc.first] for inc in incs]),
        restartable=column([inc.quiet for inc in incs], bool),
    )


def concat_incidents(parts: list[Incidents]) -> Incidents:
    names = Incidents.__dataclass_fields__
    return Incidents(**{name: np.concatenate([getattr(p, name) for p in parts])
                        for name in names})
