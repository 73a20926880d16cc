"""The Alertmanager webhook adapter: every canonical field per fixture, precise refusals, the
body-hash decision for re-notifications, and the HTTP route with bearer, basic and X-API-Key
credentials (in process, `client` fixture) down to the lake rows of the right tenant."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

import service.auth
from service.adapters import WEBHOOKS, AdapterError, alertmanager
from service.config import ServiceSettings
from service.errors import UNAUTHORIZED_MESSAGE
from tests.support.inprocess import alert_rows
from tests.support.signing import Credentials
from warehouse.contracts import MAX_MESSAGE
from warehouse.registry import Registry
from warehouse.timestamps import now_us

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
ROUTE = "/v1/webhooks/alertmanager"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(fixture_bytes(name))
    return document


def us(text: str) -> int:
    """`2026-11-26T10:00:00.123456Z` → µs since the epoch (the test's own arithmetic)."""
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(at.timestamp()) * 1_000_000 + at.microsecond


def canonical_sha256(obj: Any) -> str:
    """The R2 body hash as the README defines it, computed independently of orjson."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# Every canonical field of every event, per fixture (labels and body hash are checked against
# the fixture's alert objects). `has_resolve_path` is True and `delivery_id` None throughout.
EXPECTED: dict[str, list[dict[str, Any]]] = {
    "group_mixed.json": [
        {"source_fingerprint": "5ab3f1c0e8e7d3a1", "signature": "HighCPU", "status": "firing",
         "severity": "critical", "raw_severity": "critical", "severity_mapped": True,
         "asset": "web01", "occurred_at_us": us("2026-11-26T10:00:00.123456Z"),
         "message": "CPU high on web01 & web02 <prod>", "truncated_alerts": 0},
        # A resolved alert inside a `firing` notification: its own status, its endsAt.
        {"source_fingerprint": "0f1e2d3c4b5a6978", "signature": "DiskFull", "status": "resolved",
         "severity": "warning", "raw_severity": "warning", "severity_mapped": True,
         "asset": "db01.example.com", "occurred_at_us": us("2026-11-26T10:05:00.987654Z"),
         "message": "/var was 97% full", "truncated_alerts": 0},
        {"source_fingerprint": "e5b1d5c9a4f2a0b7", "signature": "Watchdog", "status": "firing",
         "severity": "info", "raw_severity": "none", "severity_mapped": True, "asset": None,
         "occurred_at_us": us("2026-11-26T08:00:00Z"), "message": "Watchdog",
         "truncated_alerts": 0},
    ],
    "truncated_unicode.json": [
        # `host` wins over `instance`; a blank summary falls through to `message`.
        {"source_fingerprint": "a1b2c3d4e5f60718", "signature": "NodeDown", "status": "firing",
         "severity": "high", "raw_severity": "P2", "severity_mapped": True,
         "asset": "сервер-01.пример", "occurred_at_us": us("2026-11-26T10:30:15Z"),
         "message": "Узел недоступен", "truncated_alerts": 7},
        {"source_fingerprint": "b2c3d4e5f6071829", "signature": "LinkFlap", "status": "firing",
         "severity": "warning", "raw_severity": "urgent", "severity_mapped": False,
         "asset": "2001:db8::1", "occurred_at_us": us("2026-11-26T11:31:00.100Z"),
         "message": "Interface eth0 flapped 12 times", "truncated_alerts": 7},
        {"source_fingerprint": "c3d4e5f60718293a", "signature": "QueueBacklog",
         "status": "resolved", "severity": "warning", "raw_severity": None,
         "severity_mapped": False, "asset": None,
         "occurred_at_us": us("2026-11-26T11:45:30.999999Z"), "message": "QueueBacklog",
         "truncated_alerts": 7},
    ],
    "long_message_resolved.json": [
        {"source_fingerprint": "d4e5f60718293a4b", "signature": "ReplicationLag",
         "status": "resolved", "severity": "high", "raw_severity": "High",
         "severity_mapped": True, "asset": "db03", "occurred_at_us": us("2026-11-26T09:00:00Z"),
         "message": None, "truncated_alerts": 0},  # message: checked below
    ],
}


def test_every_fixture_has_expectations() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in FIXTURES.glob("*.json"))


def test_fixtures_are_what_alertmanager_sends() -> None:
    """Go's escapes and the trailing newline are in the bytes the tests post."""
    for path in FIXTURES.glob("*.json"):
        raw = path.read_bytes()
        assert raw.endswith(b"}\n"), path.name
        assert not {b"&", b"<", b">"} & {bytes([c]) for c in raw}, path.name
    assert b"\\u0026" in fixture_bytes("group_mixed.json")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_maps_every_canonical_field(name: str) -> None:
    document = fixture(name)
    records = WEBHOOKS["alertmanager"].normalize(document, now_us())
    assert len(records) == len(document["alerts"]) == len(EXPECTED[name])
    for record, alert, expected in zip(records, document["alerts"], EXPECTED[name], strict=True):
        assert record.source == "alertmanager"
        assert record.source_alert_id == record.source_fingerprint == alert["fingerprint"]
        assert record.delivery_id is None
        assert record.has_resolve_path is True
        assert record.labels == alert["labels"]  # annotations stay out of labels
        assert record.body_sha256 == canonical_sha256(alert)
        got = {key: getattr(record, key) for key in expected}
        if expected["message"] is None:
            got["message"] = None
        assert got == expected


def test_long_messages_are_cut_at_the_contract_limit() -> None:
    document = fixture("long_message_resolved.json")
    summary = document["alerts"][0]["annotations"]["summary"]
    assert len(summary) > MAX_MESSAGE
    [record] = alertmanager.normalize(document, now_us())
    assert record.message == summary[:MAX_MESSAGE]


def test_the_groups_status_never_decides_an_alerts_status() -> None:
    document = fixture("group_mixed.json")
    document["status"] = "resolved"
    statuses = [r.status for r in alertmanager.normalize(document, now_us())]
    assert statuses == ["firing", "resolved", "firing"]


def test_go_escapes_and_whitespace_do_not_change_the_body_hash() -> None:
    raw = fixture_bytes("group_mixed.json")
    plain = raw.replace(b"\\u0026", b"&").replace(b"\\u003c", b"<").replace(b"\\u003e", b">")
    spaced = orjson.dumps(orjson.loads(plain), option=orjson.OPT_INDENT_2)
    hashes = [
        [r.body_sha256 for r in alertmanager.normalize(orjson.loads(body), now_us())]
        for body in (raw, plain, spaced)
    ]
    assert hashes[0] == hashes[1] == hashes[2]


def test_renotified_unchanged_alert_has_the_same_hash_and_a_changed_one_does_not() -> None:
    """The documented R2 choice: the hash covers the alert object only, so the next group
    notification (another group key, another truncation count, other companions) re-sends an
    unchanged alert with the same hash; a changed annotation makes a new firing event."""
    first = fixture("group_mixed.json")
    again = copy.deepcopy(first)
    again["groupKey"] = "{}:{alertname=\"HighCPU\"}"
    again["truncatedAlerts"] = 3
    again["alerts"] = [again["alerts"][0]]
    changed = copy.deepcopy(again)
    changed["alerts"][0]["annotations"]["description"] = "CPU > 95% for 10m on web01:9100"
    [a, *_] = alertmanager.normalize(first, now_us())
    [b] = alertmanager.normalize(again, now_us())
    [c] = alertmanager.normalize(changed, now_us())
    assert a.body_sha256 == b.body_sha256 != c.body_sha256
    assert a.source_fingerprint == b.source_fingerprint == c.source_fingerprint
    assert (b.truncated_alerts, c.status) == (3, "firing")


def test_a_firing_alerts_end_time_is_not_its_event_time() -> None:
    document = fixture("group_mixed.json")
    document["alerts"][0]["endsAt"] = "2026-11-26T10:15:00Z"  # a future end: still firing
    del document["alerts"][2]["endsAt"]
    records = alertmanager.normalize(document, now_us())
    assert records[0].occurred_at_us == us("2026-11-26T10:00:00.123456Z")
    assert records[2].occurred_at_us == us("2026-11-26T08:00:00Z")


def test_truncated_alerts_absent_is_unknown() -> None:
    document = fixture("group_mixed.json")
    del document["truncatedAlerts"]
    assert {r.truncated_alerts for r in alertmanager.normalize(document, now_us())} == {None}


def _set(path: str, value: Any) -> Any:
    """A mutation of group_mixed.json: set (or, with `...`, delete) a member by path."""

    def mutate(document: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is ...:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
        return document

    return mutate


TRUNCATED_RANGE = "truncatedAlerts: expected an integer from 0 to 2147483647"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["alerts"], "body: expected an object, got list"),
        (_set("alerts", ...), "body.alerts: missing"),
        (_set("alerts", {}), "alerts: expected an array, got dict"),
        (_set("alerts", []), "alerts: the notification holds no alerts"),
        (_set("version", ...), "body.version: missing"),
        (_set("version", "1"), "version: expected '4' for the alertmanager webhook, got '1'"),
        (_set("truncatedAlerts", "3"), TRUNCATED_RANGE),
        (_set("truncatedAlerts", -1), TRUNCATED_RANGE),
        (_set("truncatedAlerts", True), TRUNCATED_RANGE),
        (_set("truncatedAlerts", 2**31), TRUNCATED_RANGE),  # the lake column is int32
        (_set("truncatedAlerts", 1.5), TRUNCATED_RANGE),
        (_set("alerts.1", "HighCPU"), "alerts[1]: expected an object, got str"),
        (_set("alerts.1.fingerprint", ...), "alerts[1].fingerprint: missing"),
        (_set("alerts.1.fingerprint", ""), "alerts[1].fingerprint: must not be empty"),
        (_set("alerts.1.fingerprint", 17), "alerts[1].fingerprint: expected a string, got int"),
        (_set("alerts.0.status", "pending"),
         "alerts[0].status: 'pending' is not one of firing, resolved"),
        (_set("alerts.0.status", "FIRING"),
         "alerts[0].status: 'FIRING' is not one of firing, resolved"),
        (_set("alerts.0.status", ...), "alerts[0].status: missing"),
        (_set("alerts.0.labels", ...), "alerts[0].labels: missing"),
        (_set("alerts.0.labels.alertname", ...), "alerts[0].labels.alertname: missing"),
        (_set("alerts.0.labels.alertname", " "), "alerts[0].labels.alertname: must not be empty"),
        (_set("alerts.0.labels.job", 1), "alerts[0].labels: expected an object of strings"),
        (_set("alerts.0.annotations", []), "alerts[0].annotations: expected an object of strings"),
        (_set("alerts.0.startsAt", 1795687200),
         "alerts[0].startsAt: expected an RFC 3339 string, got int"),
        (_set("alerts.0.startsAt", ...), "alerts[0].startsAt: missing"),
        (_set("alerts.0.startsAt", "2026-11-26 10:00:00"),
         "alerts[0].startsAt: '2026-11-26 10:00:00' is not an RFC 3339 timestamp with an offset"),
        (_set("alerts.0.startsAt", "0001-01-01T00:00:00Z"),
         "alerts[0].startsAt: Go's zero time '0001-01-01T00:00:00Z' is not an event time"),
        (_set("alerts.0.startsAt", "2999-01-01T00:00:00Z"),
         "alerts[0].startsAt 2999-01-01T00:00:00Z is more than a year in the future"),
        (_set("alerts.0.startsAt", "1999-12-31T23:59:59Z"),
         "alerts[0].startsAt 1999-12-31T23:59:59Z is before 2000-01-01"),
        (_set("alerts.0.endsAt", "soon"),
         "alerts[0].endsAt: 'soon' is not an RFC 3339 timestamp with an offset"),
        (_set("alerts.1.endsAt", "0001-01-01T00:00:00Z"),
         "alerts[1].endsAt: Go's zero time '0001-01-01T00:00:00Z' is not an event time"),
        (_set("alerts.1.endsAt", ...), "alerts[1].endsAt: missing"),
        (_set("alerts.1.endsAt", None), "alerts[1].endsAt: expected an RFC 3339 string, got "
         "NoneType"),
    ],
)
def test_structurally_wrong_payloads_are_refused_precisely(mutate: Any, message: str) -> None:
    document = mutate(fixture("group_mixed.json"))
    with pytest.raises(AdapterError) as caught:
        alertmanager.normalize(document, now_us())
    assert str(caught.value) == message


