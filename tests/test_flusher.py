"""The flusher: sealed segments → Parquet partitions → dedup keys → segment deleted, once."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from service import flusher as flusher_module
from service.adapters import generic
from service.buffer import DurableBuffer
from service.dedup import DedupIndex
from service.flusher import Flusher
from service.intake import Intake, Receipt, RequestInfo
from warehouse.contracts import AlertRecord
from warehouse.lake import Lake, LakeError, iter_partition_dirs, open_lake
from warehouse.timestamps import parse_rfc3339_us

DAY_US = 24 * 3600 * 1_000_000
# Midnight UTC between 2026-11-26 and 2026-11-27: a receive date changes here.
MIDNIGHT = parse_rfc3339_us("2026-11-27T00:00:00Z")

Request = tuple[RequestInfo, list[AlertRecord]]


@dataclass
class Stack:
    """A buffer, dedup index, lake and flusher on one temp directory (no threads but the
    buffer writer's, which `ingest` starts and stops)."""

    root: Path
    max_rows: int
    buffer: DurableBuffer = field(init=False)
    dedup: DedupIndex = field(init=False)
    lake: Lake = field(init=False)
    flusher: Flusher = field(init=False)
    flushed: list[tuple[float, int]] = field(default_factory=list)
    errors: int = 0

    def __post_init__(self) -> None:
        self.buffer = DurableBuffer(
            self.root / "buffer", max_bytes=1 << 30, segment_max_events=1 << 30,
            segment_max_bytes=1 << 30, segment_max_age=3600,
        )
        self.dedup = DedupIndex(self.root / "state" / "dedup.sqlite", body_window_us=DAY_US)
        self.lake = open_lake(str(self.root / "lake"))
        self.flusher = Flusher(
            self.buffer, self.dedup, self.lake, self.max_rows,
            on_flush=lambda s, rows: self.flushed.append((s, rows)), on_error=self._on_error,
        )

    def _on_error(self) -> None:
        self.errors += 1

    def ingest(self, requests: list[Request]) -> list[Receipt]:
        """Submit requests through the real intake, then stop the buffer (seals the segment)."""
        intake = Intake(self.buffer, self.dedup, retry_after=5)

        async def main() -> list[Receipt]:
            self.buffer.start()
            return [await intake.submit(info, records) for info, records in requests]

        receipts = asyncio.run(main())
        self.buffer.stop()
        return receipts

    def restart(self) -> Stack:
        """A new process on the same directories (the old one "crashed")."""
        self.dedup.close()
        again = Stack(self.root, self.max_rows)
        again.flusher.replay_keys()
        return again

    def close(self) -> None:
        self.buffer.stop()
        self.dedup.close()


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[list[Stack]]:
    made: list[Stack] = []
    yield made
    for stack in made:
        stack.close()


def open_stack(stacks: list[Stack], root: Path, max_rows: int = 1000) -> Stack:
    stack = Stack(root, max_rows)
    stacks.append(stack)
    return stack


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


# ---- exactly once ---------------------------------------------------------------------


@pytest.mark.parametrize("crash_in", ["persist", "delete_segment"])
def test_segment_flushed_twice_leaves_one_copy(
    stacks: list[Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_in: str
) -> None:
    stack = open_stack(stacks, tmp_path)
    receipts = stack.ingest([request("acme", MIDNIGHT - 10, 3), request("acme", MIDNIGHT + 10, 2),
                             request("globex", MIDNIGHT, 1)])
    [segment] = stack.buffer.sealed_segments()

    # The process dies after the lake write, before the segment is deleted.
    target = stack.dedup if crash_in == "persist" else stack.buffer

    def crash(*args: object) -> None:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(target, crash_in, crash)
    with pytest.raises(RuntimeError):
        stack.flusher.flush(segment)
    assert segment.path.exists()
    files_before = sorted(i.path for i in stack.lake.files("raw/alerts"))
    assert len(read(stack.lake, "raw/alerts")) == 6
    monkeypatch.undo()

    again = stack.restart()
    stacks.append(again)
    assert again.dedup.pending_count > 0  # the buffered keys were held again
    assert again.flusher.flush_sealed()

    alerts = read(again.lake, "raw/alerts")
    assert sorted(r["event_id"] for r in alerts) == sorted(accepted_ids(receipts))
    assert sorted(i.path for i in again.lake.files("raw/alerts")) == files_before
    requests = read(again.lake, "raw/requests")
    assert sorted(r["request_id"] for r in requests) == sorted(r.request_id for r in receipts)
    assert again.buffer.sealed_segments() == []
    assert again.dedup.pending_count == 0
    assert again.flushed == [(again.flushed[0][0], 6)]


# ---- partitions and files -------------------------------------------------------------


def test_two_tenants_and_two_receive_dates_land_in_four_partitions(
    stacks: list[Stack], tmp_path: Path
) -> None:
    stack = open_stack(stacks, tmp_path)
    stack.ingest([
        request("acme", MIDNIGHT - 1, 2),  # the last microsecond of the 26th
        request("acme", MIDNIGHT, 1),  # the first of the 27th
        request("globex", MIDNIGHT - DAY_US // 2, 3),
        request("globex", MIDNIGHT + DAY_US - 1, 4),
    ])
    [segment] = stack.buffer.sealed_segments()
    assert stack.flusher.flush_sealed()

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


@pytest.mark.parametrize(
    ("alerts", "max_rows", "file_rows"),
    [
        (7, 3, [3, 3, 1]),  # a remainder file
        (6, 3, [3, 3]),  # an exact multiple: no empty file
        (2, 3, [2]),  # below the limit: one file
        (3, 1, [1, 1, 1]),  # one row per file
    ],
)
def test_rows_split_into_files_at_lake_file_max_rows(
    stacks: list[Stack], tmp_path: Path, alerts: int, max_rows: int, file_rows: list[int]
) -> None:
    stack = open_stack(stacks, tmp_path, max_rows=max_rows)
    [receipt] = stack.ingest([request("acme", MIDNIGHT, alerts)])
    assert stack.flusher.flush_sealed()

    files = stack.lake.files("raw/alerts")
    assert [f.base_name[-12:] for f in files] == [f"-{n:03d}.parquet" for n in range(len(files))]
    assert [pq.read_metadata(f.path).num_rows for f in files] == file_rows
    # Concatenated in file order, the rows are the events in sequence order.
    rows = [r for f in files for r in pq.read_table(f.path).to_pylist()]
    assert [r["event_id"] for r in rows] == receipt.ids
    seqs = [r["ingest_seq"] for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + alerts))


# ---- the request archive --------------------------------------------------------------


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
    stacks: list[Stack], tmp_path: Path, body: bytes
) -> None:
    stack = open_stack(stacks, tmp_path)
    [receipt] = stack.ingest([request("acme", MIDNIGHT, body=body)])
    assert stack.flusher.flush_sealed()

    [row] = read(stack.lake, "raw/requests")
    assert row["body"] == body
    assert row["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert row["request_id"] == receipt.request_id
    assert row["event_count"] == 1 and row["duplicate_count"] == 0
    assert dict(row["headers"])["user-agent"] == "test"
    [alert] = read(stack.lake, "raw/alerts")
    assert alert["request_id"] == receipt.request_id


def test_a_body_sent_twice_is_archived_once_and_counted_as_duplicates(
    stacks: list[Stack], tmp_path: Path
) -> None:
    stack = open_stack(stacks, tmp_path)
    body = b'[{"signature":"a"},{"signature":"b"}]'
    first, second = stack.ingest([request("acme", MIDNIGHT, body=body),
                                  request("acme", MIDNIGHT + 5, body=body)])
    assert stack.flusher.flush_sealed()

    assert second.request_id == first.request_id and second.ids == []
    assert len(read(stack.lake, "raw/requests")) == 1
    assert len(read(stack.lake, "raw/alerts")) == 2
    duplicates = read(stack.lake, "raw/duplicates")
    assert sorted(d["duplicate_of"] for d in duplicates) == sorted(first.ids)
    assert {d["reason"] for d in duplicates} == {"body_hash"}


# ---- an unavailable lake --------------------------------------------------------------


def test_lake_error_keeps_the_segment_and_a_later_success_resets(
    stacks: list[Stack], tmp_path: Path
) -> None:
    stack = open_stack(stacks, tmp_path)
    receipts = stack.ingest([request("acme", MIDNIGHT, 3)])
    [segment] = stack.buffer.sealed_segments()
    depth = stack.buffer.depth_bytes

    # The lake's root sits under a regular file: every write fails.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    stack.flusher.lake = open_lake(str(blocker / "lake"))

    for attempt in (1, 2):
        assert stack.flusher.flush_sealed() is False
        assert stack.flusher.lake_ok is False
        assert stack.flusher.last_error and "lake write failed" in stack.flusher.last_error
        assert stack.errors == attempt
        assert segment.path.exists() and stack.buffer.depth_bytes == depth
        assert stack.dedup.pending_count > 0

    blocker.unlink()
    assert stack.flusher.flush_sealed() is True
    assert stack.flusher.lake_ok is True and stack.flusher.last_error is None
    assert not segment.path.exists() and stack.buffer.depth_bytes == 0
    lake = open_lake(str(blocker / "lake"))
    assert sorted(r["event_id"] for r in read(lake, "raw/alerts")) == sorted(
        accepted_ids(receipts)
    )


def test_a_flush_that_fails_halfway_is_retried_without_copies(
    stacks: list[Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = open_stack(stacks, tmp_path, max_rows=2)
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
    assert stack.flusher.flush_sealed() is False and stack.flusher.lake_ok is False
    assert stack.buffer.sealed_segments() != []

    assert stack.flusher.flush_sealed() is True and stack.flusher.lake_ok is True
    ids = [r["event_id"] for r in read(stack.lake, "raw/alerts")]
    assert sorted(ids) == sorted(accepted_ids(receipts)) and len(ids) == 8


def test_readiness_recovers_by_probe_when_nothing_is_buffered(
    stacks: list[Stack], tmp_path: Path
) -> None:
    stack = open_stack(stacks, tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    stack.flusher.lake = open_lake(str(blocker / "lake"))
    stack.flusher.start()
    try:
        _wait_for(lambda: stack.flusher.lake_ok is False)
        blocker.unlink()
        _wait_for(lambda: stack.flusher.lake_ok is True, timeout=10)
        assert stack.flusher.last_error is None
    finally:
        stack.flusher.stop(drain=False)


def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_the_flusher_thread_survives_an_unexpected_error(
    stacks: list[Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = open_stack(stacks, tmp_path)
    receipts = stack.ingest([request("acme", MIDNIGHT, 2)])
    real_persist = stack.dedup.persist
    calls = 0

    def busy_once(entries: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # e.g. the dedup file stayed locked past its busy timeout
            raise sqlite3.OperationalError("database is locked")
        real_persist(entries)

    monkeypatch.setattr(stack.dedup, "persist", busy_once)
    stack.flusher.start()
    try:
        stack.buffer.sealed_event.set()
        _wait_for(lambda: stack.buffer.sealed_segments() == [], timeout=10)
    finally:
        stack.flusher.stop(drain=False)
    assert calls == 2
    assert sorted(r["event_id"] for r in read(stack.lake, "raw/alerts")) == sorted(
        accepted_ids(receipts)
    )


@pytest.mark.parametrize("rows_per_chunk", [1, 2, 5, 10_000])
def test_rows_converted_in_chunks_keep_segment_order(
    stacks: list[Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows_per_chunk: int
) -> None:
    # Rows become Arrow every few rows (memory); the partitions must not notice.
    monkeypatch.setattr(flusher_module, "_ROWS_PER_CHUNK", rows_per_chunk)
    stack = open_stack(stacks, tmp_path, max_rows=4)
    repeated = b'[{"signature":"again"}]'
    receipts = stack.ingest([
        request("acme", MIDNIGHT, 3), request("globex", MIDNIGHT, 2),
        request("acme", MIDNIGHT, body=repeated), request("acme", MIDNIGHT + 1, body=repeated),
        request("acme", MIDNIGHT + DAY_US, 4),
    ])
    assert stack.flusher.flush_sealed()

    alerts = read(stack.lake, "raw/alerts")
    by_partition: dict[tuple[str, str], list[int]] = {}
    for row in alerts:
        by_partition.setdefault((row["tenant_id"], row["date"].isoformat()), []).append(
            row["ingest_seq"])
    assert all(seqs == sorted(seqs) for seqs in by_partition.values())
    assert sorted(r["event_id"] for r in alerts) == sorted(accepted_ids(receipts))
    assert len(read(stack.lake, "raw/requests")) == 4  # the repeated body once
    assert len(read(stack.lake, "raw/duplicates")) == 1
