"""CSV files of a mart for QuickSight's S3 data source, and the manifest that lists them.

RFC 4180: comma-separated, CRLF line ends, a field is double-quoted when it holds a comma, a
double quote (doubled inside) or a line break; UTF-8 without a byte-order mark (QuickSight
rejects a BOM); a header row in every file (`containsHeader` applies to each file). NULL and
the empty string both become an empty field, which QuickSight reads as null.

QuickSight's manifest limits (S3 manifest file documentation): at most 1,000 files, none over
1 GB. Parts are cut at `MAX_PART_BYTES`, well below that.
"""

from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from warehouse.exports.catalog import Column, csv_expression, quoted
from warehouse.exports.store import ExportStore

MAX_PART_BYTES = 256 * 1024 * 1024
MAX_FILES = 1000
BATCH_ROWS = 20_000


class ExportTooLarge(ValueError):
    """More CSV parts than one QuickSight manifest may list."""


@dataclass
class CsvFiles:
    paths: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[Column]:
    """The columns of `schema.table` in order; empty when the table does not exist."""
    schema, name = table.split(".", 1)
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, name]).fetchall()
    return [Column(str(n), str(t)) for n, t in rows]


def select_sql(table: str, expressions: Sequence[str], columns: Sequence[Column],
               order_by: Sequence[str]) -> str:
    schema, name = table.split(".", 1)
    select = ", ".join(f"{e} AS {quoted(c.name)}" for e, c in zip(expressions, columns,
                                                                  strict=True))
    # Order by the source columns (qualified), not by the rendered text of the same name.
    order = f" ORDER BY {', '.join('src.' + quoted(k) for k in order_by)}" if order_by else ""
    return f"SELECT {select} FROM {quoted(schema)}.{quoted(name)} AS src{order}"


def write_csv(con: duckdb.DuckDBPyConnection, store: ExportStore, table: str,
              columns: Sequence[Column], folder: str, order_by: Sequence[str] = (),
              max_part_bytes: int = MAX_PART_BYTES) -> CsvFiles:
    """Write `table` as `folder/part-00000.csv`, `part-00001.csv`, … (always at least one
    file, so that an empty mart still has a header QuickSight can read)."""
    sql = select_sql(table, [csv_expression(c) for c in columns], columns, order_by)
    header = _encode([[c.name for c in columns]])
    out = CsvFiles()
    part_bytes = 0
    with ExitStack() as parts:
        stream = _next_part(parts, store, folder, header, out)
        for batch in con.sql(sql).to_arrow_reader(BATCH_ROWS):
            chunk = _encode(zip(*(col.to_pylist() for col in batch.columns), strict=True))
            if part_bytes and part_bytes + len(chunk) > max_part_bytes:
                parts.close()  # completes the current part
                stream = _next_part(parts, store, folder, header, out)
                part_bytes = 0
            stream.write(chunk)
            part_bytes += len(chunk)
            out.rows += batch.num_rows
            out.bytes += len(chunk)
    return out


def _next_part(parts: ExitStack, store: ExportStore, folder: str, header: bytes,
               out: CsvFiles) -> pa.NativeFile:
    if len(out.paths) >= MAX_FILES:
        raise ExportTooLarge(f"{folder}: more than {MAX_FILES} CSV files for one manifest")
    path = posixpath.join(folder, f"part-{len(out.paths):05d}.csv")
    stream = parts.enter_context(store.open_write(path))
    stream.write(header)
    out.paths.append(path)
    out.bytes += len(header)
    return stream


def _encode(rows: object) -> bytes:
    buffer = io.StringIO()
    # QUOTE_MINIMAL quotes exactly the fields RFC 4180 requires (delimiter, quote, CR, LF).
    csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerows(
        rows)  # type: ignore[arg-type]
    return buffer.getvalue().encode("utf-8")


def manifest(uris: Sequence[str]) -> dict[str, object]:
    """A QuickSight manifest (its own JSON format, not Redshift's) for these CSV files."""
    return {
        "fileLocations": [{"URIs": list(uris)}],
        "globalUploadSettings": {
            "format": "CSV",
            "delimiter": ",",
            "textqualifier": '"',
            "containsHeader": "true",
        },
    }
