"""The correlation engine: canonical events in, incidents and explanations out (SEMANTICS.md).

`correlate(events, timeline)` is the whole engine as a function of the events (and their
ingest sequence): arrival decisions (`admission`), the event-time pass (`sessions`, walking
capped stretches with `sequential`), the R10 merge records of late arrivals (`merges`), then
the three result tables. It reads no global state and writes nothing; `state.py` stores
results and runs it incrementally.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.correlation.admission import (
    ADMITTED,
    DUPLICATE,
    TOO_LATE,
    Admission,
    admit,
    in_arrival_order,
)
from warehouse.correlation.events import POINT, SEVERITIES
from warehouse.correlation.merges import Merge, find_merges
from warehouse.correlation.rules import (
    DISPOSITION_RULES,
    DISPOSITIONS,
    MEMBER,
    ORPHAN,
    RULES,
    STALE_RESOLVE,
)
from warehouse.correlation.rules import DUPLICATE as D_DUPLICATE
from warehouse.correlation.rules import TOO_LATE as D_TOO_LATE
from warehouse.correlation.sessions import (
    NONE,
    STATUSES,
    EventTime,
    correlate_event_time,
    status_of,
)
from warehouse.correlation.timeline import SettingsTimeline

TS = pa.timestamp("us", tz="UTC")
INCIDENTS = pa.schema([
    pa.field("incident_id", pa.string(), nullable=False),
    pa.field("tenant_id", pa.string(), nullable=False),
    pa.field("agg_key", pa.string(), nullable=False),
    pa.field("first_seen", TS, nullable=False),
    pa.field("last_activity", TS, nullable=False),
    pa.field("resolved_at", TS),
    pa.field("status", pa.string(), nullable=False),
    pa.field("severity", pa.string(), nullable=False),
    pa.field("event_count", pa.int64(), nullable=False),
    pa.field("alert_count", pa.int64(), nullable=False),
    pa.field("flap_count", pa.int64(), nullable=False),
    pa.field("merged_into", pa.string()),
    pa.field("linked_to", pa.string()),
    pa.field("visible", pa.bool_(), nullable=False),
    pa.field("missing_asset", pa.bool_(), nullable=False),
    pa.field("settings_version", pa.string(), nullable=False),
    pa.field("first_event_id", pa.string(), nullable=False),
])
MEMBERSHIPS = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("tenant_id", pa.string(), nullable=False),
    pa.field("ingest_seq", pa.int64(), nullable=False),
    pa.field("disposition", pa.string(), nullable=False),
    pa.field("rule", pa.string(), nullable=False),
    pa.field("event_time", TS),
    pa.field("received_at", TS, nullable=False),
    pa.field("clock_skew", pa.bool_(), nullable=False),
    pa.field("incident_id", pa.string()),
    pa.field("agg_key", pa.string()),
    pa.field("gap_us", pa.int64()),
    pa.field("window_us", pa.int64()),
    pa.field("settings_version", pa.string()),
    pa.field("flap", pa.bool_(), nullable=False),
    pa.field("new_alert", pa.bool_(), nullable=False),  # starts an alert occurrence (R3)
])
LIFECYCLE = pa.schema([  # per live incident: enough to tell its status at a later clock
    pa.field("incident_id", pa.string(), nullable=False),
    pa.field("first_seq", pa.int64(), nullable=False),
    pa.field("occurrences", pa.int64(), nullable=False),
    pa.field("resolved_occurrences", pa.int64(), nullable=False),
    pa.field("last_resolve_us", pa.int64()),
    pa.field("open_until_us", pa.int64()),
    pa.field("window_us", pa.int64(), nullable=False),
    pa.field("restartable", pa.bool_(), nullable=False),
])
MERGE_LOG = pa.schema(list(INCIDENTS) + [
    pa.field("survivor_event_id", pa.string(), nullable=False),
    pa.field("arrival_seq", pa.int64(), nullable=False),
])
CHUNK_EVENTS = 1_000_000  # more events than this are correlated a group of tenants at a time
FUNNEL_FIELDS = ("events_accepted", "duplicates", "alerts", "incidents", "below_threshold",
                 "too_late", "clock_skew", "orphan_resolved", "missing_asset",
                 "stale_resolves")


@dataclass
class Correlation:
    """The engine's answer: live incidents then merge records, explanations, funnels."""

    incidents: pa.Table  # INCIDENTS
    memberships: pa.Table  # MEMBERSHIPS, one row per input event
    funnel: dict[str, dict[str, int]]  # tenant -> FUNNEL_FIELDS
    lifecycle: pa.Table  # LIFECYCLE, one row per live incident
    merge_log: pa.Table  # MERGE_LOG, every merge found, in arrival order (stable)
    slow_rows: int = 0
    replayed_rows: int = 0
    # incremental runs with seed rows (`sessions`): each seed row's event id and the end of
    # its occurrence after the walk (null once superseded), for the incidents before its start
    seed_ends: pa.Table | None = None


