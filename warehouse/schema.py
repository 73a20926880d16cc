"""Arrow schemas of the raw lake tables.

Partition columns (`tenant_id`, `date`) live in the Hive path, not in the files
(`warehouse.lake`). `date` is the UTC receive date, so a closed day's partition is immutable.
Timestamps are UTC at microsecond precision.
"""

from __future__ import annotations

import pyarrow as pa

from warehouse.ssm.schema import TABLES as SSM_TABLES

SCHEMA_VERSION = "1"

TS = pa.timestamp("us", tz="UTC")
LABELS = pa.map_(pa.string(), pa.string())

# raw/alerts: one row per accepted, non-duplicate canonical event.
ALERT_EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ingest_seq", pa.int64(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_fingerprint", pa.string(), nullable=False),
        pa.field("source_alert_id", pa.string()),
        pa.field("delivery_id", pa.string()),
        pa.field("asset", pa.string()),
        pa.field("signature", pa.string(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("raw_severity", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("occurred_at", TS, nullable=False),
        pa.field("occurred_at_defaulted", pa.bool_(), nullable=False),
        pa.field("received_at", TS, nullable=False),
        pa.field("message", pa.string()),
        pa.field("labels", LABELS),
        pa.field("body_sha256", pa.string(), nullable=False),
        # Alert quality (SEMANTICS.md): per event, so the KPI is a plain average.
        pa.field("missing_asset", pa.bool_(), nullable=False),
        pa.field("severity_mapped", pa.bool_(), nullable=False),
        pa.field("has_resolve_path", pa.bool_(), nullable=False),
        pa.field("truncated_alerts", pa.int32()),
    ],
    metadata={"aw_schema_version": SCHEMA_VERSION, "grain": "one row per accepted event"},
)

# raw/duplicates: one row per exact duplicate (R2): counted, never processed as an event.
DUPLICATE_EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ingest_seq", pa.int64(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("duplicate_of", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_fingerprint", pa.string(), nullable=False),
        pa.field("delivery_id", pa.string()),
        pa.field("body_sha256", pa.string(), nullable=False),
        pa.field("occurred_at", TS, nullable=False),
        pa.field("received_at", TS, nullable=False),
    ],
    metadata={"aw_schema_version": SCHEMA_VERSION, "grain": "one row per duplicate event"},
)

# raw/requests: every accepted request body once, byte-exact (after content decoding).
REQUESTS = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("route", pa.string(), nullable=False),
        pa.field("received_at", TS, nullable=False),
        pa.field("content_type", pa.string()),
        pa.field("headers", LABELS),
        pa.field("body", pa.large_binary(), nullable=False),
        pa.field("body_sha256", pa.string(), nullable=False),
        pa.field("event_count", pa.int32(), nullable=False),
        pa.field("duplicate_count", pa.int32(), nullable=False),
    ],
    metadata={"aw_schema_version": SCHEMA_VERSION, "grain": "one row per request body"},
)

TABLES: dict[str, pa.Schema] = {
    "raw/alerts": ALERT_EVENTS,
    "raw/duplicates": DUPLICATE_EVENTS,
    "raw/requests": REQUESTS,
    # raw/ssm/<table>: daily SSM patch snapshots (warehouse.ssm.schema), the tenant in the path
    **{f"raw/ssm/{name}": pa.schema([f for f in schema if f.name != "tenant_id"],
                                    metadata=schema.metadata)
       for name, schema in SSM_TABLES.items()},
}

PARTITIONING = pa.schema([pa.field("tenant_id", pa.string()), pa.field("date", pa.date32())])
