"""CloudWatch alarms via SNS (the alarm JSON of `Message`) and via EventBridge → canonical
events, the same fingerprint on both paths, refusals, and the `cloudwatch-eventbridge` route."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.adapters import WEBHOOKS, cloudwatch
from service.adapters.common import AdapterError, body_hash
from service.config import ServiceSettings
from tests.support.inprocess import alert_rows
from tests.support.signing import Credentials
from warehouse.timestamps import format_us, now_us, parse_rfc3339_us

# SNS alarm JSON (the decoded `Message`) in fixtures/cloudwatch; EventBridge events in the
# folder of their route, where the adapter contract suite finds them too.
FIXTURES = Path(__file__).parent / "fixtures" / "cloudwatch"
EVENTBRIDGE = Path(__file__).parent / "fixtures" / "cloudwatch-eventbridge"
RECEIVED = parse_rfc3339_us("2026-11-26T11:05:00Z")
ROUTE = "/v1/webhooks/cloudwatch-eventbridge"

ZURICH_ARN = "arn:aws:cloudwatch:eu-central-2:123456789012:alarm:Zürich web CPU > 90%"
ALB_ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-alb-5xx-rate"
ALB = "app/checkout-alb/50dc6c495c0c9188"  # sent as `app\/checkout-alb\/…` via SNS
CPU_REASON = ("Threshold Crossed: 1 out of the last 1 datapoints [97.5 (26/11/26 09:59:00)] was "
              "greater than the threshold (90.0) (minimum 1 datapoint for OK -> ALARM "
              "transition).")
ZURICH = {
    "source_fingerprint": ZURICH_ARN, "source_alert_id": ZURICH_ARN,
    "signature": "Zürich web CPU > 90%",
    "severity": "high", "raw_severity": "ALARM", "status": "firing", "asset": "i-0abc1234def567890",
    "occurred_at_us": parse_rfc3339_us("2026-11-26T10:00:00.123Z"), "message": CPU_REASON,
    "labels": {"InstanceId": "i-0abc1234def567890", "region": "eu-central-2",
               "account": "123456789012", "namespace": "AWS/EC2", "metric": "CPUUtilization"},
}
ALB_LABELS = {"LoadBalancer": ALB, "region": "us-east-1", "account": "123456789012",
              "namespace": "AWS/ApplicationELB", "metric": "HTTPCode_Target_5XX_Count"}

SNS_CASES = [
    # `\/` and `\u00fc` escapes in the Message JSON; `+0000` offset with milliseconds.
    ("sns_alarm.json", ZURICH),
    # Metric math: no Trigger.Dimensions, the first dimension in Trigger.Metrics; OK resolves.
    ("sns_metric_math.json", {
        "source_fingerprint": ALB_ARN, "source_alert_id": ALB_ARN,
        "signature": "checkout-alb-5xx-rate",
        "severity": "info", "raw_severity": "OK", "status": "resolved", "asset": ALB,
        "occurred_at_us": parse_rfc3339_us("2026-11-26T10:31:07.5Z"),
        "message": "Threshold Crossed: no datapoints were received for 1 period and 1 missing "
                   "datapoint was treated as [NonBreaching].",
        "labels": ALB_LABELS}),
]
EVENTBRIDGE_CASES = [
    # The same alarm and state change as sns_alarm.json, raw UTF-8; the event id is the
    # delivery id; detail.state.timestamp, not the top-level `time`.
    ("eventbridge_alarm.json", dict(ZURICH, delivery_id="c4c1c1c9-6542-e61b-6ef0-8c4d36933a92")),
    # Metric math: the expression has no metricStat; the first dimensions dict wins, in order.
    ("eventbridge_metric_math.json", {
        "source_fingerprint": ALB_ARN, "source_alert_id": ALB_ARN,
        "signature": "checkout-alb-5xx-rate",
        "severity": "warning", "raw_severity": "INSUFFICIENT_DATA", "status": "firing",
        "asset": ALB,
        "occurred_at_us": parse_rfc3339_us("2026-11-26T10:24:58.765Z"),
        "message": "Insufficient Data: 1 datapoint was unknown.",
        "labels": {**ALB_LABELS, "AvailabilityZone": "us-east-1a"},
        "delivery_id": "2dde0eb1-528b-d2d5-9ca6-6d590caf2329"}),
    # A composite alarm has a rule, no metric: no asset.
    ("eventbridge_composite.json", {
        "source_fingerprint": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-degraded",
        "source_alert_id": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-degraded",
        "signature": "checkout-degraded", "severity": "info", "raw_severity": "OK",
        "status": "resolved",
        "asset": None, "occurred_at_us": parse_rfc3339_us("2026-11-26T11:00:01Z"),
        "message": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-alb-5xx-rate "
                   "transitioned to OK at Thursday 26 November, 2026 11:00:00 UTC",
        "labels": {"region": "us-east-1", "account": "123456789012"},
        "delivery_id": "91a5b8c1-6f3e-4c2d-9d2a-0b7e4f1c2a33"}),
]
FIXED = {"source": "cloudwatch", "severity_mapped": True, "has_resolve_path": True,
         "truncated_alerts": None, "delivery_id": None}


def load(name: str) -> dict[str, Any]:
    folder = EVENTBRIDGE if name.startswith("eventbridge_") else FIXTURES
    return json.loads((folder / name).read_bytes())


@pytest.mark.parametrize(("fixture", "expected"), SNS_CASES, ids=[c[0] for c in SNS_CASES])
def test_sns_alarm_normalizes_to_the_expected_event(fixture: str, expected: dict[str, Any]) -> None:
    alarm = load(fixture)
    record = cloudwatch.normalize_alarm(alarm, RECEIVED)
    assert dataclasses.asdict(record) == {**FIXED, "body_sha256": body_hash(alarm), **expected}


@pytest.mark.parametrize(("fixture", "expected"), EVENTBRIDGE_CASES,
                         ids=[c[0] for c in EVENTBRIDGE_CASES])
def test_eventbridge_event_normalizes_to_the_expected_event(
    fixture: str, expected: dict[str, Any]
) -> None:
    event = load(fixture)
    (record,) = cloudwatch.normalize_eventbridge(event, RECEIVED)
    assert dataclasses.asdict(record) == {**FIXED, "body_sha256": body_hash(event), **expected}


def test_the_same_alarm_via_sns_and_eventbridge_is_the_same_alert() -> None:
    via_sns = cloudwatch.normalize_alarm(load("sns_alarm.json"), RECEIVED, delivery_id="m-1")
    (via_eventbridge,) = cloudwatch.normalize_eventbridge(load("eventbridge_alarm.json"), RECEIVED)
    assert via_sns.source_fingerprint == via_eventbridge.source_fingerprint == ZURICH_ARN
    assert via_sns.delivery_id == "m-1"
    # Everything but the transport's own traces (body hash, delivery id) is identical.
    strip = {"body_sha256": "", "delivery_id": None}
    assert dataclasses.replace(via_sns, **strip) == dataclasses.replace(via_eventbridge, **strip)
    # A metric-math alarm: the same fingerprint and asset on both paths.
    sns = cloudwatch.normalize_alarm(load("sns_metric_math.json"), RECEIVED)
    (eventbridge,) = cloudwatch.normalize_eventbridge(load("eventbridge_metric_math.json"),
                                                      RECEIVED)
    assert (sns.source_fingerprint, sns.asset) == (eventbridge.source_fingerprint,
                                                   eventbridge.asset) == (ALB_ARN, ALB)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"AlarmArn": None}, "AlarmArn: expected a string, got NoneType"),
        ({"NewStateValue": "BROKEN"}, "NewStateValue: unknown alarm state 'BROKEN'"),
        ({"StateChangeTime": "yesterday"},
         "StateChangeTime: 'yesterday' is not an RFC 3339 timestamp"),
        ({"StateChangeTime": "2999-01-01T00:00:00.000+0000"}, "more than a year in the future"),
        ({"StateChangeTime": 1795687200}, "StateChangeTime: expected an RFC 3339 string, got int"),
        ({"AlarmArn": "arn:aws:sns:us-east-1:123456789012:topic"},
         "AlarmArn: 'arn:aws:sns:us-east-1:123456789012:topic' is not a CloudWatch alarm ARN"),
        ({"Trigger": {"Dimensions": "InstanceId=i-1"}},
         "Trigger.Dimensions: expected an array of objects"),
        ({"Trigger": []}, "Trigger: expected an object"),
    ],
)
def test_wrong_sns_alarms_raise_a_precise_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AdapterError) as info:
        cloudwatch.normalize_alarm({**load("sns_alarm.json"), **changes}, RECEIVED)
    assert message in str(info.value)


def test_missing_sns_members_raise_a_precise_error() -> None:
    alarm = load("sns_alarm.json")
    del alarm["StateChangeTime"]
    with pytest.raises(AdapterError, match=r"^Message\.StateChangeTime: missing$"):
        cloudwatch.normalize_alarm(alarm, RECEIVED)
    with pytest.raises(AdapterError, match="Message: expected an alarm object, got str"):
        cloudwatch.normalize_alarm("{}", RECEIVED)


def eventbridge_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    event = load("eventbridge_alarm.json")
    target = event
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return event


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("detail-type",), "EC2 Instance State-change Notification",
         "detail-type: expected 'CloudWatch Alarm State Change'"),
        (("resources",), [], "resources: expected a non-empty array holding the alarm ARN"),
        (("resources",), KeyError, "body.resources: missing"),
        (("resources",), ["arn:aws:ec2:us-east-1:123456789012:instance/i-1"],
         "resources[0]: 'arn:aws:ec2:us-east-1:123456789012:instance/i-1' is not a CloudWatch "
         "alarm ARN"),
        (("detail",), [], "detail: expected an object, got list"),
        (("detail", "state"), KeyError, "detail.state: missing"),
        (("detail", "state", "value"), "ALARMING", "detail.state.value: unknown alarm state"),
        (("detail", "state", "timestamp"), "2026-11-26 10:00", "detail.state.timestamp:"),
        (("detail", "alarmName"), "", "detail.alarmName: must not be empty"),
        (("detail", "configuration", "metrics"), {"id": "m1"},
         "detail.configuration.metrics: expected an array of objects"),
    ],
)
def test_wrong_eventbridge_events_raise_a_precise_error(
    path: tuple[str, ...], value: Any, message: str
) -> None:
    with pytest.raises(AdapterError) as info:
        cloudwatch.normalize_eventbridge(eventbridge_with(path, value), RECEIVED)
    assert message in str(info.value)


# ---- the route, in process ---------------------------------------------------------------




def recent_event() -> bytes:
    """eventbridge_alarm.json, state change a minute ago, as UTF-8 bytes."""
    stamp = format_us(now_us() - 60_000_000)[:23] + "+0000"
    return json.dumps(eventbridge_with(("detail", "state", "timestamp"), stamp),
                      ensure_ascii=False).encode()


def test_route_is_registered_with_key_auth() -> None:
    webhook = WEBHOOKS["cloudwatch-eventbridge"]
    assert (webhook.auth, webhook.forms, webhook.normalize) == (
        "key", False, cloudwatch.normalize_eventbridge)


@pytest.mark.parametrize("auth", ["x-api-key", "basic"])
def test_api_destination_request_lands_under_the_tenant(
    client: TestClient, settings: ServiceSettings, tenant: Credentials, auth: str
) -> None:
    if auth == "basic":
        token = base64.b64encode(f"{tenant.tenant_id}:{tenant.api_key}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
    else:
        headers = {"X-API-Key": tenant.api_key}
    response = client.post(ROUTE, content=recent_event(), headers={
        **headers, "Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 202, response.text
    (row,) = alert_rows(client, settings)
    assert (row["tenant_id"], row["source"], row["source_fingerprint"]) == (
        "acme", "cloudwatch", ZURICH_ARN)
    assert (row["asset"], row["status"], row["severity"]) == ("i-0abc1234def567890", "firing",
                                                              "high")
    assert row["delivery_id"] == "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92"


def test_wrong_type_key_or_payload_is_refused(client: TestClient, tenant: Credentials) -> None:
    body = recent_event()
    key = {"X-API-Key": tenant.api_key}
    response = client.post(ROUTE, content=body, headers={**key, "Content-Type": "text/plain"})
    assert (response.status_code, response.json()["error"]) == (415, "unsupported_media_type")
    response = client.post(ROUTE, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    response = client.post(ROUTE, json={"detail-type": "Scheduled Event"}, headers=key)
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "detail-type: expected 'CloudWatch Alarm State Change', got 'Scheduled Event'")
