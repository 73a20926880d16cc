"""How each column kind is written: the CSV text (RFC 4180, UTC ISO timestamps, 1/0
booleans, joined lists, plain decimals), QuickSight casts and Glue types; on a tiny table."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.exports.conftest import parse_csv, read_text
from warehouse.exports.catalog import Column, Kind
from warehouse.exports.csv_files import table_columns, write_csv
from warehouse.exports.store import ExportStore
from warehouse.lake import open_lake


@pytest.fixture
def tiny() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")  # output must not depend on it
    con.execute("CREATE SCHEMA marts")
    con.execute("""CREATE TABLE marts.t AS SELECT * FROM (VALUES
        (1, 'plain', TIMESTAMPTZ '2026-11-02 10:00:00.123456+00', DATE '2026-11-02', true,
         ['grafana', 'datadog'], 0.5::DOUBLE, MAP {'k': 'v'}),
        (2, 'a,b "c"' || chr(10) || 'd', TIMESTAMPTZ '2026-11-02 23:59:59.9999+05',
         DATE '1999-01-31', false, []::VARCHAR[], 1e-05::DOUBLE, NULL),
        (3, NULL, NULL, NULL, NULL, NULL, 'nan'::DOUBLE, NULL),
        (4, '', NULL, NULL, NULL, NULL, 1e16::DOUBLE, NULL)
    ) v(id, s, ts, d, b, l, x, m)""")
    return con


def test_each_kind_is_written_as_documented(tiny: duckdb.DuckDBPyConnection,
                                             tmp_path: Path) -> None:
    lake = open_lake(tmp_path.as_uri())
    columns = table_columns(tiny, "marts.t")
    written = write_csv(tiny, ExportStore(lake), "marts.t", columns, f"{tmp_path}/out", ["id"])
    raw = read_text(lake, written.paths[0])
    assert raw.split("\r\n")[0] == "id,s,ts,d,b,l,x,m"  # a header row, CRLF line ends
    assert raw.split("\r\n")[1] == (
        "1,plain,2026-11-02T10:00:00.123Z,2026-11-02,1,grafana;datadog,0.5,"
        '"{""k"":""v""}"')
    # a field with a comma, quotes and a line break is quoted, quotes doubled (RFC 4180);
    # 23:59:59.9999+05 is 18:59:59.999 UTC (milliseconds, truncated)
    assert '2,"a,b ""c""\nd",2026-11-02T18:59:59.999Z,1999-01-31,0,,0.00001,\r\n' in raw
    assert "3,,,,,,,\r\n" in raw  # NULL everywhere, NaN too: empty fields
    assert raw.endswith("4,,,,,,10000000000000000,\r\n")
    header, rows = parse_csv(raw)
    assert [r[0] for r in rows] == ["1", "2", "3", "4"] and len(header) == 8
    assert written.rows == 4 and written.bytes == len(raw.encode())


def test_parts_are_cut_by_size_and_each_has_the_header(tiny: duckdb.DuckDBPyConnection,
                                                        tmp_path: Path) -> None:
    lake = open_lake(tmp_path.as_uri())
    tiny.execute("CREATE TABLE marts.big AS SELECT range AS id, 'row ' || range AS s "
                 "FROM range(100000)")
    columns = table_columns(tiny, "marts.big")
    written = write_csv(tiny, ExportStore(lake), "marts.big", columns, f"{tmp_path}/big",
                        ["id"], max_part_bytes=300_000)
    assert len(written.paths) > 3
    ids: list[int] = []
    for path in written.paths:
        header, rows = parse_csv(read_text(lake, path))
        assert header == ["id", "s"]
        ids += [int(r[0]) for r in rows]
    assert ids == list(range(100000)) and written.rows == 100000


@pytest.mark.parametrize("duckdb_type,kind,quicksight,cast_format,glue", [
    ("VARCHAR", Kind.STRING, "STRING", None, "string"),
    ("BIGINT", Kind.INTEGER, "INTEGER", None, "bigint"),
    ("INTEGER", Kind.INTEGER, "INTEGER", None, "int"),
    ("HUGEINT", Kind.INTEGER, "INTEGER", None, "bigint"),  # cast to BIGINT in Parquet
    ("DOUBLE", Kind.DECIMAL, "DECIMAL", None, "double"),
    ("DECIMAL(18,3)", Kind.DECIMAL, "DECIMAL", None, "decimal(18,3)"),
    ("BOOLEAN", Kind.BOOLEAN, "INTEGER", None, "boolean"),  # 1/0 in CSV
    ("DATE", Kind.DATE, "DATETIME", "yyyy-MM-dd", "date"),
    ("TIMESTAMP WITH TIME ZONE", Kind.TIMESTAMP, "DATETIME", "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
     "timestamp"),
    ("VARCHAR[]", Kind.LIST, "STRING", None, "array<string>"),
    ("MAP(VARCHAR, VARCHAR)", Kind.OTHER, "STRING", None, "string"),  # JSON text
])
def test_column_kinds(duckdb_type: str, kind: Kind, quicksight: str, cast_format: str | None,
                      glue: str) -> None:
    column = Column("c", duckdb_type)
    assert (column.kind, column.quicksight_type, column.cast_format, column.glue_type) == (
        kind, quicksight, cast_format, glue)