def clocks(adm: Admission, as_of: int | None, base: dict[str, int] | None = None) -> np.ndarray:
    """Each tenant's clock (R8): its latest receive or event time (at least `base`, the clock
    of earlier runs), or the given `as_of`."""
    if as_of is not None:
        return np.full(len(adm.tenants), as_of, np.int64)
    out = np.array([(base or {}).get(t, NONE) for t in adm.tenants], np.int64)
    np.maximum.at(out, adm.tenant, adm.received)
    admitted = adm.fate == ADMITTED
    np.maximum.at(out, adm.tenant[admitted], adm.time[admitted])
    return out


def incident_ids(tenants: pa.Array, keys: pa.Array, first_event_ids: pa.Array) -> pa.Array:
    """Deterministic ids: 'inc_' + 20 hex of sha256(tenant NUL agg_key NUL first event id)."""
    table = pa.table({"t": tenants, "k": keys, "e": first_event_ids})
    sql = "SELECT 'inc_' || left(sha256(t || chr(0) || k || chr(0) || e), 20) AS id FROM ids_in"
    with duckdb.connect() as con:
        con.register("ids_in", table)
        return con.sql(sql).to_arrow_table().column("id").combine_chunks()


def correlate(events: pa.Table, timeline: SettingsTimeline, as_of: int | None = None,
              base_clock: dict[str, int] | None = None,
              quiet_below: int | None = None, merges: bool = True,
              chunk_events: int | None = None) -> Correlation:
    """Correlate every event of `events` (engine `EVENTS` columns) under `timeline`.

    `base_clock` and `quiet_below` serve incremental runs (`state.py`): tenant clocks of
    earlier runs, and the first ingest_seq of this run (earlier rows are history).
    `merges=False` skips the R10 arrival replay: incidents and explanations are the same,
    merge records are missing (the benchmark uses it to show what the replay costs).

    More than `chunk_events` events are correlated a group of whole tenants at a time
    (`correlate_groups`) and the answers put together in the one-batch order: the working
    arrays of ten million events at once needed 15 GB.
    """
    limit = chunk_events or CHUNK_EVENTS
    if events.num_rows <= limit:
        with _no_cycle_collection():
            return _correlate(events, timeline, as_of, base_clock, quiet_below, merges)
    column = events.column("tenant_id")
    counts = {c["values"]: c["counts"] for c in pc.value_counts(column).to_pylist()}

    def read(tenants: list[str]) -> pa.Table:
        return events.filter(pc.is_in(column, pa.array(tenants, pa.string())))

    return _combined([answer for _tenants, answer in correlate_groups(
        read, counts, timeline, as_of, base_clock, quiet_below, merges, limit)])


def correlate_groups(read: Callable[[list[str]], pa.Table], counts: Mapping[str, int],
                     timeline: SettingsTimeline, as_of: int | None = None,
                     base_clock: dict[str, int] | None = None, quiet_below: int | None = None,
                     merges: bool = True, chunk_events: int | None = None,
                     ) -> Iterator[tuple[list[str], Correlation]]:
    """The engine a group of whole tenants at a time: tenants never interact (R1), so each
    group's answer is exactly the one-batch answer's rows of its tenants (its funnels, its
    incidents, its explanations).

    `counts` holds each tenant's number of events; tenants are packed in name order into
    groups of at most `chunk_events` events (a bigger tenant alone). `read(tenants)` returns
    the events of a group; it is called on a helper thread, one call at a time, for the next
    group while the engine (single-threaded Python) correlates this one, so reading and
    decoding use the machine's other core (as does the merge replay's helper process:
    `helper.py`). Yields each group's tenants and answer. Memory is
    then that of the biggest group and the next group's events, not of every event and
    answer at once, as long as the caller stores each answer and drops it (`bench/correlate`
    writes them to Parquet; ten million events and their answers held at once needed 8 GB).
    """
    groups = _tenant_groups(counts, chunk_events or CHUNK_EVENTS)
    with ThreadPoolExecutor(1, thread_name_prefix="aw-correlate-read") as reader:
        def read_ahead(i: int) -> list[Future[pa.Table]]:  # group i's read, if there is one
            return [reader.submit(_read_in_arrival_order, read, g) for g in groups[i:i + 1]]

        ahead = read_ahead(0)
        for i, tenants in enumerate(groups):
            events = ahead.pop().result()
            ahead = read_ahead(i + 1)
            with _no_cycle_collection():
                answer = _correlate(events, timeline, as_of, base_clock, quiet_below, merges)
            del events
            yield tenants, answer


