"""The Grafana webhook adapter: every canonical field per fixture (offsets to UTC), precise
refusals, and Grafana's optional HMAC (grafana/alerting `http/hmac.go`), unit and over HTTP."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.adapters import WEBHOOKS, AdapterError, grafana
from service.config import ServiceSettings
from service.errors import UNAUTHORIZED_MESSAGE, IngestError
from tests.support.signing import Credentials
from warehouse.lake import open_lake
from warehouse.registry import AuthSnapshot
from warehouse.registry_records import GrafanaSigning
from warehouse.timestamps import now_us

FIXTURES = Path(__file__).parent / "fixtures" / "grafana"
ROUTE = "/v1/webhooks/grafana"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECRET = "gr4fana-hmac-sécret"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(fixture_bytes(name))
    return document


def us(text: str) -> int:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (at - EPOCH) // timedelta(microseconds=1)


def canonical_sha256(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


MEMORY_LABELS = {"alertname": "High memory usage", "grafana_folder": "Infra",
                 "instance": "web01.example.com:9100", "severity": "Critical", "team": "blue"}
EXPECTED: dict[str, list[dict[str, Any]]] = {
    "firing_offsets.json": [
        # 12:00:00.123456789+02:00 is 10:00:00.123456Z: converted, truncated.
        {"source_fingerprint": "c6eadffa33fcdf37", "signature": "High memory usage",
         "status": "firing", "severity": "critical", "raw_severity": "Critical",
         "severity_mapped": True, "asset": "web01.example.com",
         "occurred_at_us": us("2026-11-26T10:00:00.123456Z"),
         "message": "Memory above 90% on web01", "labels": MEMORY_LABELS,
         "truncated_alerts": 0},
        # A negative offset: 11:58:30-05:30 is 17:28:30Z. No data: no severity label.
        {"source_fingerprint": "8a6c2f1e0b9d7c54", "signature": "DatasourceNoData",
         "status": "firing", "severity": "warning", "raw_severity": None,
         "severity_mapped": False, "asset": "worker-7f9c-x2",
         "occurred_at_us": us("2026-11-26T17:28:30Z"), "message": "DatasourceNoData",
         "labels": {"alertname": "DatasourceNoData", "datasource_uid": "P1809F7CD0C75ACF3",
                    "grafana_folder": "Infra", "rulename": "Queue depth",
                    "pod": "worker-7f9c-x2"},
         "truncated_alerts": 0},
    ],
    "resolved_offsets.json": [
        {"source_fingerprint": "c6eadffa33fcdf37", "signature": "High memory usage",
         "status": "resolved", "severity": "critical", "raw_severity": "Critical",
         "severity_mapped": True, "asset": "web01.example.com",
         "occurred_at_us": us("2026-11-26T10:20:00.5Z"),
         "message": "Memory above 90% on web01", "labels": MEMORY_LABELS,
         "truncated_alerts": 2},
    ],
}


def test_every_fixture_has_expectations() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_maps_every_canonical_field(name: str) -> None:
    document = fixture(name)
    records = WEBHOOKS["grafana"].normalize(document, now_us())
    assert len(records) == len(document["alerts"]) == len(EXPECTED[name])
    for record, alert, expected in zip(records, document["alerts"], EXPECTED[name], strict=True):
        assert record.source == "grafana"
        assert record.source_alert_id == record.source_fingerprint
        assert (record.delivery_id, record.has_resolve_path) == (None, True)
        assert record.body_sha256 == canonical_sha256(alert)
        assert {key: getattr(record, key) for key in expected} == expected


def test_a_renotification_with_new_values_is_a_new_event_of_the_same_alert() -> None:
    document = fixture("firing_offsets.json")
    [first, _] = grafana.normalize(document, now_us())
    document["alerts"][0]["values"] = {"B": 95.1, "C": 1}
    [again, _] = grafana.normalize(document, now_us())
    assert first.source_fingerprint == again.source_fingerprint
    assert first.body_sha256 != again.body_sha256


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "4"}, "version: expected '1' for the grafana webhook, got '4'"),
        ({"version": 1}, "version: expected '1' for the grafana webhook, got 1"),
        ({"alerts": None}, "alerts: expected an array, got NoneType"),
    ],
)
def test_wrong_notifications_are_refused_precisely(change: dict[str, Any], message: str) -> None:
    document = {**fixture("firing_offsets.json"), **change}
    with pytest.raises(AdapterError) as caught:
        grafana.normalize(document, now_us())
    assert str(caught.value) == message


def test_an_offset_zero_time_is_still_go_zero_time() -> None:
    document = fixture("resolved_offsets.json")
    document["alerts"][0]["endsAt"] = "0001-01-01T00:00:00+00:00"
    with pytest.raises(AdapterError, match=r"alerts\[0\]\.endsAt: Go's zero time"):
        grafana.normalize(document, now_us())


# ---- the HMAC signature --------------------------------------------------------------------


def snapshot_with(signing: dict[str, GrafanaSigning]) -> AuthSnapshot:
    base = AuthSnapshot.build({}, {}, {}, data_version=1, taken_at=datetime.now(UTC),
                              valid_until=None)
    return dataclasses.replace(base, grafana_signing=MappingProxyType(signing))


def sign(body: bytes, secret: str = SECRET, stamp: str | None = None) -> str:
    message = body if stamp is None else stamp.encode() + b":" + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


PLAIN = GrafanaSigning(SECRET.encode(), header="X-Grafana-Alert-Signature")
STAMPED = GrafanaSigning(SECRET.encode(), header="X-Grafana-Alerting-Signature",
                         timestamp_header="X-Grafana-Alerting-Signature-Timestamp")
BODY = b'{"version":"1"}\n'
NOW = 1_795_687_200


def test_the_signature_is_grafanas_algorithm() -> None:
    """A known answer computed by hand from `http/hmac.go`: hex HMAC-SHA256 of
    `<unix seconds>:<body>`, keyed with the secret's bytes."""
    expected = hmac.new(b"secret", b"1700000000:test message", hashlib.sha256).hexdigest()
    snapshot = snapshot_with({"acme": GrafanaSigning(b"secret", "X-Signature", "X-Timestamp")})
    headers = {"x-signature": expected, "x-timestamp": "1700000000"}
    grafana.verify("acme", headers, b"test message", snapshot, clock=lambda: 1_700_000_100.0)


