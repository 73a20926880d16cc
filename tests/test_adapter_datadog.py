"""Datadog webhooks: recorded payloads (default and our template) → canonical events, refusals,
and the `/v1/webhooks/datadog` route end to end (API key in a header, JSON or a form)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from fastapi.testclient import TestClient

from service.adapters import WEBHOOKS, datadog
from service.adapters.common import AdapterError, body_hash
from service.config import ServiceSettings
from tests.support.inprocess import alert_rows
from tests.support.signing import Credentials
from warehouse.timestamps import parse_rfc3339_us

FIXTURES = Path(__file__).parent / "fixtures" / "datadog"
RECEIVED = parse_rfc3339_us("2026-11-26T10:05:00Z")
ROUTE = "/v1/webhooks/datadog"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_bytes())


def derived(alert_id: str, signature: str, scope: list[str]) -> str:
    """The documented fingerprint without `$AGGREG_KEY` (pinned here on purpose)."""
    digest = hashlib.sha256(orjson.dumps([alert_id, signature, scope])).hexdigest()
    return "sha256:" + digest[:32]


WEB01 = derived("", "CPU high on web01", ["env:prod", "host:web01"])
AGGREG = "9bd4ac313a4d1e8fae2482df7b77628"
DEPLOY_TITLE = "[deploy] checkout v2.31 — Zürich rollout"

CASES = [
    # Default template: status, priority and host only in the title prefixes; unquoted $ID
    # above 2^53 kept exact as the delivery id.
    ("default_triggered.json", {
        "source_fingerprint": WEB01, "signature": "CPU high on web01", "severity": "critical",
        "raw_severity": "P1", "severity_mapped": True, "status": "firing", "source_alert_id": None,
        "delivery_id": "9007199254740993", "asset": "web01", "occurred_at_us": 1795687200000 * 1000,
        "labels": {"event_type": "query_alert_monitor"}, "has_resolve_path": True}),
    # Its recovery: same fingerprint (the title differs only in the stripped prefix).
    ("default_recovered.json", {
        "source_fingerprint": WEB01, "signature": "CPU high on web01", "severity": "critical",
        "raw_severity": "P1", "severity_mapped": True, "status": "resolved",
        "source_alert_id": None,
        "delivery_id": "9007199254740995", "asset": "web01", "occurred_at_us": 1795688100000 * 1000,
        "labels": {"event_type": "query_alert_monitor"}, "has_resolve_path": True}),
    # An event, not a monitor: no status prefix ("[deploy]" is part of the name) → point;
    # $DATE as a JSON number; no host anywhere; no severity → warning, unmapped.
    ("default_event.json", {
        "source_fingerprint": derived("", DEPLOY_TITLE, [""]), "signature": DEPLOY_TITLE,
        "severity": "warning", "raw_severity": None, "severity_mapped": False, "status": "point",
        "source_alert_id": None, "delivery_id": "7312894561239876543", "asset": None,
        "occurred_at_us": 1795687260000 * 1000, "labels": {"event_type": "api"},
        "has_resolve_path": False}),
    # Our template: $AGGREG_KEY, $HOSTNAME, $ALERT_PRIORITY, $ALERT_TITLE win; $TAGS → labels
    # (a repeated key joins its values; a bare tag has an empty value); ms precision kept.
    ("custom_triggered.json", {
        "source_fingerprint": AGGREG, "signature": "Replication lag on db01", "severity": "high",
        "raw_severity": "P2", "severity_mapped": True, "status": "firing",
        "source_alert_id": AGGREG,
        "delivery_id": "18446744073709551", "asset": "db01.acme.internal",
        "occurred_at_us": 1795687200123 * 1000,
        "labels": {"env": "prod", "role": "postgres", "team": "dba,sre", "monitor": "",
                   "monitor_id": "987654", "event_type": "query_alert_monitor"},
        "has_resolve_path": True}),
    # Empty variables are absent: no aggreg key (derived from monitor id, name and scope), no
    # priority (alert type decides), no hostname (the host: tag of $ALERT_SCOPE).
    ("custom_no_data.json", {
        "source_fingerprint": derived("555", "Queue depth", ["env:staging", "host:queue02"]),
        "signature": "Queue depth", "severity": "warning", "raw_severity": "warning",
        "severity_mapped": True, "status": "firing", "source_alert_id": None,
        "delivery_id": "7312894561239876999", "asset": "queue02",
        "occurred_at_us": 1795687500000 * 1000,
        "labels": {"env": "staging", "monitor_id": "555", "event_type": "query_alert_monitor"},
        "has_resolve_path": True}),
    ("custom_recovered_form.json", {
        "source_fingerprint": AGGREG, "signature": "Replication lag on db01", "severity": "high",
        "raw_severity": "P2", "severity_mapped": True, "status": "resolved",
        "source_alert_id": AGGREG,
        "delivery_id": "7312894561239877001", "asset": "db01.acme.internal",
        "occurred_at_us": 1795688400000 * 1000,
        "labels": {"env": "prod", "role": "postgres", "monitor_id": "987654",
                   "event_type": "query_alert_monitor"},
        "has_resolve_path": True}),
]


@pytest.mark.parametrize(("fixture", "expected"), CASES, ids=[c[0] for c in CASES])
def test_fixture_normalizes_to_the_expected_event(fixture: str, expected: dict[str, Any]) -> None:
    document = load(fixture)
    (record,) = datadog.normalize(document, RECEIVED)
    assert dataclasses.asdict(record) == {
        "source": "datadog", "body_sha256": body_hash(document), "message": document["body"],
        "truncated_alerts": None, **expected,
    }


def test_form_fields_normalize_like_the_json_template() -> None:
    document = load("custom_recovered_form.json")
    as_form = {k: str(v) for k, v in document.items()}
    (form,) = datadog.normalize(as_form, RECEIVED)
    (plain,) = datadog.normalize(document, RECEIVED)
    assert dataclasses.replace(form, body_sha256="") == dataclasses.replace(plain, body_sha256="")


@pytest.mark.parametrize(
    ("transition", "status"),
    [("Recovered", "resolved"), ("Triggered", "firing"), ("Re-Triggered", "firing"),
     ("Warn", "firing"), ("Re-Warn", "firing"), ("No Data", "firing"),
     ("Re-No Data", "firing"), ("Renotify", "firing"), ("recovered", "resolved")],
)
def test_every_transition_word(transition: str, status: str) -> None:
    (record,) = datadog.normalize({"title": "x", "alert_transition": transition}, RECEIVED)
    assert record.status == status


@pytest.mark.parametrize(
    ("fields", "severity", "mapped"),
    [({"alert_priority": "P1"}, "critical", True), ({"alert_priority": "P3"}, "warning", True),
     ({"alert_priority": "P4"}, "info", True), ({"alert_priority": "P5"}, "info", True),
     # Priority wins over the alert type; an unknown priority falls back to the type.
     ({"alert_priority": "P2", "alert_type": "info"}, "high", True),
     ({"alert_priority": "P9", "alert_type": "error"}, "high", True),
     ({"alert_type": "success"}, "info", True), ({"alert_type": "info"}, "info", True),
     ({"alert_type": "warning"}, "warning", True),
     ({"alert_type": "bogus"}, "warning", False), ({}, "warning", False)],
)
def test_severity_words(fields: dict[str, str], severity: str, mapped: bool) -> None:
    (record,) = datadog.normalize({"title": "x", **fields}, RECEIVED)
    assert (record.severity, record.severity_mapped) == (severity, mapped)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "body: expected an object, got list"),
        ({}, "body.title: missing"),
        ({"title": 5}, "title: expected a string, got int"),
        ({"title": "   "}, "title: must not be empty"),
        ({"title": "x", "alert_transition": "Exploded"},
         "alert_transition: unknown transition 'Exploded'"),
        ({"title": "x", "date": "yesterday"}, "date: expected epoch milliseconds, got 'yesterday'"),
        ({"title": "x", "date": True}, "date: expected a string, got bool"),
        ({"title": "x", "date": 1.5e12}, "date: expected a string, got float"),
        ({"title": "x", "date": "32503680000000"}, "is more than a year in the future"),
        ({"title": "x", "date": "86400000"}, "is before 2000-01-01"),
        ({"title": "x", "id": 1.5}, "id: expected a string or an integer, got float"),
        ({"title": "x", "hostname": ["web01"]}, "hostname: expected a string, got list"),
    ],
)
def test_structurally_wrong_payloads_raise_a_precise_error(document: Any, message: str) -> None:
    with pytest.raises(AdapterError) as info:
        datadog.normalize(document, RECEIVED)
    assert message in str(info.value)


# ---- the route, in process ---------------------------------------------------------------




def test_route_is_registered_with_key_auth_and_forms() -> None:
    webhook = WEBHOOKS["datadog"]
    assert (webhook.auth, webhook.forms, webhook.normalize) == ("key", True, datadog.normalize)


def test_json_body_with_api_key_header_lands_under_the_tenant(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    body = (FIXTURES / "default_triggered.json").read_bytes()  # the unquoted id as sent
    response = client.post(ROUTE, content=body, headers={
        "X-API-Key": tenant.api_key, "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    (row,) = alert_rows(client, settings)
    assert row["tenant_id"] == tenant.tenant_id == "acme"
    assert (row["source"], row["status"], row["asset"]) == ("datadog", "firing", "web01")
    assert row["delivery_id"] == "9007199254740993"  # exact: never through a float
    assert row["source_fingerprint"] == WEB01


def test_form_encoded_body_is_accepted(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    form = urlencode({k: str(v) for k, v in load("custom_recovered_form.json").items()})
    response = client.post(ROUTE, content=form.encode(), headers={
        "Authorization": f"Bearer {tenant.api_key}",
        "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 202, response.text
    (row,) = alert_rows(client, settings)
    assert (row["tenant_id"], row["status"], row["source_fingerprint"]) == (
        "acme", "resolved", AGGREG)


def test_basic_auth_with_the_tenant_as_user_is_accepted(
    client: TestClient, tenant: Credentials
) -> None:
    token = base64.b64encode(f"{tenant.tenant_id}:{tenant.api_key}".encode()).decode()
    response = client.post(ROUTE, json=load("custom_triggered.json"),
                           headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ({"Content-Type": "application/xml"}, 415, "unsupported_media_type"),
    ],
)
def test_wrong_content_type_is_refused(
    client: TestClient, tenant: Credentials, headers: dict[str, str], status: int, code: str
) -> None:
    response = client.post(ROUTE, content=b'{"title": "x"}',
                           headers={"X-API-Key": tenant.api_key, **headers})
    assert (response.status_code, response.json()["error"]) == (status, code)


def test_missing_key_is_401_and_wrong_payload_is_422(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    response = client.post(ROUTE, json=load("custom_triggered.json"))
    assert response.status_code == 401
    response = client.post(ROUTE, json={"event": "x"}, headers={"X-API-Key": tenant.api_key})
    assert response.status_code == 422
    assert response.json()["detail"] == "body.title: missing"


def test_a_retry_with_the_same_event_id_is_a_duplicate(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    key = {"X-API-Key": tenant.api_key}
    first = client.post(ROUTE, json=load("default_triggered.json"), headers=key)
    assert first.status_code == 202 and first.json()["accepted"] == 1
    # Datadog retries after a 5xx or a timeout: the same $ID, here with another body.
    retry = dict(load("default_triggered.json"), last_updated="1795687230000")
    again = client.post(ROUTE, json=retry, headers=key)
    assert again.status_code == 202, again.text
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 1)
    assert again.json()["duplicate_events"][0]["reason"] == "delivery_id"
    assert len(alert_rows(client, settings)) == 1
