"""The build file's memory limits: the correlation step's own, put back afterwards."""

from __future__ import annotations

import duckdb
import pytest

from warehouse.store import WarehouseStore


def _limit(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])


def _as_duckdb_shows(value: str | None) -> str:
    with duckdb.connect(config={"memory_limit": value} if value else {}) as con:
        return _limit(con)


@pytest.mark.parametrize("build_limit", ["800MB", ""])
def test_the_correlation_limit_holds_inside_the_block_and_the_run_limit_after(
        tmp_path, build_limit) -> None:
    store = WarehouseStore(tmp_path / "build.duckdb", tmp_path / "warehouse.duckdb",
                           memory_limit=build_limit, correlation_memory_limit="200MB")
    with store.writer() as con:
        assert _limit(con) == _as_duckdb_shows(build_limit)
        cursor = con.cursor()
        with store.correlating(cursor):
            assert _limit(con) == _limit(cursor) == _as_duckdb_shows("200MB")
        assert _limit(con) == _as_duckdb_shows(build_limit)


def test_the_run_limit_comes_back_after_an_error(tmp_path) -> None:
    store = WarehouseStore(tmp_path / "build.duckdb", tmp_path / "warehouse.duckdb",
                           memory_limit="800MB", correlation_memory_limit="200MB")
    with store.writer() as con:
        with pytest.raises(RuntimeError), store.correlating(con):
            raise RuntimeError("the engine failed")
        assert _limit(con) == _as_duckdb_shows("800MB")


def test_without_a_correlation_limit_the_run_limit_stays(tmp_path) -> None:
    store = WarehouseStore(tmp_path / "build.duckdb", tmp_path / "warehouse.duckdb",
                           memory_limit="800MB")
    with store.writer() as con, store.correlating(con):
        assert _limit(con) == _as_duckdb_shows("800MB")


def test_a_limit_duckdb_cannot_free_down_to_leaves_the_run_limit(tmp_path) -> None:
    """More than the correlation limit held in memory that cannot spill (a temporary table
    with nowhere to go): the step runs under the run's limit rather than failing."""
    store = WarehouseStore(tmp_path / "build.duckdb", tmp_path / "warehouse.duckdb",
                           memory_limit="800MB", correlation_memory_limit="50MB")
    with store.writer() as con:
        con.execute("SET temp_directory = ''").fetchall()
        con.execute("CREATE TEMP TABLE held AS SELECT range AS i, repeat('x', 50) AS s "
                    "FROM range(3000000)").fetchall()
        ran = False
        with store.correlating(con):
            ran = True
            assert _limit(con) == _as_duckdb_shows("800MB")
        assert ran and _limit(con) == _as_duckdb_shows("800MB")
