"""The flusher: sealed buffer segments → Parquet in the lake → dedup keys → segment deleted.

Idempotent by construction: the lake file names derive from the segment's first sequence
number, so a crash after the lake write but before the segment is deleted rewrites the same
files with the same rows on restart, never a second copy. While the lake is down the flusher
retries with backoff and reports not-ready; the buffer keeps accepting up to its bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

import orjson
import pyarrow as pa

from service.buffer import DurableBuffer, Segment
from service.dedup import (
    BODY,
    DELIVERY,
    REQUEST,
    DedupIndex,
    KeyEntry,
    body_key,
    delivery_key,
    request_key,
)
from warehouse.lake import Lake, LakeError
from warehouse.schema import ALERT_EVENTS, DUPLICATE_EVENTS, REQUESTS
from warehouse.timestamps import us_to_datetime

log = logging.getLogger(__name__)

# Short enough that a returning lake is noticed within seconds, long enough not to hammer it.
_MAX_BACKOFF_SECONDS = 5.0

PartitionKey = tuple[str, str, date]  # (table, tenant_id, receive date)

_SCHEMAS = {"raw/alerts": ALERT_EVENTS, "raw/duplicates": DUPLICATE_EVENTS,
            "raw/requests": REQUESTS}
# Rows wait as Python dicts (~2.5 KB per event) only until this many have gathered, then
# become Arrow (~0.3 KB): a 200,000-event segment as dicts alone would take ~500 MB.
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
            self.keys.append(KeyEntry(body_key(tenant, event["body_sha256"]), BODY,
                                      event["event_id"], received_us))
            if event["delivery_id"] is not None:
                self.keys.append(KeyEntry(
                    delivery_key(tenant, event["source"], event["delivery_id"]), DELIVERY,
                    event["event_id"], received_us))
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
            self.keys.append(KeyEntry(request_key(tenant, meta["body_sha256"]), REQUEST,
                                      meta["request_id"], received_us))
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


class Flusher:
    """A background thread moving sealed segments to the lake."""

    def __init__(
        self,
        buffer: DurableBuffer,
        dedup: DedupIndex,
        lake: Lake,
        max_rows_per_file: int,
        on_flush: Callable[[float, int], None] = lambda seconds, rows: None,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.buffer = buffer
        self.dedup = dedup
        self.lake = lake
        self.max_rows_per_file = max_rows_per_file
        self.on_flush = on_flush
        self.on_error = on_error
        self.lake_ok = True
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aw-flusher", daemon=True)
        self._last_prune = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self, drain: bool = True) -> None:
        """Stop the thread; with `drain`, try once more to flush what is sealed."""
        self._stop.set()
        self.buffer.sealed_event.set()
        self._thread.join(timeout=60)
        if drain:
            self.flush_sealed()

    def _run(self) -> None:
        self._check_lake()
        backoff = 0.5
        while not self._stop.is_set():
            self.buffer.sealed_event.wait(timeout=1.0)
            self.buffer.sealed_event.clear()
            try:
                flushed = self.flush_sealed()
                self._prune()
            except Exception:
                # Not the lake (flush_sealed handles LakeError) but e.g. a locked dedup file
                # or a bug: the segment stays buffered and is retried. A dead thread would
                # flush nothing until a restart while intake kept filling the buffer.
                log.exception("flushing failed; retrying with backoff")
                flushed = False
            if flushed:
                backoff = 0.5
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    def flush_sealed(self) -> bool:
        """Flush every sealed segment in order; False when the lake refused one."""
        for segment in self.buffer.sealed_segments():
            try:
                self.flush(segment)
            except LakeError as exc:
                self.lake_ok = False
                self.last_error = str(exc)
                self.on_error()
                log.warning("lake unavailable, %s stays buffered: %s", segment.path.name, exc)
                return False
        return self.lake_ok or self._check_lake()

    def _check_lake(self) -> bool:
        """Probe the lake so readiness is honest even when there is nothing to flush."""
        try:
            self.lake.probe()
        except LakeError as exc:
            self.lake_ok, self.last_error = False, str(exc)
            return False
        self.lake_ok, self.last_error = True, None
        return True

    def flush(self, segment: Segment) -> None:
        started = time.monotonic()
        content = read_segment(segment)
        rows = 0
        for (table, tenant, day), arrow in content.tables():
            directory = self.lake.partition_dir(table, tenant, day)
            for n, offset in enumerate(range(0, arrow.num_rows, self.max_rows_per_file)):
                name = f"seg-{segment.first_seq:020d}-{n:03d}.parquet"
                chunk = arrow.slice(offset, self.max_rows_per_file)
                self.lake.write_parquet(directory, name, chunk)
            rows += arrow.num_rows if table == "raw/alerts" else 0
        self.lake_ok, self.last_error = True, None
        self.dedup.persist(content.keys)
        self.buffer.delete_segment(segment)
        self.on_flush(time.monotonic() - started, rows)
        log.info("flushed %s: %d events", segment.path.name, rows)

    def _prune(self) -> None:
        if time.monotonic() - self._last_prune < 300:
            return
        self._last_prune = time.monotonic()
        self.dedup.prune(int(time.time() * 1_000_000))

    def replay_keys(self) -> None:
        """Hold the keys of every buffered event again (after a restart)."""
        for segment in self.buffer.sealed_segments():
            self.dedup.hold(read_segment(segment).keys, None)
