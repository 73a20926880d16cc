"""Arrival-order decisions, for all events at once: R2 duplicates, R9 event time, R11 stale
resolves, and each event's own aggregation key (R4) under the settings in force (R15).

Every decision here depends only on events that arrived earlier (lower `ingest_seq`), so it
never changes when more events arrive: the incremental run and the full recompute agree by
construction. Everything is columnar (pyarrow compute, numpy, pandas group-wise scans); the
only Python loop is over body-hash groups that hold more than one event (body hashes of one
width, hex digests, are told apart by a numpy hash of their bytes, checked exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.correlation.events import SEVERITIES, STATUS_CODES, conform
from warehouse.correlation.timeline import SettingsTimeline

BODY_WINDOW_US = 24 * 3600 * 1_000_000  # R2: 24 h on receive time, inclusive
ADMITTED, DUPLICATE, TOO_LATE = 0, 1, 2
NO_TIME = np.iinfo(np.int64).min


@dataclass
class Admission:
    """One row per input event, in arrival (`ingest_seq`) order."""

    table: pa.Table  # the input rows, sorted
    tenant: np.ndarray  # int32 code into `tenants`
    tenants: list[str]
    seq: np.ndarray
    received: np.ndarray  # µs
    time: np.ndarray  # µs, the event time after R9's clamp
    skew: np.ndarray  # R9 clock_skew flag
    fate: np.ndarray  # ADMITTED, DUPLICATE or TOO_LATE
    stale_resolve: np.ndarray  # R11
    status: np.ndarray  # events.POINT / FIRING / RESOLVED
    version: np.ndarray  # index into timeline.versions, in force at the event time
    alert: np.ndarray  # code of (tenant, source, fingerprint): R3 identity
    key: np.ndarray  # code into `keys`: the event's own agg_key (R4)
    keys: pa.Array
    key_missing: np.ndarray  # R4: no asset nor fingerprint, its own incident
    asset_missing: np.ndarray  # empty asset (funnel `missing_asset`)
    severity: np.ndarray  # rank in SEVERITIES, -1 unknown
    source: np.ndarray  # code into `sources`
    sources: list[str]
    context: np.ndarray  # rows read only for their arrival history (incremental runs)
    # seed rows of a key started at an incident that is not quiet (incremental runs,
    # `sessions`): their key is the one they seed, and they are in no answer
    seed: np.ndarray


def _codes(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    encoded = pc.dictionary_encode(array)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary


def _us(column: pa.ChunkedArray) -> np.ndarray:
    return column.cast(pa.int64()).to_numpy(zero_copy_only=False)


def _norm(array: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(array, "")))


def in_arrival_order(table: pa.Table) -> pa.Table:
    """The rows by ingest_seq (R14), then event_id; the table itself when they already are,
    as a batch usually is (strictly increasing seqs are checked without sorting)."""
    seq = table.column("ingest_seq").to_numpy()
    if not len(seq) or bool(np.all(seq[1:] > seq[:-1])):
        return table
    return table.take(pc.sort_indices(table, [("ingest_seq", "ascending"),
                                              ("event_id", "ascending")]))


def admit(table: pa.Table, timeline: SettingsTimeline) -> Admission:
    """R2, R9, R11 and the own key of every event.

    Incremental runs (`state.py`) pass rows already decided: `duplicate` set as decided,
    an optional `stale_resolve` column (null = decide here) and an optional `context_only`
    column for rows read only as arrival history (they take no part in the event-time pass),
    and an optional `seed_key` column: set on a seed row (`sessions`), the key it seeds.
    """
    table = in_arrival_order(table)
    n_rows = table.num_rows
    forced_stale = (table.column("stale_resolve") if "stale_resolve" in table.column_names
                    else pa.nulls(n_rows, pa.bool_()))
    context = (pc.fill_null(table.column("context_only"), False).to_numpy(zero_copy_only=False)
               if "context_only" in table.column_names else np.zeros(n_rows, bool))
    seed_key = table.column("seed_key") if "seed_key" in table.column_names else None
    table = conform(table)
    tenant_codes, tenant_dict = _codes(table.column("tenant_id"))
    tenants = tenant_dict.to_pylist()
    seq = table.column("ingest_seq").to_numpy()
    received = _us(table.column("received_at"))
    occurred = table.column("occurred_at")
    occurred_us = _us(pc.fill_null(occurred, table.column("received_at")))
    status_codes, status_dict = _codes(table.column("status"))
    unknown = set(status_dict.to_pylist()) - set(STATUS_CODES)
    if unknown:
        raise ValueError(f"unknown event status(es): {', '.join(sorted(map(str, unknown)))}")
    status = np.array([STATUS_CODES[s] for s in status_dict.to_pylist()], np.int8)[status_codes]

    duplicate = _duplicates(table, received)

    # R9 under the settings in force at receive time.
    at_receipt = timeline.lookup(tenant_codes, tenants, received)
    skew = occurred_us - received > timeline.column(at_receipt, "clock_skew")
    time = np.where(skew, received, occurred_us)
    too_late = (received - time > timeline.column(at_receipt, "lateness")) & ~duplicate
    skew &= ~duplicate
    fate = np.where(duplicate, DUPLICATE, np.where(too_late, TOO_LATE, ADMITTED)).astype(np.int8)

    version = timeline.lookup(tenant_codes, tenants, time)  # R15: at the event time
    alert, _ = _codes(pc.binary_join_element_wise(
        table.column("tenant_id"), table.column("source"), table.column("source_fingerprint"),
        "\x1f"))
    stale_resolve = _stale_resolves(alert, status, time, fate)
    known = pc.is_valid(forced_stale).to_numpy(zero_copy_only=False)
    if known.any():
        stale_resolve[known] = pc.fill_null(forced_stale, False).to_numpy(
            zero_copy_only=False)[known]
    key, keys, key_missing = _own_keys(table, version, timeline)
    seed = np.zeros(n_rows, bool)
    if seed_key is not None and seed_key.null_count < n_rows:
        seed = pc.is_valid(seed_key).to_numpy(zero_copy_only=False)
        key, keys = _codes(pc.if_else(pa.array(seed), seed_key, keys.take(pa.array(key))))
        key_missing &= ~seed
    asset_missing = pc.equal(_norm(table.column("asset")), "").to_numpy(zero_copy_only=False)
    severity_codes, severity_dict = _codes(table.column("severity"))
    ranks = {name: rank for rank, name in enumerate(SEVERITIES)}
    severity = np.array([ranks.get(s, -1) for s in severity_dict.to_pylist()] or [0],
                        np.int8)[severity_codes]
    source, source_dict = _codes(table.column("source"))
    return Admission(
        table=table, tenant=tenant_codes, tenants=tenants, seq=seq, received=received,
        time=time, skew=skew, fate=fate, stale_resolve=stale_resolve, status=status,
        version=version, alert=alert, key=key, keys=keys, key_missing=key_missing,
        asset_missing=asset_missing, severity=severity, source=source,
        sources=source_dict.to_pylist(), context=context.astype(bool), seed=seed,
    )


def _duplicates(table: pa.Table, received: np.ndarray) -> np.ndarray:
    """R2 in arrival order: a delivery id per (tenant, source) forever; without one, the body
    hash per tenant within 24 h of the last accepted holder (as the ingest service does)."""
    flagged = table.column("duplicate").to_numpy(zero_copy_only=False).astype(bool)
    duplicate = flagged.copy()
    delivery = table.column("delivery_id")
    has_delivery = pc.is_valid(delivery).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(has_delivery & ~flagged)
    if len(rows):
        ids, _ = _codes(pc.binary_join_element_wise(
            table.column("tenant_id").take(rows), table.column("source").take(rows),
            delivery.take(rows), "\x1f"))
        first = np.zeros(len(rows), bool)
        first[np.unique(ids, return_index=True)[1]] = True
        duplicate[rows[~first]] = True
    body = table.column("body_sha256")
    rows = np.flatnonzero(~has_delivery & ~flagged
                          & pc.not_equal(body, "").to_numpy(zero_copy_only=False))
    if len(rows):
        tenants = table.column("tenant_id").take(rows)
        bodies = body.take(rows)
        fast = _same_width_codes(_codes(tenants)[0], bodies)
        ids = fast if fast is not None else _codes(
            pc.binary_join_element_wise(tenants, bodies, "\x1f"))[0]
        counts = np.bincount(ids)
        shared = np.flatnonzero(counts[ids] > 1)
        order = shared[np.argsort(ids[shared], kind="stable")]  # by hash, then arrival
        held_id, held_at = -1, 0
        for row, code in zip(rows[order].tolist(), ids[order].tolist(), strict=True):
            if code == held_id and received[row] - held_at <= BODY_WINDOW_US:
                duplicate[row] = True
            else:
                held_id, held_at = code, received[row]
    return duplicate


def _same_width_codes(tenant: np.ndarray, values: pa.ChunkedArray | pa.Array
                      ) -> np.ndarray | None:
    """Codes equal exactly where (tenant, value) are, for values all of one width (body
    hashes are hex SHA-256 digests): a 64-bit hash of each value's bytes, checked against the
    bytes wherever two hashes are equal. Hashing the bytes in numpy takes a fraction of the
    time of dictionary-encoding a million distinct 70-byte strings. None when the widths
    differ or two different values share a hash (then the caller encodes the strings)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    n = len(values)
    if not n or values.null_count or values.type != pa.string():
        return None
    offsets = np.frombuffer(values.buffers()[1], np.int32)[values.offset:values.offset + n + 1]
    width = int(offsets[1] - offsets[0])
    if not width or not bool(np.all(np.diff(offsets) == width)):
        return None
    data = np.frombuffer(values.buffers()[2], np.uint8)[offsets[0]:offsets[-1]].reshape(n, width)
    h = _hash_rows(tenant, data)
    order = np.argsort(h, kind="stable")
    sorted_h = h[order]
    same = np.flatnonzero(sorted_h[1:] == sorted_h[:-1])
    a, b = order[same], order[same + 1]
    if not (np.array_equal(tenant[a], tenant[b]) and np.array_equal(data[a], data[b])):
        return None
    codes = np.empty(n, np.int64)
    codes[order] = np.concatenate([[0], np.cumsum(sorted_h[1:] != sorted_h[:-1])])
    return codes


