"""Which marts are exported for BI tools, and how each DuckDB column type is written.

One table of decisions per column kind, used by both exports so that QuickSight sees the same
columns whether it reads the CSV export (S3 data source) or the Parquet export (Athena):

| kind      | DuckDB types     | CSV text                   | QuickSight cast  | Glue type     |
|-----------|------------------|----------------------------|------------------|---------------|
| string    | VARCHAR          | as is                      | none (STRING)    | string        |
| integer   | TINYINT … BIGINT | decimal digits             | INTEGER          | int, bigint … |
| decimal   | DOUBLE, DECIMAL  | positional, no exponent    | DECIMAL (FLOAT)  | double        |
| boolean   | BOOLEAN          | `1` / `0`                  | INTEGER          | boolean       |
| date      | DATE             | `2026-11-02`               | DATETIME         | date          |
| timestamp | TIMESTAMP[TZ]    | `2026-11-02T10:00:00.123Z` | DATETIME         | timestamp     |
| list      | VARCHAR[]        | elements joined with `;`   | none (STRING)    | array<string> |
| other     | MAP, STRUCT, …   | JSON text                  | none (STRING)    | string        |

Dates cast with the format `yyyy-MM-dd`, timestamps (UTC, milliseconds) with
`yyyy-MM-dd'T'HH:mm:ss.SSSZ` (QuickSight's date patterns are Joda's).

Booleans are 1/0 because QuickSight promotes booleans to integers anyway, and an integer can
be summed (`SUM(compliant)` counts compliant nodes). Timestamps keep milliseconds, the
precision QuickSight stores; the Parquet export keeps microseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# The curated marts, in export order. Tenant-level tables carry `tenant_id` (row-level
# security and Hive partitions key on it); fct_noise_msp_daily is the MSP-only roll-up.
EXPORT_TABLES: tuple[str, ...] = (
    "marts.dim_tenants",
    "marts.fct_noise_daily",
    "marts.fct_noise_msp_daily",
    "marts.fct_incidents",
    "marts.fct_top_noisy_keys",
    "marts.fct_source_noise_daily",
    "marts.fct_patch_compliance_daily",
    "marts.fct_patch_compliance_group_daily",
    "marts.fct_patch_compliance_node_daily",
    "marts.fct_patch_risk_assets",
)
TENANT_COLUMN = "tenant_id"
LIST_SEPARATOR = ";"
DATE_FORMAT = "yyyy-MM-dd"  # Joda-style patterns, as QuickSight's date formats are
TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSZ"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
_INTEGERS = {"TINYINT": "tinyint", "SMALLINT": "smallint", "INTEGER": "int", "BIGINT": "bigint"}
_WIDE_INTEGERS = {"HUGEINT", "UHUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}


class Kind(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"
    LIST = "list"
    OTHER = "other"


@dataclass(frozen=True)
class Column:
    """One exported column: its name, DuckDB type and how each export writes it."""

    name: str
    duckdb_type: str

    @property
    def kind(self) -> Kind:
        return kind_of(self.duckdb_type)

    @property
    def quicksight_type(self) -> str:
        """The QuickSight column type after the dataset's casts."""
        return {Kind.INTEGER: "INTEGER", Kind.BOOLEAN: "INTEGER", Kind.DECIMAL: "DECIMAL",
                Kind.DATE: "DATETIME", Kind.TIMESTAMP: "DATETIME"}.get(self.kind, "STRING")

    @property
    def cast_format(self) -> str | None:
        return {Kind.DATE: DATE_FORMAT, Kind.TIMESTAMP: TIMESTAMP_FORMAT}.get(self.kind)

    @property
    def glue_type(self) -> str:
        t = self.duckdb_type.upper()
        kind = self.kind
        if kind is Kind.INTEGER:
            return _INTEGERS.get(t, "bigint")
        if kind is Kind.DECIMAL:
            if t.startswith("DECIMAL"):
                return t.lower().replace(" ", "")
            return "float" if t in ("FLOAT", "REAL") else "double"
        return {Kind.BOOLEAN: "boolean", Kind.DATE: "date", Kind.TIMESTAMP: "timestamp",
                Kind.LIST: "array<string>"}.get(kind, "string")

    def to_json(self) -> dict[str, str | None]:
        return {"name": self.name, "duckdb_type": self.duckdb_type,
                "quicksight_type": self.quicksight_type, "cast_format": self.cast_format,
                "glue_type": self.glue_type}