def _read_in_arrival_order(read: Callable[[list[str]], pa.Table], tenants: list[str]
                           ) -> pa.Table:
    """A group's events sorted where they are read, so the rows as read are dropped before the
    engine works on them."""
    return in_arrival_order(read(tenants))


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused while the engine runs (reference counting still frees
    everything the engine drops). The walks build millions of small objects that live until
    the end, and each full collection traverses all of them again without freeing anything:
    with it running, correlating ten million events took 121 s instead of 86 s at the same
    peak memory (their structures are kept free of reference cycles: `sequential.py`). The
    switch is process-wide: another thread meanwhile runs without cycle collection too, and
    a caller that paused it keeps it paused."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _tenant_groups(counts: Mapping[str, int], limit: int) -> list[list[str]]:
    """Tenants in name order, packed into groups of at most `limit` events (a bigger tenant
    alone)."""
    groups: list[list[str]] = [[]]
    filled = 0
    for tenant, n in sorted(counts.items()):
        if groups[-1] and filled + n > limit:
            groups.append([])
            filled = 0
        groups[-1].append(tenant)
        filled += n
    return groups if groups[0] else []


def _combined(parts: list[Correlation]) -> Correlation:
    """Answers of disjoint tenant groups (in tenant order) as one batch would give them."""
    def merged_rows(part: Correlation) -> pa.Array:
        return pc.is_valid(part.incidents.column("merged_into"))

    live = [p.incidents.filter(pc.invert(merged_rows(p))) for p in parts]
    merged = [p.incidents.filter(merged_rows(p)) for p in parts]
    memberships = pa.concat_tables([p.memberships for p in parts])
    memberships = memberships.take(pc.sort_indices(
        memberships, [("ingest_seq", "ascending"), ("event_id", "ascending")]))
    merge_log = pa.concat_tables([p.merge_log for p in parts])
    merge_log = merge_log.take(pc.sort_indices(merge_log, [("arrival_seq", "ascending")]))
    return Correlation(
        pa.concat_tables([*live, *merged]), memberships,
        {t: f for p in parts for t, f in p.funnel.items()},
        pa.concat_tables([p.lifecycle for p in parts]), merge_log,
        sum(p.slow_rows for p in parts), sum(p.replayed_rows for p in parts),
        pa.concat_tables([p.seed_ends for p in parts if p.seed_ends is not None])
        if any(p.seed_ends is not None for p in parts) else None)


def _correlate(events: pa.Table, timeline: SettingsTimeline, as_of: int | None,
               base_clock: dict[str, int] | None, quiet_below: int | None,
               merges: bool) -> Correlation:
    adm = admit(events, timeline)
    base = np.array([(base_clock or {}).get(t, NONE) for t in adm.tenants], np.int64)
    clock = clocks(adm, as_of, base_clock)
    et = correlate_event_time(adm, timeline, clock)
    found = find_merges(adm, timeline, et, as_of, base, quiet_below) if merges else ([], 0)
    return _tables(adm, timeline, et, clock, *found)


def _ts(values: np.ndarray) -> pa.Array:
    """Microseconds as UTC timestamps, NONE as null."""
    return pa.array(values, pa.int64(), mask=values == NONE).cast(TS)