def _hash_rows(tenant: np.ndarray, data: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of `data` (bytes) with its tenant code: each 8-byte word is
    xored in, multiplied and mixed (FNV-style)."""
    n, width = data.shape
    words = np.zeros((n, -(-width // 8) * 8), np.uint8)
    words[:, :width] = data
    h = tenant.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for column in words.view("<u8").T:
        h = (h ^ column) * np.uint64(0x100000001B3)
        h ^= h >> np.uint64(29)
    return h


def _stale_resolves(alert: np.ndarray, status: np.ndarray, time: np.ndarray,
                    fate: np.ndarray) -> np.ndarray:
    """R11: a resolve older than a firing of its alert that was accepted before it."""
    firing_time = np.where((status == 1) & (fate == ADMITTED), time, NO_TIME)
    latest = pd.Series(firing_time).groupby(alert, sort=False).cummax().to_numpy()
    # A resolve's own value is NO_TIME, so the running max at its row is that of earlier rows.
    return (status == 2) & (fate == ADMITTED) & (latest > time)


def _own_keys(table: pa.Table, version: np.ndarray,
              timeline: SettingsTimeline) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """R4 for each event under its version's key fields: (codes, key strings, missing)."""
    n = table.num_rows
    specs = sorted({timeline.versions[v].settings.key for v in np.unique(version).tolist()})
    spec_of_version = {i: v.settings.key for i, v in enumerate(timeline.versions)}
    keys = pa.nulls(n, pa.string())
    missing = np.zeros(n, bool)
    for spec in specs:
        wanted = np.array([spec_of_version[v] == spec for v in range(len(timeline.versions))])
        rows = np.flatnonzero(wanted[version])
        part = table if len(rows) == n else table.take(rows)
        parts = [part.column("tenant_id")]
        spec_missing = np.zeros(len(rows), bool)
        for name in spec:
            if name == "asset":
                asset = _norm(part.column("asset"))
                fingerprint = pc.utf8_trim_whitespace(part.column("source_fingerprint"))
                no_asset = pc.equal(asset, "")
                fallback = pc.binary_join_element_wise(
                    "fp:", pc.binary_join_element_wise(part.column("source"), fingerprint, "/"),
                    "")
                own = pc.binary_join_element_wise(
                    part.column("tenant_id"), pc.binary_join_element_wise(
                        "missing-asset:", part.column("event_id"), ""), "|")
                spec_missing = (no_asset.to_numpy(zero_copy_only=False)
                                & pc.equal(fingerprint, "").to_numpy(zero_copy_only=False))
                parts.append(pc.if_else(no_asset, fallback, asset))
            elif name in ("signature", "source"):
                parts.append(_norm(part.column(name)))
            else:
                label = name.removeprefix("label:")
                values = pc.map_lookup(part.column("labels"), label, "first")
                parts.append(_norm(values))
        joined = pc.binary_join_element_wise(*parts, "|")
        if spec_missing.any():
            joined = pc.if_else(pa.array(spec_missing), own, joined)
        missing[rows] = spec_missing
        keys = _scatter(keys, rows, joined)
    codes, dictionary = _codes(keys)
    return codes, dictionary, missing


def _scatter(target: pa.Array, rows: np.ndarray, values: pa.ChunkedArray | pa.Array) -> pa.Array:
    if len(rows) == len(target):
        return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    out = target.to_pylist()
    for row, value in zip(rows.tolist(), values.to_pylist(), strict=True):
        out[row] = value
    return pa.array(out, pa.string())
