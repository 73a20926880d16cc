"""Hostile input (SOURCES.md, last section): each refused with a precise 4xx, nothing stored.

Each hostile case runs against its own app: the case, then a valid marker request (the
service is unharmed), then shutdown, which drains the durable buffer into the lake. After
that the lake must hold the marker and nothing else.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import ServiceSettings
from tests.support.signing import Credentials, signed_headers
from warehouse.lake import open_lake
from warehouse.registry import Registry

MiB = 1024 * 1024
MARKER = b'{"signature":"marker","asset":"canary"}'


def js(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def alert(**fields: Any) -> bytes:
    return js({"signature": "disk_full", "asset": "web01", **fields})


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_labels(depth: int) -> bytes:
    # Depth counted from the top-level object; the innermost value is a string.
    return b'{"signature":"x","labels":' + b'{"a":' * (depth - 1) + b'"v"' + b"}" * depth


@dataclass(frozen=True)
class Hostile:
    """One hostile request: what is sent, what must come back."""

    body: bytes
    status: int
    code: str
    headers: dict[str, str] = field(default_factory=dict)
    signed: bytes | None = None  # what the signature covers, when not the wire body
    chunks: Callable[[], Iterator[bytes]] | None = None  # send as a chunked stream instead


def _chunks_over_limit() -> Iterator[bytes]:
    yield b'{"signature":"x","message":"'
    for _ in range(17):
        yield b"a" * (64 * 1024)  # 1.06 MiB in total, no Content-Length
    yield b'"}'


_BOMB = b'{"signature":"x","message":"' + b"a" * (8 * MiB) + b'"}'
_BIG_BATCH = js([{"signature": "x", "message": "m" * 100}] * 10_001)  # 1.3 MiB
_MAX_BATCH = js([{"signature": "x"}] * 10_001)  # 190 kB
assert len(_BIG_BATCH) > MiB > len(_MAX_BATCH)

HOSTILE: dict[str, Hostile] = {
    # ---- 400: not a JSON document we can trust -------------------------------------------
    # No body at all.
    "empty body": Hostile(b"", 400, "empty_body"),
    # Only whitespace is as empty as nothing.
    "whitespace only": Hostile(b" \r\n\t ", 400, "empty_body"),
    # Cut off mid-string (a client that died while sending).
    "truncated object": Hostile(b'{"signature": "disk_fu', 400, "malformed_json"),
    # Cut off between array elements.
    "truncated array": Hostile(b'[{"signature":"a"},', 400, "malformed_json"),
    # NaN is not JSON (CPython's json would accept it).
    "NaN": Hostile(b'{"signature":"x","labels":{"a":NaN}}', 400, "malformed_json"),
    # Neither are the infinities.
    "Infinity": Hostile(b'{"signature":"x","labels":{"a":Infinity}}', 400, "malformed_json"),
    "-Infinity": Hostile(b'{"signature":"x","labels":{"a":-Infinity}}', 400, "malformed_json"),
    # A number out of double range.
    "1e999": Hostile(b'{"signature":"x","labels":{"a":1e999}}', 400, "malformed_json"),
    "-1e999": Hostile(b'[-1e999]', 400, "malformed_json"),
    # An integer of 5000 digits (CPython refuses > 4300 digits with ValueError).
    "5000-digit integer": Hostile(b'{"signature":"x","n":' + b"7" * 5000 + b"}", 400,
                                  "malformed_json"),
    # Bytes that are not UTF-8.
    "invalid UTF-8": Hostile(b'{"signature":"\xff\xfe"}', 400, "malformed_json"),
    # An overlong encoding of "/" (a classic filter bypass).
    "overlong UTF-8": Hostile(b'{"signature":"\xc0\xaf"}', 400, "malformed_json"),
    # A UTF-8-encoded surrogate (CESU-8 style), which CPython decodes with surrogatepass.
    "encoded surrogate": Hostile(b'{"signature":"\xed\xa0\x80"}', 400, "malformed_json"),
    # A lone high surrogate escape (CPython's json accepts it silently).
    "lone \\ud800": Hostile(b'{"signature":"\\ud800"}', 400, "malformed_json"),
    # A lone low surrogate escape.
    "lone \\udc00": Hostile(b'{"signature":"\\udc00x"}', 400, "malformed_json"),
    # A high surrogate followed by something that is not a low one.
    "unpaired \\ud83d\\u0041": Hostile(b'{"signature":"\\ud83d\\u0041"}', 400,
                                       "malformed_json"),
    # The same key twice at the top level (orjson would silently keep the last).
    "duplicate key": Hostile(b'{"signature":"a","signature":"b"}', 400, "duplicate_key"),
    # ... inside labels.
    "duplicate label key": Hostile(b'{"signature":"x","labels":{"env":"a","env":"b"}}', 400,
                                   "duplicate_key"),
    # ... inside the second element of an array.
    "duplicate key in array": Hostile(b'[{"signature":"a"},{"asset":"a","asset":"b",'
                                      b'"signature":"c"}]', 400, "duplicate_key"),
    # NUL as an escape in a value.
    "NUL escape": Hostile(b'{"signature":"disk\\u0000full"}', 400, "nul_character"),
    # NUL as an escape in a label key.
    "NUL escape in key": Hostile(b'{"signature":"x","labels":{"a\\u0000":"b"}}', 400,
                                 "nul_character"),
    # A raw NUL byte inside a string (an unescaped control character).
    "raw NUL byte": Hostile(b'{"signature":"disk\x00full"}', 400, "malformed_json"),
    # A raw NUL byte after the document.
    "raw NUL after document": Hostile(b'{"signature":"x"}\x00', 400, "malformed_json"),
    # 100 nested arrays: over our 64 levels.
    "depth 100 arrays": Hostile(nested(100), 400, "too_deep"),
    # 100 nested objects under labels.
    "depth 100 objects": Hostile(nested_labels(100), 400, "too_deep"),
    # 1000 levels: past CPython's recursion limit in the duplicate-key pass (regression).
    "depth 1000": Hostile(nested(1000), 400, "too_deep"),
    # 100,000 levels: past orjson's own limit (CPython's json raises RecursionError).
    "depth 100000": Hostile(nested(100_000), 400, "too_deep"),
    # A UTF-8 byte order mark is not JSON text (RFC 8259 says MUST NOT add one).
    "BOM": Hostile(b"\xef\xbb\xbf" + alert(), 400, "malformed_json"),
    # Trailing data after the document (request smuggling of a second document).
    "trailing document": Hostile(alert() + alert(asset="web02"), 400, "malformed_json"),
    # A Content-Encoding that lies: not gzip at all.
    "invalid gzip": Hostile(b"this is not gzip", 400, "bad_encoding",
                            {"Content-Encoding": "gzip"}, signed=b"this is not gzip"),
    # A gzip stream cut in half.
    "truncated gzip": Hostile(gzip.compress(alert())[:20], 400, "bad_encoding",
                              {"Content-Encoding": "gzip"}, signed=alert()),
    # Two gzip members: data after the end of the first stream.
    "gzip with trailing data": Hostile(gzip.compress(alert()) + b"garbage", 400,
                                       "bad_encoding", {"Content-Encoding": "gzip"},
                                       signed=alert()),
    # A Content-Length that is not a number.
    "non-numeric Content-Length": Hostile(alert(), 400, "bad_content_length",
                                          {"Content-Length": "12abc"}),
    # ---- 413: too large, however it is sent ----------------------------------------------
    # Over 1 MiB, declared by Content-Length.
    "over 1 MiB with Content-Length": Hostile(
        b'{"signature":"x","message":"' + b"a" * MiB + b'"}', 413, "payload_too_large"),
    # Over 1 MiB, chunked with no Content-Length: cut off while reading.
    "over 1 MiB chunked": Hostile(b"", 413, "payload_too_large", chunks=_chunks_over_limit),
    # A gzip bomb: 8 kB on the wire, 8 MiB inflated; cut off at the limit.
    "gzip bomb": Hostile(gzip.compress(_BOMB, 9), 413, "payload_too_large",
                         {"Content-Encoding": "gzip"}, signed=_BOMB),
    # The same with zlib ("deflate").
    "deflate bomb": Hostile(zlib.compress(_BOMB, 9), 413, "payload_too_large",
                            {"Content-Encoding": "deflate"}, signed=_BOMB),
    # A Content-Length of 5000 digits: int() would raise (regression: was a 500).
    "5000-digit Content-Length": Hostile(alert(), 413, "payload_too_large",
                                         {"Content-Length": "9" * 5000}),
    # Over 10,000 alerts and over 1 MiB: the size limit answers first.
    "10,001 alerts over 1 MiB": Hostile(_BIG_BATCH, 413, "payload_too_large"),
    # ---- 415: not JSON in UTF-8, or an encoding we do not speak --------------------------
    # Plain text (what SNS sends, but this is the generic route).
    "text/plain": Hostile(alert(), 415, "unsupported_media_type",
                          {"Content-Type": "text/plain"}),
    # A form post.
    "form": Hostile(b"signature=disk_full", 415, "unsupported_media_type",
                    {"Content-Type": "application/x-www-form-urlencoded"}),
    # Multipart.
    "multipart": Hostile(alert(), 415, "unsupported_media_type",
                         {"Content-Type": "multipart/form-data; boundary=x"}),
    # XML.
    "xml": Hostile(b"<alert/>", 415, "unsupported_media_type",
                   {"Content-Type": "application/xml"}),
    # No Content-Type at all.
    "no content type": Hostile(alert(), 415, "unsupported_media_type",
                               {"Content-Type": ""}),
    # JSON, but declared in Latin-1.
    "charset latin-1": Hostile(alert(), 415, "unsupported_media_type",
                               {"Content-Type": "application/json; charset=latin-1"}),
    # ... or UTF-16.
    "charset utf-16": Hostile(alert(), 415, "unsupported_media_type",
                              {"Content-Type": "application/json; charset=utf-16"}),
    # Brotli is not supported.
    "Content-Encoding br": Hostile(b"\x8b\x02\x80hello\x03", 415, "unsupported_encoding",
                                   {"Content-Encoding": "br"}),
    # Nor is zstd.
    "Content-Encoding zstd": Hostile(b"\x28\xb5\x2f\xfd", 415, "unsupported_encoding",
                                     {"Content-Encoding": "zstd"}),
    # Nor stacked encodings.
    "Content-Encoding gzip, gzip": Hostile(gzip.compress(gzip.compress(alert())), 415,
                                           "unsupported_encoding",
                                           {"Content-Encoding": "gzip, gzip"}),
    # ---- 422: valid JSON, not a valid alert: absurd timestamps ---------------------------
    # Year 2999: more than a year ahead.
    "year 2999": Hostile(alert(occurred_at="2999-01-01T00:00:00Z"), 422, "invalid_alert"),
    # Year 275760 (the JavaScript Date maximum): not RFC 3339 at all.
    "year +275760": Hostile(alert(occurred_at="+275760-09-13T00:00:00Z"), 422,
                            "invalid_alert"),
    # Go's zero time on a firing alert (Alertmanager's endsAt quirk, sent as an event time).
    "Go zero time": Hostile(alert(occurred_at="0001-01-01T00:00:00Z", status="firing",
                                  source_alert_id="a-1"), 422, "invalid_alert"),
    # Year 0 does not exist.
    "year 0000": Hostile(alert(occurred_at="0000-01-01T00:00:00Z"), 422, "invalid_alert"),
    # Before 2000-01-01.
    "1999": Hostile(alert(occurred_at="1999-12-31T23:59:59Z"), 422, "invalid_alert"),
    # Two years ahead (not plain clock skew).
    "two years ahead": Hostile(alert(occurred_at="2028-12-01T00:00:00Z"), 422,
                               "invalid_alert"),
    # A unix number instead of a string.
    "number 1700000000": Hostile(alert(occurred_at=1700000000), 422, "invalid_alert"),
    # No offset: a local time of unknown zone.
    "no offset": Hostile(alert(occurred_at="2026-11-26T10:00:00"), 422, "invalid_alert"),
    # February 30th.
    "Feb 30": Hostile(alert(occurred_at="2026-02-30T10:00:00Z"), 422, "invalid_alert"),
    # Hour 24.
    "hour 24": Hostile(alert(occurred_at="2026-11-26T24:00:00Z"), 422, "invalid_alert"),
    # An offset of 24 hours.
    "offset +24:00": Hostile(alert(occurred_at="2026-11-26T10:00:00+24:00"), 422,
                             "invalid_alert"),
    # Ten fractional digits (RFC 3339 allows any number; we accept Go's nine at most).
    "10 fractional digits": Hostile(alert(occurred_at="2026-11-26T10:00:00.1234567891Z"), 422,
                                    "invalid_alert"),
    # Non-ASCII digits that Python's `\d` and int() accept (regression: was stored).
    "full-width digits": Hostile(alert(occurred_at="２０２６-11-26T10:00:00Z"), 422,
                                 "invalid_alert"),
    # A date without a time.
    "date only": Hostile(alert(occurred_at="2026-11-26"), 422, "invalid_alert"),
    # An empty string.
    "empty timestamp": Hostile(alert(occurred_at=""), 422, "invalid_alert"),
    # ---- 422: structurally wrong documents -----------------------------------------------
    # An array where an object belongs.
    "array in array": Hostile(js([[{"signature": "x"}]]), 422, "invalid_alert"),
    # A bare string, number, boolean or null instead of an alert.
    "string document": Hostile(b'"disk_full"', 422, "invalid_alert"),
    "number document": Hostile(b"42", 422, "invalid_alert"),
    "true document": Hostile(b"true", 422, "invalid_alert"),
    "null document": Hostile(b"null", 422, "invalid_alert"),
    # The required signature is missing.
    "missing signature": Hostile(js({"asset": "web01"}), 422, "invalid_alert"),
    # An empty signature.
    "empty signature": Hostile(js({"signature": ""}), 422, "invalid_alert"),
    # A string where labels (an object) belong.
    "labels as string": Hostile(alert(labels="env=prod"), 422, "invalid_alert"),
    # A number where the signature (a string) belongs.
    "signature as number": Hostile(js({"signature": 123}), 422, "invalid_alert"),
    # Label values that are not strings: number, boolean, null, object, array.
    "label value number": Hostile(alert(labels={"port": 8080}), 422, "invalid_alert"),
    "label value bool": Hostile(alert(labels={"prod": True}), 422, "invalid_alert"),
    "label value null": Hostile(alert(labels={"a": None}), 422, "invalid_alert"),
    "label value object": Hostile(alert(labels={"a": {"b": "c"}}), 422, "invalid_alert"),
    "label value array": Hostile(alert(labels={"a": ["b"]}), 422, "invalid_alert"),
    # More than 128 labels.
    "129 labels": Hostile(alert(labels={f"k{i}": "v" for i in range(129)}), 422,
                          "invalid_alert"),
    # An unknown status word (statuses are lower-case words from a closed set).
    "unknown status": Hostile(alert(status="open"), 422, "invalid_alert"),
    "status in capitals": Hostile(alert(status="FIRING"), 422, "invalid_alert"),
    # An unknown severity (label words like P1 are for source adapters, not this contract).
    "unknown severity": Hostile(alert(severity="P1"), 422, "invalid_alert"),
    # An unknown field (a typo would otherwise drop data silently).
    "unknown field": Hostile(alert(sevrity="critical"), 422, "invalid_alert"),
    # A tenant field in the body is unknown too: the tenant comes from the key only.
    "tenant_id in body": Hostile(alert(tenant_id="globex"), 422, "invalid_alert"),
    # An empty array holds no alert.
    "empty array": Hostile(b"[]", 422, "invalid_alert"),
    # 10,001 small alerts (under 1 MiB): over the per-request count.
    "10,001 alerts": Hostile(_MAX_BATCH, 422, "invalid_alert"),
    # One bad element refuses the whole batch (no partial acceptance).
    "one bad element": Hostile(js([{"signature": "a"}, {"signature": "b", "severity": "x"}]),
                               422, "invalid_alert"),
}


def signed_request(cred: Credentials, case: Hostile) -> dict[str, Any]:
    """Request arguments: the case's body and headers, signed so auth is never the reason."""
    covered = case.signed if case.signed is not None else case.body
    if case.chunks is not None:
        covered = b"".join(case.chunks())
    headers = {**signed_headers(cred, covered), **case.headers}
    if headers.get("Content-Type") == "":
        del headers["Content-Type"]
    content: Any = case.chunks() if case.chunks is not None else case.body
    return {"content": content, "headers": headers}


