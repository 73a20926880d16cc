"""`aw backtest`: replay events through the correlation engine under chosen settings, without
writing anything: how analysts tune a tenant's settings before changing them.

Input is `--events FILE` (JSON lines of canonical alert objects, or Parquet of engine events;
see `warehouse.correlation.backtest_input` for the defaults of `tenant_id`, `received_at` and
`ingest_seq`) or `--tenant ID --from T --to T` (the tenant's events in the lake, received in
`[from, to)`). Settings: `--config FILE`; else, with `--tenant`, the tenant's stored versions
(R15, labelled `v<n>`); else the SEMANTICS.md defaults. `--compare-config FILE` runs the same
events a second time and reports what changes. Staleness (R8) is judged at each tenant's
latest receive or event time in the input (the engine's default clock).

`--json` prints one document on stdout: `incidents` (visible incidents, then merge records
with `merged_into` set; below-threshold candidates are not listed), `funnel` (sums over
tenants, plus `by_tenant` when there are several), `kpis` (one tenant: its KPIs; several:
`by_tenant` and `msp_rollup`) and, when comparing, `compare`. Progress goes to stderr.
Bad input ends with one `Error: …` line naming the line, row or setting and exit code 2; a
registry or lake that cannot be read, with exit code 1. Never a traceback.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
import pyarrow.compute as pc

from service.adapters import generic
from service.body import parse_json
from service.errors import IngestError
from service.tenants_output import iso
from warehouse.config import platform_settings
from warehouse.contracts import AlertRecord
from warehouse.correlation import kpis
from warehouse.correlation.backtest_input import (
    DEFAULT_TENANT,
    InputError,
    count_lines,
    is_parquet,
    parse_instant,
    read_jsonl,
    read_lake,
    read_parquet,
    read_settings,
    stored_timeline,
)
from warehouse.correlation.engine import FUNNEL_FIELDS, Correlation, correlate
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.correlation_settings import CorrelationSettings
from warehouse.lake import LakeError, open_lake
from warehouse.registry import Registry, RegistryError, RegistryUnavailable, TenantNotFound
from warehouse.registry_records import validate_tenant_id
from warehouse.timestamps import now_us

PROGRESS_LINES = 100_000  # a progress bar when stderr is a terminal or the input is longer
TOP_INCIDENTS = 10
INCIDENT_FIELDS = ("incident_id", "tenant_id", "agg_key", "first_seen", "last_activity",
                   "resolved_at", "status", "severity", "event_count", "alert_count",
                   "flap_count", "merged_into", "linked_to")


class BacktestError(click.ClickException):
    """Bad input: one `Error: …` line on stderr, exit code 2."""

    exit_code = 2


class Unavailable(click.ClickException):
    """The registry or the lake cannot be read: one `Error: …` line, exit code 1."""

    exit_code = 1


@click.command()
@click.option("--events", "events_path", metavar="FILE",
              help="JSON lines of canonical alert objects, or a Parquet file of events.")
@click.option("--tenant", metavar="ID", help="Tenant: read its lake events (with "
              "--from/--to), use its stored settings, the default tenant_id of --events lines.")
@click.option("--from", "start", metavar="T", help="Lake events received at or after T "
              "(RFC 3339 or a date).")
@click.option("--to", "end", metavar="T", help="Lake events received before T.")
@click.option("--config", "config_path", metavar="FILE",
              help='JSON settings, e.g. {"window": "30m"}; absent fields take the defaults.')
@click.option("--compare-config", "compare_path", metavar="FILE",
              help="Run again under these settings and show what changes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def backtest(events_path: str | None, tenant: str | None, start: str | None, end: str | None,
             config_path: str | None, compare_path: str | None, as_json: bool) -> None:
    """Replay events through the correlation engine under chosen settings (writes nothing)."""
    _check_usage(events_path, tenant, start, end)
    timeline, described = _timeline(config_path, tenant)
    compare_settings = _settings("--compare-config", compare_path) if compare_path else None
    show = False
    if events_path is not None:
        table, show = _read_events(Path(events_path), tenant)
    else:
        assert tenant is not None and start is not None and end is not None
        table = _read_lake(tenant, start, end)
    if show:
        click.echo(f"Correlating {table.num_rows} events…", err=True)
    base = _correlate(table, timeline)
    document = report(base, kpis.thresholds_of(timeline.versions))
    if compare_settings is not None:
        other = _correlate(table, SettingsTimeline.constant(compare_settings, "compare"))
        document["compare"] = kpis.compare(base, other) | {
            "base_settings": described, "compare_settings": compare_settings.to_dict()}
    if as_json:
        click.echo(json.dumps(document, indent=2, default=_json_value))
    else:
        for line in summary_lines(document, described, compare_path):
            click.echo(line)


def _check_usage(events_path: str | None, tenant: str | None, start: str | None,
                 end: str | None) -> None:
    if events_path is not None and (start is not None or end is not None):
        raise click.UsageError("--from/--to select lake events; they cannot be used with "
                               "--events")
    if events_path is None and (tenant is None or start is None or end is None):
        raise click.UsageError("give --events FILE, or --tenant ID --from T --to T to replay "
                               "the tenant's stored events")
    if tenant is not None:
        try:
            validate_tenant_id(tenant)
        except ValueError as exc:
            raise BacktestError(f"--tenant: {exc}") from None


def _settings(option: str, path: str) -> CorrelationSettings:
    try:
        return read_settings(Path(path))
    except InputError as exc:
        raise BacktestError(f"{option} {path}: {exc}") from None


def _timeline(config_path: str | None, tenant: str | None) -> tuple[SettingsTimeline, Any]:
    """The base settings, and how to describe them (a settings dict or the stored versions)."""
    if config_path is not None:
        settings = _settings("--config", config_path)
        return SettingsTimeline.constant(settings, "config"), settings.to_dict()
    if tenant is None:
        settings = CorrelationSettings()
        return SettingsTimeline.constant(settings, "defaults"), settings.to_dict()
    history = _history(tenant)
    described = {"stored_settings_of": tenant,
                 "versions": [{"version": f"v{v.version}", "effective_at": iso(v.effective_at),
                               "settings": v.settings.to_dict()} for v in history]}
    return stored_timeline(tenant, history), described


def _history(tenant: str) -> list[Any]:
    """The tenant's stored settings versions; it must exist in the registry."""
    settings = platform_settings()
    if not settings.registry_path.exists():
        raise BacktestError(f"--tenant: unknown tenant {tenant!r} (no tenant registry at "
                            f"{settings.registry_path}; check AW_DATA_DIR)")
    try:
        with Registry.open(settings) as registry:
            return registry.settings_history(tenant)
    except TenantNotFound:
        raise BacktestError(f"--tenant: unknown tenant {tenant!r}") from None
    except RegistryUnavailable as exc:
        raise Unavailable(str(exc)) from None
    except (RegistryError, ValueError) as exc:
        raise BacktestError(f"--tenant: {exc}") from None


