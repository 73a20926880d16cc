"""The durable buffer: record format, recovery, sequence lease, group commit, bounds, sealing."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from service import buffer as buffer_module
from service.buffer import (
    BufferFull,
    BufferWriteError,
    DurableBuffer,
    Segment,
    encode_record,
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


def replay(buf: DurableBuffer) -> list[tuple[int, bytes]]:
    """(first_seq, body) of every record of every sealed segment, in segment order."""
    return [
        (orjson.loads(meta)["first_seq"], body)
        for seg in buf.sealed_segments()
        for meta, body in seg.records()
    ]


@pytest.fixture
def buffers() -> Iterator[Callable[..., DurableBuffer]]:
    """Builds buffers and stops every one that was started when the test ends."""
    made: list[DurableBuffer] = []

    def build(directory: Path, **kwargs: object) -> DurableBuffer:
        buf = make_buffer(directory, **kwargs)  # type: ignore[arg-type]
        made.append(buf)
        return buf

    yield build
    for buf in made:
        buf.stop()


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
    assert data[16:] == b"METABODY!"


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
    assert [body for _, body in replay(buf)] == [b"first", b"second", b"third"][:survivors]
    assert sealed.stat().st_size == len(b"".join(GOOD[:survivors]))
    assert buf.depth_bytes == sealed.stat().st_size


def test_leftover_wal_segments_are_sealed_on_start(tmp_path: Path) -> None:
    (tmp_path / "seg-00000000000000000001.wal").write_bytes(record(1, b"a") + record(2, b"b"))
    (tmp_path / "seg-00000000000000000003.wal").write_bytes(record(3, b"c"))
    (tmp_path / "seg-00000000000000000000.sealed").write_bytes(record(0, b"old"))

    buf = make_buffer(tmp_path)

    assert list(tmp_path.glob("*.wal")) == []
    assert [s.first_seq for s in buf.sealed_segments()] == [0, 1, 3]
    assert replay(buf) == [(0, b"old"), (1, b"a"), (2, b"b"), (3, b"c")]
    assert buf.depth_bytes == sum(p.stat().st_size for p in tmp_path.glob("*.sealed"))
    # The next number is above every number in the buffer.
    assert buf.allocate(1) > 3


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
    ],
)
def test_sequence_strictly_increases_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lease_block: int, allocations: list[int]
) -> None:
    monkeypatch.setattr(buffer_module, "_SEQ_LEASE_BLOCK", lease_block)
    handed_out: list[int] = []
    for count in allocations:
        # Each iteration "crashes": a new buffer on the same directory, no stop().
        buf = make_buffer(tmp_path)
        first = buf.allocate(count)
        handed_out.extend(range(first, first + count))
        second = buf.allocate(1)
        handed_out.append(second)
    assert handed_out == sorted(set(handed_out)), "numbers must strictly increase"
    assert handed_out[0] >= 1


def test_sequence_starts_above_buffered_records_without_a_lease(tmp_path: Path) -> None:
    # A lease file lost (or a buffer copied without it): the records themselves still count.
    (tmp_path / "seg-00000000000000000500.wal").write_bytes(record(500, events=10))
    buf = make_buffer(tmp_path)
    assert buf.allocate(1) == 510


# ---- group commit ---------------------------------------------------------------------


def test_group_commit_completes_every_waiter_in_submission_order(
    tmp_path: Path, buffers: Callable[..., DurableBuffer], monkeypatch: pytest.MonkeyPatch
) -> None:
    buf = buffers(tmp_path)
    syncs = 0
    real_fdatasync = os.fdatasync

    def counting_fdatasync(fd: int) -> None:
        nonlocal syncs
        syncs += 1
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", counting_fdatasync)
    order: list[int] = []
    rng = random.Random(7)

    async def sender(n: int) -> int:
        await asyncio.sleep(rng.random() / 100)
        # allocate + submit without an await in between, as the intake does
        seq = buf.allocate(1)
        order.append(seq)
        await buf.submit(record(seq, f"body-{seq}".encode()), 1)
        return seq

    async def main() -> list[int]:
        buf.start()
        return await asyncio.gather(*(sender(n) for n in range(400)))

    done = asyncio.run(main())
    buf.stop()

    assert sorted(done) == sorted(order) and len(set(done)) == 400
    assert [seq for seq, _ in replay(buf)] == order
    assert [body for _, body in replay(buf)] == [f"body-{s}".encode() for s in order]
    assert syncs < 400, "requests waiting together must share an fsync"


def test_records_queued_together_share_one_fsync(
    tmp_path: Path, buffers: Callable[..., DurableBuffer], monkeypatch: pytest.MonkeyPatch
) -> None:
    buf = buffers(tmp_path)
    syncs: list[int] = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real_fdatasync(fd)))

    async def main() -> None:
        # Queued before the writer starts: one batch, one write, one fsync.
        futures = [buf.submit(record(buf.allocate(1), b"x"), 1) for _ in range(50)]
        buf.start()
        await asyncio.gather(*futures)

    asyncio.run(main())
    assert len(syncs) == 1


# ---- failed writes --------------------------------------------------------------------


def _is_segment(fd: int) -> bool:
    return os.readlink(f"/proc/self/fd/{fd}").endswith(".wal")


def _fail_fdatasync(monkeypatch: pytest.MonkeyPatch, failing: list[bool]) -> None:
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        if failing[0] and _is_segment(fd):
            raise OSError(errno.EIO, "simulated fsync failure")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)


def _fail_write_halfway(monkeypatch: pytest.MonkeyPatch, failing: list[bool]) -> None:
    real = os.write

    def write(fd: int, data: bytes) -> int:
        if failing[0] and _is_segment(fd):
            real(fd, bytes(data[: len(data) // 2]))  # part of the batch reaches the file
            raise OSError(errno.ENOSPC, "simulated full disk")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("inject", [_fail_fdatasync, _fail_write_halfway])
@pytest.mark.parametrize("good_before", [0, 3])
def test_failed_batch_fails_every_waiter_and_is_cut_off(
    tmp_path: Path,
    buffers: Callable[..., DurableBuffer],
    monkeypatch: pytest.MonkeyPatch,
    inject: Callable[[pytest.MonkeyPatch, list[bool]], None],
    good_before: int,
) -> None:
    buf = buffers(tmp_path)
    failing = [False]
    inject(monkeypatch, failing)

    async def submit_batch(bodies: list[bytes]) -> list[BaseException | None]:
        # Hold the writer's lock while queuing, so that all of them form one batch.
        with buf._cond:
            futures = [buf.submit(record(buf.allocate(1), b), 1) for b in bodies]
        return await asyncio.gather(*futures, return_exceptions=True)

    async def main() -> None:
        buf.start()
        before = [f"good-{i}".encode() for i in range(good_before)]
        assert await submit_batch(before) == [None] * good_before
        failing[0] = True
        results = await submit_batch([b"bad-1", b"bad-2", b"bad-3", b"bad-4"])
        failing[0] = False
        assert all(isinstance(r, BufferWriteError) for r in results), results
        assert await submit_batch([b"good-after-1", b"good-after-2"]) == [None, None]

    asyncio.run(main())
    buf.stop()

    bodies = [body for _, body in replay(buf)]
    expected = [f"good-{i}".encode() for i in range(good_before)]
    assert bodies == expected + [b"good-after-1", b"good-after-2"]
    # Nothing of the failed batch is left between the good records.
    sealed = buf.sealed_segments()
    assert sum(s.path.stat().st_size for s in sealed) == sum(
        len(record(0, b)) for b in bodies
    )
    assert buf.depth_bytes == sum(s.path.stat().st_size for s in sealed)


# ---- bounds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_bytes", "records_that_fit"),
    [
        (0, 0),  # no room at all
        (len(record(1, b"x" * 100)) - 1, 0),  # one byte short of the first record
        (len(record(1, b"x" * 100)), 1),  # exactly one record
        (3 * len(record(1, b"x" * 100)) + 10, 3),  # three and a bit
    ],
)
def test_buffer_full_past_max_bytes(
    tmp_path: Path, buffers: Callable[..., DurableBuffer], max_bytes: int, records_that_fit: int
) -> None:
    buf = buffers(tmp_path, max_bytes=max_bytes)

    async def main() -> int:
        buf.start()
        accepted = 0
        for seq in range(1, 10):
            try:
                await buf.submit(record(seq, b"x" * 100), 1)
            except BufferFull:
                return accepted
            accepted += 1
        return accepted

    assert asyncio.run(main()) == records_that_fit


def test_room_returns_when_the_flusher_deletes_a_segment(
    tmp_path: Path, buffers: Callable[..., DurableBuffer]
) -> None:
    size = len(record(1, b"x" * 100))
    buf = buffers(tmp_path, max_bytes=2 * size, max_events=2)

    async def main() -> None:
        buf.start()
        await buf.submit(record(1, b"x" * 100), 1)
        await buf.submit(record(2, b"x" * 100), 1)
        with pytest.raises(BufferFull):
            buf.submit(record(3, b"x" * 100), 1)
        await _until(lambda: len(buf.sealed_segments()) == 1)
        buf.delete_segment(buf.sealed_segments()[0])
        assert buf.depth_bytes == 0
        await buf.submit(record(3, b"x" * 100), 1)

    asyncio.run(main())


# ---- sealing --------------------------------------------------------------------------


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


RECORD_SIZE = len(record(1, b"x" * 10))


@pytest.mark.parametrize(
    ("limits", "events_per_record", "expected_sealed"),
    [
        # by event count: 3 events per segment, one event per record
        ({"max_events": 3}, 1, [[1, 2, 3], [4, 5, 6]]),
        # by event count with multi-event records: sealed once the count is reached or passed
        ({"max_events": 4}, 3, [[1, 4], [7, 10], [13, 16]]),
        # by bytes: two records per segment
        ({"max_segment_bytes": 2 * RECORD_SIZE}, 1, [[1, 2], [3, 4], [5, 6]]),
    ],
)
def test_sealing_by_count_and_bytes(
    tmp_path: Path,
    buffers: Callable[..., DurableBuffer],
    limits: dict[str, int],
    events_per_record: int,
    expected_sealed: list[list[int]],
) -> None:
    buf = buffers(tmp_path, **limits)

    async def main() -> None:
        buf.start()
        for _ in range(7):
            seq = buf.allocate(events_per_record)
            await buf.submit(record(seq, b"x" * 10, events_per_record), events_per_record)
        await _until(lambda: len(buf.sealed_segments()) >= len(expected_sealed))

    asyncio.run(main())
    sealed = buf.sealed_segments()
    assert buf.sealed_event.is_set()
    got = [[orjson.loads(m)["first_seq"] for m, _ in s.records()] for s in sealed]
    assert got == expected_sealed
    # Each segment is named after the first sequence number it holds.
    assert [s.first_seq for s in sealed] == [seqs[0] for seqs in expected_sealed]


def test_sealing_by_age_without_further_writes(
    tmp_path: Path, buffers: Callable[..., DurableBuffer]
) -> None:
    buf = buffers(tmp_path, max_age=0.2)

    async def main() -> float:
        buf.start()
        await buf.submit(record(buf.allocate(1), b"lonely"), 1)
        started = time.monotonic()
        assert buf.sealed_segments() == []
        await _until(lambda: len(buf.sealed_segments()) == 1)
        return time.monotonic() - started

    waited = asyncio.run(main())
    assert waited < 2.0
    assert [body for _, body in replay(buf)] == [b"lonely"]
    assert list(tmp_path.glob("*.wal")) == []


def test_an_idle_buffer_seals_nothing(
    tmp_path: Path, buffers: Callable[..., DurableBuffer]
) -> None:
    buf = buffers(tmp_path, max_age=0.05)
    buf.start()
    time.sleep(0.2)
    buf.stop()
    assert buf.sealed_segments() == [] and not buf.sealed_event.is_set()


def test_stop_writes_what_is_queued_and_seals(tmp_path: Path) -> None:
    buf = make_buffer(tmp_path)

    async def main() -> list[asyncio.Future[None]]:
        futures = [buf.submit(record(buf.allocate(1), b"q"), 1) for _ in range(5)]
        buf.start()
        await asyncio.gather(*futures)
        return futures

    asyncio.run(main())
    buf.stop()
    assert len(replay(buf)) == 5 and list(tmp_path.glob("*.wal")) == []
    with pytest.raises(BufferWriteError):
        asyncio.run(_submit_one(buf))


async def _submit_one(buf: DurableBuffer) -> None:
    await buf.submit(record(99), 1)


def test_segments_sealed_on_their_first_batch_never_share_a_name(
    tmp_path: Path, buffers: Callable[..., DurableBuffer]
) -> None:
    # Numbers are allocated before their records reach the writer: two requests may hold
    # numbers before the first segment is opened. A segment sealed after one record must
    # not be replaced by the next one (it would lose acknowledged records).
    buf = buffers(tmp_path, max_events=1)

    async def main() -> None:
        buf.start()
        first, second = buf.allocate(1), buf.allocate(1)
        await buf.submit(record(first, b"one"), 1)
        await _until(lambda: len(buf.sealed_segments()) == 1)
        await buf.submit(record(second, b"two"), 1)
        await _until(lambda: len(buf.sealed_segments()) == 2)

    asyncio.run(main())
    assert [body for _, body in replay(buf)] == [b"one", b"two"]
