"""The generic ingest endpoint end to end: receipts, defaults, auth, R2 duplicates, the lake.

Every test talks HTTP to the in-process app (`client` fixture, flush age 0.2 s) and checks
what reached the lake after the flush: `wait_flushed` polls until the durable buffer is empty,
which happens only once every accepted record is in Parquet.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import service.auth
from service.auth import Authenticator
from service.buffer import BufferFull
from service.config import ServiceSettings
from service.errors import UNAUTHORIZED_MESSAGE, IngestError
from tests.support.signing import Credentials, signed_headers
from warehouse.contracts import CanonicalAlertIn
from warehouse.lake import open_lake
from warehouse.registry import Registry

ALERT = {"signature": "disk_full", "asset": "web01"}
ID = re.compile(r"^[0-9a-f]{32}$")
RECEIPT_KEYS = {"request_id", "accepted", "duplicates", "ids", "duplicate_events"}
UNAUTHORIZED = {"error": "unauthorized", "detail": UNAUTHORIZED_MESSAGE}


# ---- helpers -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_auth_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registry changes made by a test (rotation, revocation, options, a second tenant) are
    seen by the running app on its next request instead of up to a second later."""
    monkeypatch.setattr(service.auth, "_REFRESH_CHECK_SECONDS", 0.0)


@pytest.fixture
def other(settings: ServiceSettings) -> Credentials:
    """A second tenant in the same registry."""
    with Registry.open(settings) as registry:
        issued = registry.create_tenant("globex", name="Globex")
    return Credentials(issued.tenant_id, issued.api_key, issued.hmac_secret)


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def post(
    client: TestClient,
    cred: Credentials,
    doc: Any,
    path: str = "/v1/alerts",
    **sign: Any,
) -> httpx.Response:
    """POST a JSON document (or raw bytes) signed with the tenant's credentials."""
    body = doc if isinstance(doc, bytes) else encode(doc)
    return client.post(path, content=body, headers=signed_headers(cred, body, **sign))


def accepted(response: httpx.Response, new: int, duplicates: int = 0) -> dict[str, Any]:
    """Assert a 202 with a well-formed receipt and return it."""
    assert response.status_code == 202, response.text
    receipt = response.json()
    assert set(receipt) == RECEIPT_KEYS
    assert ID.match(receipt["request_id"])
    assert receipt["accepted"] == len(receipt["ids"]) == new
    assert receipt["duplicates"] == len(receipt["duplicate_events"]) == duplicates
    assert all(ID.match(i) for i in receipt["ids"])
    for dup in receipt["duplicate_events"]:
        assert set(dup) == {"index", "event_id", "duplicate_of", "reason"}
        assert ID.match(dup["event_id"]) and ID.match(dup["duplicate_of"])
    return receipt


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == code, body
    return body


def wait_flushed(client: TestClient, timeout: float = 10.0) -> None:
    """Wait until nothing accepted is left in the durable buffer (it is all in the lake)."""
    buffer = client.app.state.runtime.buffer  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while buffer.depth_bytes:
        assert time.monotonic() < deadline, "the flusher did not empty the buffer in time"
        time.sleep(0.02)


def rows(settings: ServiceSettings, table: str) -> list[dict[str, Any]]:
    """Every row of a raw lake table, with its `tenant_id` partition column."""
    return open_lake(settings.resolved_lake_uri).read_table(table).to_pylist()


def flushed_rows(
    client: TestClient, settings: ServiceSettings, table: str
) -> list[dict[str, Any]]:
    wait_flushed(client)
    return rows(settings, table)


def utc(micros_text: str) -> datetime:
    return datetime.fromisoformat(micros_text).replace(tzinfo=UTC)


# ---- receipts and defaults ---------------------------------------------------------------


