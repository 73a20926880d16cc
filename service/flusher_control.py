"""Starting, watching and stopping the flusher from the intake process.

`AW_FLUSHER=process` (the default) runs it as a child process: Parquet encoding then uses the
second core instead of taking the GIL from request handling. `thread` runs the same loop in a
thread (in-process tests, single-core hosts).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

from service.buffer import sealed_segments
from service.config import ServiceSettings
from service.flusher_status import FlusherStatus, lock_buffer, read_status

log = logging.getLogger(__name__)

_RESTART_BACKOFF_SECONDS = 1.0


class FlusherControl:
    """One flusher for the buffer of `settings`, kept running until `stop()`."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._stopping = False
        self._last_start = 0.0

    def start(self) -> None:
        self._last_start = time.monotonic()
        if self.settings.flusher == "thread":
            self._start_thread()
        else:
            payload = self.settings.model_dump_json(exclude={"master_key"})
            # Its own session: a signal to the intake's process group (Ctrl-C, a supervisor's
            # SIGTERM) reaches only the intake, which then stops the flusher in order, after
            # sealing the buffer.
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "service.flusher", payload, str(os.getpid())],
                start_new_session=True,
            )

    def _start_thread(self) -> None:
        from service.flusher import build_flusher  # pyarrow: only where the flusher runs

        def run() -> None:
            # Waits for the buffer's lock like the process does: a stop ends the wait.
            while (fd := lock_buffer(self.settings.buffer_dir, wait=False)) is None:
                if self._stop.wait(0.1):
                    return
            try:
                build_flusher(self.settings).run(self._stop)
            finally:
                os.close(fd)

        self._thread = threading.Thread(target=run, name="aw-flusher", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._thread is not None and self._thread.is_alive()

    def ensure_running(self) -> None:
        """Restart a flusher that died (at most once a second)."""
        if self._stopping or self.alive():
            return
        if time.monotonic() - self._last_start < _RESTART_BACKOFF_SECONDS:
            return
        log.error("the flusher stopped unexpectedly; restarting it")
        self.start()

    def status(self) -> FlusherStatus | None:
        return read_status(self.settings.buffer_dir)

    def stop(self, timeout: float = 60.0) -> None:
        """Let the flusher flush what is sealed, then stop it (kill after `timeout`)."""
        self._stopping = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("the flusher did not stop within %.0f s; killing it", timeout)
                self._proc.kill()
                self._proc.wait()
        self._flush_leftovers()

    def _flush_leftovers(self) -> None:
        """If the flusher died early, flush what the shutdown sealed here, once."""
        if not sealed_segments(self.settings.buffer_dir):
            return
        fd = lock_buffer(self.settings.buffer_dir, wait=False)
        if fd is None:
            return  # another flusher (a newer instance) owns the buffer
        from service.flusher import build_flusher  # pyarrow: only where the flusher runs

        try:
            build_flusher(self.settings).flush_sealed()
        finally:
            os.close(fd)
