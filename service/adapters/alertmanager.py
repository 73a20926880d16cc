"""Prometheus Alertmanager's webhook (`version "4"`): one event per object in `alerts`.

Mapping (SOURCES.md): fingerprint `alerts[].fingerprint` (also the source alert id),
signature `labels.alertname`, asset by the label rule, severity from label `severity`, status
**per alert** (the group's top-level status is ignored: a `firing` notification carries the
group's resolved alerts too), event time `startsAt` when firing and `endsAt` when resolved.
Go's zero time (`0001-01-01T00:00:00Z`) is "no end" as a firing alert's `endsAt`, and an
error anywhere else. `truncatedAlerts` (alerts `max_alerts` dropped) goes on every event.

Decisions:
- The R2 body hash covers the alert object alone. Each group notification re-sends every
  current alert of the group, and Alertmanager blanks a firing alert's `endsAt`, so an
  unchanged alert re-sent is byte-for-byte the same object: an exact duplicate (counted,
  refreshes `last_seen`, not processed again). An alert whose annotations changed is a new
  firing event of the same open alert (R3). Without this, the event counts would depend on
  the sender's `group_interval` and `repeat_interval` and on unrelated alerts of its group.
- Annotations are not copied into `labels`: labels are the alert's identity (usable as
  aggregation keys), annotations are free text that changes between notifications. The
  message comes from them, and the raw body keeps all of them.
- The message is cut at `MAX_MESSAGE` characters; the archived body keeps it whole.
"""

from __future__ import annotations

from typing import Any

from service.adapters.common import (
    AdapterError,
    asset_from_labels,
    body_hash,
    required,
    severity_from_word,
    string_map,
    text,
)
from warehouse.contracts import MAX_MESSAGE, AlertRecord
from warehouse.timestamps import TimestampError, check_plausible, parse_rfc3339_us

SOURCE = "alertmanager"
VERSION = "4"
FINGERPRINT_FIELD = "fingerprint"
SIGNATURE_LABEL = "alertname"
SEVERITY_LABEL = "severity"
STATUSES = {"firing": "firing", "resolved": "resolved"}
# Which timestamp is the event time, per status.
EVENT_TIME_FIELD = {"firing": "startsAt", "resolved": "endsAt"}
MESSAGE_ANNOTATIONS = ("summary", "description", "message")
GO_ZERO_TIME_US = parse_rfc3339_us("0001-01-01T00:00:00Z")
MAX_TRUNCATED = 2**31 - 1  # the lake's int32 column


def normalize(document: Any, received_us: int) -> list[AlertRecord]:
    return normalize_notification(document, received_us, SOURCE, VERSION)


def normalize_notification(
    document: Any, received_us: int, source: str, version: str
) -> list[AlertRecord]:
    """An Alertmanager-shaped notification (Alertmanager's, or Grafana's) → its events."""
    sent_version = required(document, "version", "body")
    if sent_version != version:
        raise AdapterError(
            f"version: expected {version!r} for the {source} webhook, got {sent_version!r:.40}")
    alerts = required(document, "alerts", "body")
    if not isinstance(alerts, list):
        raise AdapterError(f"alerts: expected an array, got {type(alerts).__name__}")
    if not alerts:
        raise AdapterError("alerts: the notification holds no alerts")
    truncated = document.get("truncatedAlerts")
    if truncated is not None and (
        not isinstance(truncated, int) or isinstance(truncated, bool)
        or not 0 <= truncated <= MAX_TRUNCATED
    ):
        raise AdapterError(f"truncatedAlerts: expected an integer from 0 to {MAX_TRUNCATED}")
    return [
        _record(alert, f"alerts[{i}]", received_us, source, truncated)
        for i, alert in enumerate(alerts)
    ]


def _record(
    alert: Any, where: str, now: int, source: str, truncated: int | None
) -> AlertRecord:
    fingerprint = text(required(alert, FINGERPRINT_FIELD, where), f"{where}.{FINGERPRINT_FIELD}")
    word = required(alert, "status", where)
    status = STATUSES.get(word) if isinstance(word, str) else None
    if status is None:
        raise AdapterError(f"{where}.status: {word!r:.40} is not one of {', '.join(STATUSES)}")
    labels = string_map(required(alert, "labels", where), f"{where}.labels")
    if SIGNATURE_LABEL not in labels:
        raise AdapterError(f"{where}.labels.{SIGNATURE_LABEL}: missing")
    signature = text(labels[SIGNATURE_LABEL], f"{where}.labels.{SIGNATURE_LABEL}")
    annotations = string_map(alert.get("annotations"), f"{where}.annotations")
    times = {"startsAt": _time(required(alert, "startsAt", where), now, f"{where}.startsAt")}
    if status == "resolved":
        times["endsAt"] = _time(required(alert, "endsAt", where), now, f"{where}.endsAt")
    elif alert.get("endsAt") is not None:  # firing: zero time = no end; the value is unused
        _check_format(alert["endsAt"], f"{where}.endsAt")
    occurred = times[EVENT_TIME_FIELD[status]]
    severity, mapped = severity_from_word(labels.get(SEVERITY_LABEL))
    message = next(
        (annotations[a] for a in MESSAGE_ANNOTATIONS if annotations.get(a, "").strip()), signature
    )
    return AlertRecord(
        source=source,
        source_fingerprint=fingerprint,
        source_alert_id=fingerprint,
        signature=signature,
        severity=severity,
        raw_severity=labels.get(SEVERITY_LABEL),
        severity_mapped=mapped,
        status=status,
        body_sha256=body_hash(alert),
        asset=asset_from_labels(labels),
        occurred_at_us=occurred,
        message=message[:MAX_MESSAGE],
        labels=labels,
        truncated_alerts=truncated,
    )


def _time(value: Any, now: int, where: str) -> int:
    micros = _check_format(value, where)
    if micros == GO_ZERO_TIME_US:
        raise AdapterError(f"{where}: Go's zero time {value!r:.40} is not an event time")
    try:
        check_plausible(micros, now, where)
    except TimestampError as exc:
        raise AdapterError(str(exc)) from None
    return micros


def _check_format(value: Any, where: str) -> int:
    if not isinstance(value, str):
        raise AdapterError(f"{where}: expected an RFC 3339 string, got {type(value).__name__}")
    try:
        return parse_rfc3339_us(value)
    except TimestampError as exc:
        raise AdapterError(f"{where}: {exc}") from None
