"""The engine's sequential walks on both cores: a helper process walks some while this one
walks the others.

Two parts of the engine walk rows one after another in plain Python: the merge replay
(`merges.py`, one job per component: a key, or keys joined by an alert) and the stretches
where an incident reaches its cap (`sessions.walk_stretch`). They hold the GIL, so threads
would not help, and at ten million events they were most of the engine's time while the
machine's other core sat idle (DuckDB's sort floor uses both). The jobs are independent and
each is deterministic, so where one runs changes nothing in the answer.

The helper is one process per Python process, started (spawned, not forked: the engine's
caller may hold threads and DuckDB or Arrow locks) the first time a batch of jobs has at
least `HELPER_ROWS` rows, and kept for later ones (`correlate_groups` correlates tenant
groups one after another; starting it costs a second of imports, on the other core). It
runs with the cycle collector off, as the engine does (`engine._no_cycle_collection`),
ignores Ctrl-C (its caller stops it), and exits when its caller is gone (killed). A process
that forked after starting one starts its own. If the helper dies, its jobs are done here.
A caller whose other core is busy already turns it off (`without_helper`).

Scheduling: the helper takes the biggest jobs first, one at a time, and this process the
smallest first, so that it looks for the helper's next job often; they meet in the middle,
and this process then waits only for the helper's last job.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

from warehouse.correlation.merges import Merge, _Job, replay

HELPER_ROWS = 100_000  # rows of a batch of jobs from which a share goes to the helper
log = logging.getLogger(__name__)
J = TypeVar("J")
R = TypeVar("R")
_helper: tuple[int, ProcessPoolExecutor] | None = None  # (owner pid, pool)
_enabled: ContextVar[bool] = ContextVar("aw_correlation_helper", default=True)
_starting = threading.Lock()


def replay_all(jobs: list[_Job]) -> list[tuple[list[Merge], int]]:
    """`merges.replay` of each job, in order (`run_all`)."""
    return run_all(replay, jobs, [job.size for job in jobs])


@contextmanager
def without_helper() -> Iterator[None]:
    """Every job in this process while the block runs (in this thread and context): for a
    caller that keeps the other core busy already. The pipeline stores one batch of fresh
    tenants while the engine computes the next; with the helper too, its 10M first build
    correlated no faster (199 s, against 170 s a session before on a VM a fifth faster) and
    peaked 0.5 GB higher (4.43 GB, the helper's peak added)."""
    token = _enabled.set(False)
    try:
        yield
    finally:
        _enabled.reset(token)


def run_all(work: Callable[[J], R], jobs: list[J], sizes: list[int]) -> list[R]:
    """`work(job)` of each job, in order; with at least `HELPER_ROWS` rows in all (`sizes`),
    the helper process takes a share (not `without_helper`). `work` and the jobs must pickle
    (a module-level function, plain data)."""
    if len(jobs) < 2 or sum(sizes) < HELPER_ROWS or not _enabled.get():
        return [work(job) for job in jobs]
    out: list[R | None] = [None] * len(jobs)
    todo = deque(sorted(range(len(jobs)), key=lambda i: sizes[i], reverse=True))
    sent: dict[int, Future[R]] = {}
    pool: ProcessPoolExecutor | None
    try:
        pool = _pool()
    except OSError as error:  # no process to be had (a process limit): every job here
        log.warning("the correlation helper process did not start (%s): working alone", error)
        pool = None
    running: Future[R] | None = None
    while todo:
        if pool is not None and (running is None or running.done()):
            try:
                running = sent[todo[0]] = pool.submit(work, jobs[todo[0]])
                todo.popleft()
            except BrokenProcessPool:
                _broken(pool)
                pool = None
        if todo:
            i = todo.pop()
            out[i] = work(jobs[i])
    for i, future in sent.items():
        try:
            out[i] = future.result()
        except BrokenProcessPool:
            _broken(pool)
            pool = None
            out[i] = work(jobs[i])
    assert all(answer is not None for answer in out)
    return out  # type: ignore[return-value]


def helper_peak_rss_mb() -> float:
    """The helper process's peak RSS (`VmHWM`), 0 without one: a benchmark adds it to its
    own."""
    if _helper is None or _helper[0] != os.getpid():
        return 0.0
    return _helper[1].submit(_peak_rss_mb).result()


def _pool() -> ProcessPoolExecutor:
    with _starting:  # two threads correlating at once start one helper
        return _pool_unlocked()


def _pool_unlocked() -> ProcessPoolExecutor:
    global _helper
    if _helper is None or _helper[0] != os.getpid():
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_in_helper)
        # A spawned process imports its parent's main script again (as `__mp_main__`) unless
        # the script has no file: a caller's script without an `if __name__ == "__main__"`
        # guard would run again in the helper. The helper needs only `warehouse` modules, so
        # it is started (synchronously, by its first job) with a main module that has none.
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            pool.submit(os.getpid)
        finally:
            sys.modules["__main__"] = main
        _helper = (os.getpid(), pool)
    return _helper[1]


def _broken(pool: ProcessPoolExecutor | None) -> None:
    """The helper died (killed, out of memory): forget it, so that the next batch of jobs
    starts another; its share is done here."""
    global _helper
    log.warning("the correlation helper process died: doing its share in this one")
    if pool is not None:
        if _helper is not None and _helper[1] is pool:
            _helper = None
        pool.shutdown(wait=False, cancel_futures=True)


def _in_helper() -> None:
    """In the helper: no cycle collection; Ctrl-C is for the caller (a terminal sends it to
    the whole process group), which stops the helper when it stops; and if the caller is
    killed instead, the helper exits (its job queue would just wait for ever)."""
    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    caller = os.getppid()

    def orphaned() -> None:
        while os.getppid() == caller:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=orphaned, name="aw-helper-orphaned", daemon=True).start()


def _peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:", 1)[1].split()[0]) / 1024  # kB
