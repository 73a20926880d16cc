"""The merge replay shared with a helper process (`helper.py`): the same answer as replaying
every component here, and the helper's share replayed here when it dies."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator

import pytest

from warehouse.correlation import helper
from warehouse.correlation.engine import Correlation, correlate
from warehouse.correlation.synthetic import history
from warehouse.correlation.timeline import SettingsTimeline

TABLE = history(12_000, days=4, tenants=3, seed=31)


@pytest.fixture
def helper_rows(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every replay with two or more components shares them with the helper."""
    monkeypatch.setattr(helper, "HELPER_ROWS", 0)
    yield
    if helper._helper is not None:
        helper._helper[1].shutdown()
        helper._helper = None


def _assert_same(shared: Correlation, alone: Correlation) -> None:
    assert alone.merge_log.num_rows > 0
    assert shared.merge_log.equals(alone.merge_log)
    assert shared.incidents.equals(alone.incidents)
    assert shared.memberships.equals(alone.memberships)
    assert shared.replayed_rows == alone.replayed_rows


def test_the_helper_replays_a_share_with_the_same_answer(helper_rows: None) -> None:
    alone = correlate(TABLE, SettingsTimeline(), chunk_events=10**9)
    taken: list[int] = []
    submit = helper.ProcessPoolExecutor.submit

    def counted(pool: helper.ProcessPoolExecutor, fn: object, *args: object) -> object:
        taken.append(len(args))
        return submit(pool, fn, *args)  # type: ignore[arg-type]

    helper.ProcessPoolExecutor.submit = counted  # type: ignore[method-assign]
    try:
        shared = correlate(TABLE, SettingsTimeline(), chunk_events=10**9)
    finally:
        helper.ProcessPoolExecutor.submit = submit  # type: ignore[method-assign]
    assert taken  # the helper took jobs
    assert helper._helper is not None and helper._helper[0] == os.getpid()
    assert helper.helper_peak_rss_mb() > 0
    _assert_same(shared, alone)


def test_a_dead_helper_s_share_is_replayed_here(helper_rows: None,
                                                caplog: pytest.LogCaptureFixture) -> None:
    alone = correlate(TABLE, SettingsTimeline(), chunk_events=10**9)
    pool = helper._pool()
    pool.submit(os.getpid).result()  # started
    for process in list(pool._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not pool._broken and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool._broken
    with caplog.at_level(logging.WARNING):
        shared = correlate(TABLE, SettingsTimeline(), chunk_events=10**9)
    assert "helper process died" in caplog.text
    _assert_same(shared, alone)
    assert helper._helper is None or helper._helper[1] is not pool  # the next one starts anew
