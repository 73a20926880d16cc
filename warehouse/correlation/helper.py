"""The merge replay on both cores: a helper process replays some components while this one
replays the others.

The replay (`merges.py`) walks each component (a key, or keys joined by an alert) in plain
Python, one row after another: it holds the GIL, so threads would not help, and at ten million
events it was two thirds of the engine's time while the machine's other core sat idle (DuckDB's
sort floor uses both). Components are independent and each replay is deterministic, so where
it runs changes nothing in the answer.

The helper is one process per Python process, started (spawned, not forked: the engine's
caller may hold threads and DuckDB or Arrow locks) the first time a replay has at least
`HELPER_ROWS` rows, and kept for later ones (a pipeline correlates tenant groups one after
another; starting it costs a second of imports, on the other core). It runs with the cycle
collector off, as the engine does (`engine._no_cycle_collection`). A process that forked
after starting one starts its own. If the helper dies, its jobs are replayed here.

Scheduling: the helper takes the biggest jobs first, one at a time, and this process the
smallest first, so that it looks for the helper's next job often; they meet in the middle,
and this process then waits only for the helper's last job.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from warehouse.correlation.merges import Merge, _Job, replay

HELPER_ROWS = 100_000  # rows to replay from which a share goes to the helper process
log = logging.getLogger(__name__)
_helper: tuple[int, ProcessPoolExecutor] | None = None  # (owner pid, pool)


def replay_all(jobs: list[_Job], helper_rows: int | None = None
               ) -> list[tuple[list[Merge], int]]:
    """`merges.replay` of each job, in order; with at least `helper_rows` rows in all
    (default `HELPER_ROWS`), the helper process takes a share."""
    limit = HELPER_ROWS if helper_rows is None else helper_rows
    if len(jobs) < 2 or sum(job.size for job in jobs) < limit:
        return [replay(job) for job in jobs]
    out: list[tuple[list[Merge], int] | None] = [None] * len(jobs)
    todo = deque(sorted(range(len(jobs)), key=lambda i: jobs[i].size, reverse=True))
    sent: dict[int, Future[tuple[list[Merge], int]]] = {}
    pool: ProcessPoolExecutor | None = _pool()
    running: Future[tuple[list[Merge], int]] | None = None
    while todo:
        if pool is not None and (running is None or running.done()):
            try:
                running = sent[todo[0]] = pool.submit(replay, jobs[todo[0]])
                todo.popleft()
            except BrokenProcessPool:
                _broken(pool)
                pool = None
        if todo:
            i = todo.pop()
            out[i] = replay(jobs[i])
    for i, future in sent.items():
        try:
            out[i] = future.result()
        except BrokenProcessPool:
            _broken(pool)
            pool = None
            out[i] = replay(jobs[i])
    assert all(answer is not None for answer in out)
    return out  # type: ignore[return-value]


def helper_peak_rss_mb() -> float:
    """The helper process's peak RSS (`VmHWM`), 0 without one: a benchmark adds it to its
    own."""
    if _helper is None or _helper[0] != os.getpid():
        return 0.0
    return _helper[1].submit(_peak_rss_mb).result()


def _pool() -> ProcessPoolExecutor:
    global _helper
    if _helper is None or _helper[0] != os.getpid():
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=gc.disable)
        _helper = (os.getpid(), pool)
    return _helper[1]


def _broken(pool: ProcessPoolExecutor | None) -> None:
    """The helper died (killed, out of memory): forget it, so that the next replay starts
    another, and replay its share here."""
    global _helper
    log.warning("the merge replay's helper process died: replaying its share in this one")
    if pool is not None:
        if _helper is not None and _helper[1] is pool:
            _helper = None
        pool.shutdown(wait=False, cancel_futures=True)


def _peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:", 1)[1].split()[0]) / 1024  # kB
