"""The engine pauses Python's cycle collector while it runs and leaves it as it found it; its
structures hold no reference cycles, so the pause lets no garbage pile up."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import warehouse.correlation.engine as engine
from warehouse.correlation.synthetic import history
from warehouse.correlation.timeline import SettingsTimeline


@pytest.fixture
def collector_restored() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_paused_during_the_engine_and_back_on_after(
        collector_restored: None) -> None:
    gc.enable()
    seen: list[bool] = []
    real = engine._correlate

    def spy(*args: object) -> engine.Correlation:
        seen.append(gc.isenabled())
        return real(*args)  # type: ignore[arg-type]

    table = history(6_000, days=2, tenants=4, seed=8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "_correlate", spy)
        engine.correlate(table, SettingsTimeline(), chunk_events=2_000)
    assert len(seen) > 1 and not any(seen)  # every tenant group ran paused
    assert gc.isenabled()


def test_a_caller_that_paused_it_keeps_it_paused(collector_restored: None) -> None:
    gc.disable()
    engine.correlate(history(2_000, days=1, tenants=2, seed=3), SettingsTimeline())
    assert not gc.isenabled()


def test_the_collector_comes_back_when_the_engine_fails(collector_restored: None) -> None:
    gc.enable()

    def broken(*args: object) -> engine.Correlation:
        raise RuntimeError("engine failure")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "_correlate", broken)
        with pytest.raises(RuntimeError):
            engine.correlate(history(1_000, days=1, tenants=1, seed=2), SettingsTimeline())
    assert gc.isenabled()


def test_a_run_with_merges_leaves_no_cyclic_garbage(collector_restored: None) -> None:
    table = history(30_000, days=4, tenants=5, seed=31)
    gc.collect()
    gc.disable()
    out = engine.correlate(table, SettingsTimeline())
    assert out.merge_log.num_rows > 0  # the replay's walks and undo logs ran
    assert gc.collect() == 0
