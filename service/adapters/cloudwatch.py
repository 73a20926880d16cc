"""CloudWatch alarms → canonical events, via SNS or via EventBridge (SOURCES.md).

Both transports describe the same state change of the same alarm, so both give the same
canonical event: source `cloudwatch`, fingerprint the alarm ARN (`AlarmArn` via SNS,
`resources[0]` via EventBridge), asset the first metric dimension value, labels account,
region, namespace, metric and dimensions. Only the body hash and the delivery id differ.

- `normalize_alarm(alarm, received_us)`: the alarm JSON of an SNS notification's `Message`
  (`AlarmName`, `AlarmArn`, `NewStateValue`, `NewStateReason`, `StateChangeTime`, `Trigger`);
  the SNS adapter verifies the envelope and passes its `MessageId` as `delivery_id`.
- `normalize_eventbridge(document, received_us)`: an unmodified "CloudWatch Alarm State
  Change" event (no input transformer) posted by an API destination; its `id` is the
  delivery id (EventBridge retries keep it).

Times use `+0000` offsets (`2026-11-26T10:00:00.123+0000`); the event time is the state
change, not EventBridge's top-level `time`. Composite alarms have no metric: no asset.
"""

from __future__ import annotations

import re
from typing import Any

from service.adapters.common import AdapterError, body_hash, event_time_us, required, text
from warehouse.contracts import AlertRecord

SOURCE = "cloudwatch"

STATUSES = {"ALARM": "firing", "INSUFFICIENT_DATA": "firing", "OK": "resolved"}
SEVERITIES = {"ALARM": "high", "INSUFFICIENT_DATA": "warning", "OK": "info"}
DETAIL_TYPE = "CloudWatch Alarm State Change"

_COMPACT_OFFSET = re.compile(r"([+-][0-9]{2})([0-9]{2})$")
# arn:<partition>:cloudwatch:<region>:<account>:alarm:<name>
_ALARM_ARN = re.compile(r"arn:[a-z-]+:cloudwatch:([a-z0-9-]+):([0-9]{12}):alarm:.+", re.DOTALL)


def normalize_alarm(
    alarm: Any, received_us: int, *, delivery_id: str | None = None
) -> AlertRecord:
    """The SNS-shaped alarm JSON (the decoded `Message`) → one canonical event."""
    if not isinstance(alarm, dict):
        raise AdapterError(f"Message: expected an alarm object, got {type(alarm).__name__}")
    trigger = alarm.get("Trigger")
    trigger = {} if trigger is None else trigger  # composite alarms have no trigger
    if not isinstance(trigger, dict):
        raise AdapterError("Trigger: expected an object")
    dimensions = _sns_dimensions(trigger)
    return _record(
        arn=_alarm_arn(required(alarm, "AlarmArn", "Message"), "AlarmArn"),
        name=text(required(alarm, "AlarmName", "Message"), "AlarmName"),
        state=required(alarm, "NewStateValue", "Message"),
        where="NewStateValue",
        changed=event_time_us(_colon_offset(required(alarm, "StateChangeTime", "Message")),
                              received_us, "StateChangeTime"),
        reason=alarm.get("NewStateReason"),
        metric=_sns_metric(trigger),
        dimensions=dimensions,
        body=alarm,
        delivery_id=delivery_id,
    )


def normalize_eventbridge(document: Any, received_us: int) -> list[AlertRecord]:
    """An EventBridge "CloudWatch Alarm State Change" event → one canonical event."""
    if not isinstance(document, dict):
        raise AdapterError(f"body: expected an event object, got {type(document).__name__}")
    detail_type = required(document, "detail-type", "body")
    if detail_type != DETAIL_TYPE:
        raise AdapterError(f"detail-type: expected {DETAIL_TYPE!r}, got {str(detail_type)[:60]!r}")
    resources = required(document, "resources", "body")
    if not isinstance(resources, list) or not resources:
        raise AdapterError("resources: expected a non-empty array holding the alarm ARN")
    detail = required(document, "detail", "body")
    state = required(detail, "state", "detail")
    metrics = _objects(_path(detail, "configuration", "metrics"), "detail.configuration.metrics")
    event_id = document.get("id")
    return [_record(
        arn=_alarm_arn(resources[0], "resources[0]"),
        name=text(required(detail, "alarmName", "detail"), "detail.alarmName"),
        state=required(state, "value", "detail.state"),
        where="detail.state.value",
        changed=event_time_us(_colon_offset(required(state, "timestamp", "detail.state")),
                              received_us, "detail.state.timestamp"),
        reason=state.get("reason"),
        metric=_eventbridge_metric(metrics),
        dimensions=_eventbridge_dimensions(metrics),
        body=document,
        delivery_id=event_id if isinstance(event_id, str) and event_id else None,
    )]


