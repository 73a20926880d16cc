"""The correlation engine against the sort floor, on a synthetic MSP alert history.

    .venv/bin/python -m bench.correlate [--events 1000000 [--events 10000000]] [--repeat 3]
        [--only floor|engine] [--timeout 900] [--profile 30] [--json]

For each size the history (`warehouse.correlation.synthetic.history`: 50 tenants, 30 days) is
generated and written to a temporary directory of Parquet files, one per tenant in arrival
order, as the lake keeps events by tenant; neither is timed. Then, alternating so that noise on
this shared 2-core machine hits both alike, `--repeat` times each:

- floor: in an in-memory DuckDB, `CREATE TABLE sorted AS SELECT * FROM read_parquet(…) ORDER BY
  tenant_id, asset, signature, occurred_at` (the issue's "plain DuckDB ORDER BY tenant, key,
  event time": read, sort and materialize every column; DuckDB uses every core);
- events_only: the engine without the R10 merge replay, otherwise as `engine`;
- engine: `correlate_groups` with the default settings, a group of whole tenants at a time:
  the next group's files read while the engine correlates this one, and each group's answer
  (incidents, explanations, lifecycle, merge records) appended to Parquet files on a helper
  thread. Reading and writing are timed; memory is the biggest group's and the next group's
  events, as in the pipeline;
- one_table (only with `--only one_table`): `correlate()` of every event read at once, the
  whole answer held in memory as one batch (the measurement before 2026-11-28: 8.2 GB at 10M,
  the input alone 3 GB in Arrow).

Every measurement runs in a fresh Python process (`--measure KIND PATH`, one JSON line out):
its peak RSS (`VmHWM`; `ru_maxrss` would carry the parent's peak over) is then its own (plus
the peak of the replay helper process the engine starts on the other core: `peak_rss_mb`), and
no run inherits another's heap. The clock starts after the imports; the source digest of the
engine's modules is recorded with each run, and the report warns when it changed between runs
(another engineer editing the engine mid-benchmark). Reported: min and median wall seconds,
engine/floor ratio of the medians, peak RSS, the engine's `slow_rows` (walked because an
incident hit its cap) and `replayed_rows` (replayed to find R10 merges), the funnel summed
over tenants, and `other CPU`, the busy share of the machine not used by the measured process
(figures taken while it is high are not comparable). `--profile N` runs the engine once more
under cProfile and prints its N costliest functions by cumulative time. Progress goes to
stderr; the table, or with `--json` one JSON document, to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FLOOR_SQL = ("CREATE TABLE sorted AS SELECT * FROM read_parquet(?) "
             "ORDER BY tenant_id, asset, signature, occurred_at")
FUNNEL_SHOWN = ("events_accepted", "duplicates", "alerts", "incidents", "too_late",
                "clock_skew", "orphan_resolved", "missing_asset", "stale_resolves")


# ---- measurements (each in its own process) -----------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak RSS, plus that of the engine's replay helper process when it
    started one (`warehouse.correlation.helper`; the sum of two peaks, an upper bound of the
    two together). Not `ru_maxrss`: Linux carries it over from the parent across fork and
    exec, so a child of a large parent would report the parent's peak."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:", 1)[1].split()[0]) / 1024 + helper_peak_rss_mb()  # kB


def helper_peak_rss_mb() -> float:
    """The peak RSS of the engine's replay helper process, 0 when none was started."""
    helper = sys.modules.get("warehouse.correlation.helper")  # not imported by the floor
    return helper.helper_peak_rss_mb() if helper else 0.0


