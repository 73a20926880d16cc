"""`aw backtest`: the SEMANTICS.md illustration, the JSON shape, merges, duplicates, R9 counts,
settings files, comparisons, Parquet and lake input, and one-line errors for bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from service.backtest_cli import INCIDENT_FIELDS
from service.cli import main
from service.config import ServiceSettings
from tests.support.inprocess import alert_rows
from tests.support.signing import Credentials, signed_headers
from warehouse.config import platform_settings
from warehouse.correlation.events import EVENTS
from warehouse.registry import Registry

ISSUE_FUNNEL_KEYS = ("events_accepted", "duplicates", "alerts", "incidents", "below_threshold",
                     "too_late", "clock_skew", "orphan_resolved", "missing_asset")


@pytest.fixture(autouse=True)
def _isolated(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """AW_DATA_DIR in a temp dir (no registry, no lake unless a test makes them); files are
    written under tmp_path, the current directory."""
    monkeypatch.chdir(tmp_path)
    yield


def point(hhmmss: str, **fields: Any) -> dict[str, Any]:
    """A point event on web01|disk_full at 2026-11-26 `hhmmss` UTC."""
    return {"asset": "web01", "signature": "disk_full", "severity": "high",
            "occurred_at": f"2026-11-26T{hhmmss}Z", **fields}


def jsonl(objects: list[dict[str, Any]], name: str = "events.jsonl") -> str:
    Path(name).write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objects))
    return name


def config(settings: dict[str, Any], name: str = "settings.json") -> str:
    Path(name).write_text(json.dumps(settings))
    return name


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["backtest", *args])


def run_json(*args: str) -> dict[str, Any]:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert isinstance(document, dict)
    return document


def live(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in document["incidents"] if i["merged_into"] is None]


# ---- the SEMANTICS.md illustration --------------------------------------------------------


def test_illustration_three_points_make_one_incident() -> None:
    document = run_json("--events", jsonl([point("10:00:00"), point("10:02:15"),
                                           point("10:05:30")]))
    assert document["funnel"]["events_accepted"] == 3
    assert document["funnel"]["incidents"] == 1
    [incident] = document["incidents"]
    assert incident["event_count"] == 3
    assert incident["agg_key"] == "backtest|web01|disk_full"  # the default tenant
    assert round(document["kpis"]["noise_reduction"]["value"], 4) == 0.6667
    assert document["kpis"]["noise_reduction"]["formula"] == "1 - I / E_acc"


@pytest.mark.parametrize(
    ("fourth", "incidents"),
    [
        ("10:20:31", 2),  # more than 15 min after 10:05:30: a second incident
        ("10:20:30", 1),  # exactly W after the last activity: joins (inclusive boundary)
    ],
)
def test_illustration_fourth_event(fourth: str, incidents: int) -> None:
    document = run_json("--events", jsonl([point("10:00:00"), point("10:02:15"),
                                           point("10:05:30"), point(fourth)]))
    assert document["funnel"]["incidents"] == incidents
    assert len(live(document)) == incidents


def test_json_shape_has_every_key_of_the_issue() -> None:
    document = run_json("--events", jsonl([point("10:00:00"), point("10:20:31")]))
    assert set(document) == {"incidents", "funnel", "kpis"}
    for incident in document["incidents"]:
        assert tuple(incident) == INCIDENT_FIELDS
        assert incident["status"] in ("open", "resolved", "stale")
        assert incident["first_seen"].endswith("Z") and incident["last_activity"].endswith("Z")
    assert INCIDENT_FIELDS == (
        "incident_id", "tenant_id", "agg_key", "first_seen", "last_activity", "resolved_at",
        "status", "severity", "event_count", "alert_count", "flap_count", "merged_into",
        "linked_to")
    assert set(ISSUE_FUNNEL_KEYS) <= set(document["funnel"])
    assert "by_tenant" not in document["funnel"]  # one tenant
    kpis = document["kpis"]
    for name in ("noise_reduction", "dedup_rate", "correlation_compression", "flap_rate",
                 "recurrence_rate"):
        assert set(kpis[name]) == {"value", "formula"}
    for name in ("alerts_per_incident", "events_per_incident", "suppression_share", "mttr",
                 "time_to_incident", "top_noisy_keys"):
        assert name in kpis


def test_several_tenants_get_by_tenant_funnels_and_the_msp_rollup() -> None:
    document = run_json("--events", jsonl([
        point("10:00:00", tenant_id="acme"), point("10:01:00", tenant_id="acme"),
        point("10:00:00", tenant_id="globex")]))
    funnel = document["funnel"]
    assert funnel["events_accepted"] == 3 and funnel["incidents"] == 2
    assert funnel["by_tenant"]["acme"]["events_accepted"] == 2
    assert funnel["by_tenant"]["globex"]["incidents"] == 1
    kpis = document["kpis"]
    assert set(kpis) == {"by_tenant", "msp_rollup"}
    assert kpis["by_tenant"]["acme"]["noise_reduction"]["value"] == 0.5
    roll = kpis["msp_rollup"]
    assert roll["noise_reduction_event_weighted"]["value"] == pytest.approx(1 - 2 / 3)
    assert roll["noise_reduction_tenant_mean"]["value"] == pytest.approx(0.25)  # (0.5 + 0) / 2


# ---- engine behaviour seen through the command ------------------------------------------


def test_late_event_bridging_two_incidents_leaves_a_merge_record() -> None:
    document = run_json("--events", jsonl([
        point("10:00:00"), point("10:20:31"),  # two incidents, both visible
        point("10:12:00", received_at="2026-11-26T10:30:00Z"),  # arrives last, bridges them
    ]))
    assert document["funnel"]["incidents"] == 1
    [survivor] = live(document)
    [merged] = [i for i in document["incidents"] if i["merged_into"] is not None]
    assert merged["merged_into"] == survivor["incident_id"]
    assert survivor["event_count"] == 3
    assert document["kpis"]["noise_reduction"]["value"] == pytest.approx(1 - 1 / 3)


def test_duplicates_by_delivery_id_are_counted_not_processed() -> None:
    document = run_json("--events", jsonl([
        point("10:00:00", delivery_id="d-1"),
        point("10:03:00", delivery_id="d-1"),  # same tenant and source: duplicate (R2)
        point("10:04:00", delivery_id="d-1", source="zabbix"),  # another source: not one
    ]))
    funnel = document["funnel"]
    assert (funnel["events_accepted"], funnel["duplicates"]) == (3, 1)
    assert live(document)[0]["event_count"] == 2
    assert document["kpis"]["dedup_rate"]["value"] == 0.0  # A = 2 = E_u


def test_too_late_and_clock_skew_are_counted() -> None:
    document = run_json("--events", jsonl([
        point("10:00:00"),
        point("09:00:00", received_at="2026-11-27T10:00:00Z"),  # 25 h late: too late (R9)
        point("10:10:00", received_at="2026-11-26T10:01:00Z"),  # 9 min ahead: clamped
    ]))
    funnel = document["funnel"]
    assert (funnel["events_accepted"], funnel["too_late"], funnel["clock_skew"]) == (3, 1, 1)
    assert [i["event_count"] for i in live(document)] == [2]  # the too-late one is not in it
    share = document["kpis"]["suppression_share"]["too_late"]
    assert share == {"value": pytest.approx(1 / 3), "formula": "S_too_late / E_acc"}


def test_config_window_30m_merges_what_15m_splits() -> None:
    events = jsonl([point("10:00:00"), point("10:20:31")])
    assert run_json("--events", events)["funnel"]["incidents"] == 2
    document = run_json("--events", events, "--config", config({"window": "30m"}))
    assert document["funnel"]["incidents"] == 1


def test_compare_config_reports_merges_and_splits() -> None:
    events = jsonl([point("10:00:00"), point("10:02:00"), point("10:20:31")])
    wide = config({"window": "30m"}, "wide.json")
    narrow = config({"window": "15m"}, "narrow.json")

    merged = run_json("--events", events, "--config", narrow, "--compare-config", wide)
    compare = merged["compare"]
    assert compare["incidents"] == {"before": 2, "after": 1}
    assert compare["noise_reduction"]["before"] == pytest.approx(1 - 2 / 3)
    assert compare["noise_reduction"]["after"] == pytest.approx(1 - 1 / 3)
    assert compare["splits"] == []
    [merge] = compare["merges"]
    assert merge["from"] == [i["incident_id"] for i in live(merged)]  # by first_seen
    assert compare["compare_settings"]["window"] == "30m"

    split = run_json("--events", events, "--config", wide, "--compare-config", narrow)
    [one] = split["compare"]["splits"]
    assert one["incident_id"] == merge["incident_id"] and len(one["into"]) == 2
    assert split["compare"]["merges"] == []

    text = run("--events", events, "--config", narrow, "--compare-config", wide)
    assert text.exit_code == 0, text.output
    assert "incidents        2 -> 1" in text.stdout
    assert f"merge  {', '.join(merge['from'])} -> {merge['incident_id']}" in text.stdout


def test_human_summary_prints_the_funnel_formulas_kpis_and_top_incidents() -> None:
    result = run("--events", jsonl([point("10:00:00"), point("10:02:15"), point("10:05:30")]))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "E_u   unique events = E_acc - D_x" in out
    assert "noise reduction" in out and "66.67 %" in out and "1 - I / E_acc" in out
    assert "Top 10 incidents by event count" in out and "3 events" in out
    assert result.stderr == ""  # short input, no terminal: no progress bar


# ---- Parquet and lake input -------------------------------------------------------------


def test_parquet_input_gives_the_same_answer_as_json_lines() -> None:
    alerts = [point("10:00:00"), point("10:02:15", source_alert_id="disk-1", status="firing"),
              point("10:09:00", source_alert_id="disk-1", status="resolved"),
              point("10:40:00", asset="db01")]
    from_jsonl = run_json("--events", jsonl(alerts))
    rows = []
    for number, a in enumerate(alerts, start=1):
        at = datetime.fromisoformat(a["occurred_at"])
        rows.append({
            "tenant_id": "backtest", "event_id": f"line-{number}", "ingest_seq": number,
            "source": "generic", "source_fingerprint": a.get("source_alert_id", f"p{number}"),
            "asset": a["asset"], "signature": a["signature"], "severity": a["severity"],
            "status": a.get("status", "point"), "occurred_at": at, "received_at": at,
            "labels": [], "delivery_id": None, "body_sha256": f"h{number}", "duplicate": False,
        })
    table = pa.Table.from_pylist(rows, schema=EVENTS)
    pq.write_table(table.append_column("extra", pa.array(["ignored"] * len(rows))),
                   "events.parquet")
    assert run_json("--events", "events.parquet") == from_jsonl
    assert from_jsonl["funnel"]["incidents"] == 2


def test_lake_input_replays_stored_events_under_stored_settings(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with Registry.open(settings) as registry:  # stored: a 30 min window since yesterday
        registry.set_settings("acme", {"window": "30m"}, now - timedelta(days=1))
    alerts = [
        {"asset": "web01", "signature": "disk_full", "delivery_id": "d-1",
         "occurred_at": (now - timedelta(minutes=40)).isoformat()},
        {"asset": "web01", "signature": "disk_full", "delivery_id": "d-2",
         "occurred_at": (now - timedelta(minutes=20)).isoformat()},
    ]
    for body in (orjson.dumps(alerts), orjson.dumps(alerts[1:])):  # the second: a duplicate
        response = client.post("/v1/alerts", content=body, headers=signed_headers(tenant, body))
        assert response.status_code == 202, response.text
    assert len(alert_rows(client, settings)) == 2
    assert len(alert_rows(client, settings, "raw/duplicates")) == 1
    window = ("--tenant", "acme", "--from", (now - timedelta(days=1)).date().isoformat(),
              "--to", (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z"))

    document = run_json(*window)
    funnel = document["funnel"]
    assert (funnel["events_accepted"], funnel["duplicates"], funnel["incidents"]) == (3, 1, 1)
    assert live(document)[0]["agg_key"] == "acme|web01|disk_full"
    # Under the defaults (15 min) the 20 min gap splits them.
    defaults = run_json(*window, "--config", config({}))
    assert defaults["funnel"]["incidents"] == 2
    # Nothing received in the range, and an unknown tenant, are errors.
    empty = run("--tenant", "acme", "--from", "2020-01-01", "--to", "2020-01-02")
    assert empty.exit_code != 0 and "no events of tenant 'acme'" in empty.stderr
    unknown = run("--tenant", "nobody", "--from", "2020-01-01", "--to", "2020-01-02")
    assert unknown.exit_code != 0 and "unknown tenant 'nobody'" in unknown.stderr


# ---- bad input ----------------------------------------------------------------------------

GOOD = orjson.dumps(point("10:00:00")).decode()


@pytest.mark.parametrize(
    ("lines", "args", "message"),
    [
        # malformed JSON on line 3
        ([GOOD, GOOD.replace("10:00", "10:01"), '{"signature": '], (),
         "--events events.jsonl: line 3: not valid JSON"),
        # a status the contract does not know, named with its line and field
        ([GOOD, json.dumps(point("10:01:00", status="open"))], (),
         "line 2: status: Input should be 'firing', 'resolved' or 'point'"),
        # a field POST /v1/alerts refuses
        ([json.dumps(point("10:01:00", colour="red"))], (), "line 1: colour: Extra inputs"),
        # a line that is not an object
        (["[1, 2]"], (), "line 1: expected one JSON object"),
        # an impossible window
        ([GOOD], ("--config", "bad.json"),
         "--config bad.json: window must be between 1m and 24h, got 30s"),
        # a setting that does not exist
        ([GOOD], ("--config", "unknown.json"),
         "--config unknown.json: unknown correlation setting(s): windw"),
        # two lines with one ingest sequence number
        ([json.dumps(point("10:00:00", ingest_seq=7)), json.dumps(point("10:01:00")),
          json.dumps(point("10:02:00", ingest_seq=7))], (),
         "line 3: ingest_seq 7 is already used by line 1"),
        # a bad envelope field
        ([json.dumps(point("10:00:00", received_at="yesterday"))], (),
         "line 1: received_at: 'yesterday' is not an RFC 3339 timestamp"),
        # no alert at all (blank lines are skipped)
        (["", "   "], (), "--events events.jsonl: holds no alert lines"),
        # a missing file
        ([GOOD], ("--events", "missing.jsonl"), "--events missing.jsonl: no such file"),
        # a missing settings file
        ([GOOD], ("--compare-config", "missing.json"), "--compare-config missing.json: no such"),
        # lake-only options with a file
        ([GOOD], ("--from", "2026-11-26"), "--from/--to select lake events"),
        # an unknown tenant's stored settings
        ([GOOD], ("--tenant", "acme"), "--tenant: unknown tenant 'acme'"),
    ],
)
def test_bad_input_is_one_clear_error_line(lines: list[str], args: tuple[str, ...],
                                           message: str) -> None:
    Path("events.jsonl").write_text("\n".join(lines) + "\n")
    config({"window": "30s"}, "bad.json")
    config({"windw": "30m"}, "unknown.json")
    if "--events" not in args:
        args = ("--events", "events.jsonl", *args)
    for extra in ((), ("--json",)):
        result = run(*args, *extra)
        assert result.exit_code not in (0, None)
        assert isinstance(result.exception, SystemExit)  # handled, not a crash
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.output
        assert result.stdout == ""


def test_bad_parquet_names_the_missing_column_and_the_bad_row() -> None:
    pq.write_table(pa.table({"event_id": ["a"], "tenant_id": ["t"]}), "thin.parquet")
    result = run("--events", "thin.parquet")
    assert result.exit_code == 2
    assert "missing required column(s): ingest_seq, source" in result.stderr
    row = {"tenant_id": "t", "event_id": "a", "ingest_seq": 1, "source": "s",
           "source_fingerprint": "f", "signature": "x", "severity": "loud", "status": "point",
           "received_at": datetime(2026, 11, 26, tzinfo=UTC)}
    pq.write_table(pa.Table.from_pylist([row, row | {"event_id": "b", "ingest_seq": 2}]),
                   "loud.parquet")
    result = run("--events", "loud.parquet")
    assert "column severity: row 1: 'loud' is not one of critical, high, warning, info" \
        in result.stderr
    pq.write_table(pa.Table.from_pylist([row | {"severity": "info"}] * 2), "twice.parquet")
    result = run("--events", "twice.parquet")
    assert "column event_id: 'a' appears in rows 1 and 2" in result.stderr


def test_events_of_a_registered_tenant_run_under_its_stored_settings() -> None:
    with Registry.open(platform_settings()) as registry:
        registry.create_tenant("acme", name="Acme")
        registry.set_settings("acme", {"window": "30m"}, datetime(2026, 1, 1, tzinfo=UTC))
    events = jsonl([point("10:00:00"), point("10:20:31")])
    document = run_json("--events", events, "--tenant", "acme")
    assert document["funnel"]["incidents"] == 1  # v1: 30 min window
    assert live(document)[0]["tenant_id"] == "acme"
    # Before v1 took effect the defaults (v0) rule: a 15 min window.
    early = jsonl([point("10:00:00"), point("10:20:31")], "early.jsonl")
    Path(early).write_text(Path(early).read_text().replace("2026-11-26", "2025-11-26"))
    assert run_json("--events", early, "--tenant", "acme")["funnel"]["incidents"] == 2


def test_lines_without_any_time_share_one_receive_time_per_run() -> None:
    document = run_json("--events", jsonl([
        {"asset": "web01", "signature": "disk_full"},
        {"asset": "web01", "signature": "disk_full", "labels": {"n": "2"}},
    ]))
    [incident] = document["incidents"]
    assert incident["first_seen"] == incident["last_activity"]
    assert incident["event_count"] == 2
