"""Every source end to end through the real service process: each tool's notification,
authenticated its own way, lands in the lake as canonical events of the right source."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from tests.support.servers import IngestServer, create_tenant, read_rows, wait_for
from tests.support.signing import signed_headers
from tests.test_sns import CERT_NAME, SNS_CERT, envelope, sign
from warehouse.config import PlatformSettings
from warehouse.lake import open_lake
from warehouse.registry import Registry

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parents[1] / "fixtures"
JSON = {"Content-Type": "application/json"}


def test_every_source_lands_in_the_lake(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cred = create_tenant(data, "acme")
    with Registry.open(PlatformSettings(data_dir=data)) as registry:
        registry.add_sns_topic("acme", "arn:aws:sns:us-east-1:123456789012:alarms")
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / CERT_NAME).write_bytes(SNS_CERT)
    env = {"AW_DATA_DIR": str(data), "AW_FLUSH_MAX_AGE_SECONDS": "0.2",
           "AW_SNS_CERT_DIR": str(certs)}
    basic = base64.b64encode(f"acme:{cred.api_key}".encode()).decode()
    posts = [
        ("alertmanager", "alertmanager/group_mixed.json", {"Authorization": f"Basic {basic}"}),
        ("grafana", "grafana/firing_offsets.json", {"Authorization": f"Bearer {cred.api_key}"}),
        ("datadog", "datadog/custom_triggered.json", {"X-API-Key": cred.api_key}),
        ("cloudwatch-eventbridge", "cloudwatch-eventbridge/eventbridge_alarm.json",
         {"X-API-Key": cred.api_key}),
        ("zabbix", "zabbix/problem.json", None),
    ]
    with IngestServer(env, tmp_path / "serve.log") as server, httpx.Client(
        base_url=server.url, timeout=10
    ) as client:
        for route, fixture, headers in posts:
            body = (FIXTURES / fixture).read_bytes()
            sent = signed_headers(cred, body) if headers is None else {**JSON, **headers}
            response = client.post(f"/v1/webhooks/{route}", content=body, headers=sent)
            assert response.status_code == 202, (route, response.text)
        sns_body = json.dumps(sign(envelope("notification_alarm.json"))).encode()
        response = client.post("/v1/webhooks/cloudwatch-sns", content=sns_body,
                               headers={"Content-Type": "text/plain; charset=UTF-8"})
        assert response.status_code == 202, response.text

        lake = open_lake(f"file://{data / 'lake'}")
        expected = {"alertmanager", "grafana", "datadog", "zabbix", "cloudwatch"}

        def sources() -> set[str] | None:
            try:
                rows = read_rows(lake, "raw/alerts", ["source", "tenant_id"])
            except FileNotFoundError:
                return None
            found = {r["source"] for r in rows}
            return found if found >= expected and {r["tenant_id"] for r in rows} == {"acme"} \
                else None

        assert wait_for(sources, 30, lambda: f"sources in the lake; log:\n{server.log()}") \
            == expected
        # one flush writes raw/alerts, then raw/requests: wait for the second table too
        wanted = {route for route, _, _ in posts} | {"cloudwatch-sns"}

        def routes() -> set[str] | None:
            try:
                found = {r["route"] for r in read_rows(lake, "raw/requests", ["route"])}
            except FileNotFoundError:
                return None
            return found if found >= wanted else None

        assert wait_for(routes, 30, lambda: f"routes in the lake; log:\n{server.log()}") \
            == wanted
