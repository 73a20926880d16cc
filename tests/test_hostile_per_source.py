"""SOURCES.md's hostile input against every keyed webhook route: a precise 4xx, nothing
stored, and the same route accepting a valid notification right after."""

from __future__ import annotations

import base64
import gzip
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import ServiceSettings
from tests.support.servers import wait_for
from tests.support.signing import Credentials, signed_headers
from warehouse.lake import open_lake
from warehouse.registry import Registry

FIXTURES = Path(__file__).parent / "fixtures"
# route → a valid notification of that source
ROUTES = {
    "alertmanager": "alertmanager/group_mixed.json",
    "grafana": "grafana/firing_offsets.json",
    "datadog": "datadog/custom_triggered.json",
    "cloudwatch-eventbridge": "cloudwatch-eventbridge/eventbridge_alarm.json",
    "zabbix": "zabbix/problem.json",
}
JSON = "application/json"

# (name, body, content type, expected status, expected error code)
HOSTILE = [
    ("empty", b"", JSON, 400, "empty_body"),
    ("truncated", b'{"alerts": [{"status": "fir', JSON, 400, "malformed_json"),
    ("nan", b'{"alerts": NaN}', JSON, 400, "malformed_json"),
    ("huge number", b'{"v": 1e999}', JSON, 400, "malformed_json"),
    ("duplicate keys", b'{"version": "4", "version": "4"}', JSON, 400, "duplicate_key"),
    ("deep", b"[" * 100 + b"]" * 100, JSON, 400, "too_deep"),
    ("invalid utf-8", b'{"a": "\xff"}', JSON, 400, "malformed_json"),
    ("lone surrogate", b'{"a": "\\ud800"}', JSON, 400, "malformed_json"),
    ("nul", b'{"a": "x\\u0000"}', JSON, 400, "nul_character"),
    ("array for object", b"[1, 2, 3]", JSON, 422, "invalid_alert"),
    ("wrong type", b'"just a string"', JSON, 422, "invalid_alert"),
    ("xml", b"<alert/>", "application/xml", 415, "unsupported_media_type"),
]


def headers_for(route: str, cred: Credentials, body: bytes, content_type: str) -> dict[str, str]:
    if route == "zabbix":
        return {**signed_headers(cred, body), "Content-Type": content_type}
    if route == "alertmanager":  # basic auth as Alertmanager's http_config can send it
        token = base64.b64encode(f"{cred.tenant_id}:{cred.api_key}".encode()).decode()
        return {"Authorization": f"Basic {token}", "Content-Type": content_type}
    return {"X-API-Key": cred.api_key, "Content-Type": content_type}


Served = tuple[TestClient, Credentials, ServiceSettings]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One app for the module: refusals must leave it unharmed for the last test."""
    data = tmp_path_factory.mktemp("hostile") / "data"
    settings = ServiceSettings(data_dir=data, flush_max_age_seconds=0.2, flusher="thread")
    with Registry.open(settings) as registry:
        issued = registry.create_tenant("acme", name="Acme")
        registry.create_tenant("globex", name="Globex")
    cred = Credentials(issued.tenant_id, issued.api_key, issued.hmac_secret)
    with TestClient(create_app(settings)) as client:
        yield client, cred, settings


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize(("name", "body", "ctype", "status", "code"), HOSTILE,
                         ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_refused_precisely(
    served: Served, route: str, name: str,
    body: bytes, ctype: str, status: int, code: str,
) -> None:
    client, cred, _ = served
    response = client.post(f"/v1/webhooks/{route}", content=body,
                           headers=headers_for(route, cred, body, ctype))
    assert (response.status_code, response.json()["error"]) == (status, code), response.text


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_oversized_and_inflating_bodies_are_refused(
    served: Served, route: str
) -> None:
    client, cred, _ = served
    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    response = client.post(f"/v1/webhooks/{route}", content=big,
                           headers=headers_for(route, cred, big, JSON))
    assert response.status_code == 413
    bomb = gzip.compress(big)
    headers = {**headers_for(route, cred, big, JSON), "Content-Encoding": "gzip"}
    assert client.post(f"/v1/webhooks/{route}", content=bomb, headers=headers).status_code == 413


@pytest.mark.parametrize("route", ["alertmanager", "cloudwatch-eventbridge"])
def test_another_tenants_name_with_my_key_is_refused(
    served: Served, route: str
) -> None:
    """Basic auth whose user is another tenant than the key's own: 401, whoever it names."""
    client, cred, _ = served
    body = (FIXTURES / ROUTES[route]).read_bytes()
    token = base64.b64encode(f"globex:{cred.api_key}".encode()).decode()
    response = client.post(f"/v1/webhooks/{route}", content=body,
                           headers={"Authorization": f"Basic {token}", "Content-Type": JSON})
    assert response.status_code == 401


@pytest.mark.parametrize("segment", ["..%2F..%2Fetc", "acme';drop table x;--", "ALERTMANAGER",
                                     "alertmanager%00", "%2e%2e"])
def test_unknown_or_hostile_source_segments_are_404(
    served: Served, segment: str
) -> None:
    client, cred, _ = served
    response = client.post(f"/v1/webhooks/{segment}", content=b"{}",
                           headers={"X-API-Key": cred.api_key, "Content-Type": JSON})
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_only_valid_notifications_were_stored_and_each_route_still_accepts(
    served: Served,
) -> None:
    """Runs last in this module: after all the refusals, a valid notification per route is
    accepted, and the lake holds exactly those events, all under the key's tenant."""
    client, cred, settings = served
    accepted = 0
    for route, fixture in sorted(ROUTES.items()):
        body = (FIXTURES / fixture).read_bytes()
        response = client.post(f"/v1/webhooks/{route}", content=body,
                               headers=headers_for(route, cred, body, JSON))
        assert response.status_code == 202, (route, response.text)
        accepted += response.json()["accepted"]
    lake = open_lake(settings.resolved_lake_uri)

    def stored() -> list[dict[str, object]] | None:
        rows = lake.read_table("raw/alerts").to_pylist()
        return rows if len(rows) >= accepted else None

    rows = wait_for(stored, 20, "the valid notifications in the lake")
    time.sleep(0.5)  # nothing more may arrive
    rows = lake.read_table("raw/alerts").to_pylist()
    assert len(rows) == accepted
    assert {r["tenant_id"] for r in rows} == {"acme"}
