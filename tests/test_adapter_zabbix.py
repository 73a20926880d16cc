"""Zabbix through our media type: recorded parameter sets → canonical events, refusals, the
signed `/v1/webhooks/zabbix` route, and the shipped media type (its YAML and its JavaScript,
run under node against stubs of Zabbix's `HttpRequest` and `hmac`)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.adapters import WEBHOOKS, zabbix
from service.adapters.common import AdapterError, body_hash
from service.config import ServiceSettings
from tests.support.inprocess import alert_rows
from tests.support.signing import Credentials, signed_headers
from warehouse.timestamps import now_us, parse_rfc3339_us

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "zabbix"
MEDIA_TYPE = ROOT / "integrations" / "zabbix" / "alert_whisperer_media_type.yaml"
RECEIVED = parse_rfc3339_us("2026-11-26T10:30:00Z")
ROUTE = "/v1/webhooks/zabbix"

# SOURCES.md "The Zabbix media type we ship": parameter → macro (zabbix_timezone is static).
PARAMETERS = {
    "event_source": "{EVENT.SOURCE}", "event_value": "{EVENT.VALUE}",
    "event_update_status": "{EVENT.UPDATE.STATUS}", "event_id": "{EVENT.ID}",
    "event_recovery_id": "{EVENT.RECOVERY.ID}", "event_name": "{EVENT.NAME}",
    "event_nseverity": "{EVENT.NSEVERITY}", "event_severity": "{EVENT.SEVERITY}",
    "event_status": "{EVENT.STATUS}", "event_date": "{EVENT.DATE}", "event_time": "{EVENT.TIME}",
    "event_recovery_date": "{EVENT.RECOVERY.DATE}", "event_recovery_time": "{EVENT.RECOVERY.TIME}",
    "event_tags_json": "{EVENT.TAGSJSON}", "event_opdata": "{EVENT.OPDATA}",
    "event_ack": "{EVENT.ACK.STATUS}", "event_update_action": "{EVENT.UPDATE.ACTION}",
    "event_update_message": "{EVENT.UPDATE.MESSAGE}", "host_name": "{HOST.NAME}",
    "host_host": "{HOST.HOST}", "host_ip": "{HOST.IP}", "trigger_id": "{TRIGGER.ID}",
    "trigger_name": "{TRIGGER.NAME}", "trigger_description": "{TRIGGER.DESCRIPTION}",
    "trigger_severity": "{TRIGGER.SEVERITY}", "alert_subject": "{ALERT.SUBJECT}",
    "alert_message": "{ALERT.MESSAGE}", "zabbix_url": "{$ZABBIX.URL}",
}
SETTINGS = {"url", "api_key", "hmac_secret", "zabbix_timezone"}  # set by the admin


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_bytes())


def utc(text: str) -> int:
    return parse_rfc3339_us(text)


BERLIN_LABELS = {"scope": "performance", "component": "cpu,os", "host_host": "web01.acme.internal",
                 "host_ip": "10.0.1.21", "trigger_id": "23017", "event_severity": "Hoch"}
CPU = "High CPU utilization (over 90% for 5m)"
COMMON = {"source": "zabbix", "source_fingerprint": "40213", "signature": CPU, "severity": "high",
          "raw_severity": "4", "severity_mapped": True, "source_alert_id": "40213",
          "delivery_id": None, "asset": "Web server 01 (Köln)", "has_resolve_path": True,
          "truncated_alerts": None}

CASES = [
    # Problem in Europe/Berlin (UTC+1 in November); {EVENT.RECOVERY.*} still unresolved.
    ("problem.json", dict(COMMON, status="firing", occurred_at_us=utc("2026-11-26T10:00:00Z"),
                          labels={**BERLIN_LABELS, "event_ack": "No"})),
    # Recovery: same fingerprint (the problem's {EVENT.ID}), the recovery's date and time.
    ("recovery.json", dict(COMMON, status="resolved",
                           occurred_at_us=utc("2026-11-26T10:20:05Z"),
                           labels={**BERLIN_LABELS, "event_ack": "No"})),
    # Update (acknowledged): a firing re-send of the same alert at the problem's own time;
    # an empty alert message falls back to the event name.
    ("update.json", dict(COMMON, status="firing", occurred_at_us=utc("2026-11-26T10:00:00Z"),
                         labels={**BERLIN_LABELS, "event_ack": "Yes",
                                 "event_update_action": "acknowledged and commented"})),
    # No zabbix_timezone → UTC; unresolved {HOST.NAME}, {ALERT.MESSAGE}, {EVENT.TAGSJSON} are
    # absent: no asset, message = event name, no tags. Severity 5 → critical.
    ("problem_utc_unresolved.json", dict(
        COMMON, source_fingerprint="51000", source_alert_id="51000",
        signature="Zabbix agent is not available (for 3m)", severity="critical",
        raw_severity="5", asset=None, status="firing",
        occurred_at_us=utc("2026-11-26T09:58:30Z"),
        labels={"host_host": "db02", "host_ip": "10.0.2.5", "trigger_id": "23500",
                "event_severity": "Disaster", "event_ack": "No"})),
]


@pytest.mark.parametrize(("fixture", "expected"), CASES, ids=[c[0] for c in CASES])
def test_fixture_normalizes_to_the_expected_event(fixture: str, expected: dict[str, Any]) -> None:
    document = load(fixture)
    (record,) = zabbix.normalize(document, RECEIVED)
    message = document["alert_message"]
    if not message or message.startswith("{"):
        message = document["event_name"]
    assert dataclasses.asdict(record) == {
        **expected, "body_sha256": body_hash(document), "message": message,
    }


@pytest.mark.parametrize(
    ("nseverity", "severity", "mapped"),
    [("5", "critical", True), ("4", "high", True), ("3", "warning", True),
     ("2", "warning", True), ("1", "info", True), ("0", "info", True),
     ("9", "warning", False), ("{EVENT.NSEVERITY}", "warning", False)],
)
def test_severity_comes_from_the_number_never_the_name(
    nseverity: str, severity: str, mapped: bool
) -> None:
    document = dict(load("problem.json"), event_nseverity=nseverity, event_severity="Disaster")
    (record,) = zabbix.normalize(document, RECEIVED)
    assert (record.severity, record.severity_mapped) == (severity, mapped)


@pytest.mark.parametrize(
    ("zone", "day", "clock", "expected"),
    [
        ("America/New_York", "2026.07.01", "12:00:00", "2026-07-01T16:00:00Z"),  # EDT
        ("America/New_York", "2026.11.26", "05:00:00", "2026-11-26T10:00:00Z"),  # EST
        ("Asia/Kathmandu", "2026.11.26", "15:45:00", "2026-11-26T10:00:00Z"),  # +05:45
        # 02:30 happens twice when Berlin leaves DST: the first (summer time) is taken.
        ("Europe/Berlin", "2026.10.25", "02:30:00", "2026-10-25T00:30:00Z"),
        ("", "2026.11.26", "10:00:00", "2026-11-26T10:00:00Z"),  # blank → UTC
    ],
)
def test_local_times_are_converted_with_the_servers_zone(
    zone: str, day: str, clock: str, expected: str
) -> None:
    document = dict(load("problem.json"), zabbix_timezone=zone, event_date=day, event_time=clock)
    (record,) = zabbix.normalize(document, parse_rfc3339_us(expected))
    assert record.occurred_at_us == utc(expected)


def test_internal_events_are_stateful_too() -> None:
    (record,) = zabbix.normalize(dict(load("recovery.json"), event_source="3"), RECEIVED)
    assert record.status == "resolved"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event_id": 40213}, "event_id: expected a string, got int"),
        ({"event_value": None}, "event_value: expected a string, got NoneType"),
        ({"event_value": "2"}, "event_value: expected 1 (problem) or 0 (recovery), got '2'"),
        ({"event_id": "{EVENT.ID}"}, "event_id: the macro {EVENT.ID} was not resolved by Zabbix"),
        ({"event_name": "{TRIGGER.NAME}"}, "event_name: the macro {TRIGGER.NAME} was not resolved"),
        ({"event_name": "  "}, "event_name: must not be empty"),
        ({"event_date": "26.11.2026"},
         "event_date/event_time: expected YYYY.MM.DD and HH:MM:SS, got '26.11.2026' '11:00:00'"),
        ({"event_date": "2026.02.30"}, "event_date/event_time: day is out of range for month"),
        ({"event_date": "2999.01.01"}, "is more than a year in the future"),
        ({"zabbix_timezone": "Mars/Olympus_Mons"},
         "zabbix_timezone: unknown time zone 'Mars/Olympus_Mons'"),
        ({"zabbix_timezone": "../../etc/passwd"},
         "zabbix_timezone: '../../etc/passwd' is not an IANA time zone name"),
        ({"zabbix_timezone": "Europe"}, "zabbix_timezone: unknown time zone 'Europe'"),
        ({"event_update_status": "2"}, "event_update_status: expected 0 or 1, got '2'"),
        ({"event_source": "1"}, "event_source: '1' is not a trigger (0) or internal (3) event"),
        ({"event_tags_json": "[{tag"}, "event_tags_json: not valid JSON"),
        ({"event_tags_json": '{"tag": "a"}'}, "event_tags_json: expected [{"),
        ({"event_tags_json": "[" * 100_000}, "event_tags_json: not valid JSON"),
    ],
)
def test_structurally_wrong_payloads_raise_a_precise_error(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(AdapterError) as info:
        zabbix.normalize(dict(load("problem.json"), **changes), RECEIVED)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "body: expected an object, got list"),
        ({"event_id": "1"}, "body.event_value: missing"),
        ({k: v for k, v in load("update.json").items() if k != "event_name"},
         "body.event_name: missing"),
        # A recovery whose recovery date Zabbix did not resolve has no event time.
        (dict(load("problem.json"), event_value="0"),
         "event_recovery_date: the macro {EVENT.RECOVERY.DATE} was not resolved by Zabbix"),
    ],
)
def test_missing_members_raise_a_precise_error(document: Any, message: str) -> None:
    with pytest.raises(AdapterError) as info:
        zabbix.normalize(document, RECEIVED)
    assert message in str(info.value)


# ---- the route, in process ---------------------------------------------------------------




def recent(document: dict[str, Any]) -> dict[str, Any]:
    """The fixture with today's date, so the lake test is independent of the clock."""
    day, clock = time.strftime("%Y.%m.%d %H:%M:%S", time.gmtime(now_us() // 10**6 - 60)).split()
    return dict(document, event_date=day, event_time=clock, zabbix_timezone="UTC")


def test_route_is_registered_as_signed() -> None:
    assert (WEBHOOKS["zabbix"].auth, WEBHOOKS["zabbix"].normalize) == ("signed", zabbix.normalize)


def test_signed_request_lands_under_the_tenant(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    body = json.dumps(recent(load("problem.json")), ensure_ascii=False).encode()
    response = client.post(ROUTE, content=body, headers=signed_headers(tenant, body))
    assert response.status_code == 202, response.text
    (row,) = alert_rows(client, settings)
    assert (row["tenant_id"], row["source"], row["source_fingerprint"]) == (
        "acme", "zabbix", "40213")
    assert (row["asset"], row["severity"], row["raw_severity"]) == (
        "Web server 01 (Köln)", "high", "4")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"X-Signature": None}, 401, "unauthorized"),  # the tenant requires signatures
        ({"X-Signature": "sha256=" + "0" * 64}, 401, "unauthorized"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ],
)
def test_unsigned_badly_signed_or_mistyped_requests_are_refused(
    client: TestClient, settings: ServiceSettings, tenant: Credentials,
    headers: dict[str, str | None], status: int, code: str,
) -> None:
    body = json.dumps(recent(load("problem.json"))).encode()
    sent = {k: v for k, v in {**signed_headers(tenant, body), **headers}.items() if v is not None}
    response = client.post(ROUTE, content=body, headers=sent)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code


