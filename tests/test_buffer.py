"""The durable buffer: record format, recovery, sequence lease, group commit, failed writes,
bounds, sealing (decided on the event loop), flushed segments, shutdown."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from service import buffer as buffer_module
from service.buffer import (
    BufferFull,
    BufferWriteError,
    DurableBuffer,
    Segment,
    delete_segment,
    encode_record,
    sealed_segments,
)

# Large enough never to trigger unless a test means it to.
NEVER = 10**12


def make_buffer(
    directory: Path,
    *,
    max_bytes: int = NEVER,
    max_events: int = NEVER,
    max_segment_bytes: int = NEVER,
    max_age: float = 3600.0,
) -> DurableBuffer:
    return DurableBuffer(
        directory,
        max_bytes=max_bytes,
        segment_max_events=max_events,
        segment_max_bytes=max_segment_bytes,
        segment_max_age=max_age,
    )


def record(seq: int, body: bytes = b"", events: int = 1) -> bytes:
    """A record whose meta carries its sequence numbers the way the intake writes them."""
    meta = orjson.dumps({"first_seq": seq, "last_seq": seq + events - 1, "body_len": len(body)})
    return encode_record(meta, body)


def put(buf: DurableBuffer, body: bytes = b"", events: int = 1) -> tuple[asyncio.Future[None], int]:
    """Allocate and submit in one step, as the intake does: (durable future, segment id)."""
    seq = buf.allocate(events)
    return buf.submit(record(seq, body, events), events, seq)


def replay(directory: Path) -> list[tuple[int, bytes]]:
    """(first_seq, body) of every record of every sealed segment, in segment order."""
    return [
        (orjson.loads(meta)["first_seq"], body)
        for seg in sealed_segments(directory)
        for meta, body in seg.records()
    ]


def bodies(directory: Path) -> list[bytes]:
    return [body for _, body in replay(directory)]


def layout(directory: Path) -> list[list[int]]:
    """The first_seq of every record, grouped per sealed segment."""
    return [
        [orjson.loads(meta)["first_seq"] for meta, _ in seg.records()]
        for seg in sealed_segments(directory)
    ]


def wal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.wal"))


def files_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("seg-*"))


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


async def settled(buf: DurableBuffer) -> None:
    """Wait until the disk thread has done everything queued (writes and seals)."""
    await until(lambda: not buf._writing and not buf._queue)


def record_applies(monkeypatch: pytest.MonkeyPatch, buf: DurableBuffer) -> list[list[Any]]:
    """Every hand-off to the disk thread: per call, (segment, records, seal_after) per chunk."""
    calls: list[list[Any]] = []
    real = buf._apply

    def apply(chunks: list[Any]) -> list[str | None]:
        calls.append([(c.segment, len(c.records), c.seal_after) for c in chunks])
        return real(chunks)

    monkeypatch.setattr(buf, "_apply", apply)
    return calls


def count_fdatasync(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    syncs: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        syncs.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return syncs


# ---- record format --------------------------------------------------------------------


@pytest.mark.parametrize(
    "pairs",
    [
        # one record, empty body (a duplicate-only request is not archived)
        [(b'{"a":1}', b"")],
        # several records with ordinary bodies
        [(b"{}", b'{"x":1}'), (b'{"b":2}', b"[1,2,3]"), (b"{}", b"{}")],
        # a body containing the magic and bytes that look like a header
        [(b"{}", b"AWR1\x00\x00\x00\x00AWR1\xff\xff\xff\xff"), (b"{}", b"tail")],
        # binary and non-UTF-8 bytes are kept exactly
        [(b'{"k":"\xc3\xa9"}', bytes(range(256)))],
        # a large body
        [(b"{}", os.urandom(300_000)), (b"{}", b"after")],
        # an empty segment
        [],
    ],
)
def test_records_round_trip(tmp_path: Path, pairs: list[tuple[bytes, bytes]]) -> None:
    path = tmp_path / "seg-00000000000000000001.sealed"
    path.write_bytes(b"".join(encode_record(m, b) for m, b in pairs))
    assert list(Segment(path, 1).records()) == pairs


def test_record_layout_is_header_then_meta_then_body() -> None:
    data = encode_record(b"META", b"BODY!")
    assert data[:4] == b"AWR1"
    assert int.from_bytes(data[4:8], "little") == 4
    assert int.from_bytes(data[8:12], "little") == 5
    assert int.from_bytes(data[12:16], "little") == zlib.crc32(b"METABODY!")
    assert data[16:] == b"METABODY!"


def test_reading_stops_at_a_damaged_record(tmp_path: Path) -> None:
    # A sealed segment written by a failed write that could not be cut: replay stops there.
    path = tmp_path / "seg-00000000000000000001.sealed"
    bad = bytearray(record(2, b"second"))
    bad[-1] ^= 0xFF
    path.write_bytes(record(1, b"first") + bytes(bad) + record(3, b"third"))
    assert [body for _, body in Segment(path, 1).records()] == [b"first"]


def test_sealed_segments_are_listed_oldest_first_without_open_ones(tmp_path: Path) -> None:
    for name in ["seg-00000000000000000100.sealed", "seg-00000000000000000009.sealed",
                 "seg-00000000000000000200.wal", "seq.lease", "flusher.status.json"]:
        (tmp_path / name).write_bytes(b"")
    assert [s.first_seq for s in sealed_segments(tmp_path)] == [9, 100]


# ---- recovery -------------------------------------------------------------------------

GOOD = [record(1, b"first"), record(2, b"second"), record(3, b"third")]


@pytest.mark.parametrize(
    ("tail", "survivors"),
    [
        # the last record lost its final byte
        (GOOD[2][:-1], 2),
        # the last record lost a few bytes of its body
        (GOOD[2][:-4], 2),
        # only part of the last header made it
        (GOOD[2][:7], 2),
        # garbage appended after complete records
        (GOOD[2] + b"\x00garbage\xff", 3),
        # a complete-looking header whose crc does not match its bytes
        (GOOD[2][:-1] + b"X", 2),
        # a header claiming more bytes than the file holds
        (GOOD[2] + record(4, b"x" * 100)[:30], 3),
        # zeros, as a filesystem may leave after a crash
        (GOOD[2] + b"\x00" * 64, 3),
        # nothing torn at all
        (GOOD[2], 3),
    ],
)
def test_torn_tail_is_cut_and_earlier_records_survive(
    tmp_path: Path, tail: bytes, survivors: int
) -> None:
    good = b"".join(GOOD[:2])
    wal = tmp_path / "seg-00000000000000000001.wal"
    wal.write_bytes(good + tail)

    buf = make_buffer(tmp_path)

    sealed = tmp_path / "seg-00000000000000000001.sealed"
    assert not wal.exists() and sealed.exists()
    assert bodies(tmp_path) == [b"first", b"second", b"third"][:survivors]
    # The bytes after the last good record are gone from the file, not just skipped.
    assert sealed.stat().st_size == len(b"".join(GOOD[:survivors]))
    assert buf.depth_bytes == sealed.stat().st_size


def test_leftover_wal_segments_are_sealed_on_start(tmp_path: Path) -> None:
    (tmp_path / "seg-00000000000000000001.wal").write_bytes(record(1, b"a") + record(2, b"b"))
    (tmp_path / "seg-00000000000000000003.wal").write_bytes(record(3, b"c"))
    (tmp_path / "seg-00000000000000000000.sealed").write_bytes(record(0, b"old"))

    buf = make_buffer(tmp_path)

    assert wal_files(tmp_path) == []
    assert [s.first_seq for s in sealed_segments(tmp_path)] == [0, 1, 3]
    assert replay(tmp_path) == [(0, b"old"), (1, b"a"), (2, b"b"), (3, b"c")]
    assert buf.depth_bytes == files_size(tmp_path)
    # The next number is above every number in the buffer, and so is the next segment id.
    first = buf.allocate(1)
    assert first > 3

    async def main() -> int:
        future, segment = buf.submit(record(first, b"new"), 1, first)
        await future
        await buf.aclose()
        return segment

    assert asyncio.run(main()) > 3
    assert [s.first_seq for s in sealed_segments(tmp_path)][:3] == [0, 1, 3]
    assert bodies(tmp_path) == [b"old", b"a", b"b", b"c", b"new"]


# ---- sequence numbers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lease_block", "allocations"),
    [
        # the default block: many restarts inside one lease
        (1_000_000, [1, 5, 1, 100]),
        # a tiny block, so that allocations cross lease boundaries
        (3, [1, 2, 5, 1, 7, 3]),
        # a batch larger than the block
        (2, [10, 1, 10]),
        # zero-event requests between others
        (2, [0, 1, 0, 3, 0]),
    ],
)
def test_sequence_strictly_increases_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lease_block: int, allocations: list[int]
) -> None:
    monkeypatch.setattr(buffer_module, "_SEQ_LEASE_BLOCK", lease_block)
    handed_out: list[int] = []
    for count in allocations:
        # Each iteration "crashes": a new buffer on the same directory, nothing closed.
        buf = make_buffer(tmp_path)
        first = buf.allocate(count)
        handed_out.extend(range(first, first + count))
        second = buf.allocate(1)
        handed_out.append(second)
        # The lease on disk is always above every number handed out.
        assert int((tmp_path / "seq.lease").read_text()) > second
    assert handed_out == sorted(set(handed_out)), "numbers must strictly increase"
    assert handed_out[0] >= 1


def test_sequence_starts_above_buffered_records_without_a_lease(tmp_path: Path) -> None:
    # A lease file lost (or a buffer copied without it): the records themselves still count.
    (tmp_path / "seg-00000000000000000500.wal").write_bytes(record(500, events=10))
    buf = make_buffer(tmp_path)
    assert buf.allocate(1) == 510


def test_allocate_hands_out_consecutive_blocks(tmp_path: Path) -> None:
    buf = make_buffer(tmp_path)
    firsts = [buf.allocate(n) for n in (3, 0, 1, 5)]
    assert firsts == [firsts[0], firsts[0] + 3, firsts[0] + 3, firsts[0] + 4]
    assert buf.allocate(1) == firsts[0] + 9


# ---- group commit ---------------------------------------------------------------------


def test_concurrent_submits_all_complete_in_submission_order_and_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buf = make_buffer(tmp_path)
    applies = record_applies(monkeypatch, buf)
    syncs = count_fdatasync(monkeypatch)
    order: list[int] = []
    rng = random.Random(7)

    async def sender() -> int:
        await asyncio.sleep(rng.random() / 200)
        # allocate + submit without an await in between, as the intake does
        seq = buf.allocate(1)
        order.append(seq)
        future, _ = buf.submit(record(seq, f"body-{seq}".encode()), 1, seq)
        await future
        return seq

    async def main() -> list[int]:
        done = await asyncio.gather(*(sender() for _ in range(400)))
        await buf.aclose()
        return done

    done = asyncio.run(main())

    assert sorted(done) == sorted(order) and len(set(done)) == 400
    assert [seq for seq, _ in replay(tmp_path)] == order
    assert bodies(tmp_path) == [f"body-{s}".encode() for s in order]
    written = [n for call in applies for _, n, _ in call]
    assert sum(written) == 400
    # One hand-off to the disk thread per batch, not per request...
    assert len(applies) < 400 / 2, "requests waiting together must share a disk hand-off"
    # ...and one fdatasync per chunk of records (one segment here: one chunk per batch).
    assert len(syncs) == sum(1 for call in applies for _, n, _ in call if n)
    assert len(syncs) < 400 / 2


def test_records_queued_while_the_disk_is_busy_share_one_write_and_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buf = make_buffer(tmp_path)
    applies = record_applies(monkeypatch, buf)
    entered, release = threading.Event(), threading.Event()
    syncs: list[int] = []
    real = os.fdatasync

    def slow_first_fdatasync(fd: int) -> None:
        syncs.append(fd)
        if len(syncs) == 1:
            entered.set()
            release.wait(5)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_first_fdatasync)

    async def main() -> None:
        first, _ = put(buf, b"first")
        await until(entered.is_set)
        # The disk thread is inside the first fsync: these gather into the next batch.
        later = [put(buf, f"later-{i}".encode())[0] for i in range(100)]
        assert not any(f.done() for f in later)
        release.set()
        await first
        await asyncio.gather(*later)
        await buf.aclose()

    asyncio.run(main())
    assert [[(n, seal) for _, n, seal in call] for call in applies] == [
        [(1, False)],
        [(100, False)],  # all 100 in one chunk of one hand-off
        [(0, True)],  # aclose seals the segment
    ]
    assert len(syncs) == 2
    assert bodies(tmp_path) == [b"first"] + [f"later-{i}".encode() for i in range(100)]


def test_records_submitted_in_one_loop_step_are_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buf = make_buffer(tmp_path)
    applies = record_applies(monkeypatch, buf)
    syncs = count_fdatasync(monkeypatch)

    async def main() -> list[int]:
        submitted = [put(buf, b"x") for _ in range(50)]
        await asyncio.gather(*(f for f, _ in submitted))
        await buf.aclose()
        return [segment for _, segment in submitted]

    segments = asyncio.run(main())
    assert len(set(segments)) == 1
    assert applies[0] == [(segments[0], 50, False)]
    assert len(syncs) == 1


# ---- failed writes --------------------------------------------------------------------


def _is_segment(fd: int) -> bool:
    return os.readlink(f"/proc/self/fd/{fd}").endswith(".wal")


def _fail_fdatasync_once(monkeypatch: pytest.MonkeyPatch, armed: list[bool]) -> None:
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        if armed[0] and _is_segment(fd):
            armed[0] = False
            raise OSError(errno.EIO, "simulated fsync failure")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)


def _fail_write_halfway_once(monkeypatch: pytest.MonkeyPatch, armed: list[bool]) -> None:
    real = os.write

    def write(fd: int, data: Any) -> int:
        if armed[0] and _is_segment(fd):
            armed[0] = False
            real(fd, bytes(data[: len(data) // 2]))  # part of the batch reaches the file
            raise OSError(errno.ENOSPC, "simulated full disk")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


Injector = Callable[[pytest.MonkeyPatch, list[bool]], None]


@pytest.mark.parametrize("inject", [_fail_fdatasync_once, _fail_write_halfway_once])
@pytest.mark.parametrize("good_before", [0, 3])
def test_failed_write_fails_the_chunk_and_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inject: Injector, good_before: int
) -> None:
    buf = make_buffer(tmp_path)
    armed = [False]
    inject(monkeypatch, armed)

    segments: list[int] = []

    def submit_all(texts: list[bytes]) -> list[asyncio.Future[None]]:
        # Submitted in one loop step: one chunk, one write, one fsync.
        submitted = [put(buf, b) for b in texts]
        segments.extend(s for _, s in submitted)
        return [f for f, _ in submitted]

    async def main() -> None:
        before = [f"good-{i}".encode() for i in range(good_before)]
        assert await asyncio.gather(*submit_all(before)) == [None] * good_before
        armed[0] = True
        results = await asyncio.gather(
            *submit_all([b"bad-1", b"bad-2", b"bad-3", b"bad-4"]), return_exceptions=True
        )
        assert not armed[0], "the failure was injected"
        assert len(results) == 4
        assert all(isinstance(r, BufferWriteError) for r in results), results
        await settled(buf)
        # Nothing of the failed chunk is on disk or counted any more, and the segment it
        # went to is sealed: later records go to a new one.
        assert buf.depth_bytes == files_size(tmp_path)
        assert [s.first_seq for s in sealed_segments(tmp_path)] == [segments[0]]
        assert wal_files(tmp_path) == []
        assert await asyncio.gather(*submit_all([b"good-after-1", b"good-after-2"])) == [None] * 2
        await buf.aclose()

    asyncio.run(main())

    assert len(set(segments)) == 2 and segments[-1] > segments[0]
    expected = [f"good-{i}".encode() for i in range(good_before)]
    assert bodies(tmp_path) == expected + [b"good-after-1", b"good-after-2"]
    # Nothing of the failed chunk is left between the good records.
    assert files_size(tmp_path) == sum(len(record(0, b)) for b in bodies(tmp_path))
    assert buf.depth_bytes == files_size(tmp_path)
    assert wal_files(tmp_path) == []


def test_a_failed_chunk_fails_only_its_own_futures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One batch, two chunks (the first segment is sealed by count in between): the first
    # chunk's fsync fails, the second chunk is written and acknowledged.
    buf = make_buffer(tmp_path, max_events=2)
    applies = record_applies(monkeypatch, buf)
    armed = [True]
    _fail_fdatasync_once(monkeypatch, armed)

    async def main() -> tuple[list[Any], list[int]]:
        submitted = [put(buf, f"r{n}".encode()) for n in range(1, 5)]
        results = await asyncio.gather(*(f for f, _ in submitted), return_exceptions=True)
        await buf.aclose()
        return results, [s for _, s in submitted]

    results, segments = asyncio.run(main())
    assert applies[0] == [(segments[0], 2, True), (segments[2], 2, False)]
    assert segments[0] == segments[1] < segments[2] == segments[3]
    assert [type(r) for r in results] == [BufferWriteError, BufferWriteError, type(None),
                                          type(None)]
    assert [b for _, b in replay(tmp_path)] == [b"r3", b"r4"]
    assert files_size(tmp_path) == 2 * len(record(0, b"r3"))


def test_a_segment_that_cannot_be_cut_is_never_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fsync fails and so does the truncate: the segment is sealed with the unacknowledged
    # bytes in it. Later records must go to a new file: a second file of the same name would
    # replace the first (and its acknowledged records) when sealed.
    buf = make_buffer(tmp_path)
    armed = [False]
    _fail_fdatasync_once(monkeypatch, armed)
    real_ftruncate = os.ftruncate

    def ftruncate(fd: int, length: int) -> None:
        if _is_segment(fd):
            raise OSError(errno.EIO, "simulated truncate failure")
        real_ftruncate(fd, length)

    async def main() -> list[int]:
        f1, s1 = put(buf, b"acknowledged")
        await f1
        monkeypatch.setattr(os, "ftruncate", ftruncate)
        armed[0] = True
        f2, s2 = put(buf, b"failed")
        with pytest.raises(BufferWriteError):
            await f2
        monkeypatch.setattr(os, "ftruncate", real_ftruncate)
        f3, s3 = put(buf, b"after")
        await f3
        await buf.aclose()
        return [s1, s2, s3]

    s1, s2, s3 = asyncio.run(main())
    assert s1 == s2 < s3
    got = bodies(tmp_path)
    # (The failed record's bytes are complete but could not be cut: they may be replayed.)
    assert got[0] == b"acknowledged" and got[-1] == b"after"
    assert [s.first_seq for s in sealed_segments(tmp_path)] == [s1, s3]


def test_a_failed_directory_fsync_after_sealing_keeps_the_accounting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buf = make_buffer(tmp_path, max_events=1)
    real = buffer_module.fsync_dir
    failed: list[Path] = []

    def fsync_dir(directory: Path) -> None:
        if not failed and list(directory.glob("seg-*.sealed")):
            failed.append(directory)
            raise OSError(errno.EIO, "simulated directory fsync failure")
        real(directory)

    monkeypatch.setattr(buffer_module, "fsync_dir", fsync_dir)

    async def main() -> None:
        for _ in range(2):
            future, _ = put(buf, b"x")
            await future
        await until(lambda: len(sealed_segments(tmp_path)) == 1)
        await settled(buf)
        assert failed, "the failure was injected"
        assert buf.depth_bytes == files_size(tmp_path)
        [segment] = sealed_segments(tmp_path)
        delete_segment(segment)
        assert buf.forget_flushed() == [segment.first_seq]
        assert buf.depth_bytes == files_size(tmp_path) == len(record(1, b"x"))
        await buf.aclose()

    asyncio.run(main())


# ---- bounds ---------------------------------------------------------------------------

RECORD_100 = len(record(1, b"x" * 100))


@pytest.mark.parametrize(
    ("max_bytes", "records_that_fit"),
    [
        (0, 0),  # no room at all
        (RECORD_100 - 1, 0),  # one byte short of the first record
        (RECORD_100, 1),  # exactly one record
        (3 * RECORD_100 + 10, 3),  # three and a bit
    ],
)
@pytest.mark.parametrize("await_each", [True, False])
def test_buffer_full_past_max_bytes(
    tmp_path: Path, max_bytes: int, records_that_fit: int, await_each: bool
) -> None:
    buf = make_buffer(tmp_path, max_bytes=max_bytes)

    async def main() -> int:
        accepted: list[asyncio.Future[None]] = []
        for seq in range(1, 10):
            try:
                future, _ = buf.submit(record(seq, b"x" * 100), 1, seq)
            except BufferFull:
                break
            accepted.append(future)
            if await_each:  # written records count as much as queued ones
                await future
        depth = buf.depth_bytes
        with pytest.raises(BufferFull):
            buf.submit(record(99, b"x" * 100), 1, 99)
        assert buf.depth_bytes == depth, "a refused record takes no room"
        await asyncio.gather(*accepted)
        await buf.aclose()
        return len(accepted)

    assert asyncio.run(main()) == records_that_fit
    assert len(replay(tmp_path)) == records_that_fit
    assert buf.depth_bytes == files_size(tmp_path) == records_that_fit * RECORD_100


def test_room_returns_when_the_flusher_deletes_a_segment(tmp_path: Path) -> None:
    buf = make_buffer(tmp_path, max_bytes=2 * RECORD_100, max_events=2)

    async def main() -> None:
        for seq in (1, 2):
            future, _ = buf.submit(record(seq, b"x" * 100), 1, seq)
            await future
        with pytest.raises(BufferFull):
            buf.submit(record(3, b"x" * 100), 1, 3)
        buf.tick()  # the segment is full (by count): the tick seals it
        await settled(buf)
        [segment] = sealed_segments(tmp_path)
        assert buf.depth_bytes == 2 * RECORD_100
        delete_segment(segment)  # the flusher's last step
        assert buf.forget_flushed() == [segment.first_seq]
        assert buf.depth_bytes == 0
        future, _ = buf.submit(record(3, b"x" * 100), 1, 3)
        await future
        await buf.aclose()

    asyncio.run(main())
    assert replay(tmp_path) == [(3, b"x" * 100)]


def test_submit_after_aclose_is_refused(tmp_path: Path) -> None:
    buf = make_buffer(tmp_path)

    async def main() -> None:
        await buf.aclose()
        with pytest.raises(BufferWriteError):
            buf.submit(record(1), 1, 1)

    asyncio.run(main())
    assert list(tmp_path.glob("seg-*")) == []


# ---- sealing --------------------------------------------------------------------------

RECORD_SIZE = len(record(1, b"x" * 10))


@pytest.mark.parametrize(
    ("limits", "events_per_record", "sealed", "still_open"),
    [
        # by event count: 3 events per segment, one event per record
        ({"max_events": 3}, 1, [[1, 2, 3], [4, 5, 6]], [7]),
        # by event count with multi-event records: sealed once the count is reached or passed
        ({"max_events": 4}, 3, [[1, 4], [7, 10], [13, 16]], [19]),
        # by event count, one record per segment
        ({"max_events": 1}, 2, [[1], [3], [5], [7], [9], [11]], [13]),
        # by bytes: two records per segment
        ({"max_segment_bytes": 2 * RECORD_SIZE}, 1, [[1, 2], [3, 4], [5, 6]], [7]),
        # by bytes: a record larger than the limit still gets a segment of its own
        ({"max_segment_bytes": RECORD_SIZE // 2}, 1, [[1], [2], [3], [4], [5], [6]], [7]),
        # no limit reached: one open segment
        ({}, 1, [], [1, 2, 3, 4, 5, 6, 7]),
    ],
)
def test_sealing_by_count_and_bytes(
    tmp_path: Path,
    limits: dict[str, int],
    events_per_record: int,
    sealed: list[list[int]],
    still_open: list[int],
) -> None:
    buf = make_buffer(tmp_path, **limits)  # type: ignore[arg-type]
    placed: dict[int, list[int]] = {}

    async def main() -> None:
        for _ in range(7):
            seq = buf.allocate(events_per_record)
            future, segment = buf.submit(
                record(seq, b"x" * 10, events_per_record), events_per_record, seq
            )
            placed.setdefault(segment, []).append(seq)
            await future
        await settled(buf)
        # Sealing happens on the event loop as records arrive; the last segment stays open.
        assert layout(tmp_path) == sealed
        [wal] = wal_files(tmp_path)
        assert [orjson.loads(m)["first_seq"] for m, _ in Segment(wal, 0).records()] == still_open
        await buf.aclose()

    asyncio.run(main())
    # aclose seals the open segment; each segment is named after the id `submit` returned,
    # which is the first sequence number it holds.
    assert layout(tmp_path) == [*sealed, still_open]
    assert {s.first_seq: seqs for s, seqs in zip(sealed_segments(tmp_path), layout(tmp_path),
                                                  strict=True)} == placed
    assert [s.first_seq for s in sealed_segments(tmp_path)] == [x[0] for x in layout(tmp_path)]
    assert wal_files(tmp_path) == []


def test_tick_seals_by_age_without_further_writes(tmp_path: Path) -> None:
    buf = make_buffer(tmp_path, max_age=0.05)

    async def main() -> float:
        buf.tick()  # nothing open: nothing to seal
        future, segment = put(buf, b"lonely")
        await future
        buf.tick()  # too young
        await settled(buf)
        assert sealed_segments(tmp_path) == [] and len(wal_files(tmp_path)) == 1
        assert buf.oldest_age_seconds() < 0.05
        started = time.monotonic()
        while not sealed_segments(tmp_path):
            buf.tick()
            await settled(buf)
            await asyncio.sleep(0.01)
        waited = time.monotonic() - started
        assert [s.first_seq for s in sealed_segments(tmp_path)] == [segment]
        buf.tick()  # nothing open any more
        await settled(buf)
        await buf.aclose()
        return waited

    assert asyncio.run(main()) < 1.0
    assert bodies(tmp_path) == [b"lonely"]
    assert wal_files(tmp_path) == []
    assert len(sealed_segments(tmp_path)) == 1


def test_a_record_after_the_age_limit_starts_a_new_segment(tmp_path: Path) -> None:
    buf = make_buffer(tmp_path, max_age=0.05)

    async def main() -> list[int]:
        f1, s1 = put(buf, b"old")
        await f1
        await asyncio.sleep(0.06)
        f2, s2 = put(buf, b"new")
        await f2
        await settled(buf)
        assert [s.first_seq for s in sealed_segments(tmp_path)] == [s1]
        await buf.aclose()
        return [s1, s2]

    s1, s2 = asyncio.run(main())
    assert s1 < s2
    assert [s.first_seq for s in sealed_segments(tmp_path)] == [s1, s2]
    assert bodies(tmp_path) == [b"old", b"new"]
    assert [len(x) for x in layout(tmp_path)] == [1, 1]


def test_an_idle_buffer_seals_nothing(tmp_path: Path) -> None:
    buf = make_buffer(tmp_path, max_age=0.0)

    async def main() -> None:
        for _ in range(3):
            buf.tick()
            await asyncio.sleep(0.01)
        assert buf.oldest_age_seconds() == 0.0
        await buf.aclose()

    asyncio.run(main())
    assert list(tmp_path.glob("seg-*")) == []
    assert buf.forget_flushed() == []


@pytest.mark.parametrize(
    "plan",
    [
        # (events, first_seq): the intake's allocations, zero-event records in between
        [(1, 1), (0, 2), (1, 2), (0, 3), (0, 3), (2, 3), (0, 5), (1, 5)],
        # a zero-event record shares its first_seq with the next record, across a seal
        [(1, 1), (0, 2), (0, 2), (1, 2), (1, 3)],
        # a first_seq below the last id (the caller's numbers are not trusted for ids)
        [(3, 10), (1, 4), (0, 4), (1, 5)],
        # several records per segment, all zero-event but one
        [(0, 7), (0, 7), (1, 7), (0, 8), (1, 8)],
        # the same first_seq again and again
        [(1, 5), (1, 5), (1, 5)],
    ],
)
def test_segment_ids_are_unique_and_increasing_even_with_zero_event_records(
    tmp_path: Path, plan: list[tuple[int, int]]
) -> None:
    buf = make_buffer(tmp_path, max_events=1)
    ids: list[int] = []

    async def main() -> None:
        for n, (events, first_seq) in enumerate(plan):
            future, segment = buf.submit(record(first_seq, f"r{n}".encode(), events), events,
                                         first_seq)
            ids.append(segment)
            await future
        await buf.aclose()

    asyncio.run(main())
    assert ids == sorted(ids), "ids never go back"
    distinct = list(dict.fromkeys(ids))
    # Every segment is sealed under its own name and holds exactly its records, in order.
    assert [s.first_seq for s in sealed_segments(tmp_path)] == distinct
    expected = [[f"r{n}".encode() for n, s in enumerate(ids) if s == seg] for seg in distinct]
    assert [[b for _, b in s.records()] for s in sealed_segments(tmp_path)] == expected


# ---- flushed segments and shutdown ----------------------------------------------------


def test_forget_flushed_reports_each_deleted_segment_once(tmp_path: Path) -> None:
    (tmp_path / "seg-00000000000000000001.wal").write_bytes(record(1, b"leftover"))
    buf = make_buffer(tmp_path, max_events=1)

    async def main() -> list[int]:
        ids = []
        for _ in range(3):
            future, segment = put(buf, b"x")
            ids.append(segment)
            await future
        await buf.aclose()
        return ids

    ids = asyncio.run(main())
    segments = sealed_segments(tmp_path)
    assert [s.first_seq for s in segments] == [1, *ids]
    assert buf.forget_flushed() == []
    depth = buf.depth_bytes

    for segment in (segments[2], segments[0]):
        size = segment.path.stat().st_size
        delete_segment(segment)
        delete_segment(segment)  # a second flusher deleting it too: same outcome
        assert buf.forget_flushed() == [segment.first_seq]
        assert buf.forget_flushed() == []
        depth -= size
        assert buf.depth_bytes == depth == files_size(tmp_path)
    assert [s.first_seq for s in sealed_segments(tmp_path)] == [ids[0], ids[2]]


@pytest.mark.parametrize("awaited_first", [0, 5, 20])
def test_aclose_writes_what_is_queued_and_seals(tmp_path: Path, awaited_first: int) -> None:
    buf = make_buffer(tmp_path)

    async def main() -> list[asyncio.Future[None]]:
        futures = []
        for i in range(20):
            future, _ = put(buf, f"q{i}".encode())
            futures.append(future)
            if i < awaited_first:
                await future
        await buf.aclose()  # the rest are still queued: aclose writes them first
        assert all(f.done() and f.exception() is None for f in futures)
        return futures

    asyncio.run(main())
    assert wal_files(tmp_path) == []
    assert len(sealed_segments(tmp_path)) == 1
    assert bodies(tmp_path) == [f"q{i}".encode() for i in range(20)]
    assert buf.depth_bytes == files_size(tmp_path)

    # A restart finds the sealed segment and numbers above it.
    again = make_buffer(tmp_path)
    assert again.depth_bytes == files_size(tmp_path)
    assert again.allocate(1) > max(seq for seq, _ in replay(tmp_path))


def test_aclose_while_the_disk_is_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buf = make_buffer(tmp_path)
    entered, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        entered.set()
        release.wait(5)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)

    async def main() -> None:
        first, _ = put(buf, b"in-flight")
        await until(entered.is_set)
        queued, _ = put(buf, b"queued")
        closing = asyncio.ensure_future(buf.aclose())
        await asyncio.sleep(0.02)
        assert not closing.done()
        with pytest.raises(BufferWriteError):  # no new records once closing
            put(buf, b"late")
        release.set()
        await closing
        assert first.done() and queued.done()
        assert first.exception() is None and queued.exception() is None

    asyncio.run(main())
    assert bodies(tmp_path) == [b"in-flight", b"queued"]
    assert wal_files(tmp_path) == []
