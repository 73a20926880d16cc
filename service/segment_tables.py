"""A buffer segment as lake tables: the rows of each partition and the keys to persist.

Rows wait as Python dicts only briefly: every `_ROWS_PER_CHUNK` rows they become Arrow, so a
large segment never sits in memory as dicts (~2.5 KB per event as dicts, ~0.3 KB as Arrow).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

import orjson
import pyarrow as pa

from service.buffer import Segment
from service.dedup import (
    BODY,
    DELIVERY,
    REQUEST,
    KeyEntry,
    body_key,
    delivery_key,
    request_key,
)
from warehouse.schema import ALERT_EVENTS, DUPLICATE_EVENTS, REQUESTS
from warehouse.timestamps import us_to_datetime

PartitionKey = tuple[str, str, date]  # (table, tenant_id, receive date)

_SCHEMAS = {"raw/alerts": ALERT_EVENTS, "raw/duplicates": DUPLICATE_EVENTS,
            "raw/requests": REQUESTS}
_ROWS_PER_CHUNK = 2_000


class SegmentTables:
    """The rows of one segment, grouped per lake table and partition."""

    def __init__(self) -> None:
        self.rows: dict[PartitionKey, list[dict[str, Any]]] = defaultdict(list)
        self.keys: list[KeyEntry] = []
        self._chunks: dict[PartitionKey, list[pa.Table]] = defaultdict(list)
        self._row_count = 0

    def add(self, meta: dict[str, Any], body: bytes) -> None:
        tenant, received_us = meta["tenant_id"], meta["received_us"]
        day = us_to_datetime(received_us).date()
        received_at = us_to_datetime(received_us)
        for event in meta["events"]:
            occurred = event["occurred_at"]
            self.rows[("raw/alerts", tenant, day)].append(
                event | {
                    "occurred_at": us_to_datetime(received_us if occurred is None else occurred),
                    "occurred_at_defaulted": occurred is None,
                    "received_at": received_at,
                    "request_id": meta["request_id"],
                    "labels": list(event["labels"].items()),
                }
            )
        for dup in meta["duplicates"]:
            occurred = dup["occurred_at"]
            self.rows[("raw/duplicates", tenant, day)].append(
                dup | {
                    "occurred_at": us_to_datetime(received_us if occurred is None else occurred),
                    "received_at": received_at,
                    "request_id": meta["request_id"],
                }
            )
        if meta["archive"]:
            self.rows[("raw/requests", tenant, day)].append({
                "request_id": meta["request_id"], "route": meta["route"],
                "received_at": received_at, "content_type": meta["content_type"],
                "headers": list(meta["headers"].items()), "body": body,
                "body_sha256": meta["body_sha256"], "event_count": len(meta["events"]),
                "duplicate_count": len(meta["duplicates"]),
            })
        self.keys.extend(record_keys(meta))
        self._row_count += len(meta["events"]) + len(meta["duplicates"]) + 1
        if self._row_count >= _ROWS_PER_CHUNK:
            self._to_arrow()

    def _to_arrow(self) -> None:
        for key, rows in self.rows.items():
            self._chunks[key].append(pa.Table.from_pylist(rows, schema=_SCHEMAS[key[0]]))
        self.rows.clear()
        self._row_count = 0

    def tables(self) -> Iterable[tuple[PartitionKey, pa.Table]]:
        """One table per partition, rows in segment order (chunks are joined, not copied)."""
        self._to_arrow()
        for key in sorted(self._chunks):
            yield key, pa.concat_tables(self._chunks[key])


def read_segment(segment: Segment) -> SegmentTables:
    tables = SegmentTables()
    for meta, body in segment.records():
        tables.add(orjson.loads(meta), body)
    return tables


def segment_keys(segment: Segment) -> list[KeyEntry]:
    """Only the duplicate keys of a segment (what the intake holds again after a restart)."""
    keys: list[KeyEntry] = []
    for meta, _ in segment.records():
        keys.extend(record_keys(orjson.loads(meta)))
    return keys


def record_keys(meta: dict[str, Any]) -> Iterable[KeyEntry]:
    tenant, received_us = meta["tenant_id"], meta["received_us"]
    for event in meta["events"]:
        yield KeyEntry(body_key(tenant, event["body_sha256"]), BODY, event["event_id"],
                       received_us)
        if event["delivery_id"] is not None:
            yield KeyEntry(delivery_key(tenant, event["source"], event["delivery_id"]),
                           DELIVERY, event["event_id"], received_us)
    if meta["archive"]:
        yield KeyEntry(request_key(tenant, meta["body_sha256"]), REQUEST, meta["request_id"],
                       received_us)