def test_single_object_and_array_get_a_receipt_and_land_in_the_lake(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    one = accepted(post(client, tenant, ALERT), new=1)
    batch = [{"signature": "cpu_high", "asset": f"web{i:02d}"} for i in range(3)]
    many = accepted(post(client, tenant, batch), new=3)
    assert many["request_id"] != one["request_id"]
    assert len(set(one["ids"] + many["ids"])) == 4

    alerts = flushed_rows(client, settings, "raw/alerts")
    by_id = {r["event_id"]: r for r in alerts}
    assert set(by_id) == set(one["ids"] + many["ids"])
    assert by_id[one["ids"][0]]["request_id"] == one["request_id"]
    # Array order is kept: ids and sequence numbers follow the objects.
    assert [by_id[i]["asset"] for i in many["ids"]] == ["web00", "web01", "web02"]
    seqs = [by_id[i]["ingest_seq"] for i in many["ids"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert {r["tenant_id"] for r in alerts} == {"acme"}
    requests = rows(settings, "raw/requests")
    assert sorted(r["event_count"] for r in requests) == [1, 3]


@pytest.mark.parametrize(
    ("alert", "status", "severity"),
    [
        # A source_alert_id makes a stateful alert: firing unless told otherwise.
        ({"signature": "s", "source_alert_id": "a-1"}, "firing", "warning"),
        # No source_alert_id: a one-shot point event.
        ({"signature": "s"}, "point", "warning"),
        # An explicit status is kept, with or without an id.
        ({"signature": "s", "source_alert_id": "a-2", "status": "resolved"}, "resolved", "warning"),
        ({"signature": "s", "status": "firing", "severity": "critical"}, "firing", "critical"),
    ],
)
def test_status_and_severity_defaults(
    client: TestClient, settings: ServiceSettings, tenant: Credentials,
    alert: dict[str, Any], status: str, severity: str,
) -> None:
    accepted(post(client, tenant, alert), new=1)
    (row,) = flushed_rows(client, settings, "raw/alerts")
    assert (row["status"], row["severity"]) == (status, severity)
    assert row["source"] == "generic"
    # Stateful alerts are identified by the sender's id; others by a derived fingerprint.
    if "source_alert_id" in alert:
        assert row["source_fingerprint"] == alert["source_alert_id"]
    else:
        assert row["source_fingerprint"].startswith("sha256:")


def test_occurred_at_defaults_to_receive_time(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    before = datetime.now(UTC)
    accepted(post(client, tenant, ALERT), new=1)
    after = datetime.now(UTC)
    (row,) = flushed_rows(client, settings, "raw/alerts")
    assert row["occurred_at_defaulted"] is True
    assert row["occurred_at"] == row["received_at"]
    assert before - timedelta(milliseconds=1) <= row["received_at"] <= after


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        # 9 fractional digits (Go): truncated to the microsecond, never rounded up.
        ("2026-11-26T10:00:00.123456789Z", "2026-11-26T10:00:00.123456"),
        ("2026-11-26T10:00:00.999999999Z", "2026-11-26T10:00:00.999999"),
        # Fewer digits are padded; lower-case t and z are RFC 3339 too.
        ("2026-11-26t10:00:00.5z", "2026-11-26T10:00:00.500000"),
        # Offsets are converted to UTC, across a day boundary as well.
        ("2026-11-26T12:30:00.000000999+02:00", "2026-11-26T10:30:00.000000"),
        ("2026-11-25T22:15:00-05:30", "2026-11-26T03:45:00"),
        ("2026-11-26T01:00:00+05:45", "2026-11-25T19:15:00"),
    ],
)
def test_occurred_at_is_truncated_and_converted_to_utc(
    client: TestClient, settings: ServiceSettings, tenant: Credentials, sent: str, stored: str
) -> None:
    accepted(post(client, tenant, {**ALERT, "occurred_at": sent}), new=1)
    (row,) = flushed_rows(client, settings, "raw/alerts")
    assert row["occurred_at"] == utc(stored)
    assert row["occurred_at_defaulted"] is False


@pytest.mark.parametrize("path", ["/v1/alerts", "/v1/webhooks/generic"])
def test_both_generic_routes_accept(
    client: TestClient, settings: ServiceSettings, tenant: Credentials, path: str
) -> None:
    receipt = accepted(post(client, tenant, ALERT, path=path), new=1)
    (request,) = flushed_rows(client, settings, "raw/requests")
    assert request["request_id"] == receipt["request_id"]
    assert request["route"] == "generic"


# ---- authentication ----------------------------------------------------------------------


def test_x_api_key_header_works_like_bearer(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    body = encode(ALERT)
    headers = signed_headers(tenant, body)
    headers["X-API-Key"] = headers.pop("Authorization").removeprefix("Bearer ")
    accepted(client.post("/v1/alerts", content=body, headers=headers), new=1)
    (request,) = flushed_rows(client, settings, "raw/requests")
    # The archive keeps safe headers only: never the key or the signature.
    kept = dict(request["headers"])
    assert "x-timestamp" in kept
    assert not {"x-api-key", "authorization", "x-signature"} & set(kept)
    assert tenant.api_key not in json.dumps(kept)


def _unknown_key(cred: Credentials, other: Credentials, body: bytes) -> dict[str, str]:
    return signed_headers(Credentials(cred.tenant_id, "awk_not-a-key", cred.hmac_secret), body)


def _wrong_signature(cred: Credentials, other: Credentials, body: bytes) -> dict[str, str]:
    return signed_headers(cred, body + b" ")  # signed a different body


def _missing_signature(cred: Credentials, other: Credentials, body: bytes) -> dict[str, str]:
    headers = signed_headers(cred, body)
    del headers["X-Signature"]
    return headers


def _missing_timestamp(cred: Credentials, other: Credentials, body: bytes) -> dict[str, str]:
    headers = signed_headers(cred, body)
    del headers["X-Timestamp"]
    return headers


def _other_tenants_secret(cred: Credentials, other: Credentials, body: bytes) -> dict[str, str]:
    return signed_headers(cred, body, secret=other.hmac_secret)


def _other_tenants_key(cred: Credentials, other: Credentials, body: bytes) -> dict[str, str]:
    # globex's key with a signature made with acme's secret: still wrong for globex.
    return signed_headers(Credentials("globex", other.api_key, cred.hmac_secret), body)


def _not_hex(cred: Credentials, other: Credentials, body: bytes) -> dict[str, str]:
    return {**signed_headers(cred, body), "X-Signature": "sha256=not-hex"}


def _no_scheme(cred: Credentials, other: Credentials, body: bytes) -> dict[str, str]:
    headers = signed_headers(cred, body)
    return {**headers, "X-Signature": headers["X-Signature"].removeprefix("sha256=")}


def _no_credential(cred: Credentials, other: Credentials, body: bytes) -> dict[str, str]:
    headers = signed_headers(cred, body)
    del headers["Authorization"]
    return headers


def _basic_scheme(cred: Credentials, other: Credentials, body: bytes) -> dict[str, str]:
    return {**signed_headers(cred, body), "Authorization": f"Basic {cred.api_key}"}


@pytest.mark.parametrize(
    "make_headers",
    [
        _unknown_key,  # a key nobody was issued
        _wrong_signature,  # the right key, a signature over other bytes
        _missing_signature,  # the tenant requires signatures (the default)
        _missing_timestamp,  # a signature without its timestamp cannot be checked
        _other_tenants_secret,  # acme's key, signed with globex's secret
        _other_tenants_key,  # globex's key, signed with acme's secret
        _not_hex,  # a malformed signature value
        _no_scheme,  # the hex without the `sha256=` prefix
        _no_credential,  # no Authorization and no X-API-Key
        _basic_scheme,  # an unsupported Authorization scheme is no credential
    ],
)
def test_every_credential_failure_gets_the_same_401(
    client: TestClient, settings: ServiceSettings, tenant: Credentials, other: Credentials,
    make_headers: Callable[[Credentials, Credentials, bytes], dict[str, str]],
) -> None:
    body = encode(ALERT)
    response = client.post("/v1/alerts", content=body, headers=make_headers(tenant, other, body))
    # One answer for all of them: the response never says which part was right.
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert response.headers["www-authenticate"] == "Bearer"
    # Nothing was stored: a later valid request is the only thing in the lake.
    marker = accepted(post(client, tenant, {"signature": "marker"}), new=1)
    assert [r["event_id"] for r in flushed_rows(client, settings, "raw/alerts")] == marker["ids"]
    assert len(rows(settings, "raw/requests")) == 1


@pytest.mark.parametrize(
    ("skew", "status", "code"),
    [
        (-310, 401, "stale_timestamp"),  # more than 300 s in the past
        (310, 401, "stale_timestamp"),  # more than 300 s in the future
        (-3600 * 24, 401, "stale_timestamp"),  # a day-old captured request
        (-290, 202, None),  # within the tolerance
        (290, 202, None),
    ],
)
def test_signature_timestamp_window(
    client: TestClient, settings: ServiceSettings, tenant: Credentials,
    skew: int, status: int, code: str | None,
) -> None:
    response = post(client, tenant, ALERT, timestamp=int(time.time()) + skew)
    if code is None:
        accepted(response, new=1)
    else:
        refused(response, status, code)
        wait_flushed(client)
        assert rows(settings, "raw/alerts") == []


def test_same_signed_request_twice_is_a_replay(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    body = encode(ALERT)
    headers = signed_headers(tenant, body)
    first = accepted(client.post("/v1/alerts", content=body, headers=headers), new=1)
    refused(client.post("/v1/alerts", content=body, headers=headers), 409, "replay")
    # Also through the other route: a replay is the signature, not the URL.
    refused(client.post("/v1/webhooks/generic", content=body, headers=headers), 409, "replay")
    assert [r["event_id"] for r in flushed_rows(client, settings, "raw/alerts")] == first["ids"]
    assert len(rows(settings, "raw/requests")) == 1
    assert rows(settings, "raw/duplicates") == []


def test_a_request_answered_503_can_be_retried_unchanged(
    client: TestClient, settings: ServiceSettings, tenant: Credentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = client.app.state.runtime.buffer  # type: ignore[attr-defined]
    real_submit = buffer.submit

    def full_once(record: bytes, events: int, first_seq: int) -> Any:
        monkeypatch.setattr(buffer, "submit", real_submit)
        raise BufferFull()

    monkeypatch.setattr(buffer, "submit", full_once)
    body = encode(ALERT)
    headers = signed_headers(tenant, body)
    response = client.post("/v1/alerts", content=body, headers=headers)
    refused(response, 503, "unavailable")
    assert int(response.headers["retry-after"]) >= 1
    # The signature was forgotten (not a replay) and the keys were not held (not duplicates).
    receipt = accepted(client.post("/v1/alerts", content=body, headers=headers), new=1)
    assert [r["event_id"] for r in flushed_rows(client, settings, "raw/alerts")] == receipt["ids"]


def test_secret_rotation_keeps_both_secrets_during_the_grace(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    with Registry.open(settings) as registry:
        new_secret = registry.rotate_secret("acme")  # default grace: 24 h
    # Both the old and the new secret verify.
    accepted(post(client, tenant, {"signature": "old"}), new=1)
    accepted(post(client, tenant, {"signature": "new"}, secret=new_secret), new=1)

    # After the grace only the new one does: an authenticator whose clock is 25 h ahead.
    later = time.time() + 25 * 3600
    with Registry.open(settings) as registry:
        auth = Authenticator(registry, 300, clock=lambda: later)
        ts, body = str(int(later)), b'{"signature":"x"}'
        old_sig = signed_headers(tenant, body, timestamp=int(later))["X-Signature"]
        new_sig = signed_headers(tenant, body, timestamp=int(later), secret=new_secret)
        auth.verify_signature("acme", ts, new_sig["X-Signature"], body)
        with pytest.raises(IngestError) as failure:
            auth.verify_signature("acme", ts, old_sig, body)
        assert failure.value.status == 401
        snapshot = registry.auth_snapshot(datetime.now(UTC) + timedelta(hours=25))
        assert snapshot.secrets_for_tenant["acme"] == (new_secret.encode(),)


def test_rotation_without_grace_retires_the_old_secret_at_once(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    accepted(post(client, tenant, {"signature": "before"}), new=1)
    with Registry.open(settings) as registry:
        new_secret = registry.rotate_secret("acme", grace=timedelta(0))
    response = post(client, tenant, {"signature": "old secret"})
    assert response.status_code == 401 and response.json() == UNAUTHORIZED
    accepted(post(client, tenant, {"signature": "new secret"}, secret=new_secret), new=1)
    stored = flushed_rows(client, settings, "raw/alerts")
    assert sorted(r["signature"] for r in stored) == ["before", "new secret"]


def test_revoked_key_is_refused(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    accepted(post(client, tenant, ALERT), new=1)
    with Registry.open(settings) as registry:
        assert registry.revoke_key("acme", tenant.api_key[:12]) == 1
    response = post(client, tenant, {"signature": "after revocation"})
    assert response.status_code == 401 and response.json() == UNAUTHORIZED
    assert len(flushed_rows(client, settings, "raw/alerts")) == 1


def test_tenant_without_required_signature_accepts_unsigned_requests(
    client: TestClient, settings: ServiceSettings, tenant: Credentials, other: Credentials
) -> None:
    with Registry.open(settings) as registry:
        registry.set_options("acme", require_signature=False)
    unsigned = {"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"}
    accepted(client.post("/v1/alerts", content=encode(ALERT), headers=unsigned), new=1)
    # A signature that is sent anyway is still checked.
    bad = {**signed_headers(tenant, b"other"), "Content-Type": "application/json"}
    response = client.post("/v1/alerts", content=encode({"signature": "bad"}), headers=bad)
    assert response.status_code == 401 and response.json() == UNAUTHORIZED
    # The other tenant still requires signatures.
    unsigned_other = {**unsigned, "Authorization": f"Bearer {other.api_key}"}
    response = client.post("/v1/alerts", content=encode(ALERT), headers=unsigned_other)
    assert response.status_code == 401 and response.json() == UNAUTHORIZED
    stored = flushed_rows(client, settings, "raw/alerts")
    assert [(r["tenant_id"], r["signature"]) for r in stored] == [("acme", "disk_full")]


# ---- R2 exact duplicates -----------------------------------------------------------------


def test_same_delivery_id_across_requests_is_a_duplicate(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    first = accepted(post(client, tenant, {"signature": "a", "delivery_id": "d-1"}), new=1)
    # A different object (other signature) with the same delivery id: still the same delivery.
    second = accepted(
        post(client, tenant, {"signature": "b", "delivery_id": "d-1"}), new=0, duplicates=1
    )
    (dup,) = second["duplicate_events"]
    assert dup == {"index": 0, "event_id": dup["event_id"], "duplicate_of": first["ids"][0],
                   "reason": "delivery_id"}

    alerts = flushed_rows(client, settings, "raw/alerts")
    assert [r["event_id"] for r in alerts] == first["ids"]
    (dup_row,) = rows(settings, "raw/duplicates")
    assert (dup_row["event_id"], dup_row["duplicate_of"], dup_row["reason"]) == (
        dup["event_id"], first["ids"][0], "delivery_id")
    assert dup_row["tenant_id"] == "acme" and dup_row["delivery_id"] == "d-1"


def test_same_delivery_id_within_one_array_is_a_duplicate(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    batch = [
        {"signature": "a", "delivery_id": "d-7"},
        {"signature": "other", "delivery_id": "d-8"},
        {"signature": "b", "delivery_id": "d-7"},
    ]
    receipt = accepted(post(client, tenant, batch), new=2, duplicates=1)
    (dup,) = receipt["duplicate_events"]
    assert (dup["index"], dup["duplicate_of"], dup["reason"]) == (2, receipt["ids"][0],
                                                                  "delivery_id")
    alerts = flushed_rows(client, settings, "raw/alerts")
    assert sorted(r["signature"] for r in alerts) == ["a", "other"]
    assert [r["event_id"] for r in rows(settings, "raw/duplicates")] == [dup["event_id"]]


def test_same_object_without_delivery_id_is_a_body_hash_duplicate(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    obj = {"signature": "disk_full", "asset": "web01", "labels": {"a": "1", "b": "2"}}
    first = accepted(post(client, tenant, obj), new=1)
    # The same object with other key order and whitespace: a new request body, the same alert.
    reformatted = b'{ "labels": {"b": "2", "a": "1"},\n "asset": "web01", "signature": "disk_full"}'
    second = accepted(post(client, tenant, reformatted), new=0, duplicates=1)
    (dup,) = second["duplicate_events"]
    assert (dup["duplicate_of"], dup["reason"]) == (first["ids"][0], "body_hash")
    # Within one array too, and an array element is hashed like a single object.
    third = accepted(post(client, tenant, [obj, {"signature": "new"}, obj]), new=1, duplicates=2)
    assert [(d["index"], d["duplicate_of"], d["reason"]) for d in third["duplicate_events"]] == [
        (0, first["ids"][0], "body_hash"), (2, first["ids"][0], "body_hash")]

    alerts = flushed_rows(client, settings, "raw/alerts")
    assert sorted(r["signature"] for r in alerts) == ["disk_full", "new"]
    duplicates = rows(settings, "raw/duplicates")
    assert len(duplicates) == 3
    assert {r["reason"] for r in duplicates} == {"body_hash"}
    assert {r["duplicate_of"] for r in duplicates} == {first["ids"][0]}
    # Duplicates never reach raw/alerts; accepted events never reach raw/duplicates.
    assert not {r["event_id"] for r in alerts} & {r["event_id"] for r in duplicates}


def test_delivery_ids_are_per_tenant_and_per_source(
    client: TestClient, settings: ServiceSettings, tenant: Credentials, other: Credentials
) -> None:
    obj = {"signature": "a", "delivery_id": "d-42"}
    first = accepted(post(client, tenant, obj), new=1)
    # Another tenant may use the same delivery id (and even the same body).
    accepted(post(client, other, obj), new=1)
    # Another source of the same tenant too.
    accepted(post(client, tenant, {**obj, "source": "nagios"}), new=1)
    # The same source again is a duplicate of the first.
    dup = accepted(post(client, tenant, {**obj, "message": "again"}), new=0, duplicates=1)
    assert dup["duplicate_events"][0]["duplicate_of"] == first["ids"][0]

    alerts = flushed_rows(client, settings, "raw/alerts")
    assert sorted((r["tenant_id"], r["source"]) for r in alerts) == [
        ("acme", "generic"), ("acme", "nagios"), ("globex", "generic")]
    assert [r["tenant_id"] for r in rows(settings, "raw/duplicates")] == ["acme"]


def test_body_hash_duplicates_are_per_tenant(
    client: TestClient, settings: ServiceSettings, tenant: Credentials, other: Credentials
) -> None:
    accepted(post(client, tenant, ALERT), new=1)
    accepted(post(client, other, ALERT), new=1)
    assert rows(settings, "raw/duplicates") == []
    assert {r["tenant_id"] for r in flushed_rows(client, settings, "raw/alerts")} == {
        "acme", "globex"}


def test_raw_requests_keeps_each_body_once(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    body = b'[{"signature":"a"},{"signature":"b"}]\n'
    first = accepted(post(client, tenant, body), new=2)
    # The same bytes, signed with another timestamp (so not a replay): all duplicates, and
    # the request is recognised as the one already archived.
    second = accepted(post(client, tenant, body, timestamp=int(time.time()) - 5),
                      new=0, duplicates=2)
    assert second["request_id"] == first["request_id"]
    assert [d["duplicate_of"] for d in second["duplicate_events"]] == first["ids"]

    (request,) = flushed_rows(client, settings, "raw/requests")
    assert request["body"] == body  # byte-exact, trailing newline included
    assert (request["event_count"], request["duplicate_count"]) == (2, 0)
    assert len(rows(settings, "raw/alerts")) == 2
    assert len(rows(settings, "raw/duplicates")) == 2


# ---- tenancy and stored values -----------------------------------------------------------


def test_tenant_comes_from_the_key_never_from_the_body(
    client: TestClient, settings: ServiceSettings, tenant: Credentials, other: Credentials
) -> None:
    spoof = {
        "signature": "spoof",
        "labels": {"tenant_id": "globex", "tenant": "globex", "x-tenant": "../globex"},
        "source": "globex",
    }
    receipt = accepted(post(client, tenant, spoof), new=1)
    (row,) = flushed_rows(client, settings, "raw/alerts")
    assert row["event_id"] == receipt["ids"][0]
    assert row["tenant_id"] == "acme"
    assert dict(row["labels"])["tenant_id"] == "globex"  # kept as data only
    lake = open_lake(settings.resolved_lake_uri)
    paths = [i.path for t in ("raw/alerts", "raw/requests") for i in lake.files(t)]
    assert paths and all("/tenant_id=acme/" in p for p in paths)
    assert not any("globex" in p for p in paths)


HOSTILE_LABELS = {
    "sql": "'; DROP TABLE alerts; --",
    "quote": 'a"b\'c`d',
    "path": "../../../etc/passwd",
    "windows": "..\\..\\boot.ini",
    "hive": "tenant_id=globex/date=2026-01-01",
    "percent": "%2e%2e%2f%00",
    "glob": "*?[]{}",
    "unicode": "ünïcødé ✓ 日本 \U0001f525",
    "control": "tab\tnewline\nbell\x07",
    "empty": "",
}


def test_label_values_with_sql_and_path_characters_are_stored_verbatim(
    client: TestClient, settings: ServiceSettings, tenant: Credentials
) -> None:
    alert = {"signature": "x'; --", "asset": "../../etc", "labels": HOSTILE_LABELS,
             "message": "DELETE FROM incidents", "source_alert_id": "../../id"}
    accepted(post(client, tenant, alert), new=1)
    (row,) = flushed_rows(client, settings, "raw/alerts")
    assert dict(row["labels"]) == HOSTILE_LABELS
    assert (row["signature"], row["asset"], row["message"], row["source_fingerprint"]) == (
        "x'; --", "../../etc", "DELETE FROM incidents", "../../id")
    # Values never became part of a path: the lake holds only the expected partitions.
    lake = open_lake(settings.resolved_lake_uri)
    day = row["received_at"].strftime("%Y-%m-%d")  # partitioned by receive date
    for table in ("raw/alerts", "raw/requests"):
        for info in lake.files(table):
            relative = info.path.removeprefix(f"{lake.root}/{table}/")
            assert re.fullmatch(rf"tenant_id=acme/date={day}/seg-\d{{20}}-\d{{3}}\.parquet",
                                relative), relative


# ---- operations and documentation --------------------------------------------------------


def test_healthz_and_readyz(client: TestClient) -> None:
    health = client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() | {"buffer_bytes": 0} == {
        "status": "ok", "buffer": "ok", "buffer_bytes": 0, "lake": "ok"}


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_count_accepted_duplicate_and_rejected(
    client: TestClient, tenant: Credentials, other: Credentials
) -> None:
    accepted(post(client, tenant, [ALERT, {"signature": "b"}]), new=2)
    accepted(post(client, tenant, {**ALERT, "source": "nagios"}), new=1)
    accepted(post(client, tenant, ALERT), new=0, duplicates=1)
    accepted(post(client, other, ALERT), new=1)
    refused(post(client, tenant, {"signature": 1}), 422, "invalid_alert")

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    # Events accepted, duplicates included (E_acc), per tenant and source.
    assert _samples(text, "aw_events_accepted_total") == {
        (("source", "generic"), ("tenant", "acme")): 3.0,
        (("source", "nagios"), ("tenant", "acme")): 1.0,
        (("source", "generic"), ("tenant", "globex")): 1.0,
    }
    assert _samples(text, "aw_events_duplicate_total") == {
        (("reason", "body_hash"), ("tenant", "acme")): 1.0}
    assert _samples(text, "aw_requests_rejected_total") == {
        (("reason", "invalid_alert"), ("tenant", "acme")): 1.0}
    # The exposition line itself (label order is the client library's choice).
    line = re.compile(r'^aw_events_accepted_total\{(?=[^}]*tenant="acme")(?=[^}]*source="nagios")'
                      r'[^}]*\} 1\.0$', re.MULTILINE)
    assert line.search(text), text


def test_openapi_documents_the_alerts_route(client: TestClient, tenant: Credentials) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    ref = {"$ref": "#/components/schemas/CanonicalAlertIn"}
    for path in ("/v1/alerts", "/v1/webhooks/generic"):
        operation = doc["paths"][path]["post"]
        content = operation["requestBody"]["content"]["application/json"]
        assert content["schema"] == {"oneOf": [ref, {"type": "array", "items": ref,
                                                     "minItems": 1}]}
        assert {"one", "batch"} <= set(content["examples"])
        assert {"202", "400", "401", "409", "413", "415", "422", "429", "503"} <= set(
            operation["responses"])
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert {"X-Timestamp", "X-Signature", "X-API-Key"} <= headers
    schema = doc["components"]["schemas"]["CanonicalAlertIn"]
    assert schema["required"] == ["signature"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(CanonicalAlertIn.model_fields)
    assert schema["examples"] and "Receipt" in doc["components"]["schemas"]

    # Every documented example is itself accepted by the endpoint.
    examples = doc["paths"]["/v1/alerts"]["post"]["requestBody"]["content"][
        "application/json"]["examples"]
    documents = [e["value"] for e in examples.values()] + schema["examples"]
    for i, example in enumerate(documents):
        response = post(client, tenant, example, timestamp=int(time.time()) - i)
        assert response.status_code == 202, (example, response.text)


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    response = client.get("/v1/alerts")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
    response = client.get("/nope")
    assert response.status_code == 404 and response.json() == {
        "error": "not_found", "detail": "Not Found"}
