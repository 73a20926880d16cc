"""A `Snapshot`: the six SSM patch tables of `warehouse.ssm.schema`, as Arrow tables.

Both collection paths (the API through AssumeRole, and a Resource Data Sync location) build
rows as plain dicts and hand them to `Snapshot.from_rows`, which is the one place where rows
become typed tables. Every table is cast to its schema, and a null in a column the schema
declares not-null is refused here (pyarrow itself does not check nullability when it builds a
table from Python objects), so a malformed snapshot fails at collection time, not in a mart.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from warehouse.ssm.schema import TABLES

Row = Mapping[str, Any]


class SnapshotError(ValueError):
    """Rows that do not fit the snapshot contract (unknown table, missing required value)."""


def _check_not_null(name: str, table: pa.Table) -> None:
    for field in table.schema:
        if not field.nullable and table.column(field.name).null_count:
            raise SnapshotError(
                f"ssm table {name!r}: column {field.name!r} is declared not null but has "
                f"{table.column(field.name).null_count} null value(s)"
            )


def _table(name: str, rows: Sequence[Row]) -> pa.Table:
    schema = TABLES[name]
    unknown = {key for row in rows for key in row} - set(schema.names)
    if unknown:
        raise SnapshotError(f"ssm table {name!r}: unknown column(s) {sorted(unknown)}")
    try:
        table = pa.Table.from_pylist([dict(row) for row in rows], schema=schema)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise SnapshotError(f"ssm table {name!r}: {exc}") from exc
    _check_not_null(name, table)
    return table


@dataclass(frozen=True)
class Snapshot:
    """One table per name of `schema.TABLES`, each with exactly that schema.

    Build one with `from_rows`, `empty` or `concat`; the constructor checks that every table
    is present with its exact schema.
    """

    tables: Mapping[str, pa.Table]

    def __post_init__(self) -> None:
        if set(self.tables) != set(TABLES):
            raise SnapshotError(
                f"a snapshot holds exactly the tables {sorted(TABLES)}, got {sorted(self.tables)}"
            )
        for name, table in self.tables.items():
            if not table.schema.equals(TABLES[name], check_metadata=False):
                raise SnapshotError(f"ssm table {name!r} does not have the schema of the contract")
            _check_not_null(name, table)

    @classmethod
    def empty(cls) -> Snapshot:
        """Every table with zero rows."""
        return cls({name: schema.empty_table() for name, schema in TABLES.items()})

    @classmethod
    def from_rows(cls, rows: Mapping[str, Sequence[Row]]) -> Snapshot:
        """Tables from rows (dicts keyed by column name); a missing table or column is null.

        Tables not named in `rows` are empty; an unknown table or column name is an error
        (a typo must not silently become a null column).
        """
        unknown = set(rows) - set(TABLES)
        if unknown:
            raise SnapshotError(f"unknown ssm table(s) {sorted(unknown)}")
        return cls({name: _table(name, rows.get(name, ())) for name in TABLES})

    @classmethod
    def concat(cls, snapshots: Iterable[Snapshot]) -> Snapshot:
        """All rows of all snapshots, table by table, in the given order."""
        parts = list(snapshots)
        if not parts:
            return cls.empty()
        return cls({
            name: pa.concat_tables([part.tables[name] for part in parts]).combine_chunks()
            for name in TABLES
        })

    def __getitem__(self, name: str) -> pa.Table:
        return self.tables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(TABLES)

    def row_counts(self) -> dict[str, int]:
        """`{table name: number of rows}` for every table, in contract order."""
        return {name: self.tables[name].num_rows for name in TABLES}

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The rows of one table as Python dicts (for tests, reports and small tables)."""
        return self.tables[name].to_pylist()
