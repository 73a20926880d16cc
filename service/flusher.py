"""The flusher: sealed buffer segments → Parquet in the lake → keys persisted → segment deleted.

It runs as its own process beside the intake (`python -m service.flusher`, started and
supervised by the runtime), so turning rows into Parquet never competes with request handling
for the GIL; tests may run the same loop in a thread. Only one flusher works on a buffer
directory at a time (an exclusive lock), and a flusher process exits when its parent dies.

Idempotent by construction: the lake file names derive from the segment id, so a crash after
the lake write but before the segment is deleted rewrites the same files with the same rows,
never a second copy. While the lake is down the flusher retries with backoff (0.5 s → 5 s)
and says so in its status file, which the intake reads for `/readyz` and `/metrics`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import orjson

from service.buffer import Segment, delete_segment, sealed_segments
from service.config import ServiceSettings
from service.dedup import SeenStore
from service.flusher_status import FlusherStatus, lock_buffer, status_path
from service.segment_tables import read_segment
from warehouse.lake import Lake, LakeError, open_lake

log = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS = 5.0
_POLL_SECONDS = 0.1
_PRUNE_EVERY_SECONDS = 300.0


class Flusher:
    """Moves every sealed segment of `buffer_dir` to the lake, oldest first."""

    def __init__(
        self, buffer_dir: Path, seen: SeenStore, lake: Lake, max_rows_per_file: int,
        body_window_us: int,
    ) -> None:
        self.buffer_dir = buffer_dir
        self.seen = seen
        self.lake = lake
        self.max_rows_per_file = max_rows_per_file
        self.body_window_us = body_window_us
        self.status = FlusherStatus(pid=os.getpid())
        self._last_prune = 0.0

    def run(self, stop: threading.Event, parent_pid: int | None = None) -> None:
        """Flush until `stop` is set (then flush what is sealed once more, and return)."""
        self._check_lake()
        backoff = _POLL_SECONDS
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("the intake process is gone; flusher exits")
                return
            ok = self._flush_guarded()
            backoff = _POLL_SECONDS if ok else min(max(backoff * 2, 0.5), _MAX_BACKOFF_SECONDS)
            stop.wait(backoff)
        self._flush_guarded()

    def _flush_guarded(self) -> bool:
        try:
            ok = self.flush_sealed()
            self._prune()
            return ok
        except Exception:
            # Not the lake (handled below) but e.g. a locked key store or a bug: the segment
            # stays buffered and is retried; a dead flusher would flush nothing at all.
            log.exception("flushing failed; retrying with backoff")
            return False

    def flush_sealed(self) -> bool:
        """Flush every sealed segment in order; False when the lake refused one."""
        for segment in sealed_segments(self.buffer_dir):
            try:
                self.flush(segment)
            except FileNotFoundError:
                continue  # deleted by a flusher that ran before us
            except LakeError as exc:
                self.status.lake_ok, self.status.last_error = False, str(exc)
                self.status.lake_errors += 1
                self._write_status()
                log.warning("lake unavailable, %s stays buffered: %s", segment.path.name, exc)
                return False
        return self.status.lake_ok or self._check_lake()

    def flush(self, segment: Segment) -> None:
        started = time.monotonic()
        content = read_segment(segment)
        events = 0
        for (table, tenant, day), arrow in content.tables():
            directory = self.lake.partition_dir(table, tenant, day)
            for n, offset in enumerate(range(0, arrow.num_rows, self.max_rows_per_file)):
                name = f"seg-{segment.first_seq:020d}-{n:03d}.parquet"
                part = arrow.slice(offset, self.max_rows_per_file)
                self.lake.write_parquet(directory, name, part)
            events += arrow.num_rows if table == "raw/alerts" else 0
        self.seen.persist(content.keys)
        delete_segment(segment)
        seconds = time.monotonic() - started
        s = self.status
        s.lake_ok, s.last_error = True, None
        s.flushes, s.flushed_events = s.flushes + 1, s.flushed_events + events
        s.flush_seconds_total += seconds
        s.last_flush_seconds = seconds
        self._write_status()
        log.info("flushed %s: %d events in %.2f s", segment.path.name, events, seconds)

    def _check_lake(self) -> bool:
        """Probe the lake so readiness is honest even when there is nothing to flush."""
        try:
            self.lake.probe()
        except LakeError as exc:
            self.status.lake_ok, self.status.last_error = False, str(exc)
        else:
            self.status.lake_ok, self.status.last_error = True, None
        self._write_status()
        return self.status.lake_ok

    def _prune(self) -> None:
        if time.monotonic() - self._last_prune < _PRUNE_EVERY_SECONDS:
            return
        self._last_prune = time.monotonic()
        self.seen.prune(int(time.time() * 1_000_000) - self.body_window_us)

    def _write_status(self) -> None:
        path = status_path(self.buffer_dir)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(orjson.dumps(asdict(self.status)))
        os.replace(tmp, path)


def build_flusher(settings: ServiceSettings) -> Flusher:
    lake = open_lake(
        settings.resolved_lake_uri, settings.s3_endpoint_url, settings.lake_timeout_seconds
    )
    return Flusher(
        settings.buffer_dir, SeenStore(settings.dedup_path), lake, settings.lake_file_max_rows,
        settings.duplicate_body_window_seconds * 1_000_000,
    )


def main() -> None:
    """Process entry: `python -m service.flusher <settings JSON>` (started by the runtime)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s flusher %(message)s")
    settings = ServiceSettings.model_validate_json(sys.argv[1])
    # The intake's pid comes from the intake itself: if it died before we got here, our
    # parent is already init, and comparing against os.getppid() now would never notice.
    parent = int(sys.argv[2])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the intake, which stops us
    # Wait for the buffer's lock (a flusher of a killed intake may still be finishing), but
    # keep listening: a stop or the death of our own intake ends the wait.
    while lock_buffer(settings.buffer_dir, wait=False) is None:
        if stop.wait(0.1) or os.getppid() != parent:
            return
    build_flusher(settings).run(stop, parent_pid=parent)


if __name__ == "__main__":
    main()
