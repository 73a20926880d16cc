"""Staging (`warehouse.staging`) against DuckDB reading the same lake files, on a synthetic lake.

    .venv/bin/python -m bench.staging [--events 1000000] [--days 30] [--tenants 50]
        [--repeat 3] [--against REV] [--only KIND ...] [--json]

The history (`warehouse.correlation.synthetic.history`) is generated and written into a fresh
local lake as the flusher would (one file per tenant, receive day and lake table;
`warehouse.synthetic_lake`): 1M events over 50 tenants and 30 days make ~3,000 small files.
None of that is timed. Then, alternating `--repeat` times so that noise on this shared 2-core
machine hits every kind alike, each into a fresh build file (`<tmp>/<kind>-<i>.duckdb`):

- floor: `CREATE TABLE … AS SELECT * FROM read_parquet([paths])` of the raw/alerts files and
  of the raw/duplicates files (DuckDB reading the files straight into tables, nothing else);
- load_days: `lake_files`, then `load_days` of every receive day (one load; a local lake is
  read by DuckDB);
- load_days_pyarrow: the same with the pyarrow reader that an S3 lake uses (forced here on
  the local lake: what S3 costs beyond its latency);
- load_day: `lake_files`, then `load_day` for each day in turn (a load, so a COMMIT, per day);
- against: with `--against REV`, that revision's `warehouse/staging.py` (read with
  `git show`, nothing checked out) staging day by day, as the pipeline did before `load_days`.

Reported: min and median wall seconds of each kind and the ratio of the medians to the
floor's; `other CPU`, the share of the machine's CPU used by other processes while a kind ran
(figures taken while it is high are not comparable); and for one run of each kind the seconds
by phase: listing (`lake_files`), each SQL statement kind (footers, column discovery, the
INSERTs, `lake.files`, COMMIT, the span query, …) and, for the pyarrow reader, the waits for
fetched files and the decoding. Nothing is asserted: the figures are for reading.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from bench.correlate import log, machine_busy_seconds
from warehouse import staging
from warehouse.lake import Lake, open_lake

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("floor", "load_days", "load_days_pyarrow", "load_day", "against")


# ---- timing by phase ------------------------------------------------------------------------


def _label(sql: str) -> str:
    """A statement's phase name."""
    text = " ".join(sql.split())
    for pattern, name in (("AS SELECT * FROM read_parquet", "read_parquet into a table"),
                          ("parquet_file_metadata", "footers (row counts)"),
                          ("DESCRIBE", "column discovery"), ("min(received_at)", "span query"),
                          ("SELECT path FROM lake.files", "pending"),
                          ("max(load_id)", "next load id"), ("CREATE ", "DDL")):
        if pattern in text:
            return name
    insert = re.match(r"INSERT INTO (\S+)", text)
    if insert:
        return f"INSERT {insert.group(1)}"
    return " ".join(text.split()[:3])


class _TimedResult:
    def __init__(self, result: duckdb.DuckDBPyConnection, phases: Counter[str], label: str,
                 seconds: float) -> None:
        self.result, self.phases, self.label = result, phases, label
        phases[label] += seconds

    def fetchall(self) -> list[Any]:
        start = time.perf_counter()
        rows = self.result.fetchall()
        self.phases[self.label] += time.perf_counter() - start
        return rows