def test_wrong_payload_is_422_with_the_reason(client: TestClient, tenant: Credentials) -> None:
    body = json.dumps(dict(recent(load("problem.json")), event_id="{EVENT.ID}")).encode()
    response = client.post(ROUTE, content=body, headers=signed_headers(tenant, body))
    assert response.status_code == 422
    assert response.json()["detail"] == "event_id: the macro {EVENT.ID} was not resolved by Zabbix"


# ---- the media type we ship ----------------------------------------------------------------


def media_type_by_text() -> tuple[dict[str, str], str]:
    """(parameters, script) read from the YAML text: a check that needs no YAML library."""
    text = MEDIA_TYPE.read_text(encoding="utf-8")
    params = {
        name: value.replace("''", "'")
        for name, value in re.findall(r"^ {8}- name: (\w+)\n {10}value: '(.*)'$", text, re.M)
    }
    lines = text.split("\n")
    start = lines.index("      script: |") + 1
    body = []
    for line in lines[start:]:
        if line and not line.startswith("        "):
            break
        body.append(line[8:])
    return params, "\n".join(body).rstrip("\n") + "\n"


def test_media_type_declares_exactly_the_documented_parameters() -> None:
    params, script = media_type_by_text()
    assert set(params) == set(PARAMETERS) | SETTINGS
    assert {k: v for k, v in params.items() if k in PARAMETERS} == PARAMETERS
    assert "hmac('sha256'" in script and "JSON.stringify" in script
    text = MEDIA_TYPE.read_text(encoding="utf-8")
    assert text.startswith("zabbix_export:\n  version: '6.0'\n")
    for mode in ("PROBLEM", "RECOVERY", "UPDATE"):
        assert f"operation_mode: {mode}\n" in text