@pytest.mark.parametrize(
    ("signing", "headers"),
    [
        (None, {}),  # the tenant configured no Grafana secret: nothing to check
        (PLAIN, {"X-Grafana-Alert-Signature": sign(BODY)}),
        (PLAIN, {"x-grafana-alert-signature": sign(BODY).upper()}),  # any case, both
        (STAMPED, {"X-Grafana-Alerting-Signature": sign(BODY, stamp=str(NOW)),
                   "X-Grafana-Alerting-Signature-Timestamp": str(NOW)}),
        (STAMPED, {"X-Grafana-Alerting-Signature": sign(BODY, stamp=str(NOW - 300)),
                   "X-Grafana-Alerting-Signature-Timestamp": str(NOW - 300)}),
    ],
    ids=["unconfigured", "body", "case", "timestamp", "timestamp-at-tolerance"],
)
def test_good_signatures_pass(signing: GrafanaSigning | None, headers: dict[str, str]) -> None:
    snapshot = snapshot_with({"acme": signing} if signing else {})
    grafana.verify("acme", headers, BODY, snapshot, clock=lambda: float(NOW))


@pytest.mark.parametrize(
    ("signing", "headers"),
    [
        (PLAIN, {}),
        (PLAIN, {"X-Grafana-Alert-Signature": ""}),
        (PLAIN, {"X-Grafana-Alert-Signature": sign(BODY + b" ")}),
        (PLAIN, {"X-Grafana-Alert-Signature": sign(BODY, secret="other")}),
        (PLAIN, {"X-Grafana-Alerting-Signature": sign(BODY)}),  # not the configured header
        (PLAIN, {"X-Grafana-Alert-Signature": "sha256=" + sign(BODY)}),
        (PLAIN, {"X-Grafana-Alert-Signature": sign(BODY)[:-2]}),
        (PLAIN, {"X-Grafana-Alert-Signature": "zz" * 32}),
        (PLAIN, {"X-Grafana-Alert-Signature": "é" * 64}),
        (STAMPED, {"X-Grafana-Alerting-Signature": sign(BODY)}),  # timestamp header missing
        (STAMPED, {"X-Grafana-Alerting-Signature": sign(BODY),  # body signed without it
                   "X-Grafana-Alerting-Signature-Timestamp": str(NOW)}),
        (STAMPED, {"X-Grafana-Alerting-Signature": sign(BODY, stamp=str(NOW)),
                   "X-Grafana-Alerting-Signature-Timestamp": str(NOW + 1)}),
        (STAMPED, {"X-Grafana-Alerting-Signature": sign(BODY, stamp=str(NOW - 301)),
                   "X-Grafana-Alerting-Signature-Timestamp": str(NOW - 301)}),
        (STAMPED, {"X-Grafana-Alerting-Signature": sign(BODY, stamp="1e9"),
                   "X-Grafana-Alerting-Signature-Timestamp": "1e9"}),
        (STAMPED, {"X-Grafana-Alerting-Signature": sign(BODY, stamp="١٧٩٥٦٨٧٢٠٠"),
                   "X-Grafana-Alerting-Signature-Timestamp": "١٧٩٥٦٨٧٢٠٠"}),
    ],
    ids=["missing", "empty", "other-body", "other-secret", "other-header", "prefixed",
         "short", "not-hex", "non-ascii", "no-timestamp", "unstamped-signature",
         "timestamp-changed", "stale", "not-seconds", "non-ascii-digits"],
)
def test_bad_signatures_get_the_one_401(signing: GrafanaSigning, headers: dict[str, str]) -> None:
    with pytest.raises(IngestError) as caught:
        grafana.verify("acme", headers, BODY, snapshot_with({"acme": signing}),
                       clock=lambda: float(NOW))
    assert (caught.value.status, caught.value.message) == (401, UNAUTHORIZED_MESSAGE)


