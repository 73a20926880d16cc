"""The durable buffer: an append-only, fsync'd log of accepted requests, with group commit.

A request is acknowledged (202) only after its record is on disk. The event loop queues
records; one drain task hands everything queued since the last fsync to a single disk thread,
which writes it with one `write` and one `fdatasync`, then the drain task wakes all those
requests at once. While one fsync runs the next batch gathers, so batches grow with load and
the event loop never blocks on the disk, with one thread hand-off per batch, not per request
(STACK.md: group commit keeps ~83 % of the non-durable throughput). A failed write fails
every request of its batch (503) and is cut off the file, so it is never replayed.

The log is a directory of segments `seg-<id>.wal`, the id being the first sequence number a
segment holds. The event loop decides which segment each record goes to and when a segment
is sealed (renamed `.sealed`: by count, bytes or age), so the intake knows at once which
segment holds an event. The flusher (`service.flusher`, its own process) moves sealed
segments to the lake and deletes them only after the lake write is confirmed. On start every
leftover segment is sealed, its torn tail (a crash mid-write: never acknowledged) cut.

The record and segment format is in `service.segments`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from service.segments import (  # re-exported: the buffer's public vocabulary
    Segment,
    delete_segment,
    encode_record,
    fsync_dir,
    sealed_path,
    sealed_segments,
    truncate_torn_tail,
)

log = logging.getLogger(__name__)

__all__ = [
    "BufferFull", "BufferWriteError", "DurableBuffer", "Segment", "delete_segment",
    "encode_record", "sealed_segments",
]

_SEQ_LEASE_BLOCK = 1_000_000


class BufferFull(Exception):
    """The buffer holds as much as it may while the lake is behind (retryable)."""


class BufferWriteError(Exception):
    """The disk refused a write or an fsync (retryable; nothing of the batch was kept)."""


@dataclass(slots=True)
class _Chunk:
    """Records bound for one segment, fsync'd together; `seal_after` closes the segment."""

    segment: int
    future: asyncio.Future[None]
    records: list[bytes] = field(default_factory=list)
    size: int = 0
    seal_after: bool = False