def test_media_type_is_valid_yaml_with_an_importable_shape() -> None:
    yaml = pytest.importorskip("yaml")
    export = yaml.safe_load(MEDIA_TYPE.read_text(encoding="utf-8"))["zabbix_export"]
    (media,) = export["media_types"]
    assert (media["name"], media["type"]) == ("Alert Whisperer", "WEBHOOK")
    assert all(isinstance(p["value"], str) for p in media["parameters"])
    params, script = media_type_by_text()
    assert {p["name"]: p["value"] for p in media["parameters"]} == params
    assert media["script"] == script  # the text reader above extracts the same script
    modes = {t["operation_mode"] for t in media["message_templates"]}
    assert modes == {"PROBLEM", "RECOVERY", "UPDATE"}


NODE = shutil.which("node") or ("/usr/bin/node" if Path("/usr/bin/node").exists() else None)

# Zabbix runs the script as a function body with `value` (the parameters as JSON); its
# `HttpRequest`, `hmac` and `Zabbix.log` are stubbed here and the request is recorded.
HARNESS = r"""
const crypto = require('crypto');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const sent = {headers: [], url: null, body: null};
global.hmac = (type, key, data) => crypto.createHmac(type, key).update(data, 'utf8').digest('hex');
global.HttpRequest = function () {
  this.addHeader = (header) => sent.headers.push(header);
  this.post = (url, body) => { sent.url = url; sent.body = body; return input.response; };
  this.getStatus = () => input.status;
};
global.Zabbix = {log: () => {}};
try { sent.result = new Function('value', input.script)(JSON.stringify(input.params)); }
catch (error) { sent.error = String(error); }
process.stdout.write(JSON.stringify(sent));
"""