def test_another_tenants_secret_does_not_sign_for_this_one() -> None:
    snapshot = snapshot_with({"globex": PLAIN})
    grafana.verify("acme", {}, BODY, snapshot)  # acme configured nothing
    with pytest.raises(IngestError):
        grafana.verify("globex", {"X-Grafana-Alert-Signature": sign(BODY, "x")}, BODY, snapshot)


# ---- over HTTP -----------------------------------------------------------------------------


@pytest.fixture
def signing(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The running app's auth snapshot, with a Grafana secret configured for acme."""
    auth = client.app.state.runtime.auth  # type: ignore[attr-defined]
    real: Callable[[], AuthSnapshot] = auth.snapshot

    def snapshot() -> AuthSnapshot:
        return dataclasses.replace(real(), grafana_signing=MappingProxyType({"acme": STAMPED}))

    monkeypatch.setattr(auth, "snapshot", snapshot)
    yield


def grafana_headers(cred: Credentials, body: bytes, stamp: str | None = None,
                    secret: str = SECRET) -> dict[str, str]:
    stamp = stamp or str(int(time.time()))
    return {"Authorization": f"Bearer {cred.api_key}", "Content-Type": "application/json",
            "X-Grafana-Alerting-Signature": sign(body, secret, stamp),
            "X-Grafana-Alerting-Signature-Timestamp": stamp}


def test_unsigned_notification_lands_in_the_lake_in_utc(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    body = fixture_bytes("firing_offsets.json")
    headers = {"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"}
    response = client.post(ROUTE, content=body, headers=headers)
    assert response.status_code == 202, response.text
    ids = response.json()["ids"]
    rows = {r["event_id"]: r for r in lake_rows(client, settings)}
    for event_id, want in zip(ids, EXPECTED["firing_offsets.json"], strict=True):
        row = rows[event_id]
        assert (row["tenant_id"], row["source"], row["source_fingerprint"]) == (
            "acme", "grafana", want["source_fingerprint"])
        assert row["occurred_at"] == EPOCH + timedelta(microseconds=want["occurred_at_us"])
        assert (row["severity"], row["status"], row["asset"]) == (
            want["severity"], want["status"], want["asset"])
        assert dict(row["labels"]) == want["labels"]


def test_signed_notification_is_accepted_and_bad_ones_are_401(
    client: TestClient, settings: ServiceSettings, tenant: Credentials, signing: None
) -> None:
    body = fixture_bytes("resolved_offsets.json")
    good = client.post(ROUTE, content=body, headers=grafana_headers(tenant, body))
    assert good.status_code == 202, good.text
    stale = str(int(time.time()) - 3600)
    for headers in (
        {"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"},
        grafana_headers(tenant, body, secret="not-the-secret"),
        grafana_headers(tenant, body, stamp=stale),
        grafana_headers(tenant, body + b" "),
    ):
        response = client.post(ROUTE, content=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json() == {"error": "unauthorized", "detail": UNAUTHORIZED_MESSAGE}
    # The API key is still checked first: a valid Grafana signature is no credential.
    headers = grafana_headers(tenant, body)
    del headers["Authorization"]
    assert client.post(ROUTE, content=body, headers=headers).status_code == 401
    assert [r["event_id"] for r in lake_rows(client, settings)] == good.json()["ids"]


def lake_rows(client: TestClient, settings: ServiceSettings) -> list[dict[str, Any]]:
    buffer = client.app.state.runtime.buffer  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while buffer.depth_bytes:
        assert time.monotonic() < deadline, "the flusher did not empty the buffer in time"
        time.sleep(0.02)
    return open_lake(settings.resolved_lake_uri).read_table("raw/alerts").to_pylist()
