"""`POST /v1/webhooks/cloudwatch-sns` end to end in-process: SNS signature, topic → tenant,
confirmations, the durable intake, MessageId duplicates; no network access."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service import sns
from service.app import create_app
from service.config import ServiceSettings
from tests.support.servers import wait_for
from tests.support.signing import Credentials
from tests.test_sns import CERT_NAME, SNS_CERT, envelope, sign
from warehouse.lake import open_lake
from warehouse.registry import Registry

ROUTE = "/v1/webhooks/cloudwatch-sns"
TEXT = {"Content-Type": "text/plain; charset=UTF-8"}


@pytest.fixture
def sns_settings(settings: ServiceSettings, tenant: Credentials, tmp_path: Path) -> ServiceSettings:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / CERT_NAME).write_bytes(SNS_CERT)
    pinned = settings.model_copy(update={"sns_cert_dir": certs})
    with Registry.open(pinned) as registry:
        registry.add_sns_topic("acme", "arn:aws:sns:us-east-1:123456789012:alarms")
    return pinned


@pytest.fixture
def sns_client(sns_settings: ServiceSettings) -> Iterator[TestClient]:
    with TestClient(create_app(sns_settings)) as client:
        yield client


def body(fixture: str) -> bytes:
    return json.dumps(sign(envelope(fixture))).encode()


def test_a_signed_alarm_lands_for_the_topic_owner_once(
    sns_client: TestClient, sns_settings: ServiceSettings
) -> None:
    raw = body("notification_alarm.json")
    first = sns_client.post(ROUTE, content=raw, headers=TEXT)
    assert first.status_code == 202, first.text
    assert first.json()["accepted"] == 1
    # SNS redelivers the same MessageId: a duplicate (R2, delivery id), never a second event.
    again = sns_client.post(ROUTE, content=raw, headers=TEXT)
    assert again.status_code == 202, again.text
    assert again.json()["duplicates"] == 1
    assert again.json()["duplicate_events"][0]["reason"] == "delivery_id"
    lake = open_lake(sns_settings.resolved_lake_uri)
    rows = wait_for(lambda: lake.read_table("raw/alerts").to_pylist(), 20, "the alarm in the lake")
    assert [(r["tenant_id"], r["source"]) for r in rows] == [("acme", "cloudwatch")]


def test_wrong_media_type_and_unknown_topic_are_refused(sns_client: TestClient) -> None:
    raw = body("notification_alarm.json")
    assert sns_client.post(ROUTE, content=raw,
                           headers={"Content-Type": "application/json"}).status_code == 415
    unknown = sns_client.post(ROUTE, content=body("notification_metric_math.json"),
                              headers=TEXT)
    assert unknown.status_code == 403, unknown.text


def test_subscription_is_confirmed_after_verification(
    sns_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    confirmed: list[str] = []

    async def confirm(url: str) -> None:
        confirmed.append(url)

    monkeypatch.setattr(sns, "confirm_subscription", confirm)
    response = sns_client.post(ROUTE, content=body("subscription_confirmation.json"),
                               headers=TEXT)
    assert response.status_code == 200, response.text
    assert len(confirmed) == 1 and confirmed[0].startswith("https://sns.us-east-1.amazonaws.com/")