def _tables(adm: Admission, timeline: SettingsTimeline, et: EventTime, clock: np.ndarray,
            merges: list[Merge], replayed: int) -> Correlation:
    inc = et.incidents
    table = adm.table
    event_ids = table.column("event_id").combine_chunks()
    tenant_names = pa.array(adm.tenants, pa.string())
    inc_tenant = adm.tenant[inc.first_row]
    tenants = tenant_names.take(pa.array(inc_tenant))
    keys = adm.keys.take(pa.array(inc.key))
    first_ids = event_ids.take(pa.array(inc.first_row))
    ids = incident_ids(tenants, keys, first_ids)
    version = adm.version[inc.first_row]
    threshold = np.array([v.settings.threshold for v in timeline.versions], np.int64)[version]
    visible = inc.counted >= threshold  # R13, N of the incident's first event
    status, resolved_at = status_of(inc.occurrences, inc.resolved, inc.last_resolve,
                                    inc.open_until, inc.last, inc.window, clock[inc_tenant])
    labels = pa.array([v.label for v in timeline.versions], pa.string())
    linked = ids.take(pa.array(np.where(inc.linked_to >= 0, inc.linked_to, 0))) if len(ids) \
        else ids
    linked = pc.if_else(pa.array(inc.linked_to >= 0), linked, pa.nulls(len(ids), pa.string()))
    severity_names = pa.array(list(SEVERITIES) + ["unknown"], pa.string())
    live = pa.table({
        "incident_id": ids, "tenant_id": tenants, "agg_key": keys,
        "first_seen": pa.array(inc.first_time, pa.int64()).cast(TS),
        "last_activity": pa.array(inc.last, pa.int64()).cast(TS),
        "resolved_at": _ts(resolved_at),
        "status": pa.array(STATUSES, pa.string()).take(pa.array(status.astype(np.int64))),
        "severity": severity_names.take(pa.array(np.where(inc.severity < 0, 4, inc.severity))),
        "event_count": pa.array(inc.events, pa.int64()),
        "alert_count": pa.array(inc.alerts, pa.int64()),
        "flap_count": pa.array(inc.flaps, pa.int64()),
        "merged_into": pa.nulls(len(ids), pa.string()),
        "linked_to": linked,
        "visible": pa.array(visible), "missing_asset": pa.array(inc.missing, pa.bool_()),
        "settings_version": labels.take(pa.array(version)),
        "first_event_id": first_ids,
    }, schema=INCIDENTS)
    # memberships
    disposition = np.full(len(adm.seq), MEMBER, np.int64)
    disposition[adm.fate == DUPLICATE] = D_DUPLICATE
    disposition[adm.fate == TOO_LATE] = D_TOO_LATE
    disposition[(adm.fate == ADMITTED) & adm.stale_resolve] = STALE_RESOLVE
    disposition[et.orphan] = ORPHAN
    member = disposition == MEMBER
    rule_names = pa.array(list(RULES) + [r or "" for r in DISPOSITION_RULES], pa.string())
    rule_code = np.where(member & (et.rule >= 0), et.rule, len(RULES) + disposition)
    has_inc = et.incident >= 0
    inc_of = pa.array(np.where(has_inc, et.incident, 0))
    null_str = pa.nulls(len(adm.seq), pa.string())
    decided = disposition != D_DUPLICATE
    new_alert = np.zeros(len(adm.seq), bool)
    hidden = adm.context | adm.seed  # read for the others, in no answer
    new_alert[et.first_firing] = True
    new_alert |= (adm.fate == ADMITTED) & ~adm.stale_resolve & (adm.status == POINT)
    new_alert &= ~hidden
    placed = (disposition == MEMBER) | (disposition == ORPHAN) | (disposition == STALE_RESOLVE)
    memberships = pa.table({
        "event_id": event_ids, "tenant_id": tenant_names.take(pa.array(adm.tenant)),
        "ingest_seq": pa.array(adm.seq, pa.int64()),
        "disposition": pa.array(DISPOSITIONS, pa.string()).take(pa.array(disposition)),
        "rule": rule_names.take(pa.array(rule_code)),
        "event_time": pc.if_else(pa.array(decided),
                                 pa.array(adm.time, pa.int64()).cast(TS),
                                 pa.nulls(len(adm.seq), TS)),
        "received_at": pa.array(adm.received, pa.int64()).cast(TS),
        "clock_skew": pa.array(adm.skew & (adm.fate == ADMITTED)),
        "incident_id": pc.if_else(pa.array(has_inc), ids.take(inc_of) if len(ids) else null_str,
                                  null_str),
        "agg_key": pc.if_else(pa.array(has_inc), adm.keys.take(pa.array(et.key))
                              if len(adm.keys) else null_str, null_str),
        "gap_us": pa.array(et.gap, pa.int64(), mask=~member | (et.gap == NONE)),
        "window_us": pa.array(et.window, pa.int64(), mask=~placed),
        "settings_version": pc.if_else(pa.array(placed), labels.take(pa.array(adm.version)),
                                       null_str),
        "flap": pa.array(et.flap & member),
        "new_alert": pa.array(new_alert),
    }, schema=MEMBERSHIPS).filter(pa.array(~hidden))
    merged = _merge_records(merges, memberships, live)
    incidents = pa.concat_tables([
        live.take(pc.sort_indices(live, [("tenant_id", "ascending"), ("first_seen", "ascending"),
                                         ("incident_id", "ascending")])),
        merged,
    ])
    funnel = _funnels(adm, et, inc_tenant, visible)
    lifecycle = pa.table({
        "incident_id": ids, "first_seq": pa.array(adm.seq[inc.first_row], pa.int64()),
        "occurrences": pa.array(inc.occurrences, pa.int64()),
        "resolved_occurrences": pa.array(inc.resolved, pa.int64()),
        "last_resolve_us": pa.array(inc.last_resolve, pa.int64(),
                                    mask=inc.last_resolve == NONE),
        "open_until_us": pa.array(inc.open_until, pa.int64(), mask=inc.open_until == NONE),
        "window_us": pa.array(inc.window, pa.int64()),
        "restartable": pa.array(inc.restartable, pa.bool_()),
    }, schema=LIFECYCLE)
    merge_log = pa.Table.from_pylist(
        [{**m.record, "survivor_event_id": m.survivor_event_id, "arrival_seq": m.arrival_seq}
         for m in sorted(merges, key=lambda m: m.arrival_seq)], schema=MERGE_LOG)
    seeds = np.flatnonzero(adm.seed)
    seed_ends = pa.table({
        "event_id": event_ids.take(pa.array(seeds)),
        "end_us": pa.array(et.seed_end[seeds], pa.int64(), mask=et.seed_end[seeds] == NONE),
    }) if len(seeds) else None
    return Correlation(incidents, memberships, funnel, lifecycle, merge_log, et.slow_rows,
                       replayed, seed_ends)


