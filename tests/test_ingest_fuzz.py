"""Property-based fuzzing of the ingest edge: whatever a client sends, never a 5xx.

Hypothesis drives arbitrary bytes, arbitrary JSON values, mutations of a valid alert and
arbitrary header values through the in-process app; schemathesis then generates requests from
the app's own OpenAPI schema (positive and negative). Every request is signed over the exact
bytes sent (unless the case is about signing), so bodies get past auth and reach the parser.
Example counts are bounded so the whole file runs in well under a minute.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any

import httpx
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.python.asgi import shutdown_lifespans

from service.app import create_app
from service.config import ServiceSettings
from tests.support.signing import Credentials, signed_headers

FUZZ = hsettings(
    max_examples=300,
    deadline=None,
    # One app (the `client` fixture) serves every example of a test, on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)
ID = re.compile(r"^[0-9a-f]{32}$")
VALID = {
    "source_alert_id": "disk-web01-var",
    "delivery_id": "7f9c2a10",
    "asset": "web01",
    "signature": "disk_full",
    "severity": "critical",
    "status": "firing",
    "occurred_at": "2026-11-26T10:00:00.123456789+01:00",
    "message": "/var is 97% full",
    "labels": {"env": "prod", "mount": "/var"},
    "source": "nagios",
}


# ---- checks ------------------------------------------------------------------------------


def check_answer(response: httpx.Response, objects: int | None = None) -> None:
    """No 5xx; a 2xx is a well-formed receipt; anything else a well-formed error."""
    assert response.status_code < 500, response.text
    body = response.json()
    # Shown by --hypothesis-show-statistics: proof the fuzz reaches every path, 202 included.
    event(f"{response.status_code} {body.get('error', 'receipt')}")
    if response.status_code == 202:
        assert set(body) == {"request_id", "accepted", "duplicates", "ids", "duplicate_events"}
        assert ID.match(body["request_id"])
        assert body["accepted"] == len(body["ids"])
        assert body["duplicates"] == len(body["duplicate_events"])
        assert all(ID.match(i) for i in body["ids"])
        if objects is not None:
            assert body["accepted"] + body["duplicates"] == objects
        for dup in body["duplicate_events"]:
            assert dup["reason"] in ("delivery_id", "body_hash")
            assert ID.match(dup["event_id"]) and ID.match(dup["duplicate_of"])
    else:
        assert 400 <= response.status_code < 500, response.status_code
        assert set(body) == {"error", "detail"} and isinstance(body["error"], str)


_SKEW = itertools.count()


def fresh_timestamp() -> int:
    """A valid X-Timestamp that differs from the last few hundred: hypothesis repeats
    bodies, and the same body signed in the same second would only test the replay cache."""
    return int(time.time()) - next(_SKEW) % 250


def post_signed(client: TestClient, cred: Credentials, body: bytes) -> httpx.Response:
    headers = signed_headers(cred, body, timestamp=fresh_timestamp())
    return client.post("/v1/alerts", content=body, headers=headers)


# ---- strategies --------------------------------------------------------------------------

# Any code point, surrogates included (st.text() alone leaves them out).
any_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=12)
big_ints = st.integers(min_value=-(10**400), max_value=10**400)
scalars = (st.none() | st.booleans() | st.integers() | big_ints
           | st.floats(allow_nan=True, allow_infinity=True) | any_text)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


def to_json_bytes(value: Any, ascii_only: bool) -> bytes:
    """Serialize like a sloppy client: NaN allowed; surrogates as escapes or as raw bytes."""
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


timestamps = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.from_regex(r"\A[0-9+-]{4,7}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
                  r"(\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:?[0-9]{2})?\Z"),
    any_text,
)


@st.composite
def mutated_alerts(draw: st.DrawFn) -> Any:
    """A valid alert with a few fields changed, removed or added; sometimes in an array."""
    alert: dict[str, Any] = dict(VALID)
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from([*VALID, "extra", "labels"]) | any_text)
        action = draw(st.sampled_from(["delete", "value", "text", "timestamp", "labels"]))
        if action == "delete":
            alert.pop(field, None)
        elif action == "value":
            alert[field] = draw(json_values)
        elif action == "text":
            alert[field] = draw(any_text)
        elif action == "timestamp":
            alert["occurred_at"] = draw(timestamps)
        else:
            alert["labels"] = draw(st.dictionaries(any_text, any_text | json_values,
                                                   max_size=5))
    shape = draw(st.sampled_from(["object", "array", "repeated"]))
    if shape == "array":
        return [alert, {"signature": draw(any_text)}]
    if shape == "repeated":
        return [alert, alert]
    return alert


def _objects(document: Any) -> int:
    return len(document) if isinstance(document, list) else 1


# ---- hypothesis over the in-process app --------------------------------------------------


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """The bytes of a valid alert with a few bytes inserted, deleted or overwritten."""
    data = bytearray(to_json_bytes(draw(st.sampled_from([VALID, [VALID, VALID]])), True))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(st.binary(min_size=1, max_size=4)
                     | st.sampled_from([b"\\", b'"', b"{", b"]", b"\\u0000", b"\\ud800",
                                        b"\x00", b"\xed\xa0\x80", b"\xff", b"1e999", b",",
                                        b'"signature":"x",']))
        if op == "insert":
            data[at:at] = chunk
        elif op == "delete":
            del data[at : at + len(chunk)]
        else:
            data[at : at + len(chunk)] = chunk
    return bytes(data)


@FUZZ
@given(body=st.binary(max_size=512)
       | st.binary(max_size=64).map(lambda b: b'{"signature":"' + b)
       | mutated_bytes())
def test_arbitrary_bytes_never_fail_the_server(
    client: TestClient, tenant: Credentials, body: bytes
) -> None:
    check_answer(post_signed(client, tenant, body))


@FUZZ
@given(value=json_values, wrap=st.sampled_from(["bare", "signature", "labels", "array"]),
       ascii_only=st.booleans())
def test_arbitrary_json_values_never_fail_the_server(
    client: TestClient, tenant: Credentials, value: Any, wrap: str, ascii_only: bool
) -> None:
    document = {
        "bare": value,
        "signature": {"signature": value},
        "labels": {"signature": "x", "labels": value},
        "array": [value],
    }[wrap]
    try:
        body = to_json_bytes(document, ascii_only)
    except ValueError:  # an integer too long for CPython to print: send the bytes raw
        body = b'{"signature":"x","n":' + b"9" * 5000 + b"}"
    check_answer(post_signed(client, tenant, body))


@FUZZ
@given(document=mutated_alerts(), ascii_only=st.booleans())
def test_mutated_alerts_never_fail_the_server(
    client: TestClient, tenant: Credentials, document: Any, ascii_only: bool
) -> None:
    body = to_json_bytes(document, ascii_only)
    check_answer(post_signed(client, tenant, body), objects=_objects(document))


VALID_HEADER = "<valid>"


def _header(*near_misses: str) -> st.SearchStrategy[bytes | str | None]:
    """Half the time the right value, else absent, a near miss, or arbitrary bytes/text."""
    wrong = st.one_of(st.none(), st.sampled_from(near_misses), st.binary(max_size=80),
                      st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                              max_size=40))
    return st.one_of(st.just(VALID_HEADER), wrong)


@FUZZ
@given(
    timestamp=_header("0", "-1", "+1700000000", "1e9", " 1700000000", "99999999999999",
                      "1700000000.5", "0x65"),
    skew=st.integers(-400, 400),
    signature=_header("sha256=", "sha256=zz", "sha1=00", "SHA256=00", "sha256=" + "0" * 64,
                      "sha256=" + "0" * 63, "sha256= 00"),
    content_type=_header("application/json; charset=UTF-8", 'application/json;charset="utf-8"',
                         "APPLICATION/JSON", "application/json;", "application/json; charset=",
                         "application/json, text/plain", "application/jsonp", "text/json",
                         "application/json; charset=utf8"),
    content_encoding=_header("identity", "IDENTITY", "", " ", "gzip", "deflate", "x-gzip",
                             "br", "gzip, identity", "chunked"),
    n=st.integers(0, 10**9),
)
def test_arbitrary_header_values_never_fail_the_server(
    client: TestClient, tenant: Credentials, timestamp: bytes | str | None, skew: int,
    signature: bytes | str | None, content_type: bytes | str | None,
    content_encoding: bytes | str | None, n: int,
) -> None:
    body = json.dumps({"signature": "disk_full", "asset": f"web{n}"}).encode()
    # A valid timestamp may still be skewed past the ±300 s window.
    ts = int(time.time()) + skew
    good = signed_headers(tenant, body, timestamp=ts)
    valid = {"X-Timestamp": good["X-Timestamp"], "X-Signature": good["X-Signature"],
             "Content-Type": "application/json", "Content-Encoding": "identity"}
    headers: dict[str, Any] = {"Authorization": good["Authorization"]}
    for name, value in (("X-Timestamp", timestamp), ("X-Signature", signature),
                        ("Content-Type", content_type), ("Content-Encoding", content_encoding)):
        if value is not None:
            headers[name] = valid[name] if value == VALID_HEADER else value
    check_answer(client.post("/v1/alerts", content=body, headers=headers), objects=1)


# ---- schemathesis against the app's own OpenAPI schema -----------------------------------


SCHEMATHESIS = hsettings(
    max_examples=100,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


def test_schemathesis_no_server_errors(settings: ServiceSettings, tenant: Credentials) -> None:
    """Positive and negative requests generated from /openapi.json, signed over the exact
    serialized body (or, for half of them, sent with the generated headers as they are)."""
    app = create_app(settings)
    # Loading the schema starts the app's lifespan inside schemathesis' ASGI client.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: dict[str, set[int]] = {}
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            strategy = (operation.as_strategy(GenerationMode.POSITIVE)
                        | operation.as_strategy(GenerationMode.NEGATIVE))

            @SCHEMATHESIS
            @given(case=strategy, sign=st.booleans())
            def run(case: schemathesis.Case, sign: bool) -> None:
                kwargs: dict[str, Any] = {}
                if case.method == "POST" and sign:
                    if isinstance(case.body, NotSet):
                        body = b""
                    elif isinstance(case.body, bytes):  # negative mode: not JSON at all
                        body = case.body
                    else:
                        body = json.dumps(case.body, allow_nan=True).encode(
                            "utf-8", "surrogatepass")
                    headers = {k: v for k, v in (case.headers or {}).items()
                               if k.lower() not in ("x-api-key", "content-type")}
                    headers.update(signed_headers(tenant, body,
                                                  timestamp=fresh_timestamp()))
                    kwargs = {"headers": headers, "data": body}
                response = case.call(**kwargs)
                case.validate_response(response, checks=[not_a_server_error])
                seen.setdefault(case.operation.label, set()).add(response.status_code)
                if case.method == "POST" and response.status_code == 202:
                    receipt = response.json()
                    assert receipt["accepted"] + receipt["duplicates"] == _objects(case.body)
                    assert receipt["accepted"] == len(receipt["ids"])

            run()
    finally:
        shutdown_lifespans()
    # The generated requests reached every operation, and the ingest ones got past auth.
    assert set(seen) == {"POST /v1/alerts", "POST /v1/webhooks/generic", "GET /healthz",
                         "GET /readyz", "GET /metrics"}
    assert 202 in seen["POST /v1/alerts"] | seen["POST /v1/webhooks/generic"]
    assert max(max(codes) for codes in seen.values()) < 500
