"""SSM snapshots in the lake and in the build file.

SSM keeps only the current state, so each day's snapshot is kept in the lake:
`raw/ssm/<table>/tenant_id=<t>/date=<snapshot day>/<account>-<region>-<source>.parquet`. A
second snapshot of the same day replaces the first (same file names), so the lake holds one
snapshot per tenant, account, region, source and day. `stage` loads every snapshot file into
the build file (`lake.ssm_<table>`), whole: the data is small (nodes × days).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse.lake import Lake
from warehouse.schema import TABLES as LAKE_TABLES
from warehouse.ssm.schema import TABLES
from warehouse.store import replace_table, run


@dataclass
class Written:
    files: int
    rows: dict[str, int]


def write_snapshot(lake: Lake, tables: dict[str, pa.Table], day: date) -> Written:
    """Write snapshot tables (schema.TABLES columns) as one file per table, tenant, account,
    region and source under the `day` partition."""
    files, rows = 0, {}
    for name, table in tables.items():
        if table.num_rows == 0:
            continue
        rows[name] = table.num_rows
        keys = table.select(["tenant_id", "account_id", "region", "source"]).to_pylist()
        groups: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            groups[(k["tenant_id"], k["account_id"], k["region"], k["source"])].append(i)
        lake_table = f"raw/ssm/{name}"
        for (tenant, account, region, source), index in groups.items():
            part = table.take(pa.array(index)).drop_columns(["tenant_id"]).cast(
                LAKE_TABLES[lake_table])
            directory = lake.partition_dir(lake_table, tenant, day)
            lake.write_parquet(directory, f"{account}-{region}-{source}.parquet", part)
            files += 1
    return Written(files, rows)


def lake_listing(lake: Lake) -> list[str]:
    """Every SSM snapshot file (their names change only when snapshots do)."""
    return [info.path for name in TABLES for info in lake.files(f"raw/ssm/{name}")]


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Empty `lake.ssm_<table>` tables where none were staged yet (no SSM configured)."""
    run(con, "CREATE SCHEMA IF NOT EXISTS lake")
    for name, schema in TABLES.items():
        full = schema.append(pa.field("snapshot_date", pa.date32()))
        con.register("ssm_empty", full.empty_table())
        run(con, f"CREATE TABLE IF NOT EXISTS lake.ssm_{name} AS SELECT * FROM ssm_empty")
        con.unregister("ssm_empty")


def stage(con: duckdb.DuckDBPyConnection, lake: Lake) -> dict[str, int]:
    """(Re)load every SSM snapshot in the lake into `lake.ssm_<table>`; row counts."""
    run(con, "CREATE SCHEMA IF NOT EXISTS lake")
    counts = {}
    for name, schema in TABLES.items():
        parts = []
        for info in lake.files(f"raw/ssm/{name}"):
            values = dict(p.split("=", 1) for p in info.path.split("/") if "=" in p)
            table = pq.read_table(info.path, filesystem=lake.fs,
                                  schema=LAKE_TABLES[f"raw/ssm/{name}"])
            table = table.append_column(
                "tenant_id", pa.array([values.get("tenant_id", "")] * table.num_rows, pa.string()))
            table = table.append_column(
                "snapshot_date",
                pc.cast(pa.array([values.get("date", "1970-01-01")] * table.num_rows),
                        pa.date32()))
            parts.append(table)
        full_schema = schema.append(pa.field("snapshot_date", pa.date32()))
        table = (pa.concat_tables([p.select(full_schema.names).cast(full_schema)
                                   for p in parts]) if parts else full_schema.empty_table())
        replace_table(con, f"lake.ssm_{name}", table)
        counts[name] = table.num_rows
    return counts
