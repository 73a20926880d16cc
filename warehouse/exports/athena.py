"""Parquet files of a mart for Athena (and any Hive-aware engine), and their Glue table.

Tenant-level marts are Hive-partitioned by `tenant_id` (`…/v=<version>/tenant_id=acme/…`);
the partitions are declared by partition projection (type `enum`, the exported tenant ids),
so the table needs no partition registration (no `MSCK REPAIR`, no crawler) and switching to
a new export is one `UpdateTable` with the new location. The same definition is given as the
`TableInput` of boto3 `glue.create_table`/`update_table` and as `CREATE EXTERNAL TABLE` DDL.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from warehouse.exports.catalog import TENANT_COLUMN, Column, parquet_expression
from warehouse.exports.csv_files import select_sql
from warehouse.exports.store import ExportStore
from warehouse.lake import PARQUET_OPTIONS, LakeError

INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
MAX_ROWS_PER_FILE = 5_000_000


@dataclass
class ParquetFiles:
    paths: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    tenants: list[str] = field(default_factory=list)


def write_parquet(con: duckdb.DuckDBPyConnection, store: ExportStore, table: str,
                  columns: Sequence[Column], folder: str, order_by: Sequence[str] = (),
                  partitioned: bool = False) -> ParquetFiles:
    """Write `table` under `folder` (zstd Parquet; Hive partitions by tenant when asked).

    An empty mart writes no file: the table's location is then an empty folder (0 rows)."""
    sql = select_sql(table, [parquet_expression(c) for c in columns], columns, order_by)
    data = _utc(con.sql(sql).to_arrow_table())
    out = ParquetFiles(rows=data.num_rows)
    if partitioned:
        out.tenants = sorted({str(t) for t in data.column(TENANT_COLUMN).to_pylist()
                              if t is not None})

    def visit(written: Any) -> None:
        out.paths.append(written.path)
        out.bytes += int(written.size or 0)

    options = ds.ParquetFileFormat().make_write_options(
        compression=PARQUET_OPTIONS["compression"],
        compression_level=PARQUET_OPTIONS["compression_level"])
    try:
        ds.write_dataset(
            data, folder, format="parquet", filesystem=store.lake.fs, file_options=options,
            partitioning=ds.partitioning(pa.schema([pa.field(TENANT_COLUMN, pa.string())]),
                                         flavor="hive") if partitioned else None,
            basename_template="part-{i}.parquet", existing_data_behavior="overwrite_or_ignore",
            max_rows_per_file=MAX_ROWS_PER_FILE, max_rows_per_group=min(MAX_ROWS_PER_FILE,
                                                                        1_000_000),
            # pyarrow would write zero-byte "directory" objects on S3 (STACK.md)
            create_dir=store.lake.is_local, file_visitor=visit)
    except (OSError, pa.ArrowException) as exc:
        raise LakeError(f"Parquet export failed under {folder}: {exc}") from exc
    out.paths.sort()
    return out


def _utc(table: pa.Table) -> pa.Table:
    """Timestamps as instants in `UTC` (DuckDB names the session's zone, e.g. `Etc/UTC`)."""
    fields = [pa.field(f.name, pa.timestamp(f.type.unit, tz="UTC"), f.nullable)
              if pa.types.is_timestamp(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def table_input(name: str, description: str, columns: Sequence[Column], location: str,
                tenants: Sequence[str] | None, properties: dict[str, str]) -> dict[str, Any]:
    """The Glue `TableInput` of one export. `tenants` is None for an unpartitioned table."""
    location = location.rstrip("/") + "/"
    data_columns = [c for c in columns if tenants is None or c.name != TENANT_COLUMN]
    parameters = {"EXTERNAL": "TRUE", "classification": "parquet",
                  "parquet.compression": "ZSTD", **properties}
    if tenants:
        # Partition projection: Athena computes the partitions from these values instead
        # of reading them from the catalog, so a new export needs no partition calls.
        parameters.update({
            "projection.enabled": "true",
            f"projection.{TENANT_COLUMN}.type": "enum",
            f"projection.{TENANT_COLUMN}.values": ",".join(tenants),
            "storage.location.template": posixpath.join(
                location, f"{TENANT_COLUMN}=${{{TENANT_COLUMN}}}") + "/",
        })
    result: dict[str, Any] = {
        "Name": name,
        "Description": description[:2048],
        "TableType": "EXTERNAL_TABLE",
        "Parameters": parameters,
        "StorageDescriptor": {
            "Columns": [{"Name": c.name, "Type": c.glue_type} for c in data_columns],
            "Location": location,
            "InputFormat": INPUT_FORMAT,
            "OutputFormat": OUTPUT_FORMAT,
            "SerdeInfo": {"SerializationLibrary": SERDE,
                          "Parameters": {"serialization.format": "1"}},
        },
    }
    if tenants is not None:
        result["PartitionKeys"] = [{"Name": TENANT_COLUMN, "Type": "string"}]
    return result


def create_table_ddl(database: str, definition: dict[str, Any]) -> str:
    """Athena DDL equivalent to `definition` (a TableInput), for the Athena query editor."""
    sd = definition["StorageDescriptor"]
    cols = ",\n".join(f"  `{c['Name']}` {c['Type']}" for c in sd["Columns"])
    lines = [f"CREATE EXTERNAL TABLE `{database}`.`{definition['Name']}` (", cols, ")",
             f"COMMENT '{_literal(definition.get('Description', ''))}'"]
    if definition.get("PartitionKeys"):
        keys = ", ".join(f"`{k['Name']}` {k['Type']}" for k in definition["PartitionKeys"])
        lines.append(f"PARTITIONED BY ({keys})")
    lines += ["STORED AS PARQUET", f"LOCATION '{_literal(sd['Location'])}'", "TBLPROPERTIES ("]
    props = [f"  '{_literal(k)}'='{_literal(v)}'" for k, v in definition["Parameters"].items()
             if k != "EXTERNAL"]
    return "\n".join(lines) + "\n" + ",\n".join(props) + "\n);\n"


def _literal(text: str) -> str:
    # Hive string literals take backslash escapes; a plain apostrophe is simply avoided.
    return text.replace("\\", "\\\\").replace("'", "\u2019")