def run_script(params: dict[str, str], status: int = 202) -> dict[str, Any]:
    assert NODE is not None
    _, script = media_type_by_text()
    stdin = json.dumps({"script": script, "params": params, "status": status,
                        "response": '{"accepted": 1}'})
    done = subprocess.run([NODE, "-e", HARNESS], input=stdin, capture_output=True, text=True,
                          encoding="utf-8", timeout=30, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_media_type_script_signs_like_our_scheme_and_is_accepted(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    alert = recent(load("problem.json"))
    params = {**alert, "url": "https://aw.example/v1/webhooks/zabbix",
              "api_key": tenant.api_key, "hmac_secret": tenant.hmac_secret}
    sent = run_script(params)
    assert sent.get("error") is None and sent["result"] == "OK"
    assert sent["url"] == params["url"]
    headers = dict(h.split(": ", 1) for h in sent["headers"])
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == f"Bearer {tenant.api_key}"
    # The body is the parameters minus the delivery settings; non-ASCII is sent as UTF-8.
    body = sent["body"].encode("utf-8")
    assert json.loads(body) == alert
    assert tenant.api_key not in sent["body"] and tenant.hmac_secret not in sent["body"]
    expected = hmac.new(tenant.hmac_secret.encode(), headers["X-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert headers["X-Signature"] == f"sha256={expected}"
    assert abs(int(headers["X-Timestamp"]) - time.time()) < 60
    # What the script sends is what the route accepts.
    response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 202, response.text
    (row,) = alert_rows(client, settings)
    assert (row["tenant_id"], row["source_fingerprint"]) == ("acme", "40213")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_media_type_script_fails_loudly() -> None:
    params = {**load("problem.json"), "url": "https://aw.example/v1/webhooks/zabbix",
              "api_key": "k", "hmac_secret": "s"}
    # An error answer makes Zabbix retry and show the failure.
    assert "answered HTTP 422" in run_script(params, status=422)["error"]
    # A missing credential is refused before anything is sent.
    sent = run_script({**params, "api_key": ""})
    assert 'Required parameter is not set: "api_key"' in sent["error"]
    assert sent["body"] is None