normalize = normalize_eventbridge  # the `cloudwatch-eventbridge` webhook route


def _record(
    *, arn: str, name: str, state: Any, where: str, changed: int, reason: Any,
    metric: tuple[str | None, str | None], dimensions: list[tuple[str, str]],
    body: dict[str, Any], delivery_id: str | None,
) -> AlertRecord:
    if not isinstance(state, str) or state not in STATUSES:
        raise AdapterError(f"{where}: unknown alarm state {str(state)[:40]!r} "
                           f"(one of {', '.join(STATUSES)})")
    _, _, _, region, account, _ = arn.split(":", 5)
    labels = dict(dimensions)
    labels.update(region=region, account=account)
    for key, value in zip(("namespace", "metric"), metric, strict=True):
        if value:
            labels[key] = value
    return AlertRecord(
        source=SOURCE, source_fingerprint=arn, signature=name,
        severity=SEVERITIES[state], raw_severity=state, severity_mapped=True,
        status=STATUSES[state], body_sha256=body_hash(body), source_alert_id=arn,
        delivery_id=delivery_id, asset=dimensions[0][1] if dimensions else None,
        occurred_at_us=changed, message=reason if isinstance(reason, str) else None,
        labels=labels,
    )


def _alarm_arn(value: Any, where: str) -> str:
    """The alarm ARN, the fingerprint on both transports, verbatim."""
    if _ALARM_ARN.fullmatch(text(value, where)) is None:
        raise AdapterError(f"{where}: {value[:80]!r} is not a CloudWatch alarm ARN")
    return str(value)


def _colon_offset(value: Any) -> Any:
    """`…+0000` → `…+00:00` (CloudWatch writes ISO 8601 offsets without the colon)."""
    return _COMPACT_OFFSET.sub(r"\1:\2", value) if isinstance(value, str) else value


def _sns_dimensions(trigger: dict[str, Any]) -> list[tuple[str, str]]:
    """`Trigger.Dimensions`, else the first metric of a metric-math `Trigger.Metrics` that
    has dimensions: [(name, value), …] in the order sent."""
    candidates = [trigger.get("Dimensions")] + [
        _path(m, "MetricStat", "Metric", "Dimensions")
        for m in _objects(trigger.get("Metrics"), "Trigger.Metrics")
    ]
    for dims in candidates:
        pairs = [(d["name"], d["value"]) for d in _objects(dims, "Trigger.Dimensions")
                 if isinstance(d.get("name"), str) and isinstance(d.get("value"), str)]
        if pairs:
            return pairs
    return []


def _sns_metric(trigger: dict[str, Any]) -> tuple[str | None, str | None]:
    metrics = [trigger] + [_path(m, "MetricStat", "Metric") or {}
                           for m in _objects(trigger.get("Metrics"), "Trigger.Metrics")]
    return _first_metric(metrics, "Namespace", "MetricName")


def _eventbridge_dimensions(metrics: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The first `metricStat.metric.dimensions` object found (a dict, in the order sent)."""
    for item in metrics:
        dims = _path(item, "metricStat", "metric", "dimensions")
        if isinstance(dims, dict):
            pairs = [(k, v) for k, v in dims.items() if isinstance(v, str)]
            if pairs:
                return pairs
    return []


def _eventbridge_metric(metrics: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    return _first_metric([_path(m, "metricStat", "metric") or {} for m in metrics],
                         "namespace", "name")


def _first_metric(
    candidates: list[Any], namespace: str, name: str
) -> tuple[str | None, str | None]:
    for metric in candidates:
        if isinstance(metric, dict) and isinstance(metric.get(name), str) and metric[name]:
            ns = metric.get(namespace)
            return (ns if isinstance(ns, str) else None), metric[name]
    return None, None


def _path(value: Any, *keys: str) -> Any:
    """`value[k1][k2]…`, or None where a member is missing or not an object."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    """An optional array of objects; anything else is structurally wrong."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise AdapterError(f"{where}: expected an array of objects")
    return value