def _parse_line(line: bytes) -> Any:
    """One line parsed as strictly as a request body (its messages lose the word "body")."""
    try:
        return parse_json(line.rstrip(b"\r\n"))
    except IngestError as exc:
        raise ValueError(exc.message.replace("body is ", "", 1)) from None


def _validate(alert: dict[str, Any], received_us: int) -> AlertRecord:
    """One alert object validated and adapted exactly as `POST /v1/alerts` does."""
    return generic.normalize(alert, received_us)[0]


def _read_events(path: Path, tenant: str | None) -> tuple[pa.Table, bool]:
    """The events of `--events`, and whether a progress bar was shown."""
    try:
        if is_parquet(path):
            return read_parquet(path), False
        stderr = sys.stderr
        total = count_lines(path)
        show = stderr.isatty() or total > PROGRESS_LINES
        read = partial(read_jsonl, path, _parse_line, _validate,
                       run_us=now_us() // 1_000_000 * 1_000_000,
                       tenant=tenant or DEFAULT_TENANT)
        if not show:
            return read(), False
        with click.progressbar(length=total, label="Reading events", file=stderr) as bar:
            return read(advance=bar.update), True
    except InputError as exc:
        raise BacktestError(f"--events {path}: {exc}") from None


def _read_lake(tenant: str, start: str, end: str) -> pa.Table:
    try:
        start_us, end_us = parse_instant("--from", start), parse_instant("--to", end)
    except InputError as exc:
        raise BacktestError(str(exc)) from None
    if start_us >= end_us:
        raise BacktestError(f"--from {start} must be before --to {end}")
    _history(tenant)  # an unknown tenant is an error, not an empty replay
    settings = platform_settings()
    try:
        lake = open_lake(settings.resolved_lake_uri, settings.s3_endpoint_url)
        table = read_lake(lake, tenant, start_us, end_us)
    except LakeError as exc:
        raise Unavailable(str(exc)) from None
    except ValueError as exc:
        raise BacktestError(f"lake: {exc}") from None
    if table.num_rows == 0:
        raise BacktestError(f"no events of tenant {tenant!r} received in [{start}, {end}) "
                            f"in the lake {settings.resolved_lake_uri}")
    return table


