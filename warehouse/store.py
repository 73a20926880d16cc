"""The pipeline's own DuckDB file, and the one lock that makes its runs take turns.

Two DuckDB files, on purpose (STACK.md: a DuckDB file is single-writer across processes):

- the **build file** (`$AW_DATA_DIR/pipeline/build.duckdb`) holds staged lake rows, the
  correlation state and the models while they are built. Only pipeline runs open it, one at
  a time: `writer()` takes an exclusive `flock` on a sibling lock file first, so a run started
  by the Dagster daemon and an `aw pipeline run` from cron queue behind each other instead of
  failing on DuckDB's lock (a Dagster run keeps one writer for all its steps,
  `pipelines.resources`);
- the **published warehouse** (`AW_WAREHOUSE_PATH`) is a read-only snapshot of the marts that
  `warehouse.publish` replaces atomically. Readers only ever open that one.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from warehouse.config import PlatformSettings, SettingsError

DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False, "autoload_known_extensions": False}


@dataclass(frozen=True)
class WarehouseStore:
    """Where the build file, its lock and the published warehouse live."""

    build_path: Path
    published_path: Path
    memory_limit: str = ""  # DuckDB's, for the build file's connections ("" = its default)
    correlation_memory_limit: str = ""  # DuckDB's during the correlation step ("" = the above)

    @classmethod
    def from_settings(cls, settings: PlatformSettings) -> WarehouseStore:
        return cls(build_path=settings.data_dir / "pipeline" / "build.duckdb",
                   published_path=settings.resolved_warehouse_path,
                   memory_limit=settings.build_memory_limit,
                   correlation_memory_limit=settings.correlation_memory_limit)

    @property
    def lock_path(self) -> Path:
        return self.build_path.with_suffix(".lock")

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The build file, read-write, for as long as the block runs; runs take turns."""
        self.build_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            con = duckdb.connect(str(self.build_path), config=self._config())
            try:
                yield con
                con.execute("CHECKPOINT").fetchall()
            finally:
                con.close()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextmanager
    def correlating(self, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """DuckDB held to `correlation_memory_limit` while the block runs (the correlation
        step), then put back to the run's limit, even after an error.

        The engine holds a batch of up to a million events in Python memory beside DuckDB
        (about 2.5 GB at the synthetic history's mix), while the SQL models afterwards use
        DuckDB alone: with one limit for both, a 10M first build peaked at 5.5 GB in the
        correlation step (DuckDB filling its 3 GB beside the engine) and at 3.9 GB anywhere
        else. The setting is the database's, not the cursor's: every step shares it. When
        DuckDB cannot give memory back down to the limit right now (it holds more in pinned
        pages), the step runs under the run's limit instead of failing."""
        limit = _checked_memory_limit(self.correlation_memory_limit,
                                      "AW_CORRELATION_MEMORY_LIMIT")
        if limit:
            try:
                run(con, "SET memory_limit = ?", [limit])
            except duckdb.Error:
                limit = ""
        if not limit:
            yield
            return
        try:
            yield
        finally:
            if self.memory_limit:
                run(con, "SET memory_limit = ?", [self.memory_limit])
            else:
                run(con, "RESET memory_limit")

    def _config(self) -> dict[str, str | bool | int | float | list[str]]:
        config = dict(DUCKDB_CONFIG)
        if self.memory_limit:
            config["memory_limit"] = _checked_memory_limit(self.memory_limit)
        _checked_memory_limit(self.correlation_memory_limit, "AW_CORRELATION_MEMORY_LIMIT")
        return config


@functools.cache
def _checked_memory_limit(value: str, variable: str = "AW_BUILD_MEMORY_LIMIT") -> str:
    """`value` if DuckDB accepts it as a memory limit (checked once per value; empty is
    "not set"), else a settings error naming the variable: a bad value is a settings error,
    not a database one."""
    if not value:
        return value
    try:
        duckdb.connect(":memory:", config={"memory_limit": value}).close()
    except duckdb.Error as exc:
        raise SettingsError(f"{variable}={value!r} is not a memory size DuckDB "
                            f"accepts (e.g. 3GB): {exc}") from exc
    return value


def run(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> None:
    """Execute a statement for its effect (DuckDB 2.0 wants every result consumed)."""
    con.execute(sql, params or []).fetchall()


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> Any:
    """The first column of the first row (None without rows)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


def replace_table(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """`CREATE OR REPLACE TABLE name` with the Arrow table's rows, in one transaction."""
    con.register("incoming_rows", table)
    run(con, "BEGIN TRANSACTION")
    try:
        run(con, f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM incoming_rows")
        run(con, "COMMIT")
    except BaseException:
        run(con, "ROLLBACK")
        raise
    finally:
        con.unregister("incoming_rows")