# ---- the HTTP route ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_auth_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tenant created by a test is seen by the running app on its next request."""
    monkeypatch.setattr(service.auth, "_REFRESH_CHECK_SECONDS", 0.0)


@pytest.fixture
def other(settings: ServiceSettings) -> Credentials:
    with Registry.open(settings) as registry:
        issued = registry.create_tenant("globex", name="Globex")
    return Credentials(issued.tenant_id, issued.api_key, issued.hmac_secret)


def bearer(cred: Credentials) -> dict[str, str]:
    return {"Authorization": f"Bearer {cred.api_key}", "Content-Type": "application/json"}


def basic(user: str, password: bytes) -> dict[str, str]:
    token = base64.b64encode(user.encode() + b":" + password).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    return str(body["detail"])


def test_bearer_notification_lands_in_the_lake_under_the_tenant(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    body = fixture_bytes("group_mixed.json")
    response = client.post(ROUTE, content=body, headers=bearer(tenant))
    assert response.status_code == 202, response.text
    receipt = response.json()
    assert (receipt["accepted"], receipt["duplicates"]) == (3, 0)

    rows = {r["event_id"]: r for r in alert_rows(client, settings, "raw/alerts")}
    assert sorted(rows) == sorted(receipt["ids"])
    expected = EXPECTED["group_mixed.json"]
    document = fixture("group_mixed.json")
    for event_id, want, alert in zip(receipt["ids"], expected, document["alerts"], strict=True):
        row = rows[event_id]
        assert row["tenant_id"] == "acme"
        assert row["source"] == "alertmanager"
        assert row["source_fingerprint"] == row["source_alert_id"] == want["source_fingerprint"]
        assert (row["signature"], row["status"], row["severity"], row["asset"]) == (
            want["signature"], want["status"], want["severity"], want["asset"])
        assert row["occurred_at"] == EPOCH + timedelta(microseconds=want["occurred_at_us"])
        assert row["occurred_at_defaulted"] is False
        assert row["message"] == want["message"]
        assert dict(row["labels"]) == alert["labels"]
        assert (row["severity_mapped"], row["has_resolve_path"], row["truncated_alerts"]) == (
            want["severity_mapped"], True, 0)
        assert row["missing_asset"] is (want["asset"] is None)
    [archived] = alert_rows(client, settings, "raw/requests")
    assert archived["body"] == body  # byte-exact: Go's escapes and the trailing newline
    assert (archived["route"], archived["tenant_id"], archived["event_count"]) == (
        "alertmanager", "acme", 3)


def test_renotifications_of_unchanged_alerts_are_duplicates(
    client: TestClient, settings: ServiceSettings, tenant: Credentials, other: Credentials
) -> None:
    first = client.post(ROUTE, content=fixture_bytes("group_mixed.json"), headers=bearer(tenant))
    assert first.json()["accepted"] == 3, first.text
    # The next group notification: HighCPU unchanged, DiskFull gone, Watchdog's text changed.
    document = fixture("group_mixed.json")
    document["groupKey"] = "{}:{}/1"
    document["alerts"] = [document["alerts"][0], document["alerts"][2]]
    document["alerts"][1]["annotations"] = {"summary": "the pipeline is alive"}
    second = client.post(ROUTE, content=orjson.dumps(document), headers=bearer(tenant))
    receipt = second.json()
    assert (receipt["accepted"], receipt["duplicates"]) == (1, 1), second.text
    assert receipt["duplicate_events"][0]["duplicate_of"] == first.json()["ids"][0]
    assert receipt["duplicate_events"][0]["reason"] == "body_hash"
    # Per tenant: the same notification from another tenant is new there.
    third = client.post(ROUTE, content=fixture_bytes("group_mixed.json"), headers=bearer(other))
    assert (third.json()["accepted"], third.json()["duplicates"]) == (3, 0), third.text

    rows = alert_rows(client, settings, "raw/alerts")
    by_tenant = {t: sorted(r["source_fingerprint"] for r in rows if r["tenant_id"] == t)
                 for t in ("acme", "globex")}
    assert by_tenant["acme"] == sorted(["5ab3f1c0e8e7d3a1", "0f1e2d3c4b5a6978",
                                        "e5b1d5c9a4f2a0b7", "e5b1d5c9a4f2a0b7"])
    assert by_tenant["globex"] == sorted(["5ab3f1c0e8e7d3a1", "0f1e2d3c4b5a6978",
                                          "e5b1d5c9a4f2a0b7"])
    duplicates = alert_rows(client, settings, "raw/duplicates")
    assert [(d["tenant_id"], d["source_fingerprint"]) for d in duplicates] == [
        ("acme", "5ab3f1c0e8e7d3a1")]


@pytest.mark.parametrize("how", ["basic", "x-api-key", "charset"])
def test_other_credential_forms_are_accepted(
    client: TestClient, tenant: Credentials, how: str
) -> None:
    headers = {
        "basic": basic(tenant.tenant_id, tenant.api_key.encode()),
        "x-api-key": {"X-API-Key": tenant.api_key, "Content-Type": "application/json"},
        "charset": {**bearer(tenant), "Content-Type": "application/json; charset=utf-8"},
    }[how]
    response = client.post(ROUTE, content=fixture_bytes("truncated_unicode.json"),
                           headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 3


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda t, o: basic(t.tenant_id, "pässwörd-✓".encode()),  # non-ASCII UTF-8, wrong
        lambda t, o: basic(t.tenant_id, b"\xff\xfe\xfd"),  # not UTF-8 at all
        lambda t, o: basic(t.tenant_id, t.api_key.encode() + "é".encode()),
        lambda t, o: basic(o.tenant_id, t.api_key.encode()),  # another tenant's id as user
        lambda t, o: basic(t.tenant_id, b""),
        lambda t, o: {"Authorization": "Basic not-base64!", "Content-Type": "application/json"},
        lambda t, o: {"Content-Type": "application/json"},  # no credential at all
        lambda t, o: {**bearer(t), "Authorization": f"Bearer {t.api_key}x"},
        lambda t, o: {**bearer(t), "Authorization": f"Token {t.api_key}"},
    ],
    ids=["non-ascii", "not-utf8", "key-plus-e-acute", "other-user", "empty-password",
         "bad-base64", "none", "wrong-key", "unknown-scheme"],
)
def test_wrong_credentials_get_401_never_500(
    client: TestClient, tenant: Credentials, other: Credentials, make_headers: Any
) -> None:
    response = client.post(ROUTE, content=fixture_bytes("group_mixed.json"),
                           headers=make_headers(tenant, other))
    assert refused(response, 401, "unauthorized") == UNAUTHORIZED_MESSAGE


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/json; charset=latin-1", None])
def test_wrong_content_type_is_415(
    client: TestClient, tenant: Credentials, content_type: str | None
) -> None:
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.post(ROUTE, content=fixture_bytes("group_mixed.json"), headers=headers)
    refused(response, 415, "unsupported_media_type")


def test_an_invalid_notification_is_422_with_the_adapters_message(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    document = fixture("group_mixed.json")
    document["alerts"][2]["startsAt"] = 1795680000
    response = client.post(ROUTE, content=orjson.dumps(document), headers=bearer(tenant))
    detail = refused(response, 422, "invalid_alert")
    assert detail == "alerts[2].startsAt: expected an RFC 3339 string, got int"
    truncated = fixture_bytes("group_mixed.json")[:200]
    refused(client.post(ROUTE, content=truncated, headers=bearer(tenant)), 400, "malformed_json")
    assert alert_rows(client, settings, "raw/alerts") == []
