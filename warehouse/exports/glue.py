"""Keep the Glue tables of the Athena export pointing at the current export, idempotently.

Each export writes `exports/athena/<t>/table.json` whose `table_input` is exactly the
`TableInput` of `glue.create_table` / `glue.update_table`; a new export changes its location
(and the projected tenant ids), so the table is updated after every export, and left alone
when it already matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from warehouse.exports.catalog import short_name
from warehouse.exports.quicksight import current_definition
from warehouse.exports.store import ExportStore


@dataclass
class Step:
    """One resource and what was (or, in a dry run, would be) done to it."""

    kind: str
    resource_id: str
    action: str  # create, update, grant, refresh, unchanged
    detail: str = ""


def covers(actual: Any, desired: Any) -> bool:
    """True when every field of `desired` has the same value in `actual` (which may hold
    more fields: the ones the service adds, or that someone set by hand)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            k in actual and covers(actual[k], v) for k, v in desired.items())
    if isinstance(desired, list | tuple):
        return (isinstance(actual, list | tuple) and len(actual) == len(desired)
                and all(covers(a, d) for a, d in zip(actual, desired, strict=True)))
    return bool(actual == desired)


def sync_glue_tables(glue: Any, database: str, tables: Sequence[dict[str, Any]]
                     ) -> list[Step]:
    """Create the database if missing, then create or update each table (TableInput)."""
    steps: list[Step] = []
    try:
        glue.get_database(Name=database)
    except ClientError as exc:
        if _code(exc) != "EntityNotFoundException":
            raise
        glue.create_database(DatabaseInput={"Name": database})
        steps.append(Step("glue database", database, "create"))
    for table_input in tables:
        name = table_input["Name"]
        try:
            current = glue.get_table(DatabaseName=database, Name=name)["Table"]
        except ClientError as exc:
            if _code(exc) != "EntityNotFoundException":
                raise
            glue.create_table(DatabaseName=database, TableInput=table_input)
            steps.append(Step("glue table", f"{database}.{name}", "create"))
            continue
        if covers(current, table_input):
            steps.append(Step("glue table", f"{database}.{name}", "unchanged"))
        else:
            glue.update_table(DatabaseName=database, TableInput=table_input)
            steps.append(Step("glue table", f"{database}.{name}", "update",
                                  table_input["StorageDescriptor"]["Location"]))
    return steps


def sync_exports(glue: Any, store: ExportStore, database: str, tables: Sequence[str]
                 ) -> list[Step]:
    """Point the Glue tables of `tables` at their current Athena export."""
    definitions = [current_definition(store, short_name(t)) for t in tables]
    return sync_glue_tables(glue, database, [d["table_input"] for d in definitions if d])


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
