"""The engine's sequential walks shared with a helper process (`helper.py`): the merge
replay's components and the capped stretches give the same answer as walking every one here,
and the helper's share is walked here when it dies."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from warehouse.correlation import helper
from warehouse.correlation.engine import Correlation, correlate
from warehouse.correlation.synthetic import history
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.correlation_settings import CorrelationSettings

ROOT = Path(__file__).resolve().parents[2]
TABLE = history(12_000, days=4, tenants=3, seed=31)
# a 2-hour cap: many capped stretches, walked sequentially (`sessions.walk_stretch`)
TIMELINE = SettingsTimeline.constant(CorrelationSettings(cap=timedelta(hours=2)))


@pytest.fixture
def helper_rows(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every batch of two or more jobs is shared with the helper."""
    monkeypatch.setattr(helper, "HELPER_ROWS", 0)
    yield
    if helper._helper is not None:
        helper._helper[1].shutdown()
        helper._helper = None


def _assert_same(shared: Correlation, alone: Correlation) -> None:
    assert alone.merge_log.num_rows > 0 and alone.slow_rows > 0
    assert shared.merge_log.equals(alone.merge_log)
    assert shared.incidents.equals(alone.incidents)
    assert shared.memberships.equals(alone.memberships)
    assert shared.lifecycle.equals(alone.lifecycle)
    assert shared.funnel == alone.funnel
    assert (shared.replayed_rows, shared.slow_rows) == (alone.replayed_rows, alone.slow_rows)


def test_the_helper_walks_a_share_with_the_same_answer(helper_rows: None) -> None:
    alone = correlate(TABLE, TIMELINE, chunk_events=10**9)
    taken: list[str] = []
    submit = helper.ProcessPoolExecutor.submit

    def counted(pool: helper.ProcessPoolExecutor, fn: Any, *args: object) -> object:
        taken.append(fn.__name__)
        return submit(pool, fn, *args)

    helper.ProcessPoolExecutor.submit = counted  # type: ignore[method-assign]
    try:
        shared = correlate(TABLE, TIMELINE, chunk_events=10**9)
    finally:
        helper.ProcessPoolExecutor.submit = submit  # type: ignore[method-assign]
    assert set(taken) == {"replay", "walk_stretch"}  # the helper took jobs of both kinds
    assert helper._helper is not None and helper._helper[0] == os.getpid()
    assert helper.helper_peak_rss_mb() > 0
    _assert_same(shared, alone)


def test_without_the_helper_every_job_is_done_here(helper_rows: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("a job went to the helper")

    monkeypatch.setattr(helper.ProcessPoolExecutor, "submit", refuse)
    with helper.without_helper():
        correlate(TABLE, TIMELINE, chunk_events=10**9)
    with pytest.raises(AssertionError, match="went to the helper"):
        correlate(TABLE, TIMELINE, chunk_events=10**9)


def test_a_dead_helper_s_share_is_replayed_here(helper_rows: None,
                                                caplog: pytest.LogCaptureFixture) -> None:
    alone = correlate(TABLE, TIMELINE, chunk_events=10**9)
    pool = helper._pool()
    pool.submit(os.getpid).result()  # started
    for process in list(pool._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not pool._broken and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool._broken
    with caplog.at_level(logging.WARNING):
        shared = correlate(TABLE, TIMELINE, chunk_events=10**9)
    assert "helper process died" in caplog.text
    _assert_same(shared, alone)
    assert helper._helper is None or helper._helper[1] is not pool  # the next one starts anew


def test_the_helper_exits_when_its_caller_is_killed() -> None:
    script = ("import os, time\n"
              "from warehouse.correlation import helper\n"
              "if __name__ == '__main__':\n"
              "    pool = helper._pool()\n"
              "    pool.submit(os.getpid).result()\n"
              "    print(*pool._processes, flush=True)\n"
              "    time.sleep(60)\n")
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert caller.stdout is not None
        pid = int(caller.stdout.readline())
        os.kill(pid, 0)  # the helper runs
    finally:
        caller.kill()
        caller.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the helper outlived its killed caller")


def test_a_caller_script_without_a_main_guard_runs_once() -> None:
    """A spawned process imports its parent's main script again: the helper must not."""
    script = ("import os\n"
              "from warehouse.correlation import helper\n"
              "print('script ran', flush=True)\n"
              "pool = helper._pool()\n"
              "print('helper', pool.submit(os.getpid).result(), flush=True)\n")
    path = ROOT / ".pytest-unguarded.py"
    path.write_text(script)
    try:
        done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                              cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        path.unlink()
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("script ran") == 1
    assert "helper " in done.stdout