def engine_digest() -> str:
    """12 hex of the imported engine modules' sources: runs of different code never mix
    unnoticed (the engine may change while a long benchmark runs)."""
    digest = hashlib.sha256()
    for name in sorted(sys.modules):
        module = sys.modules[name]
        if name.startswith("warehouse.correlation") and getattr(module, "__file__", None):
            digest.update(name.encode() + Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def measure_floor(path: Path) -> dict[str, Any]:
    import duckdb

    with duckdb.connect(config={"autoinstall_known_extensions": False}) as con:
        con.execute("SET enable_progress_bar = false")
        threads = con.execute("SELECT current_setting('threads')").fetchone()
        baseline = peak_rss_mb()
        start = time.perf_counter()
        con.execute(FLOOR_SQL, [str(path / "*.parquet")])
        seconds = time.perf_counter() - start
        rows = con.execute("SELECT count(*) FROM sorted").fetchone()
    return {"seconds": seconds, "rows": rows[0] if rows else 0, "baseline_rss_mb": baseline,
            "peak_rss_mb": peak_rss_mb(), "threads": threads[0] if threads else None}


def measure_events_only(path: Path) -> dict[str, Any]:
    """The engine without the R10 merge replay (merge records absent, all else equal)."""
    return measure_engine(path, merges=False)


def measure_engine(path: Path, profile_out: Path | None = None,
                   merges: bool = True) -> dict[str, Any]:
    """The engine a group of tenants at a time, from the tenants' files to answer files."""
    import cProfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from warehouse.correlation.engine import FUNNEL_FIELDS, correlate_groups
    from warehouse.correlation.timeline import SettingsTimeline
    from warehouse.correlation_settings import CorrelationSettings

    timeline = SettingsTimeline.constant(CorrelationSettings())
    counts = {file.stem: pq.read_metadata(file).num_rows for file in path.glob("*.parquet")}

    def read(tenants: list[str]) -> pa.Table:
        return pa.concat_tables([pq.read_table(path / f"{t}.parquet") for t in tenants])

    out = path.with_name(f"{path.name}-answers-{os.getpid()}")
    profiler = cProfile.Profile() if profile_out else None
    funnel = dict.fromkeys(FUNNEL_FIELDS, 0)
    slow = replayed = incident_rows = 0
    baseline = peak_rss_mb()
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    with AnswerFiles(out) as answers:
        for _tenants, answer in correlate_groups(read, counts, timeline, merges=merges):
            answers.write(answer)
            for tenant_funnel in answer.funnel.values():
                for name in FUNNEL_FIELDS:
                    funnel[name] += tenant_funnel[name]
            slow += answer.slow_rows
            replayed += answer.replayed_rows
            incident_rows += answer.incidents.num_rows
            del answer
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - start
    written_mb = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    shutil.rmtree(out)
    if profiler and profile_out:
        profiler.dump_stats(profile_out)
    return {"seconds": seconds, "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(),
            "helper_peak_rss_mb": helper_peak_rss_mb(), "engine_digest": engine_digest(),
            "slow_rows": slow, "replayed_rows": replayed,
            "incident_rows": incident_rows, "answer_mb": written_mb, "funnel": funnel}


class AnswerFiles:
    """The engine's answers appended group by group to one Parquet file per result table, on
    a helper thread while the engine computes the next group (one answer in flight at most;
    the writer's encoding uses the machine's other core, as the pipeline's store does)."""

    TABLES = ("incidents", "memberships", "lifecycle", "merge_log")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.writers: dict[str, Any] = {}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="bench-answers")
        self.pending: Future[None] | None = None

    def __enter__(self) -> AnswerFiles:
        import pyarrow.parquet as pq

        from warehouse.correlation import engine

        self.directory.mkdir()
        schemas = {"incidents": engine.INCIDENTS, "memberships": engine.MEMBERSHIPS,
                   "lifecycle": engine.LIFECYCLE, "merge_log": engine.MERGE_LOG}
        self.writers = {name: pq.ParquetWriter(self.directory / f"{name}.parquet",
                                               schemas[name]) for name in self.TABLES}
        return self

    def write(self, answer: Any) -> None:
        self.wait()
        self.pending = self.pool.submit(self._write, answer)

    def _write(self, answer: Any) -> None:
        for name in self.TABLES:
            self.writers[name].write_table(getattr(answer, name))

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def __exit__(self, *_: object) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown()
            for writer in self.writers.values():
                writer.close()


