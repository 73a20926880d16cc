"""Write a synthetic event history (`correlation.synthetic`) into a lake as the flusher would.

For the pipeline's tests and benchmark: rows flagged `duplicate` go to `raw/duplicates`, the
others to `raw/alerts` with the columns the ingest service adds (alert quality flags, a
defaulted `occurred_at`), one file per tenant, receive date and `batch` of the caller's
choosing, named after its first ingest sequence number like the flusher's files. Real
deployments fill the lake through the ingest endpoint only.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.correlation.events import conform
from warehouse.lake import Lake
from warehouse.schema import ALERT_EVENTS, DUPLICATE_EVENTS


def write_events(lake: Lake, events: pa.Table, prefix: str = "synthetic") -> int:
    """Write `events` (EVENTS columns) into the lake; returns the number of files written."""
    events = conform(events)
    days = pc.cast(pc.floor_temporal(events.column("received_at"), unit="day"), pa.date32())
    events = events.append_column("day", days).sort_by(
        [("tenant_id", "ascending"), ("day", "ascending"), ("ingest_seq", "ascending")])
    tenant = events.column("tenant_id").to_numpy(zero_copy_only=False)
    day = events.column("day").cast(pa.int32()).to_numpy(zero_copy_only=False)
    dates = events.column("day")
    starts = np.flatnonzero(np.r_[True, (tenant[1:] != tenant[:-1]) | (day[1:] != day[:-1])])
    ends = np.r_[starts[1:], len(tenant)]
    files = 0
    for start, end in zip(starts, ends, strict=True):
        part = events.slice(int(start), int(end - start))
        first = pc.min(part.column("ingest_seq")).as_py()
        duplicate = part.column("duplicate")
        for table, rows in (("raw/alerts", part.filter(pc.invert(duplicate))),
                            ("raw/duplicates", part.filter(duplicate))):
            if not rows.num_rows:
                continue
            shaped = _alerts(rows) if table == "raw/alerts" else _duplicates(rows)
            directory = lake.partition_dir(table, str(tenant[start]), dates[int(start)].as_py())
            lake.write_parquet(directory, f"{prefix}-{first:020d}.parquet", shaped)
            files += 1
    return files


def _alerts(rows: pa.Table) -> pa.Table:
    n = rows.num_rows
    occurred = rows.column("occurred_at")
    asset = rows.column("asset")
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(asset), ""), True)
    return pa.table({
        "event_id": rows.column("event_id"),
        "ingest_seq": rows.column("ingest_seq"),
        "request_id": pc.binary_join_element_wise("req-", rows.column("event_id"), ""),
        "source": rows.column("source"),
        "source_fingerprint": rows.column("source_fingerprint"),
        "source_alert_id": pa.nulls(n, pa.string()),
        "delivery_id": rows.column("delivery_id"),
        "asset": asset,
        "signature": rows.column("signature"),
        "severity": rows.column("severity"),
        "raw_severity": rows.column("severity"),
        "status": rows.column("status"),
        "occurred_at": pc.coalesce(occurred, rows.column("received_at")),
        "occurred_at_defaulted": pc.is_null(occurred),
        "received_at": rows.column("received_at"),
        "message": pa.nulls(n, pa.string()),
        "labels": rows.column("labels"),
        "body_sha256": rows.column("body_sha256"),
        "missing_asset": blank,
        "severity_mapped": pa.array(np.ones(n, bool)),
        "has_resolve_path": pc.not_equal(rows.column("status"), "point"),
        "truncated_alerts": pa.nulls(n, pa.int32()),
    }).cast(ALERT_EVENTS)


def _duplicates(rows: pa.Table) -> pa.Table:
    delivery = rows.column("delivery_id")
    return pa.table({
        "event_id": rows.column("event_id"),
        "ingest_seq": rows.column("ingest_seq"),
        "request_id": pc.binary_join_element_wise("req-", rows.column("event_id"), ""),
        "duplicate_of": pa.array([""] * rows.num_rows, pa.string()),
        "reason": pc.if_else(pc.is_null(delivery), "body_sha256", "delivery_id"),
        "source": rows.column("source"),
        "source_fingerprint": rows.column("source_fingerprint"),
        "delivery_id": delivery,
        "body_sha256": rows.column("body_sha256"),
        "occurred_at": pc.coalesce(rows.column("occurred_at"), rows.column("received_at")),
        "received_at": rows.column("received_at"),
    }).cast(DUPLICATE_EVENTS)