@contextmanager
def serving(settings: ServiceSettings) -> Iterator[TestClient]:
    """An app of its own; leaving the block drains the buffer into the lake."""
    with TestClient(create_app(settings)) as client:
        yield client


def lake_rows(settings: ServiceSettings, table: str) -> list[dict[str, Any]]:
    return open_lake(settings.resolved_lake_uri).read_table(table).to_pylist()


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code, body
    assert body["detail"]


def assert_only_marker_stored(settings: ServiceSettings, marker_ids: list[str]) -> None:
    """After shutdown (buffer drained): the lake holds the marker request and nothing else."""
    assert [r["event_id"] for r in lake_rows(settings, "raw/alerts")] == marker_ids
    requests = lake_rows(settings, "raw/requests")
    assert [r["body"] for r in requests] == [MARKER]
    assert lake_rows(settings, "raw/duplicates") == []
    assert not list(settings.buffer_dir.glob("seg-*")), "records left in the buffer"


def send_marker(client: TestClient, cred: Credentials) -> list[str]:
    response = client.post("/v1/alerts", content=MARKER, headers=signed_headers(cred, MARKER))
    assert response.status_code == 202, response.text
    ids: list[str] = response.json()["ids"]
    assert len(ids) == 1
    return ids


@pytest.mark.parametrize("case", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_input_is_refused_and_nothing_is_stored(
    settings: ServiceSettings, tenant: Credentials, case: Hostile
) -> None:
    with serving(settings) as client:
        response = client.post("/v1/alerts", **signed_request(tenant, case))
        refused(response, case.status, case.code)
        # The service is unharmed: the next valid request is accepted.
        marker = send_marker(client, tenant)
        metrics = client.get("/metrics").text
    assert f'reason="{case.code}"' in metrics
    assert_only_marker_stored(settings, marker)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        # gzip, the common case.
        ("gzip", gzip.compress),
        # "deflate" as HTTP defines it: zlib-wrapped.
        ("deflate", zlib.compress),
        # Encoding names are case-insensitive.
        ("GZip", gzip.compress),
    ],
)
def test_valid_compressed_body_is_accepted_and_archived_inflated(
    settings: ServiceSettings, tenant: Credentials, encoding: str,
    compress: Callable[[bytes], bytes],
) -> None:
    document = js([{"signature": "disk_full", "asset": f"web{i}"} for i in range(50)])
    headers = {**signed_headers(tenant, document), "Content-Encoding": encoding}
    with serving(settings) as client:
        response = client.post("/v1/alerts", content=compress(document), headers=headers)
        assert response.status_code == 202, response.text
        receipt = response.json()
        assert receipt["accepted"] == 50 and receipt["duplicates"] == 0
    # The signature covers the inflated document, and that is what the archive keeps.
    (request,) = lake_rows(settings, "raw/requests")
    assert request["body"] == document
    assert sorted(r["event_id"] for r in lake_rows(settings, "raw/alerts")) == sorted(
        receipt["ids"])