def measure_one_table(path: Path) -> dict[str, Any]:
    """`correlate()` of every event at once, the whole answer held as one batch."""
    import pyarrow.parquet as pq

    from warehouse.correlation.engine import FUNNEL_FIELDS, correlate
    from warehouse.correlation.timeline import SettingsTimeline
    from warehouse.correlation_settings import CorrelationSettings

    timeline = SettingsTimeline.constant(CorrelationSettings())
    baseline = peak_rss_mb()
    start = time.perf_counter()
    result = correlate(pq.read_table(path), timeline)
    seconds = time.perf_counter() - start
    funnel = {name: sum(f[name] for f in result.funnel.values()) for name in FUNNEL_FIELDS}
    return {"seconds": seconds, "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(),
            "helper_peak_rss_mb": helper_peak_rss_mb(), "engine_digest": engine_digest(),
            "slow_rows": result.slow_rows,
            "replayed_rows": result.replayed_rows, "incident_rows": result.incidents.num_rows,
            "funnel": funnel}


def measure_incremental(path: Path) -> dict[str, Any]:
    """One new day added to the history: build the state from every daily batch but the
    last in one run (not timed), then, in a new run on the checkpointed file as the pipeline
    opens it, time adding the last day (its commit included; the checkpoint after it is
    timed apart), and check incremental = full."""
    import pyarrow.parquet as pq

    from warehouse.config import PlatformSettings
    from warehouse.correlation.engine import correlate
    from warehouse.correlation.state import CorrelationState
    from warehouse.correlation.synthetic import day_batches
    from warehouse.correlation.timeline import SettingsTimeline
    from warehouse.correlation_settings import CorrelationSettings
    from warehouse.store import WarehouseStore

    timeline = SettingsTimeline.constant(CorrelationSettings())
    table = pq.read_table(path)
    days = day_batches(table)
    # a build file under the pipeline's memory limit, as a build runs (in memory and
    # unbounded, 10M events needed 22 GB with the full recompute below)
    store = WarehouseStore(path.with_suffix(".build.duckdb"), path.with_suffix(".published"),
                           PlatformSettings().build_memory_limit)
    started = time.perf_counter()
    with store.writer() as con:
        state = CorrelationState(con, timeline)
        for batch in days[:-1]:
            state.apply(batch)
    history_seconds = time.perf_counter() - started
    # the day in a run of its own, on the file as the last run left it (checkpointed)
    with store.writer() as con:
        state = CorrelationState(con, timeline)
        baseline = peak_rss_mb()
        start = time.perf_counter()
        applied = state.apply(days[-1])
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        con.execute("CHECKPOINT").fetchall()
        checkpoint_seconds = time.perf_counter() - start
        incremental_peak = peak_rss_mb()
        got = state.result()
    full = correlate(table, timeline)
    same = (got.funnel == full.funnel
            and got.incidents.num_rows == full.incidents.num_rows
            and got.incidents.equals(full.incidents)
            and got.memberships.equals(full.memberships))
    return {"seconds": seconds, "checkpoint_seconds": checkpoint_seconds,
            "day_rows": days[-1].num_rows, "days": len(days),
            "history_seconds": history_seconds, "baseline_rss_mb": baseline,
            "peak_rss_mb": incremental_peak, "keys": applied.keys,
            "region_rows": applied.region_rows, "replayed_rows": applied.replayed_rows,
            "equals_full": same}


MEASURES = {"floor": measure_floor, "engine": measure_engine,
            "events_only": measure_events_only, "one_table": measure_one_table,
            "incremental": measure_incremental}


def incremental_ready() -> bool:
    return importlib.util.find_spec("warehouse.correlation.state") is not None


# ---- the parent: generate, run children, report ---------------------------------------------


