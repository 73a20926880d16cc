"""The durable buffer: an append-only, fsync'd log of accepted requests, with group commit.

A request is acknowledged (202) only after its record is on disk. Records are appended by one
writer thread: it takes every record queued since its last fsync, writes them with one
`write`, calls `fdatasync` once, then wakes all their waiters at once. While one fsync runs,
the next batch gathers, so batches grow with load and the event loop never blocks on the disk
(STACK.md: group commit keeps ~83 % of the non-durable throughput). A failed write fails
every waiter of its batch (503) and is cut off the file, so it is never replayed.

The log is a directory of segments `seg-<first_seq>.wal`. The active segment is sealed
(renamed `.sealed`) when it reaches the configured count, bytes or age; the flusher moves
sealed segments to the lake and deletes them only after the lake write is confirmed. On start
every leftover segment is sealed, its torn tail (a crash mid-write: never acknowledged) cut.

Record layout: magic `AWR1`, meta length (u32), body length (u32), crc32 of meta+body (u32),
then the meta JSON and the raw body bytes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<4sIII")
_MAGIC = b"AWR1"
_SEQ_LEASE_BLOCK = 1_000_000


class BufferFull(Exception):
    """The buffer holds as much as it may while the lake is behind (retryable)."""


class BufferWriteError(Exception):
    """The disk refused a write or an fsync (retryable; nothing of the batch was kept)."""


@dataclass(slots=True)
class _Pending:
    data: bytes
    events: int
    future: asyncio.Future[None]


@dataclass
class Segment:
    """A sealed segment on disk and the records it holds."""

    path: Path
    first_seq: int

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """Yield (meta, body) of every complete record (a torn tail ends the iteration).

        One record at a time: a segment is up to `flush_max_bytes` (64 MB), and the flusher
        should not hold all of it on top of the rows it builds from it (peak RSS).
        """
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            while True:
                header = fh.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    return
                magic, meta_len, body_len, crc = _HEADER.unpack(header)
                length = meta_len + body_len
                if magic != _MAGIC or length > size - fh.tell():
                    return
                payload = fh.read(length)
                if len(payload) < length or zlib.crc32(payload) != crc:
                    return
                yield payload[:meta_len], payload[meta_len:]


def _parse(data: bytes) -> Iterator[tuple[bytes, bytes, int]]:
    offset = 0
    while offset + _HEADER.size <= len(data):
        magic, meta_len, body_len, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + meta_len + body_len
        if magic != _MAGIC or end > len(data) or zlib.crc32(data[start:end]) != crc:
            return
        yield data[start : start + meta_len], data[start + meta_len : end], end
        offset = end


def encode_record(meta: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(body, zlib.crc32(meta))
    return _HEADER.pack(_MAGIC, len(meta), len(body), crc) + meta + body


@dataclass
class _Active:
    path: Path
    fd: int
    first_seq: int
    opened_at: float = field(default_factory=time.monotonic)
    events: int = 0
    size: int = 0


class DurableBuffer:
    """Append records durably; seal segments for the flusher; bound the total size."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_max_events: int,
        segment_max_bytes: int,
        segment_max_age: float,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_max_events = segment_max_events
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age = segment_max_age
        directory.mkdir(parents=True, exist_ok=True)
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._active: _Active | None = None
        self._stopping = False
        self._sealed_bytes = 0
        self._queued_bytes = 0
        self.sealed_event = threading.Event()
        self._seq_lease_path = directory / "seq.lease"
        self._next_seq, self._seq_limit = self._recover()
        self._thread = threading.Thread(target=self._run, name="aw-buffer-writer", daemon=True)

    # ---- sequence numbers -------------------------------------------------------------

    def _recover(self) -> tuple[int, int]:
        """Seal leftovers, cut torn tails, and start the sequence after anything ever used."""
        highest = 0
        for path in sorted(self.directory.glob("seg-*.wal")):
            self._truncate_torn_tail(path)
            path.rename(path.with_suffix(".sealed"))
        for seg in self.sealed_segments():
            self._sealed_bytes += seg.path.stat().st_size
            for meta, _ in seg.records():
                highest = max(highest, _last_seq(meta))
        lease = int(self._seq_lease_path.read_text()) if self._seq_lease_path.exists() else 1
        start = max(lease, highest + 1)
        return start, self._write_lease(start + _SEQ_LEASE_BLOCK)

    def _write_lease(self, limit: int) -> int:
        # The lease is written (and fsync'd) before any number below it is handed out, so
        # after a crash the sequence restarts above every number that may have been used.
        tmp = self._seq_lease_path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.write(str(limit))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._seq_lease_path)
        return limit

    def allocate(self, count: int) -> int:
        """Reserve `count` consecutive sequence numbers; returns the first (event loop only)."""
        first = self._next_seq
        self._next_seq += count
        if self._next_seq >= self._seq_limit:
            self._seq_limit = self._write_lease(self._next_seq + _SEQ_LEASE_BLOCK)
        return first

    # ---- appending --------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, record: bytes, events: int) -> asyncio.Future[None]:
        """Queue a record; the future completes once it is fsync'd or fails with
        BufferWriteError. Raises BufferFull at once when the bound is reached."""
        if self.depth_bytes + len(record) > self.max_bytes:
            raise BufferFull()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._stopping:
                raise BufferWriteError("buffer is shutting down")
            self._queue.append(_Pending(record, events, future))
            self._queued_bytes += len(record)
            self._cond.notify()
        return future

    @property
    def depth_bytes(self) -> int:
        # Read without the lock, in the order that makes a concurrent writer or seal only
        # overcount: queued (decremented after active.size grows), then `_active` once (the
        # writer may clear it), then sealed (incremented before `_active` is cleared).
        queued = self._queued_bytes
        active = self._active
        active_bytes = active.size if active is not None else 0
        return queued + active_bytes + self._sealed_bytes

    def oldest_age_seconds(self) -> float:
        sealed = self.sealed_segments()
        paths = [s.path for s in sealed]
        if self._active is not None and self._active.events:
            paths.append(self._active.path)
        if not paths:
            return 0.0
        try:
            return max(0.0, time.time() - min(p.stat().st_mtime for p in paths))
        except FileNotFoundError:
            return 0.0

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    if not self._cond.wait(timeout=self._time_to_seal()):
                        break
                batch, self._queue = self._queue, []
                stopping = self._stopping
            if batch:
                self._write_batch(batch)
            self._maybe_seal(force=stopping)
            if stopping and not self._queue:
                return

    def _time_to_seal(self) -> float:
        if self._active is None or not self._active.events:
            return 1.0
        return max(0.01, self.segment_max_age - (time.monotonic() - self._active.opened_at))

    def _write_batch(self, batch: list[_Pending]) -> None:
        data = b"".join(p.data for p in batch)
        error: BaseException | None = None
        try:
            active = self._ensure_active(batch[0].data)
            try:
                _write_all(active.fd, data)
                os.fdatasync(active.fd)
            except OSError:
                os.ftruncate(active.fd, active.size)  # the batch was never acknowledged
                raise
            active.size += len(data)
            active.events += sum(p.events for p in batch)
        except OSError as exc:
            log.error("buffer write failed: %s", exc)
            error = exc
        with self._cond:
            self._queued_bytes -= len(data)
        loop = batch[0].future.get_loop()
        try:
            loop.call_soon_threadsafe(_settle, batch, error)
        except RuntimeError:  # loop closed during shutdown: nobody is waiting any more
            pass

    def _ensure_active(self, first_record: bytes) -> _Active:
        if self._active is None:
            # Named after the first sequence number it holds, which no other segment holds.
            # Not `_next_seq`: numbers are allocated before their records reach this thread,
            # so a segment sealed on its first batch and the next one could get the same
            # name, and sealing the second would replace the first.
            first = _first_seq(first_record, default=self._next_seq)
            path = self.directory / f"seg-{first:020d}.wal"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            _fsync_dir(self.directory)
            self._active = _Active(path=path, fd=fd, first_seq=first)
        return self._active

    def _maybe_seal(self, force: bool = False) -> None:
        active = self._active
        if active is None or not active.events:
            return
        due = (
            force
            or active.events >= self.segment_max_events
            or active.size >= self.segment_max_bytes
            or time.monotonic() - active.opened_at >= self.segment_max_age
        )
        if due:
            self.seal_active()

    def seal_active(self) -> None:
        """Close the active segment and hand it to the flusher (writer thread or shutdown)."""
        active = self._active
        if active is None:
            return
        os.close(active.fd)
        with self._cond:
            self._sealed_bytes += active.size  # before `_active` is cleared: see depth_bytes
        self._active = None
        sealed = active.path.with_suffix(".sealed")
        os.replace(active.path, sealed)
        _fsync_dir(self.directory)
        self.sealed_event.set()

    # ---- the flusher's side -----------------------------------------------------------

    def sealed_segments(self) -> list[Segment]:
        segments = []
        for path in sorted(self.directory.glob("seg-*.sealed")):
            segments.append(Segment(path=path, first_seq=int(path.stem.split("-")[1])))
        return segments

    def delete_segment(self, segment: Segment) -> None:
        """Forget a segment whose records are confirmed in the lake."""
        size = segment.path.stat().st_size
        segment.path.unlink()
        _fsync_dir(self.directory)
        with self._cond:
            self._sealed_bytes -= size

    def stop(self) -> None:
        """Write what is queued, seal the active segment, stop the writer thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    @staticmethod
    def _truncate_torn_tail(path: Path) -> None:
        data = path.read_bytes()
        good = 0
        for _, _, end in _parse(data):
            good = end
        if good < len(data):
            log.warning("cutting %d torn bytes off %s", len(data) - good, path.name)
            with open(path, "r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())


def _settle(batch: list[_Pending], error: BaseException | None) -> None:
    for pending in batch:
        if pending.future.done():
            continue
        if error is None:
            pending.future.set_result(None)
        else:
            pending.future.set_exception(BufferWriteError(str(error)))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _first_seq(record: bytes, default: int) -> int:
    """The `first_seq` in a record's meta (the intake writes it), else `default`."""
    try:
        _, meta_len, _, _ = _HEADER.unpack_from(record)
        value = orjson.loads(record[_HEADER.size : _HEADER.size + meta_len]).get("first_seq")
    except (struct.error, ValueError, AttributeError):
        return default
    return value if isinstance(value, int) else default


def _last_seq(meta: bytes) -> int:
    return int(orjson.loads(meta).get("last_seq", 0))
