"""The engine's input: canonical events as one Arrow table (lake rows or a backtest file).

`EVENTS` is what the engine reads. The lake's `raw/alerts` rows map onto it directly; rows of
`raw/duplicates` arrive with `duplicate` set (R2 was already decided by the ingest service).
`occurred_at` may be null: the event time is then the receive time (R9).
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
EVENTS = pa.schema(
    [
        pa.field("tenant_id", pa.string(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ingest_seq", pa.int64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_fingerprint", pa.string(), nullable=False),
        pa.field("asset", pa.string()),
        pa.field("signature", pa.string(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("occurred_at", TS),
        pa.field("received_at", TS, nullable=False),
        pa.field("labels", pa.map_(pa.string(), pa.string())),
        pa.field("delivery_id", pa.string()),
        pa.field("body_sha256", pa.string(), nullable=False),
        pa.field("duplicate", pa.bool_(), nullable=False),
    ]
)

STATUS_CODES = {"point": 0, "firing": 1, "resolved": 2}
POINT, FIRING, RESOLVED = 0, 1, 2
SEVERITIES = ("info", "warning", "high", "critical")  # rank = position (SEMANTICS severity)


def conform(table: pa.Table) -> pa.Table:
    """The columns of `EVENTS` in order, cast; absent optional columns become nulls."""
    columns = []
    for field in EVENTS:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.name == "duplicate":
            columns.append(pa.array([False] * table.num_rows, pa.bool_()))
        elif field.name == "body_sha256":
            columns.append(pa.array([""] * table.num_rows, pa.string()))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"events table lacks the required column {field.name!r}")
    return pa.Table.from_arrays(columns, schema=EVENTS)