def _correlate(table: pa.Table, timeline: SettingsTimeline) -> Correlation:
    try:
        return correlate(table, timeline)
    except ValueError as exc:
        raise BacktestError(f"the engine refused the events: {exc}") from None


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def report(result: Correlation, thresholds: dict[str, int]) -> dict[str, Any]:
    """The JSON document of one run (without `compare`)."""
    table = result.incidents
    merged = pc.is_valid(table.column("merged_into"))
    listed = table.filter(pc.or_(merged, table.column("visible")))
    incidents = [{name: row[name] for name in INCIDENT_FIELDS} for row in listed.to_pylist()]
    funnel: dict[str, Any] = {name: sum(f[name] for f in result.funnel.values())
                              for name in FUNNEL_FIELDS}
    computed = kpis.compute(result, thresholds)
    tenants = sorted(result.funnel)
    if len(tenants) > 1:
        funnel["by_tenant"] = {t: dict(result.funnel[t]) for t in tenants}
        kpi_document: dict[str, Any] = computed
    else:
        kpi_document = computed["by_tenant"][tenants[0]]
    return {"incidents": incidents, "funnel": funnel, "kpis": kpi_document}


# ---- the readable summary -----------------------------------------------------------------

FUNNEL_LINES = (
    ("E_acc", "events accepted", "events_accepted"),
    ("D_x", "exact duplicates (R2)", "duplicates"),
    ("E_u", "unique events = E_acc - D_x", None),
    ("A", "alerts", "alerts"),
    ("I", "incidents (visible, not merged)", "incidents"),
    ("S_bt", "events below threshold (R13)", "below_threshold"),
    ("S_tl", "too late (R9)", "too_late"),
    ("", "clock skew, clamped (R9)", "clock_skew"),
    ("", "orphan resolves (R12)", "orphan_resolved"),
    ("", "stale resolves (R11)", "stale_resolves"),
    ("", "events without an asset (R4)", "missing_asset"),
)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


def _num(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.2f}{unit}"


def _settings_text(described: Any) -> str:
    if "stored_settings_of" in described:
        versions = ", ".join(v["version"] for v in described["versions"]) or "none: defaults"
        return f"stored settings of {described['stored_settings_of']} ({versions})"
    return " ".join(f"{k}={','.join(v) if isinstance(v, list) else v}"
                    for k, v in described.items() if k != "stale_after_by_source")


