"""The README's data dictionary is the truth about the marts: every mart is documented with
exactly its columns, and the example queries run."""

from __future__ import annotations

import re

import pytest

from pipelines.run import run_once
from tests.pipelines.conftest import at, write
from tests.support.servers import PROJECT_ROOT
from warehouse import models

SECTION = PROJECT_ROOT.joinpath("README.md").read_text().split(
    "### Data dictionary (schema `marts`)", 1)[1].split("\n## ", 1)[0]


def documented() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for block in re.split(r"\n#### ", SECTION)[1:]:
        name = re.match(r"`marts\.([a-z_]+)`", block)
        if not name:
            continue
        columns: list[str] = []
        for line in block.splitlines():
            if line.startswith("| `"):
                first_cell = line.split(" | ")[0]
                columns += re.findall(r"`([a-z_0-9]+)`", first_cell)
        out[name.group(1)] = columns
    return out


@pytest.fixture
def warehouse(lake, published):
    write(lake, [{"id": "e1", "t": at("10:00:00")}, {"id": "e2", "t": at("10:05:00")},
                 {"id": "e3", "t": at("10:06:00"), "status": "firing", "fp": "f"}])
    run_once(echo=lambda _line: None)
    return published()


def test_every_mart_documented_with_exactly_its_columns(warehouse) -> None:
    docs = documented()
    assert set(docs) == {m.table for m in models.marts()}
    for table, columns in docs.items():
        actual = [r[0] for r in warehouse.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'marts' "
            "AND table_name = ? ORDER BY column_index", [table]).fetchall()]
        assert sorted(columns) == sorted(actual), table
        assert len(columns) == len(set(columns)), table


def test_the_example_queries_run(warehouse) -> None:
    block = SECTION.split("```sql", 1)[1].split("```", 1)[0]
    incident = warehouse.execute("SELECT incident_id FROM marts.fct_incidents").fetchall()[0][0]
    queries = [q.strip() for q in block.replace("inc_…", incident).split(";") if q.strip()]
    assert len(queries) == 3
    results = [warehouse.execute(q).fetchall() for q in queries]
    assert len(results[1]) == 3  # the incident's three events with their reasons