def _merge_records(merges: list[Merge], memberships: pa.Table, live: pa.Table) -> pa.Table:
    """R10 merge records whose incident is not live at the end, merged_into the final owner
    of the survivor's first event; the first record of an id wins."""
    if not merges:
        return INCIDENTS.empty_table()
    survivors = memberships.filter(pc.is_in(
        memberships.column("event_id"),
        pa.array({m.survivor_event_id for m in merges}, pa.string())))
    owner = dict(zip(survivors.column("event_id").to_pylist(),
                     survivors.column("incident_id").to_pylist(), strict=True))
    live_ids = set(live.column("incident_id").to_pylist())
    rows: dict[str, dict[str, object]] = {}
    for merge in merges:
        record = merge.record
        if record["incident_id"] in live_ids or record["incident_id"] in rows:
            continue
        rows[str(record["incident_id"])] = {
            **record, "merged_into": owner[merge.survivor_event_id], "visible": False}
    table = pa.Table.from_pylist(list(rows.values()), schema=INCIDENTS)
    return table.take(pc.sort_indices(table, [("tenant_id", "ascending"),
                                              ("first_seen", "ascending"),
                                              ("incident_id", "ascending")]))


def _funnels(adm: Admission, et: EventTime, inc_tenant: np.ndarray,
             visible: np.ndarray) -> dict[str, dict[str, int]]:
    nt = len(adm.tenants)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(adm.tenant[mask & ~adm.context & ~adm.seed], minlength=nt)

    admitted = adm.fate == ADMITTED
    live_points = admitted & ~adm.stale_resolve & (adm.status == POINT)
    columns = {
        "events_accepted": count(np.ones(len(adm.seq), bool)),
        "duplicates": count(adm.fate == DUPLICATE),
        "alerts": np.bincount(adm.tenant[et.first_firing], minlength=nt) + count(live_points),
        "incidents": np.bincount(inc_tenant[visible], minlength=nt),
        "below_threshold": np.bincount(inc_tenant[~visible],
                                       weights=et.incidents.events[~visible],
                                       minlength=nt).astype(np.int64),
        "too_late": count(adm.fate == TOO_LATE),
        "clock_skew": count(admitted & adm.skew),
        "orphan_resolved": count(et.orphan),
        "missing_asset": count(admitted & adm.asset_missing),
        "stale_resolves": count(admitted & adm.stale_resolve),
    }
    return {tenant: {name: int(columns[name][i]) for name in FUNNEL_FIELDS}
            for i, tenant in enumerate(adm.tenants)}
