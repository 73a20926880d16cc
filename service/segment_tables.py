"""A buffer segment as lake tables: the columns of each partition and the keys to persist.

Buffer records carry their events column by column (`service.intake.event_columns`), so a
segment becomes Arrow by extending Python lists and converting each column once: no dict per
event. Columns are converted to Arrow every `_ROWS_PER_CHUNK` rows to bound memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from service.buffer import Segment
from service.dedup import KeyEntry
from service.segment_keys import record_keys
from warehouse.schema import ALERT_EVENTS, DUPLICATE_EVENTS, REQUESTS, TS

PartitionKey = tuple[str, str, date]  # (table, tenant_id, receive date)

_SCHEMAS = {"raw/alerts": ALERT_EVENTS, "raw/duplicates": DUPLICATE_EVENTS,
            "raw/requests": REQUESTS}
_ROWS_PER_CHUNK = 50_000
_DAY_US = 86_400_000_000


class SegmentTables:
    """The rows of one segment, grouped per lake table and partition."""

    def __init__(self) -> None:
        self.columns: dict[PartitionKey, dict[str, list[Any]]] = defaultdict(
            lambda: defaultdict(list))
        self.keys: list[KeyEntry] = []
        self._chunks: dict[PartitionKey, list[pa.Table]] = defaultdict(list)
        self._pending_rows = 0

    def add(self, meta: dict[str, Any], body: bytes) -> None:
        tenant, received_us = meta["tenant_id"], meta["received_us"]
        day = date.fromordinal(719163 + received_us // _DAY_US)  # 719163: 1970-01-01
        constant = {"received_at": received_us, "request_id": meta["request_id"]}
        for table in ("raw/alerts", "raw/duplicates"):
            source = meta["events" if table == "raw/alerts" else "duplicates"]
            count = len(source["event_id"])
            if count:
                self._extend((table, tenant, day), source, constant, count)
        if meta["archive"]:
            request = {
                "request_id": meta["request_id"], "route": meta["route"],
                "received_at": received_us, "content_type": meta["content_type"],
                "headers": meta["headers"], "body": body, "body_sha256": meta["body_sha256"],
                "event_count": len(meta["events"]["event_id"]),
                "duplicate_count": len(meta["duplicates"]["event_id"]),
            }
            self._extend(("raw/requests", tenant, day), {k: [v] for k, v in request.items()},
                         {}, 1)
        self.keys.extend(record_keys(meta))
        if self._pending_rows >= _ROWS_PER_CHUNK:
            self._to_arrow()

    def _extend(
        self, key: PartitionKey, source: dict[str, list[Any]], constant: dict[str, Any],
        count: int,
    ) -> None:
        columns = self.columns[key]
        for name, values in source.items():
            columns[name].extend(values)
        for name, value in constant.items():
            columns[name].extend([value] * count)
        self._pending_rows += count

    def _to_arrow(self) -> None:
        for key, columns in self.columns.items():
            self._chunks[key].append(_table(columns, _SCHEMAS[key[0]]))
        self.columns.clear()
        self._pending_rows = 0

    def tables(self) -> Iterable[tuple[PartitionKey, pa.Table]]:
        """One table per partition, rows in segment order (chunks are joined, not copied)."""
        self._to_arrow()
        for key in sorted(self._chunks):
            yield key, pa.concat_tables(self._chunks[key])


def _table(columns: dict[str, list[Any]], schema: pa.Schema) -> pa.Table:
    """Columns of JSON values → a table of `schema` (times are microseconds since epoch)."""
    received = pa.array(columns["received_at"], pa.int64())
    arrays = {"received_at": received.cast(TS)}
    if "occurred_at" in columns:
        # No event time given: the receive time stands in, and the row says so.
        occurred = pa.array(columns["occurred_at"], pa.int64())
        arrays["occurred_at"] = pc.coalesce(occurred, received).cast(TS)
        if "occurred_at_defaulted" in schema.names:
            arrays["occurred_at_defaulted"] = pc.is_null(occurred)
    for field in schema:
        if field.name not in arrays:
            arrays[field.name] = pa.array(columns[field.name], field.type)
    return pa.Table.from_pydict({f.name: arrays[f.name] for f in schema}, schema=schema)


def read_segment(segment: Segment) -> SegmentTables:
    tables = SegmentTables()
    for meta, body in segment.records():
        tables.add(orjson.loads(meta), body)
    return tables