class TimedConnection:
    """A DuckDB connection that adds each statement's seconds to its phase."""

    def __init__(self, con: duckdb.DuckDBPyConnection, phases: Counter[str]) -> None:
        self.con, self.phases = con, phases

    def execute(self, sql: str, params: list[object] | None = None) -> _TimedResult:
        start = time.perf_counter()
        result = self.con.execute(sql, params or [])
        return _TimedResult(result, self.phases, _label(sql), time.perf_counter() - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def _timed_pyarrow_reader(phases: Counter[str]) -> Callable[[], None]:
    """Time the pyarrow reader's waits for fetched files and its decoding; returns the undo."""
    fetch_chunks, decode = staging._fetch_chunks, staging._decode

    def timed_fetch(*args: Any) -> Iterator[Any]:
        chunks = fetch_chunks(*args)
        while True:
            start = time.perf_counter()
            try:
                item = next(chunks)
            except StopIteration:
                return
            finally:
                phases["pyarrow: waiting for fetches"] += time.perf_counter() - start
            yield item

    def timed_decode(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return decode(*args)
        finally:
            phases["pyarrow: decoding"] += time.perf_counter() - start

    staging._fetch_chunks, staging._decode = timed_fetch, timed_decode

    def undo() -> None:
        staging._fetch_chunks, staging._decode = fetch_chunks, decode

    return undo


# ---- the kinds ------------------------------------------------------------------------------


def _floor(con: TimedConnection, lake: Lake, phases: Counter[str]) -> dict[str, Any]:
    start = time.perf_counter()
    files = staging.lake_files(lake)
    phases["listing"] += time.perf_counter() - start
    rows = 0
    for lake_table, (_, name, _) in staging.LAKE_TABLES.items():
        paths = [f.path for f in files if f.lake_table == lake_table]
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet(?)", [paths]).fetchall()
        rows += con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
    return {"files": len(files), "rows": rows}


def _load_days(con: TimedConnection, lake: Lake, phases: Counter[str]) -> dict[str, Any]:
    start = time.perf_counter()
    files = staging.lake_files(lake)
    phases["listing"] += time.perf_counter() - start
    result = staging.load_days(con, lake, {f.day for f in files}, files)
    return {"files": result.files, "rows": sum(result.rows.values()), "loads": 1}


def _load_days_pyarrow(con: TimedConnection, lake: Lake, phases: Counter[str]
                       ) -> dict[str, Any]:
    can_read, undo = staging._duckdb_can_read, _timed_pyarrow_reader(phases)
    staging._duckdb_can_read = lambda lake, files: False
    try:
        return _load_days(con, lake, phases)
    finally:
        staging._duckdb_can_read = can_read
        undo()


def _by_day(module: Any) -> Callable[[TimedConnection, Lake, Counter[str]], dict[str, Any]]:
    def measure(con: TimedConnection, lake: Lake, phases: Counter[str]) -> dict[str, Any]:
        start = time.perf_counter()
        files = module.lake_files(lake)
        phases["listing"] += time.perf_counter() - start
        results = [module.load_day(con, lake, day, files)
                   for day in sorted({f.day for f in files})]
        return {"files": sum(r.files for r in results),
                "rows": sum(sum(r.rows.values()) for r in results), "loads": len(results)}
    return measure


def _revision(rev: str) -> types.ModuleType:
    """`warehouse/staging.py` as of git revision `rev`, as a module (read-only git)."""
    source = subprocess.run(["git", "show", f"{rev}:warehouse/staging.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType(f"staging_{rev}")
    module.__file__ = f"{rev}:warehouse/staging.py"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


# ---- running and reporting ------------------------------------------------------------------


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(kind: str, measure_fn: Callable[..., dict[str, Any]], lake: Lake, db: Path
            ) -> dict[str, Any]:
    phases: Counter[str] = Counter()
    raw = duckdb.connect(str(db))
    try:
        con = TimedConnection(raw, phases)
        busy, own, start = machine_busy_seconds(), _own_cpu(), time.perf_counter()
        detail = measure_fn(con, lake, phases)
        seconds = time.perf_counter() - start
        other = (machine_busy_seconds() - busy) - (_own_cpu() - own)
    finally:
        raw.close()
    cores = os.cpu_count() or 1
    return {"kind": kind, "seconds": seconds, "other_cpu": max(0.0, other / (seconds * cores)),
            "phases": dict(phases), **detail}


def report(runs: dict[str, list[dict[str, Any]]], events: int, files: int) -> None:
    floor = statistics.median(r["seconds"] for r in runs["floor"])
    print(f"{events:,} events in {files:,} lake files; ratios are of medians to the floor's\n")
    print("| kind | min s | median s | × floor | other CPU | loads |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kind, rs in runs.items():
        seconds = [r["seconds"] for r in rs]
        median = statistics.median(seconds)
        other = max(r["other_cpu"] for r in rs)
        print(f"| {kind} | {min(seconds):.2f} | {median:.2f} | {median / floor:.2f}× | "
              f"≤ {other:.0%} | {rs[0].get('loads', '–')} |")
    for kind, rs in runs.items():
        run = sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2]  # the median run
        print(f"\n{kind} (the median run, {run['seconds']:.2f} s) by phase:")
        for name, seconds in sorted(run["phases"].items(), key=lambda p: -p[1]):
            if seconds >= 0.005:
                print(f"  {seconds:7.3f} s  {seconds / run['seconds']:5.1%}  {name}")
        rest = run["seconds"] - sum(run["phases"].values())
        print(f"  {rest:7.3f} s  {rest / run['seconds']:5.1%}  (Python between statements, "
              "reading through pyarrow outside the phases above)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", metavar="REV", help="also stage with this revision's "
                        "warehouse/staging.py, day by day (e.g. HEAD before this change)")
    parser.add_argument("--only", nargs="+", choices=KINDS[1:],
                        help="the kinds to run besides the floor")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    from warehouse.correlation.synthetic import history
    from warehouse.synthetic_lake import write_events

    kinds: dict[str, Callable[..., dict[str, Any]]] = {
        "floor": _floor, "load_days": _load_days, "load_days_pyarrow": _load_days_pyarrow,
        "load_day": _by_day(staging)}
    if args.against:
        kinds["against"] = _by_day(_revision(args.against))
    if args.only:
        kinds = {k: v for k, v in kinds.items() if k == "floor" or k in args.only}
    with tempfile.TemporaryDirectory(prefix="aw-bench-staging-") as tmp:
        started = time.perf_counter()
        lake = open_lake(str(Path(tmp) / "lake"))
        files = write_events(lake, history(args.events, days=args.days, tenants=args.tenants,
                                           seed=args.seed))
        log(f"{args.events:,} events: lake of {files:,} files in "
            f"{time.perf_counter() - started:.1f} s")
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for i in range(args.repeat):
            for kind, fn in kinds.items():
                run = measure(kind, fn, lake, Path(tmp) / f"{kind}-{i}.duckdb")
                log(f"round {i + 1}: {kind} {run['seconds']:.2f} s "
                    f"(other CPU {run['other_cpu']:.0%})")
                runs[kind].append(run)
                (Path(tmp) / f"{kind}-{i}.duckdb").unlink(missing_ok=True)
        rows = {k: {r["rows"] for r in rs} for k, rs in runs.items()}
        if len({n for ns in rows.values() for n in ns}) != 1:
            log(f"warning: the kinds staged different row counts: {rows}")
    if args.json:
        print(json.dumps({"events": args.events, "files": files, "runs": runs}, indent=2))
    else:
        report(runs, args.events, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