@dataclass
class _OpenSegment:
    """The segment records are going to (event-loop view)."""

    id: int
    opened_at: float
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
        self._queue: list[_Chunk] = []
        self._open: _OpenSegment | None = None
        self._writing = False
        self._stopping = False
        self._queued_bytes = 0
        self._unsealed_bytes = 0  # written to `.wal` files, not yet sealed
        self._sealed: dict[int, int] = {}  # segment id → size, as last seen on disk
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aw-buffer")
        self._fd: int | None = None  # the disk thread's open segment
        self._fd_segment = -1
        self._retired: set[int] = set()  # sealed after a failed write: never reopened
        self._seq_lease_path = directory / "seq.lease"
        self._next_seq, self._seq_limit, self._last_segment = self._recover()

    # ---- recovery and sequence numbers -------------------------------------------------

    def _recover(self) -> tuple[int, int, int]:
        """Seal leftovers, cut torn tails, start above every sequence number ever used."""
        highest = 0
        for path in sorted(self.directory.glob("seg-*.wal")):
            truncate_torn_tail(path)
            path.rename(path.with_suffix(".sealed"))
        segments = sealed_segments(self.directory)
        for seg in segments:
            self._sealed[seg.first_seq] = seg.path.stat().st_size
            for meta, _ in seg.records():
                highest = max(highest, int(orjson.loads(meta).get("last_seq", 0)))
        lease = int(self._seq_lease_path.read_text()) if self._seq_lease_path.exists() else 1
        start = max(lease, highest + 1)
        last_segment = max((s.first_seq for s in segments), default=0)
        return start, self._write_lease(start + _SEQ_LEASE_BLOCK), last_segment

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

    # ---- appending (event loop) --------------------------------------------------------

    def submit(
        self, record: bytes, events: int, first_seq: int
    ) -> tuple[asyncio.Future[None], int]:
        """Queue a record; returns the future of its fsync and the id of its segment.

        Raises BufferFull at once when the bound is reached, BufferWriteError when stopping.
        """
        if self._stopping:
            raise BufferWriteError("buffer is shutting down")
        if self.depth_bytes + len(record) > self.max_bytes:
            raise BufferFull()
        if self._open is not None and self._due(extra_bytes=len(record)):
            self._seal_open()
        if self._open is None:
            # Ids only need to be unique and increasing; a record of zero events shares its
            # first_seq with the next record, so never reuse the last id.
            seg_id = max(first_seq, self._last_segment + 1)
            self._open, self._last_segment = _OpenSegment(seg_id, time.monotonic()), seg_id
        chunk = self._queue[-1] if self._queue else None
        if chunk is None or chunk.segment != self._open.id or chunk.seal_after:
            chunk = _Chunk(self._open.id, asyncio.get_running_loop().create_future())
            self._queue.append(chunk)
        chunk.records.append(record)
        chunk.size += len(record)
        self._queued_bytes += len(record)
        self._open.events += events
        self._open.size += len(record)
        self._kick()
        return chunk.future, self._open.id

    def _due(self, extra_bytes: int = 0) -> bool:
        seg = self._open
        if seg is None or not seg.events:
            return False
        return (
            seg.events >= self.segment_max_events
            or seg.size + extra_bytes > self.segment_max_bytes
            or time.monotonic() - seg.opened_at >= self.segment_max_age
        )

    def _seal_open(self) -> None:
        seg, self._open = self._open, None
        if seg is None:
            return
        last = self._queue[-1] if self._queue else None
        if last is not None and last.segment == seg.id:
            last.seal_after = True
        else:  # all of its records are already on their way to disk
            future = asyncio.get_running_loop().create_future()
            self._queue.append(_Chunk(seg.id, future, seal_after=True))
        self._kick()

    def tick(self) -> None:
        """Seal the open segment when it is old enough (called periodically by the runtime)."""
        if self._due():
            self._seal_open()

    def _kick(self) -> None:
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                chunks, self._queue = self._queue, []
                try:
                    errors = await loop.run_in_executor(self._executor, self._apply, chunks)
                except Exception as exc:  # not an OSError of a write: still, nobody may hang
                    log.exception("buffer disk thread failed")
                    errors = [f"buffer failure: {exc}"] * len(chunks)
                for chunk, error in zip(chunks, errors, strict=True):
                    self._queued_bytes -= chunk.size
                    if chunk.future.done():
                        continue
                    if error is None:
                        chunk.future.set_result(None)
                    else:
                        chunk.future.set_exception(BufferWriteError(error))
                        if self._open is not None and self._open.id == chunk.segment:
                            self._seal_open()  # later records go to a fresh segment
        finally:
            self._writing = False

    # ---- the disk thread ---------------------------------------------------------------

    def _apply(self, chunks: list[_Chunk]) -> list[str | None]:
        """Write, fsync and seal, in queue order; one error string (or None) per chunk."""
        errors: list[str | None] = []
        for chunk in chunks:
            error = None
            if chunk.records:
                error = self._write_chunk(chunk)
            if chunk.seal_after:
                self._seal_file(chunk.segment)
            errors.append(error)
        return errors

    def _write_chunk(self, chunk: _Chunk) -> str | None:
        data = b"".join(chunk.records)
        if chunk.segment in self._retired:
            return "the segment was sealed after a failed write"
        try:
            fd = self._segment_fd(chunk.segment)
        except OSError as exc:
            log.error("cannot open buffer segment: %s", exc)
            return str(exc)
        before = os.fstat(fd).st_size
        try:
            _write_all(fd, data)
            os.fdatasync(fd)
        except OSError as exc:
            log.error("buffer write failed: %s", exc)
            try:
                os.ftruncate(fd, before)  # the batch was never acknowledged
            except OSError:
                # Garbage may follow good records: seal now, so nothing is appended after it
                # (replay stops at the first bad record), nor is it ever reopened: a new
                # file of the same name would replace it when sealed.
                self._seal_file(chunk.segment)
                self._retired.add(chunk.segment)
            return str(exc)
        self._unsealed_bytes += len(data)
        return None

    def _segment_fd(self, segment: int) -> int:
        if self._fd is None or self._fd_segment != segment:
            if self._fd is not None:
                self._seal_file(self._fd_segment)
            path = self.directory / f"seg-{segment:020d}.wal"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._fd_segment = segment
            fsync_dir(self.directory)
        return self._fd

    def _seal_file(self, segment: int) -> None:
        if self._fd is not None and self._fd_segment == segment:
            os.close(self._fd)
            self._fd, self._fd_segment = None, -1
        path = self.directory / f"seg-{segment:020d}.wal"
        try:
            size = path.stat().st_size
            os.replace(path, path.with_suffix(".sealed"))
        except FileNotFoundError:
            return  # nothing was ever written to it
        except OSError as exc:  # stays `.wal`: sealed at the next start
            log.error("cannot seal %s: %s", path.name, exc)
            return
        self._sealed[segment] = size
        self._unsealed_bytes -= size
        try:  # renamed: counted as sealed even if the rename is not yet durable
            fsync_dir(self.directory)
        except OSError as exc:
            log.error("cannot fsync %s after sealing %s: %s", self.directory, path.name, exc)

    # ---- what the runtime watches ------------------------------------------------------

    @property
    def depth_bytes(self) -> int:
        return sum(self._sealed.values()) + self._unsealed_bytes + self._queued_bytes

    def forget_flushed(self) -> list[int]:
        """Ids of sealed segments the flusher has deleted since the last call."""
        gone = [s for s in list(self._sealed) if not sealed_path(self.directory, s).exists()]
        for segment in gone:
            self._sealed.pop(segment, None)
        return gone

    def oldest_age_seconds(self) -> float:
        ages = [_age(sealed_path(self.directory, s)) for s in list(self._sealed)]
        if self._open is not None and self._open.events:
            ages.append(time.monotonic() - self._open.opened_at)
        return max(ages, default=0.0)

    async def aclose(self) -> None:
        """Write what is queued, seal the open segment, stop the disk thread."""
        self._stopping = True
        if self._open is not None and self._open.events:
            self._seal_open()
        while self._writing or self._queue:
            if not self._writing:
                self._kick()
            await asyncio.sleep(0.01)
        self._executor.shutdown(wait=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _age(path: Path) -> float:
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return 0.0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