def kind_of(duckdb_type: str) -> Kind:
    t = duckdb_type.upper().strip()
    if t.endswith("[]"):
        return Kind.LIST
    if t in _INTEGERS or t in _WIDE_INTEGERS:
        return Kind.INTEGER
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return Kind.DECIMAL
    if t.startswith("TIMESTAMP"):
        return Kind.TIMESTAMP
    simple = {"VARCHAR": Kind.STRING, "BOOLEAN": Kind.BOOLEAN, "DATE": Kind.DATE}
    return simple.get(t, Kind.OTHER)


def short_name(table: str) -> str:
    """`marts.fct_noise_daily` → `fct_noise_daily` (validated: it becomes a path and an id)."""
    name = table.rsplit(".", 1)[-1]
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not an exportable table name: {table!r}")
    return name


def quoted(identifier: str) -> str:
    """A DuckDB identifier in double quotes (names come from the catalog, never from users)."""
    return '"' + identifier.replace('"', '""') + '"'


def csv_expression(column: Column) -> str:
    """SQL that renders `column` as the CSV text described in the module docstring."""
    c = quoted(column.name)
    kind = column.kind
    if kind is Kind.STRING:
        return c
    if kind is Kind.INTEGER:
        return f"CAST({c} AS VARCHAR)"
    if kind is Kind.DECIMAL:
        # DuckDB prints the shortest round-trip digits, but with an exponent outside this
        # range; QuickSight's DECIMAL parsing is documented for plain numbers only.
        d = f"CAST({c} AS DOUBLE)"
        return (f"CASE WHEN NOT isfinite({d}) THEN NULL "
                f"WHEN {d} = 0 OR abs({d}) BETWEEN 1e-4 AND 1e15 THEN CAST({d} AS VARCHAR) "
                f"ELSE rtrim(rtrim(printf('%.20f', {d}), '0'), '.') END")
    if kind is Kind.BOOLEAN:
        return f"CASE WHEN {c} THEN '1' WHEN NOT {c} THEN '0' END"
    if kind is Kind.DATE:
        return f"strftime({c}, '%Y-%m-%d')"
    if kind is Kind.TIMESTAMP:
        utc = f"({c} AT TIME ZONE 'UTC')" if "TIME ZONE" in column.duckdb_type.upper() else c
        return f"strftime({utc}, '%Y-%m-%dT%H:%M:%S.%gZ')"
    if kind is Kind.LIST:
        return f"array_to_string(CAST({c} AS VARCHAR[]), '{LIST_SEPARATOR}')"
    return f"CAST(to_json({c}) AS VARCHAR)"


def parquet_expression(column: Column) -> str:
    """SQL for the Parquet export: native types, except those Glue/Athena cannot declare."""
    c = quoted(column.name)
    kind = column.kind
    t = column.duckdb_type.upper()
    if kind is Kind.INTEGER and t not in _INTEGERS:
        return f"CAST({c} AS BIGINT)"
    if kind is Kind.TIMESTAMP and "TIME ZONE" not in t:
        return f"({c} AT TIME ZONE 'UTC')"  # a naive timestamp in the marts is UTC
    if kind is Kind.LIST:
        return f"CAST({c} AS VARCHAR[])"
    if kind is Kind.OTHER:
        return f"CAST(to_json({c}) AS VARCHAR)"
    return c