def test_largest_accepted_sizes(settings: ServiceSettings, tenant: Credentials) -> None:
    """The limits are inclusive: exactly 10,000 alerts, and a body of exactly 1 MiB."""
    batch = js([{"signature": f"s{i}"} for i in range(10_000)])
    # JSON whitespace is body too: a valid document padded to exactly 1 MiB.
    exact = alert(message="m" * 16_384) + b" " * (MiB - len(alert(message="m" * 16_384)))
    assert len(exact) == MiB
    with serving(settings) as client:
        for body, count in ((batch, 10_000), (exact, 1)):
            response = client.post("/v1/alerts", content=body,
                                   headers=signed_headers(tenant, body))
            assert response.status_code == 202, response.text[:200]
            assert response.json()["accepted"] == count
        # The message limit (16 KiB) is a 422, not a size problem.
        long_message = js({"signature": "x", "message": "m" * 16_385})
        response = client.post("/v1/alerts", content=long_message,
                                headers=signed_headers(tenant, long_message))
        refused(response, 422, "invalid_alert")
    assert len(lake_rows(settings, "raw/alerts")) == 10_001


# ---- rate limits -------------------------------------------------------------------------


def test_rate_limit_refuses_with_retry_after_and_spares_other_tenants(
    settings: ServiceSettings, tenant: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Registry.open(settings) as registry:
        issued = registry.create_tenant("globex", name="Globex")
        registry.set_options("acme", rate_limit_per_second=1.0, rate_limit_burst=2)
    other = Credentials(issued.tenant_id, issued.api_key, issued.hmac_secret)

    def send(cred: Credentials, doc: Any, headers: dict[str, str] | None = None) -> Any:
        body = js(doc)
        return client.post("/v1/alerts", content=body,
                           headers=headers or signed_headers(cred, body))

    with serving(settings) as client:
        # A frozen clock for the token buckets, so the test does not depend on its speed.
        now = [1_000.0]
        monkeypatch.setattr(client.app.state.runtime.limiter, "clock", lambda: now[0])
        # The burst of 2 is spent by two single-event requests.
        assert send(tenant, {"signature": "a1"}).status_code == 202
        assert send(tenant, {"signature": "a2"}).status_code == 202
        # The third is over the rate: 429, told to come back in one second.
        third = js({"signature": "a3"})
        third_headers = signed_headers(tenant, third)
        response = client.post("/v1/alerts", content=third, headers=third_headers)
        refused(response, 429, "rate_limited")
        assert response.headers["retry-after"] == "1"
        # Another tenant is unaffected by acme's bucket.
        for i in range(5):
            assert send(other, {"signature": f"g{i}"}).status_code == 202
        # After Retry-After the very same signed request is accepted (not a replay).
        now[0] += 1.0
        response = client.post("/v1/alerts", content=third, headers=third_headers)
        assert response.status_code == 202, response.text
        # A batch larger than the burst passes once the bucket is full, then owes tokens.
        now[0] += 10.0
        batch = [{"signature": f"b{i}"} for i in range(5)]
        assert send(tenant, batch).status_code == 202
        response = send(tenant, {"signature": "after batch"})
        refused(response, 429, "rate_limited")
        assert response.headers["retry-after"] == "4"  # 3 tokens of debt + 1 needed, at 1/s
    stored = lake_rows(settings, "raw/alerts")
    acme = sorted(r["signature"] for r in stored if r["tenant_id"] == "acme")
    assert acme == ["a1", "a2", "a3", "b0", "b1", "b2", "b3", "b4"]
    assert sum(r["tenant_id"] == "globex" for r in stored) == 5


# ---- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/webhooks/..%2F..%2Fetc",  # encoded path traversal
        "/v1/webhooks/..%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/webhooks/%2e%2e",  # encoded dot-dot segment
        "/v1/webhooks/%252e%252e%252f",  # double-encoded
        "/v1/webhooks/acme';drop",  # SQL injection in the segment
        "/v1/webhooks/acme%27%3B%20DROP%20TABLE%20tenants%3B--",
        "/v1/webhooks/generic%00",  # NUL after a valid source
        "/v1/webhooks/%ff%fe",  # bytes that are not UTF-8
        "/v1/webhooks/generic;tenant=globex",  # matrix parameter
        "/v1/webhooks/${jndi:ldap:%2F%2Fevil}",  # log4shell-style text
        "/v1/webhooks/" + "a" * 4000,  # very long segment
        "/v1/webhooks/generic/extra",  # a valid route plus a segment
        "/v1/alerts%2F..%2F..%2Fadmin",
        "/v1/tenants/globex/alerts",  # a tenant in the URL is never a route
    ],
)
def test_hostile_url_segments_are_404_json(
    settings: ServiceSettings, tenant: Credentials, path: str
) -> None:
    body = alert()
    with serving(settings) as client:
        response = client.post(path, content=body, headers=signed_headers(tenant, body))
        refused(response, 404, "not_found")
        marker = send_marker(client, tenant)
    assert_only_marker_stored(settings, marker)


def test_tenant_in_query_string_is_ignored(
    settings: ServiceSettings, tenant: Credentials
) -> None:
    """One tenant's credential aimed at another tenant: the key decides, nothing else."""
    with Registry.open(settings) as registry:
        registry.create_tenant("globex", name="Globex")
    body = alert()
    with serving(settings) as client:
        response = client.post("/v1/alerts?tenant_id=globex&tenant=globex", content=body,
                               headers=signed_headers(tenant, body))
        assert response.status_code == 202, response.text
    assert [r["tenant_id"] for r in lake_rows(settings, "raw/alerts")] == ["acme"]


def test_refused_signed_request_cannot_be_replayed_into_acceptance(
    settings: ServiceSettings, tenant: Credentials
) -> None:
    """A permanent refusal (422) keeps its signature: re-sending it is a replay (409)."""
    body = alert(severity="P1")
    headers = signed_headers(tenant, body, timestamp=int(time.time()))
    with serving(settings) as client:
        refused(client.post("/v1/alerts", content=body, headers=headers), 422, "invalid_alert")
        refused(client.post("/v1/alerts", content=body, headers=headers), 409, "replay")
        marker = send_marker(client, tenant)
    assert_only_marker_stored(settings, marker)
