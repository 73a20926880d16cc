"""The pipeline from lake to published marts against the sort floor, on a synthetic history.

    .venv/bin/python -m bench.pipeline [--events 1000000 [--events 10000000]] [--repeat 1]
        [--only floor|full|incremental] [--timeout 3600] [--json]

For each size the history (`warehouse.correlation.synthetic.history`: 50 tenants, 30 days) is
generated, written as one Parquet file per tenant (for the floor, as `bench.correlate`
measures it) and into a fresh lake as the flusher would (one file per tenant and receive
day; `warehouse.synthetic_lake`); none of it is timed. Then, each in a fresh process (peak
RSS its own), alternating `--repeat` times:

- floor: the sort floor of `bench.correlate` (DuckDB `ORDER BY tenant, asset, signature,
  event time` of the same events, materialized);
- full: `pipelines.run.run_once()` on a fresh data directory: stage every lake file,
  correlate, build every model, publish the snapshot (the Dagster steps in-process);
- incremental: a data directory built from the first 29 receive days (not timed), then the
  30th day's files are added and `run_once()` is timed.

Reported: wall seconds and peak RSS of each, full/floor and incremental/full ratios, and the
seconds of each pipeline step (from the run's materialization metadata where it has them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.correlate import (
    alternate,
    helper_peak_rss_mb,
    log,
    machine_busy_seconds,
    measure_floor,
    peak_rss_mb,
    write_by_tenant,
)

ROOT = Path(__file__).resolve().parent.parent


def _platform(data_dir: Path) -> None:
    os.environ["AW_DATA_DIR"] = str(data_dir)
    os.environ.pop("AW_LAKE_URI", None)
    os.environ.pop("DAGSTER_HOME", None)
    import warnings

    warnings.filterwarnings("ignore")


def _timed_run() -> tuple[float, dict[str, Any]]:
    from pipelines.run import run_once

    steps: dict[str, float] = {}
    last = [time.perf_counter()]

    def echo(line: str) -> None:  # time between progress lines = the step's wall time
        now = time.perf_counter()
        if line.strip().startswith(("✓", "✗")):
            steps[line.strip().split()[1]] = round(now - last[0], 2)
        last[0] = now

    start = time.perf_counter()
    summary = run_once(echo=echo)
    seconds = time.perf_counter() - start
    modes = {name: f"{meta['build']}: {meta.get('build_reason', '')}"
             for name, meta in summary.steps.items() if "build" in meta}
    # the correlation step's own split (its materialization metadata)
    split = {f"{name} {key}": meta[key] for name, meta in summary.steps.items()
             for key in ("seconds_correlating", "seconds_change_log") if key in meta}
    return seconds, {"steps": steps, "correlation_split": split, "modes": modes,
                     "checks_failed": summary.checks_failed}


def measure_full(lake_dir: Path, data_dir: Path) -> dict[str, Any]:
    data_dir.mkdir(parents=True)
    (data_dir / "lake").symlink_to(lake_dir)
    _platform(data_dir)
    baseline = peak_rss_mb()
    seconds, detail = _timed_run()
    return {"seconds": seconds, "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(),
            "helper_peak_rss_mb": helper_peak_rss_mb(), **detail}


def measure_incremental(lake_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Build from all receive days but the last (not timed), then add the last and time it."""
    import shutil

    data_dir.mkdir(parents=True)
    lake = data_dir / "lake"
    days = sorted({p.name for p in lake_dir.glob("raw/*/tenant_id=*/date=*")})
    last = days[-1]
    for path in lake_dir.rglob("*.parquet"):
        if f"/{last}/" not in str(path):
            target = lake / path.relative_to(lake_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    _platform(data_dir)
    history_seconds, _ = _timed_run()
    for path in lake_dir.rglob("*.parquet"):
        if f"/{last}/" in str(path):
            target = lake / path.relative_to(lake_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    baseline = peak_rss_mb()
    seconds, detail = _timed_run()
    return {"seconds": seconds, "history_seconds": history_seconds, "day": last,
            "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(),
            "helper_peak_rss_mb": helper_peak_rss_mb(), **detail}


def run_child(kind: str, args: list[str], timeout: float) -> dict[str, Any]:
    busy, started = machine_busy_seconds(), time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "bench.pipeline", "--measure", kind, *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    if done.returncode != 0:
        raise RuntimeError(f"{kind} measurement failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    wall = time.monotonic() - started
    result["machine_busy"] = round((machine_busy_seconds() - busy) / wall, 2)
    return result


def write_inputs(table: Any, tmp: Path, n: int) -> tuple[Path, Path, int]:
    """The floor's input (one Parquet file per tenant, read by `measure_floor`) and the lake
    the pipeline stages (as the flusher writes it); returns both and the lake's file count."""
    from warehouse.lake import open_lake
    from warehouse.synthetic_lake import write_events

    history = tmp / f"history-{n}"
    write_by_tenant(table, history)
    lake_dir = tmp / f"lake-{n}"
    return history, lake_dir, write_events(open_lake(str(lake_dir)), table)


def run_size(n: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from warehouse.correlation.synthetic import history

    started = time.perf_counter()
    table = history(n, days=args.days, tenants=args.tenants, seed=args.seed)
    parquet, lake_dir, files = write_inputs(table, tmp, n)
    del table
    log(f"{n:,} events: history and lake ({files} files) in "
        f"{time.perf_counter() - started:.1f} s")
    kinds = [k for k in ("floor", "full", "incremental") if args.only in (None, k)]

    def measure(kind: str, i: int) -> dict[str, Any]:
        child = [str(parquet)] if kind == "floor" else [
            str(lake_dir), str(tmp / f"data-{n}-{kind}-{i}")]
        return run_child(kind, child, args.timeout)

    runs = alternate(kinds, args.repeat, measure)
    return {"events": n, "lake_files": files, "runs": runs}


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def report(sizes: list[dict[str, Any]]) -> None:
    print("| events | floor s | full s (× floor) | full peak RSS | incremental day s "
          "(× full) | incremental peak RSS |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        runs = size["runs"]
        floor = _median(runs.get("floor", []), "seconds")
        full = _median(runs.get("full", []), "seconds")
        inc = _median(runs.get("incremental", []), "seconds")

        def cell(value: float | None, base: float | None) -> str:
            if value is None:
                return "not run"
            return f"{value:.1f}" + (f" ({value / base:.2f}×)" if base else "")

        rss = {kind: _median(runs.get(kind, []), "peak_rss_mb") for kind in runs}
        shown = {k: f"{v / 1024:.2f} GB" if v else "–" for k, v in rss.items()}
        print(f"| {size['events']:,} | {cell(floor, None)} | {cell(full, floor)} | "
              f"{shown.get('full', '–')} | {cell(inc, full)} | {shown.get('incremental', '–')} |")
    for size in sizes:
        for kind in ("full", "incremental"):
            for r in size["runs"].get(kind, []):
                if "steps" in r:
                    print(f"{size['events']:,} {kind} steps: {json.dumps(r['steps'])}")
                if r.get("correlation_split"):
                    print(f"{size['events']:,} {kind} correlation step: "
                          f"{json.dumps(r['correlation_split'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, action="append")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=("floor", "full", "incremental"))
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kind, *paths = args.measure
        if kind == "floor":
            out = measure_floor(Path(paths[0]))
        elif kind == "full":
            out = measure_full(Path(paths[0]), Path(paths[1]))
        else:
            out = measure_incremental(Path(paths[0]), Path(paths[1]))
        print(json.dumps(out))
        return 0
    with tempfile.TemporaryDirectory(prefix="aw-bench-pipeline-") as tmp:
        sizes = [run_size(n, args, Path(tmp)) for n in (args.events or [1_000_000])]
    if args.json:
        print(json.dumps(sizes, indent=2))
    else:
        report(sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
