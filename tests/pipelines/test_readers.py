"""Readers are never blocked and never see a half-built table (issue: "readers provably never
blocked"): reader processes query the published warehouse in a loop while pipeline runs
stage, correlate, build and publish new data; every query succeeds and every snapshot is
internally consistent."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pipelines.run import run_once
from tests.pipelines.conftest import rows
from warehouse.config import platform_settings
from warehouse.correlation.synthetic import history
from warehouse.publish import connect_readonly
from warehouse.synthetic_lake import write_events

READER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from warehouse.publish import connect_readonly
    path, stop, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    queries, errors, snapshots, inconsistent = 0, [], set(), 0
    while not stop.exists():
        try:
            con = connect_readonly(path)
            try:
                published = con.execute("SELECT published_at FROM marts.published").fetchall()
                events = con.execute(
                    "SELECT coalesce(sum(events_accepted), 0) FROM marts.fct_noise_daily"
                ).fetchall()[0][0]
                explained = con.execute(
                    "SELECT count(*) FROM marts.fct_incident_events").fetchall()[0][0]
                incidents = con.execute(
                    "SELECT coalesce(sum(incidents), 0) FROM marts.fct_noise_daily"
                ).fetchall()[0][0]
                counted = con.execute(
                    "SELECT count(*) FROM marts.fct_incidents WHERE counted").fetchall()[0][0]
            finally:
                con.close()
            snapshots.add(str(published[0][0]))
            inconsistent += (events != explained) + (incidents != counted)
            queries += 1
        except Exception as exc:  # every failure is the finding
            errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.01)
    out.write_text(json.dumps({"queries": queries, "errors": errors[:5], "n_errors": len(errors),
                               "snapshots": len(snapshots), "inconsistent": inconsistent}))
""")


def _quiet(_line: str) -> None:
    pass


def test_reader_processes_never_blocked_nor_see_partial_results(lake, tmp_path: Path) -> None:
    table = history(30_000, days=4, tenants=3, seed=5).sort_by("ingest_seq")
    parts = 4
    size = table.num_rows // parts
    write_events(lake, table.slice(0, size), prefix="p0")
    run_once(echo=_quiet)  # something is published before the readers start
    path = platform_settings().resolved_warehouse_path
    stop = tmp_path / "stop"
    readers = []
    for i in range(3):
        out = tmp_path / f"reader-{i}.json"
        readers.append((subprocess.Popen([sys.executable, "-c", READER, str(path), str(stop),
                                          str(out)]), out))
    try:
        time.sleep(1.0)
        for i in range(1, parts):
            write_events(lake, table.slice(i * size, size if i < parts - 1 else None),
                         prefix=f"p{i}")
            summary = run_once(echo=_quiet)
            assert not summary.checks_failed or summary.checks_failed == [
                "staging/stg_events:raw_data_fresh"]
        time.sleep(1.0)
    finally:
        stop.write_text("stop")
        for process, _ in readers:
            process.wait(timeout=30)
    for process, out in readers:
        assert process.returncode == 0
        report = json.loads(out.read_text())
        assert report["n_errors"] == 0, report["errors"]
        assert report["inconsistent"] == 0
        assert report["queries"] > 20
        assert report["snapshots"] >= 2  # they saw new snapshots appear while reading
    con = connect_readonly(path)
    try:
        assert rows(con, "SELECT sum(events_accepted) AS n FROM marts.fct_noise_daily") == [
            {"n": table.num_rows}]
    finally:
        con.close()


def test_a_long_lived_reader_process_sees_new_snapshots_on_reconnect(lake) -> None:
    """The dashboards' case: one process keeps a connection open across a publish and opens
    new ones later; the old keeps its snapshot, the new one sees the new data."""
    table = history(4_000, days=2, tenants=2, seed=9).sort_by("ingest_seq")
    write_events(lake, table.slice(0, 2_000), prefix="a")
    run_once(echo=_quiet)
    path = platform_settings().resolved_warehouse_path
    old = connect_readonly(path)
    try:
        write_events(lake, table.slice(2_000), prefix="b")
        run_once(echo=_quiet)
        new = connect_readonly(path)
        try:
            count = "SELECT count(*) FROM marts.fct_incident_events"
            assert old.execute(count).fetchall() == [(2_000,)]
            assert new.execute(count).fetchall() == [(4_000,)]
        finally:
            new.close()
    finally:
        old.close()
