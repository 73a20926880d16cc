"""The flusher: sealed segments → Parquet partitions → dedup keys → segment deleted, once;
its status file; its loop (stop, a vanished parent, errors that are not the lake's)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from service import flusher as flusher_module
from service import segment_tables
from service.adapters import generic
from service.buffer import DurableBuffer, Segment, encode_record, sealed_segments
from service.dedup import BODY, DELIVERY, REQUEST, DedupIndex, KeyEntry, SeenStore, body_key
from service.flusher import Flusher
from service.flusher_status import FlusherStatus, read_status, status_path
from service.intake import Intake, Receipt, RequestInfo, duplicate_columns, event_columns
from service.segment_keys import segment_keys
from service.segment_tables import read_segment
from warehouse.contracts import AlertRecord
from warehouse.lake import Lake, LakeError, iter_partition_dirs, open_lake
from warehouse.timestamps import parse_rfc3339_us

DAY_US = 24 * 3600 * 1_000_000
# Midnight UTC between 2026-11-26 and 2026-11-27: a receive date changes here.
MIDNIGHT = parse_rfc3339_us("2026-11-27T00:00:00Z")

Request = tuple[RequestInfo, list[AlertRecord]]


class Stack:
    """One intake "process" (buffer, dedup index) and a flusher on one temp directory,
    wired the way `service.runtime` wires them (no flusher thread unless a test starts one).
    """

    def __init__(self, root: Path, max_rows: int = 1000) -> None:
        self.root = root
        self.buffer_dir = root / "buffer"
        self.seen = SeenStore(root / "state" / "dedup.sqlite")
        self.dedup = DedupIndex(self.seen, body_window_us=DAY_US, bloom_bits_log2=16)
        self.lake = open_lake(str(root / "lake"))
        self.flusher = Flusher(self.buffer_dir, self.seen, self.lake, max_rows, DAY_US)
        self.buffer = self._new_buffer()
        # runtime.start(): hold the keys of what the buffer still holds, fill the filter.
        for segment in sealed_segments(self.buffer_dir):
            self.dedup.hold(segment_keys(segment), None, segment.first_seq)
        self.dedup.load()

    def _new_buffer(self) -> DurableBuffer:
        return DurableBuffer(self.buffer_dir, max_bytes=1 << 30, segment_max_events=1 << 30,
                             segment_max_bytes=1 << 30, segment_max_age=3600)

    def ingest(self, requests: list[Request]) -> list[Receipt]:
        """Submit through the real intake; then aclose() seals the segment (a buffer cannot
        be reopened after aclose, so the next call starts a new one on the same directory,
        as a restarted intake would)."""
        if self.buffer._stopping:
            self.buffer = self._new_buffer()
        buffer = self.buffer

        async def main() -> list[Receipt]:
            intake = Intake(buffer, self.dedup, retry_after=5)
            receipts = [await intake.submit(info, records) for info, records in requests]
            await buffer.aclose()
            return receipts

        return asyncio.run(main())

    def observe(self) -> None:
        """runtime.observe(): segments the flusher deleted leave `pending`."""
        for segment in self.buffer.forget_flushed():
            self.dedup.segment_flushed(segment)

    def close(self) -> None:
        self.seen.close()


@pytest.fixture
def stacks() -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def open_stack(root: Path, max_rows: int = 1000) -> Stack:
        stack = Stack(root, max_rows)
        made.append(stack)
        return stack

    yield open_stack
    for stack in made:
        stack.close()


def request(
    tenant: str, received_us: int, count: int = 1, body: bytes | None = None
) -> Request:
    """A request of `count` unique generic alerts (or exactly `body`), normalized for real."""
    if body is None:
        alerts = [
            {"signature": f"sig-{tenant}-{received_us}-{i}", "asset": "web01",
             "labels": {"n": str(i)}}
            for i in range(count)
        ]
        body = orjson.dumps(alerts)
    info = RequestInfo(
        tenant_id=tenant, route="generic", received_us=received_us, body=body,
        body_sha256=hashlib.sha256(body).hexdigest(), content_type="application/json",
        headers={"user-agent": "test", "content-type": "application/json"},
    )
    return info, generic.normalize(orjson.loads(body), received_us)


def read(lake: Lake, table: str) -> list[dict[str, Any]]:
    return lake.read_table(table).to_pylist()


def accepted_ids(receipts: list[Receipt]) -> list[str]:
    return [event_id for r in receipts for event_id in r.ids]


def status(stack: Stack) -> FlusherStatus:
    current = read_status(stack.buffer_dir)
    assert current is not None
    return current


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def run_in_thread(stack: Stack, stop: threading.Event, parent_pid: int | None = None
                  ) -> threading.Thread:
    thread = threading.Thread(target=stack.flusher.run, args=(stop, parent_pid), daemon=True)
    thread.start()
    return thread


def block_lake(stack: Stack) -> Path:
    """Point the flusher at a lake whose root sits under a regular file: every write fails.
    Unlinking the returned file heals it."""
    blocker = stack.root / "blocker"
    blocker.write_text("not a directory")
    stack.flusher.lake = open_lake(str(blocker / "lake"))
    return blocker


# ---- exactly once ---------------------------------------------------------------------


@pytest.mark.parametrize("crash_in", ["persist", "delete_segment"])
def test_segment_flushed_twice_leaves_one_copy(
    stacks: Callable[..., Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    crash_in: str,
) -> None:
    stack = stacks(tmp_path)
    requests = [request("acme", MIDNIGHT - 10, 3), request("acme", MIDNIGHT + 10, 2),
                request("globex", MIDNIGHT, 1)]
    receipts = stack.ingest(requests)
    [segment] = sealed_segments(stack.buffer_dir)

    # The process dies after the lake write, before the segment is deleted.
    def crash(*args: object) -> None:
        raise RuntimeError("simulated crash")

    if crash_in == "persist":
        monkeypatch.setattr(SeenStore, "persist", crash)
    else:
        monkeypatch.setattr(flusher_module, "delete_segment", crash)
    with pytest.raises(RuntimeError):
        stack.flusher.flush(segment)
    assert segment.path.exists()
    files_before = sorted(i.path for i in stack.lake.files("raw/alerts"))
    assert len(read(stack.lake, "raw/alerts")) == 6
    monkeypatch.undo()

    # Both processes restart on the same directories.
    stack.close()
    again = stacks(tmp_path)
    assert again.dedup.pending_count == 6 + 3  # 6 body keys and 3 request keys held again
    assert again.flusher.flush_sealed() is True

    alerts = read(again.lake, "raw/alerts")
    assert sorted(r["event_id"] for r in alerts) == sorted(accepted_ids(receipts))
    assert len(alerts) == 6
    assert sorted(i.path for i in again.lake.files("raw/alerts")) == files_before
    requests_rows = read(again.lake, "raw/requests")
    assert sorted(r["request_id"] for r in requests_rows) == sorted(r.request_id for r in receipts)
    assert sealed_segments(again.buffer_dir) == []
    assert (status(again).flushes, status(again).flushed_events) == (1, 6)

    # The intake notices, the keys move behind the Bloom filter, and the same requests sent
    # again are duplicates: nothing new reaches the lake.
    again.observe()
    assert again.dedup.pending_count == 0
    repeat = again.ingest(requests)
    assert [r.request_id for r in repeat] == [r.request_id for r in receipts]
    assert accepted_ids(repeat) == []
    assert again.flusher.flush_sealed() is True
    assert len(read(again.lake, "raw/alerts")) == 6
    assert len(read(again.lake, "raw/duplicates")) == 6
    assert len(read(again.lake, "raw/requests")) == 3


def test_keys_are_persisted_before_the_segment_is_deleted(
    stacks: Callable[..., Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = stacks(tmp_path)
    stack.ingest([request("acme", MIDNIGHT, 2), request("globex", MIDNIGHT, 1)])
    [segment] = sealed_segments(stack.buffer_dir)
    expected = {e.key for e in segment_keys(segment)}
    persisted_when_deleted: list[set[bytes]] = []
    real_delete = flusher_module.delete_segment

    def delete(seg: Segment) -> None:
        persisted_when_deleted.append(set(stack.seen.lookup(sorted(expected))))
        real_delete(seg)

    monkeypatch.setattr(flusher_module, "delete_segment", delete)
    stack.flusher.flush(segment)
    assert persisted_when_deleted == [expected]
    assert len(expected) == 3 + 2  # three body keys, two request keys
    assert not segment.path.exists()


# ---- partitions and files -------------------------------------------------------------


def test_two_tenants_and_two_receive_dates_land_in_four_partitions(
    stacks: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stacks(tmp_path)
    stack.ingest([
        request("acme", MIDNIGHT - 1, 2),  # the last microsecond of the 26th
        request("acme", MIDNIGHT, 1),  # the first of the 27th
        request("globex", MIDNIGHT - DAY_US // 2, 3),
        request("globex", MIDNIGHT + DAY_US - 1, 4),
    ])
    [segment] = sealed_segments(stack.buffer_dir)
    assert stack.flusher.flush_sealed() is True

    expected = {("acme", "2026-11-26"): 2, ("acme", "2026-11-27"): 1,
                ("globex", "2026-11-26"): 3, ("globex", "2026-11-27"): 4}
    assert set(iter_partition_dirs(stack.lake, "raw/alerts")) == set(expected)
    assert set(iter_partition_dirs(stack.lake, "raw/requests")) == set(expected)
    counts = Counter(
        (r["tenant_id"], r["date"].isoformat()) for r in read(stack.lake, "raw/alerts")
    )
    assert counts == expected
    # One file per partition, named after the segment, in the Hive layout.
    for tenant, day in expected:
        directory = stack.lake.partition_dir("raw/alerts", tenant, date.fromisoformat(day))
        assert directory.endswith(f"raw/alerts/tenant_id={tenant}/date={day}")
        assert [p.name for p in Path(directory).iterdir()] == [
            f"seg-{segment.first_seq:020d}-000.parquet"
        ]
    assert status(stack).flushed_events == 10


@pytest.mark.parametrize(
    ("alerts", "max_rows", "file_rows"),
    [
        (7, 3, [3, 3, 1]),  # a remainder file
        (6, 3, [3, 3]),  # an exact multiple: no empty file
        (2, 3, [2]),  # below the limit: one file
        (3, 1, [1, 1, 1]),  # one row per file
        (4, 4, [4]),  # exactly the limit
    ],
)
def test_rows_split_into_files_at_lake_file_max_rows(
    stacks: Callable[..., Stack], tmp_path: Path, alerts: int, max_rows: int,
    file_rows: list[int],
) -> None:
    stack = stacks(tmp_path, max_rows=max_rows)
    [receipt] = stack.ingest([request("acme", MIDNIGHT, alerts)])
    [segment] = sealed_segments(stack.buffer_dir)
    assert stack.flusher.flush_sealed() is True

    files = stack.lake.files("raw/alerts")
    assert [f.base_name for f in files] == [
        f"seg-{segment.first_seq:020d}-{n:03d}.parquet" for n in range(len(file_rows))
    ]
    assert [pq.read_metadata(f.path).num_rows for f in files] == file_rows
    # Concatenated in file order, the rows are the events in sequence order.
    rows = [r for f in files for r in pq.read_table(f.path).to_pylist()]
    assert [r["event_id"] for r in rows] == receipt.ids
    seqs = [r["ingest_seq"] for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + alerts))


@pytest.mark.parametrize("rows_per_chunk", [1, 2, 5, 10_000])
def test_rows_converted_in_chunks_keep_segment_order(
    stacks: Callable[..., Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    rows_per_chunk: int,
) -> None:
    # Rows become Arrow every few rows (memory); the partitions must not notice.
    monkeypatch.setattr(segment_tables, "_ROWS_PER_CHUNK", rows_per_chunk)
    stack = stacks(tmp_path, max_rows=4)
    repeated = b'[{"signature":"again"}]'
    receipts = stack.ingest([
        request("acme", MIDNIGHT, 3), request("globex", MIDNIGHT, 2),
        request("acme", MIDNIGHT, body=repeated), request("acme", MIDNIGHT + 1, body=repeated),
        request("acme", MIDNIGHT + DAY_US, 4),
    ])
    assert stack.flusher.flush_sealed() is True

    alerts = read(stack.lake, "raw/alerts")
    by_partition: dict[tuple[str, str], list[int]] = {}
    for row in alerts:
        by_partition.setdefault((row["tenant_id"], row["date"].isoformat()), []).append(
            row["ingest_seq"])
    assert all(seqs == sorted(seqs) for seqs in by_partition.values())
    assert sorted(r["event_id"] for r in alerts) == sorted(accepted_ids(receipts))
    assert len(read(stack.lake, "raw/requests")) == 4  # the repeated body once
    assert len(read(stack.lake, "raw/duplicates")) == 1


# ---- the request archive and hand-written records -------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        # whitespace, CRLF and a trailing newline exactly as sent
        b'[ {"signature": "disk_full",\r\n  "asset": "web01"} ]\n',
        # escaped and raw non-ASCII text stay as they were written
        '{"signature": "caf\\u00e9", "message": "h\u00e9llo \u2603"}'.encode(),
        # key order as sent (the body hash of the alert is order-independent, the archive not)
        b'{"severity":"high","signature":"b","asset":"x"}',
    ],
)
def test_raw_requests_store_the_body_byte_exact(
    stacks: Callable[..., Stack], tmp_path: Path, body: bytes
) -> None:
    stack = stacks(tmp_path)
    [receipt] = stack.ingest([request("acme", MIDNIGHT, body=body)])
    assert stack.flusher.flush_sealed() is True

    [row] = read(stack.lake, "raw/requests")
    assert row["body"] == body
    assert row["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert row["request_id"] == receipt.request_id
    assert row["event_count"] == 1 and row["duplicate_count"] == 0
    assert dict(row["headers"])["user-agent"] == "test"
    [alert] = read(stack.lake, "raw/alerts")
    assert alert["request_id"] == receipt.request_id


def test_a_body_sent_twice_is_archived_once_and_counted_as_duplicates(
    stacks: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stacks(tmp_path)
    body = b'[{"signature":"a"},{"signature":"b"}]'
    first, second = stack.ingest([request("acme", MIDNIGHT, body=body),
                                  request("acme", MIDNIGHT + 5, body=body)])
    assert stack.flusher.flush_sealed() is True

    assert second.request_id == first.request_id and second.ids == []
    assert len(read(stack.lake, "raw/requests")) == 1
    assert len(read(stack.lake, "raw/alerts")) == 2
    duplicates = read(stack.lake, "raw/duplicates")
    assert sorted(d["duplicate_of"] for d in duplicates) == sorted(first.ids)
    assert {d["reason"] for d in duplicates} == {"body_hash"}


def alert(n: int, delivery_id: str | None = None, occurred_at_us: int | None = None
          ) -> AlertRecord:
    return AlertRecord(
        source="generic", source_fingerprint=f"fp-{n}", signature="disk_full",
        severity="high", status="firing", body_sha256=hashlib.sha256(b"%d" % n).hexdigest(),
        delivery_id=delivery_id, asset="web01", occurred_at_us=occurred_at_us,
        labels={"team": "ops"},
    )


def hand_record(
    request_id: str, seq: int, body: bytes, *, archive: bool,
    events: list[tuple[AlertRecord, str, int]],
    duplicates: list[tuple[AlertRecord, str, int, str, str]],
) -> bytes:
    """A buffer record written without the intake, its meta shaped like `intake._meta`."""
    meta = orjson.dumps({
        "last_seq": seq + len(events) + len(duplicates) - 1, "first_seq": seq,
        "tenant_id": "acme", "route": "generic", "request_id": request_id,
        "received_us": MIDNIGHT + seq, "archive": archive,
        "content_type": "application/json", "headers": {"x-test": "1"},
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "events": event_columns(events), "duplicates": duplicate_columns(duplicates),
    })
    return encode_record(meta, body if archive else b"")


def test_hand_written_records_become_rows_and_keys(
    stacks: Callable[..., Stack], tmp_path: Path
) -> None:
    # Three requests: one new event with a delivery id (archived); a duplicate-only request
    # whose body was seen before (not archived, empty body); a torn tail (never acknowledged).
    stack = stacks(tmp_path)
    stack.buffer_dir.mkdir(parents=True, exist_ok=True)
    body = b'{"n":1}'
    data = hand_record("req-1", 1, body, archive=True,
                       events=[(alert(1, "d-1"), "e1", 1), (alert(2, None, MIDNIGHT - 7), "e2", 2)],
                       duplicates=[])
    data += hand_record("req-1", 3, body, archive=False, events=[],
                        duplicates=[(alert(1, "d-1"), "e3", 3, "e1", "delivery_id")])
    torn = hand_record("req-4", 4, b"{}", archive=True, events=[(alert(4), "e4", 4)],
                       duplicates=[])
    (stack.buffer_dir / "seg-00000000000000000001.sealed").write_bytes(data + torn[:-3])
    [segment] = sealed_segments(stack.buffer_dir)

    tables = read_segment(segment)
    assert Counter(e.kind for e in tables.keys) == Counter({BODY: 2, DELIVERY: 1, REQUEST: 1})
    assert {e.ref_id for e in tables.keys} == {"e1", "e2", "req-1"}
    assert segment_keys(segment) == tables.keys

    assert stack.flusher.flush_sealed() is True
    alerts = read(stack.lake, "raw/alerts")
    assert [(a["event_id"], a["ingest_seq"], a["delivery_id"], a["request_id"])
            for a in alerts] == [("e1", 1, "d-1", "req-1"), ("e2", 2, None, "req-1")]
    # No event time: the receive time stands in, and the row says so.
    assert [a["occurred_at_defaulted"] for a in alerts] == [True, False]
    assert alerts[0]["occurred_at"] == alerts[0]["received_at"]
    assert alerts[1]["occurred_at"] < alerts[1]["received_at"]
    assert alerts[0]["labels"] == [("team", "ops")]
    [dup] = read(stack.lake, "raw/duplicates")
    assert (dup["event_id"], dup["duplicate_of"], dup["reason"], dup["request_id"]) == (
        "e3", "e1", "delivery_id", "req-1")
    [archived] = read(stack.lake, "raw/requests")
    assert (archived["request_id"], archived["body"]) == ("req-1", body)
    assert (archived["event_count"], archived["duplicate_count"]) == (2, 0)
    assert dict(archived["headers"]) == {"x-test": "1"}
    assert sorted(stack.seen.lookup([e.key for e in tables.keys])) == sorted(
        e.key for e in tables.keys)
    assert sealed_segments(stack.buffer_dir) == []


def test_an_empty_segment_is_flushed_to_nothing(stacks: Callable[..., Stack],
                                               tmp_path: Path) -> None:
    # A segment whose only chunk failed (cut to zero bytes) and was sealed anyway.
    stack = stacks(tmp_path)
    stack.buffer_dir.mkdir(parents=True, exist_ok=True)
    (stack.buffer_dir / "seg-00000000000000000005.sealed").write_bytes(b"")
    assert stack.flusher.flush_sealed() is True
    assert sealed_segments(stack.buffer_dir) == []
    assert stack.lake.files("raw/alerts") == []
    assert (status(stack).flushes, status(stack).flushed_events) == (1, 0)


# ---- an unavailable lake and the status file ------------------------------------------


def test_lake_error_keeps_the_segment_and_a_later_success_resets(
    stacks: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stacks(tmp_path)
    receipts = stack.ingest([request("acme", MIDNIGHT, 3)])
    [segment] = sealed_segments(stack.buffer_dir)
    depth = stack.buffer.depth_bytes
    blocker = block_lake(stack)

    for attempt in (1, 2):
        assert stack.flusher.flush_sealed() is False
        current = status(stack)
        assert current.lake_ok is False and current.lake_errors == attempt
        assert current.last_error and "lake write failed" in current.last_error
        assert current.flushes == 0
        assert segment.path.exists()
        stack.observe()
        assert stack.buffer.depth_bytes == depth
        assert stack.dedup.pending_count == 4  # 3 body keys, 1 request key, still pending
        assert stack.seen.lookup([e.key for e in segment_keys(segment)]) == {}

    blocker.unlink()
    assert stack.flusher.flush_sealed() is True
    current = status(stack)
    assert current.lake_ok is True and current.last_error is None
    assert (current.flushes, current.flushed_events, current.lake_errors) == (1, 3, 2)
    assert not segment.path.exists()
    stack.observe()
    assert stack.buffer.depth_bytes == 0 and stack.dedup.pending_count == 0
    lake = open_lake(str(blocker / "lake"))
    assert sorted(r["event_id"] for r in read(lake, "raw/alerts")) == sorted(
        accepted_ids(receipts)
    )


def test_a_flush_that_fails_halfway_is_retried_without_copies(
    stacks: Callable[..., Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = stacks(tmp_path, max_rows=2)
    receipts = stack.ingest([request("acme", MIDNIGHT, 5), request("globex", MIDNIGHT, 3)])
    real_write = Lake.write_parquet
    writes = 0

    def flaky(self: Lake, directory: str, name: str, table: Any) -> str:
        nonlocal writes
        writes += 1
        if writes == 3:  # some files are already in the lake when the lake goes away
            raise LakeError("simulated outage")
        return real_write(self, directory, name, table)

    monkeypatch.setattr(Lake, "write_parquet", flaky)
    assert stack.flusher.flush_sealed() is False and status(stack).lake_ok is False
    assert sealed_segments(stack.buffer_dir) != []
    assert 0 < len(read(stack.lake, "raw/alerts")) < 8

    assert stack.flusher.flush_sealed() is True and status(stack).lake_ok is True
    ids = [r["event_id"] for r in read(stack.lake, "raw/alerts")]
    assert sorted(ids) == sorted(accepted_ids(receipts)) and len(ids) == 8


def test_a_lake_error_stops_at_the_oldest_segment(
    stacks: Callable[..., Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Order matters: a newer segment is never flushed before an older one.
    stack = stacks(tmp_path)
    stack.ingest([request("acme", MIDNIGHT, 1)])
    stack.ingest([request("acme", MIDNIGHT + 1, 1)])
    older, newer = sealed_segments(stack.buffer_dir)
    blocker = block_lake(stack)
    assert stack.flusher.flush_sealed() is False
    assert sealed_segments(stack.buffer_dir) == [older, newer]
    assert status(stack).lake_errors == 1  # tried once, not once per segment
    blocker.unlink()
    assert stack.flusher.flush_sealed() is True
    assert sealed_segments(stack.buffer_dir) == []
    assert status(stack).flushes == 2


def test_readiness_recovers_by_probe_when_nothing_is_buffered(
    stacks: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stacks(tmp_path)
    blocker = block_lake(stack)
    stop = threading.Event()
    stop.set()
    stack.flusher.run(stop)  # probes at start, flushes once more and returns
    assert status(stack).lake_ok is False
    assert "lake not writable" in (status(stack).last_error or "")
    blocker.unlink()
    # Nothing to flush: the flusher probes instead, so readiness does not wait for data.
    assert stack.flusher.flush_sealed() is True
    assert status(stack).lake_ok is True and status(stack).last_error is None


@pytest.mark.parametrize("content", [None, b"", b"{not json", b'{"unknown_field": 1}'])
def test_read_status_of_a_missing_or_damaged_file_is_none(
    tmp_path: Path, content: bytes | None
) -> None:
    if content is not None:
        status_path(tmp_path).write_bytes(content)
    assert read_status(tmp_path) is None


def test_status_file_is_replaced_atomically(stacks: Callable[..., Stack], tmp_path: Path
                                            ) -> None:
    stack = stacks(tmp_path)
    stack.ingest([request("acme", MIDNIGHT, 2)])
    assert stack.flusher.flush_sealed() is True
    current = status(stack)
    assert current.pid == os.getpid()
    assert current.flush_seconds_total >= current.last_flush_seconds > 0
    assert [p.name for p in stack.buffer_dir.iterdir() if p.name.startswith(".")] == []


# ---- the loop -------------------------------------------------------------------------


def test_run_flushes_until_stop_is_set(stacks: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stacks(tmp_path)
    receipts = stack.ingest([request("acme", MIDNIGHT, 2)])
    stop = threading.Event()
    thread = run_in_thread(stack, stop)
    try:
        wait_for(lambda: sealed_segments(stack.buffer_dir) == [])
        assert thread.is_alive()
        more = stack.ingest([request("acme", MIDNIGHT + 1, 3)])  # picked up while running
        wait_for(lambda: sealed_segments(stack.buffer_dir) == [])
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert sorted(r["event_id"] for r in read(stack.lake, "raw/alerts")) == sorted(
        accepted_ids(receipts + more))


def test_run_flushes_what_is_sealed_once_more_when_stopped(
    stacks: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stacks(tmp_path)
    receipts = stack.ingest([request("acme", MIDNIGHT, 2)])
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    stack.flusher.run(stop)
    assert time.monotonic() - started < 2
    assert sealed_segments(stack.buffer_dir) == []
    assert len(read(stack.lake, "raw/alerts")) == len(accepted_ids(receipts)) == 2


def test_run_exits_when_the_parent_process_changes(
    stacks: Callable[..., Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = stacks(tmp_path)
    stack.ingest([request("acme", MIDNIGHT, 1)])
    stop = threading.Event()
    thread = run_in_thread(stack, stop, parent_pid=os.getppid())
    wait_for(lambda: sealed_segments(stack.buffer_dir) == [])
    assert thread.is_alive()
    # The intake died: the flusher was re-parented (to init or a subreaper).
    monkeypatch.setattr(flusher_module.os, "getppid", lambda: 1)
    thread.join(5)
    assert not thread.is_alive() and not stop.is_set()


def test_run_does_nothing_when_the_parent_is_already_gone(
    stacks: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stacks(tmp_path)
    stack.ingest([request("acme", MIDNIGHT, 1)])
    stack.flusher.run(threading.Event(), parent_pid=os.getppid() + 1_000_000)
    # It returned at once, without flushing: a new intake (and its flusher) owns the buffer.
    assert len(sealed_segments(stack.buffer_dir)) == 1


@pytest.mark.parametrize(
    "failure",
    [
        sqlite3.OperationalError("database is locked"),  # the key store, past its timeout
        RuntimeError("a bug"),
    ],
)
def test_a_non_lake_error_does_not_kill_the_loop(
    stacks: Callable[..., Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
) -> None:
    stack = stacks(tmp_path)
    receipts = stack.ingest([request("acme", MIDNIGHT, 2)])
    real_persist = SeenStore.persist
    calls = 0

    def fail_once(self: SeenStore, entries: list[KeyEntry]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise failure
        real_persist(self, entries)

    monkeypatch.setattr(SeenStore, "persist", fail_once)
    stop = threading.Event()
    thread = run_in_thread(stack, stop)
    try:
        wait_for(lambda: sealed_segments(stack.buffer_dir) == [])
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(5)
    assert calls == 2
    assert status(stack).lake_ok is True and status(stack).lake_errors == 0
    assert sorted(r["event_id"] for r in read(stack.lake, "raw/alerts")) == sorted(
        accepted_ids(receipts))  # written twice, one copy


def test_run_prunes_expired_body_keys_and_keeps_delivery_keys(
    stacks: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stacks(tmp_path)
    now = int(time.time() * 1_000_000)
    old_body = KeyEntry(body_key("acme", "old"), BODY, "e-old", now - 2 * DAY_US)
    fresh_body = KeyEntry(body_key("acme", "fresh"), BODY, "e-fresh", now - DAY_US // 2)
    old_delivery = KeyEntry(b"d" * 16, DELIVERY, "e-old", now - 400 * DAY_US)
    stack.seen.persist([old_body, fresh_body, old_delivery])
    stop = threading.Event()
    stop.set()
    stack.flusher.run(stop)
    assert set(stack.seen.lookup([old_body.key, fresh_body.key, old_delivery.key])) == {
        fresh_body.key, old_delivery.key}
