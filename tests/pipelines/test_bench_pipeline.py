"""bench.pipeline's inputs: the floor reads what the benchmark writes for it."""

from __future__ import annotations

from pathlib import Path

from bench.correlate import measure_floor
from bench.pipeline import write_inputs
from warehouse.correlation.synthetic import history


def test_the_floor_and_the_lake_hold_every_event(tmp_path: Path) -> None:
    table = history(4_000, days=3, tenants=4, seed=5)
    floor_input, lake, files = write_inputs(table, tmp_path, table.num_rows)
    assert measure_floor(floor_input)["rows"] == table.num_rows
    assert files == sum(1 for _ in lake.rglob("*.parquet")) > 0