def summary_lines(document: dict[str, Any], described: Any,
                  compare_path: str | None) -> list[str]:
    """The human summary: funnel with formulas, KPIs, top incidents, and the comparison."""
    funnel = document["funnel"]
    lines = [f"Backtest under {_settings_text(described)}", "", "Funnel"]
    for symbol, label, name in FUNNEL_LINES:
        value = funnel[name] if name else funnel["events_accepted"] - funnel["duplicates"]
        lines.append(f"  {symbol:<6}{label:<36}{value:>10}")
    merged = sum(1 for i in document["incidents"] if i["merged_into"] is not None)
    lines.append(f"  {'':<6}{'merged incidents (R10, not in I)':<36}{merged:>10}")
    kpi_doc = document["kpis"]
    if "by_tenant" in kpi_doc:
        roll = kpi_doc["msp_rollup"]
        lines += ["", f"MSP roll-up over {roll['tenants']} tenants"]
        for name in ("noise_reduction_event_weighted", "noise_reduction_tenant_mean"):
            lines.append(f"  {name:<34}{_pct(roll[name]['value']):>10}   "
                         f"{roll[name]['formula']}")
        for tenant, values in kpi_doc["by_tenant"].items():
            lines += ["", f"KPIs of tenant {tenant}", *_kpi_lines(values)]
    else:
        lines += ["", "KPIs", *_kpi_lines(kpi_doc)]
    lines += ["", f"Top {TOP_INCIDENTS} incidents by event count", *_top_lines(document)]
    if "compare" in document:
        lines += ["", *_compare_lines(document["compare"], compare_path)]
    return lines


def _kpi_lines(values: dict[str, Any]) -> list[str]:
    def row(label: str, text: str, formula: str) -> str:
        return f"  {label:<34}{text:>10}   {formula}"

    out = [row(label, _pct(values[name]["value"]), values[name]["formula"]) for label, name in (
        ("noise reduction", "noise_reduction"), ("dedup rate", "dedup_rate"),
        ("correlation compression", "correlation_compression"), ("flap rate", "flap_rate"),
        ("recurrence rate", "recurrence_rate"))]
    for group in ("alerts_per_incident", "events_per_incident"):
        for stat in ("mean", "median"):
            kpi = values[group][stat]
            out.append(row(f"{group.replace('_', ' ')} ({stat})", _num(kpi["value"]),
                           kpi["formula"]))
    for reason, kpi in values["suppression_share"].items():
        out.append(row(f"suppression share, {reason.replace('_', ' ')}", _pct(kpi["value"]),
                       kpi["formula"]))
    mttr = values["mttr"]
    out.append(row("MTTR mean / p50 / p90", "", mttr["formula"]))
    out.append(f"    {_num(mttr['mean_seconds'], ' s')} / {_num(mttr['p50_seconds'], ' s')} / "
               f"{_num(mttr['p90_seconds'], ' s')}   (resolved {mttr['resolved']}, "
               f"stale {mttr['stale']} and open {mttr['open']} shown apart)")
    tti = values["time_to_incident"]
    out.append(row("time to incident (p50)", _num(tti["p50_seconds"], " s"), tti["formula"]))
    noisy = values["top_noisy_keys"]["by_events"][:5]
    out.append("  noisiest keys by member events: " + (", ".join(
        f"{k['agg_key']} ({k['events']} events, {k['incidents']} incidents)" for k in noisy)
        or "none"))
    return out


def _top_lines(document: dict[str, Any]) -> list[str]:
    live = [i for i in document["incidents"] if i["merged_into"] is None]
    live.sort(key=lambda i: (-i["event_count"], i["first_seen"], i["incident_id"]))
    if not live:
        return ["  (no incidents)"]
    return [f"  {i['incident_id']}  {i['agg_key']}  {i['event_count']} events, "
            f"{i['alert_count']} alerts, {i['status']}, {i['severity']}, "
            f"first seen {iso(i['first_seen'])}" for i in live[:TOP_INCIDENTS]]


def _compare_lines(compare: dict[str, Any], compare_path: str | None) -> list[str]:
    nr = compare["noise_reduction"]
    lines = [
        f"Compared with --compare-config {compare_path} "
        f"({_settings_text(compare['compare_settings'])})",
        f"  incidents        {compare['incidents']['before']} -> {compare['incidents']['after']}",
        f"  noise reduction  {_pct(nr['before'])} -> {_pct(nr['after'])}   ({nr['formula']})",
        f"  {len(compare['splits'])} incident(s) split, {len(compare['merges'])} merge",
    ]
    for split in compare["splits"]:
        lines.append(f"    split  {split['incident_id']} ({split['agg_key']}) -> "
                     + ", ".join(split["into"]))
    for merge in compare["merges"]:
        lines.append(f"    merge  {', '.join(merge['from'])} -> {merge['incident_id']} "
                     f"({merge['agg_key']})")
    return lines