def machine_busy_seconds() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_child(kind: str, path: Path, timeout: float, extra: list[str] | None = None
              ) -> dict[str, Any]:
    """One measurement in a fresh process; `other_cpu` is the rest of the machine's load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, started = machine_busy_seconds(), time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.correlate", "--measure", kind, str(path),
             *(extra or [])], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:  # subprocess.run has killed the child
        return {"timeout": timeout}
    if done.returncode < 0:  # killed: recorded, so the other figures are still reported
        signal = -done.returncode
        return {"failed": f"killed by signal {signal}"
                          + (" (out of memory?)" if signal == 9 else "")}
    if done.returncode != 0:
        raise RuntimeError(f"{kind} measurement failed:\n{done.stderr[-3000:]}")
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["other_cpu"] = max(0.0, machine_busy_seconds() - busy - child_cpu) / wall
    return result


def alternate(kinds: list[str], repeat: int, measure: Callable[[str, int], dict[str, Any]]
              ) -> dict[str, list[dict[str, Any]]]:
    """`repeat` rounds of one measurement per kind, alternating so that noise on this shared
    machine hits every kind alike; a kind that timed out is not run again."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for i in range(repeat):
        for kind in kinds:
            if any("timeout" in r for r in runs[kind]):
                continue
            log(f"  {kind} run {i + 1}/{repeat} ...")
            runs[kind].append(measure(kind, i))
            log(f"    {json.dumps(runs[kind][-1])}")
    return runs


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_size(n: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:

    from warehouse.correlation.synthetic import describe, history

    started = time.perf_counter()
    table = history(n, days=args.days, tenants=args.tenants, seed=args.seed)
    generated = time.perf_counter() - started
    shape = describe(table)
    path = tmp / f"history-{n}"
    write_by_tenant(table, path)
    del table
    parquet_mb = sum(f.stat().st_size for f in path.iterdir()) / 1e6
    log(f"{n:,} events: generated in {generated:.1f} s, {parquet_mb:.0f} MB of Parquet; "
        f"{json.dumps(shape)}")
    kinds = [k for k in ("floor", "events_only", "engine", "one_table")
             if args.only == k or (args.only is None and k != "one_table")]
    runs = alternate(kinds, args.repeat,
                     lambda kind, _i: run_child(kind, path, args.timeout))
    out: dict[str, Any] = {"events": n, "generate_seconds": generated,
                           "parquet_mb": parquet_mb, "history": shape,
                           "runs": runs}
    if args.profile and args.only in (None, "engine"):
        out["profile"] = profile(path, args)
    if incremental_ready() and args.only in (None, "incremental"):
        out["incremental"] = run_child("incremental", path, args.timeout)
    else:
        out["incremental"] = {"skipped": "not asked for (--only)" if incremental_ready()
                              else "warehouse.correlation.state does not exist"}
    shutil.rmtree(path)
    return out


def write_by_tenant(table: Any, path: Path) -> None:
    """One Parquet file per tenant, `<tenant_id>.parquet`, its events in arrival order."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path.mkdir()
    ordered = table.take(pc.sort_indices(table, [("tenant_id", "ascending"),
                                                 ("ingest_seq", "ascending")]))
    start = 0
    counts = pc.value_counts(ordered.column("tenant_id")).to_pylist()
    for item in sorted(counts, key=lambda c: c["values"]):
        pq.write_table(ordered.slice(start, item["counts"]), path / f"{item['values']}.parquet")
        start += item["counts"]


def profile(path: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The engine once under cProfile: its costliest functions by cumulative time."""
    import pstats

    stats_path = path.with_name(path.name + ".prof")
    log("  engine under cProfile ...")
    run_child("engine", path, args.timeout * 3, ["--profile-out", str(stats_path)])
    stats = pstats.Stats(str(stats_path))
    rows = []
    for (file, line, name), (_cc, calls, own, cumulative, _) in stats.stats.items():
        where = Path(file).resolve()
        short = str(where.relative_to(ROOT)) if where.is_relative_to(ROOT) else where.name
        rows.append({"function": f"{short}:{line}({name})", "calls": calls,
                     "own_s": own, "cumulative_s": cumulative})
    rows.sort(key=lambda r: -r["cumulative_s"])
    return rows[:args.profile]


def finished(size: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in size["runs"].get(kind, []) if "seconds" in r]


def seconds_cell(size: dict[str, Any], kind: str) -> tuple[str, float | None]:
    """'min / median' of one side's runs, and the median."""
    runs = finished(size, kind)
    timed_out = " (+ timeout)" if any("timeout" in r for r in size["runs"].get(kind, [])) else ""
    if not runs:
        return ("timeout" if timed_out else "-"), None
    values = [r["seconds"] for r in runs]
    median = statistics.median(values)
    return f"{min(values):.2f} / {median:.2f}{timed_out}", median


def spread(values: list[int]) -> str:
    return "-" if not values else (f"{min(values):,}" if min(values) == max(values)
                                   else f"{min(values):,}-{max(values):,}")


def report(sizes: list[dict[str, Any]]) -> None:
    print("| events | floor s (min / median) | without merge replay s | ratio | "
          "engine s (min / median) | engine / floor | peak RSS floor / without / engine | "
          "slow rows | replayed rows | other CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        (floor, floor_median), (engine, engine_median), (bare, bare_median) = (
            seconds_cell(size, "floor"), seconds_cell(size, "engine"),
            seconds_cell(size, "events_only"))
        ratio = f"{engine_median / floor_median:.1f}x" if engine_median and floor_median else "-"
        bare_ratio = f"{bare_median / floor_median:.2f}x" if bare_median and floor_median else "-"
        rss = " / ".join(f"{max(r['peak_rss_mb'] for r in finished(size, k)):,.0f} MB"
                         if finished(size, k) else "-" for k in ("floor", "events_only", "engine"))
        runs = finished(size, "engine")
        slow, replayed = (spread([r[k] for r in runs]) for k in ("slow_rows", "replayed_rows"))
        others = [r["other_cpu"] for k in ("floor", "engine") for r in finished(size, k)]
        other = f"{max(others):.0%} max" if others else "-"
        print(f"| {size['events']:,} | {floor} | {bare} | {bare_ratio} | {engine} | {ratio} | "
              f"{rss} | {slow} | {replayed} | {other} |")
    print()
    for size in sizes:
        runs = finished(size, "engine")
        digests = sorted({r["engine_digest"] for r in runs})
        if len(digests) > 1:
            print(f"- {size['events']:,} events: WARNING, the engine's code changed between "
                  f"runs (source digests {', '.join(digests)}): its figures do not compare")
        if runs:
            funnel = runs[-1]["funnel"]
            shown = ", ".join(f"{k} {funnel[k]:,}" for k in FUNNEL_SHOWN)
            reduction = 1 - funnel["incidents"] / max(funnel["events_accepted"], 1)
            print(f"- {size['events']:,} events, funnel over all tenants: {shown}; "
                  f"noise reduction 1 − I/E_acc = {reduction:.1%}")
        one_table = finished(size, "one_table")
        if one_table:
            cell, median = seconds_cell(size, "one_table")
            floor_median = seconds_cell(size, "floor")[1]
            ratio = f" = {median / floor_median:.1f}x floor" if median and floor_median else ""
            print(f"- {size['events']:,} events, one_table (every event and the whole answer "
                  f"in memory at once): {cell} s{ratio}, peak RSS "
                  f"{max(r['peak_rss_mb'] for r in one_table):,.0f} MB")
        incremental = size["incremental"]
        engine_median = seconds_cell(size, "engine")[1]
        share = ""
        if "seconds" in incremental and engine_median:
            day = incremental["seconds"]
            share = f"{day:.2f} s = {day / engine_median:.2f}x the whole engine's median; "
        print(f"- {size['events']:,} events, incremental (one new day after the history): "
              f"{share}{incremental.get('skipped') or json.dumps(incremental)}")
        if size.get("profile"):
            print(f"- {size['events']:,} events, engine profile (cProfile adds overhead), "
                  "costliest by cumulative time:")
        for row in size.get("profile", []):
            print(f"    {row['cumulative_s']:8.2f} s cum  {row['own_s']:8.2f} s own  "
                  f"{row['calls']:>10,}  {row['function']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, action="append",
                        help="history size; repeat for several (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=("floor", "events_only", "engine", "one_table",
                                           "incremental"),
                        help="measure one kind only")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds before one measurement is stopped")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile the engine once and show its N costliest functions")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kind, path = args.measure
        result = (measure_engine(Path(path), args.profile_out) if kind == "engine"
                  else MEASURES[kind](Path(path)))
        print(json.dumps(result))
        return 0

    header = {"at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "host": platform.node(),
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "load_average": os.getloadavg()[0], "repeat": args.repeat}
    log(json.dumps(header))
    sizes = []
    with tempfile.TemporaryDirectory(prefix="aw-bench-correlate-") as tmp:
        for n in args.events or [1_000_000]:
            sizes.append(run_size(n, args, Path(tmp)))
    if args.json:
        print(json.dumps({**header, "sizes": sizes}, indent=2))
    else:
        print(f"{header['at']}, {header['host']}, {header['cpus']} CPUs, Python "
              f"{header['python']}, load average {header['load_average']:.2f} at start, "
              f"{args.repeat} alternating runs per side")
        print()
        report(sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
