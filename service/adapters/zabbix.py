"""Zabbix, through the media type we ship → canonical events (SOURCES.md, Zabbix row).

The body is `JSON.stringify(params)` of `integrations/zabbix/alert_whisperer_media_type.yaml`:
a flat object of strings named after the macros. Zabbix leaves a macro it cannot resolve as
literal text (`{EVENT.RECOVERY.ID}` in a problem message): such a value counts as absent.

Decisions beyond SOURCES.md:

- `event_update_status` 1 (acknowledged, commented, severity changed…) is a re-send of the
  same alert: same fingerprint, status from `event_value`, and the event time of the state it
  reports (the problem's start, or its recovery). The update's own time is no parameter, and
  re-using the state's time means a late update can never reopen a resolved alert (R11).
- Only trigger (0) and internal (3) events have a problem/recovery lifecycle; discovery and
  autoregistration events are refused with a 422 (the media type's actions should not send
  them).
- Local times in a DST fold take the first occurrence (`fold=0`): Zabbix sends no offset.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.adapters.common import AdapterError, body_hash, required, text
from warehouse.contracts import AlertRecord
from warehouse.timestamps import TimestampError, check_plausible

SOURCE = "zabbix"

# `{EVENT.NSEVERITY}`, never the localisable name; missing or unknown → warning, unmapped.
SEVERITIES = {"5": "critical", "4": "high", "3": "warning", "2": "warning", "1": "info",
              "0": "info"}
STATUSES = {"1": "firing", "0": "resolved"}
STATEFUL_SOURCES = {"0", "3"}  # trigger and internal events
FINGERPRINT_FIELD = "event_id"  # `{EVENT.ID}`: the problem's id, also in recovery and update
# Copied into labels (besides the event tags) when Zabbix resolved them.
# `event_update_action` is resolved only in update messages: it marks them.
LABEL_FIELDS = ("host_host", "host_ip", "trigger_id", "event_severity", "event_ack",
                "event_update_action")
UPDATE_STATUSES = {"0", "1"}  # `{EVENT.UPDATE.STATUS}`: 1 = an update of the same alert

# `{EVENT.ID}`, `{$ZABBIX.URL}`, `{$MACRO:"context"}`, `{#LLD.MACRO}`.
_MACRO = re.compile(r"\{[$#]?[A-Z0-9_.]+(?::[^{}]*)?\}")
_DATE = re.compile(r"([0-9]{4})\.([0-9]{2})\.([0-9]{2})")
_TIME = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+){0,2}")


def normalize(document: Any, received_us: int) -> list[AlertRecord]:
    """One media type call → one canonical event."""
    if not isinstance(document, dict):
        raise AdapterError(f"body: expected an object, got {type(document).__name__}")
    params = _strings(document)
    source = _value(params, "event_source") or "0"
    if source not in STATEFUL_SOURCES:
        raise AdapterError(f"event_source: {source[:20]!r} is not a trigger (0) or internal "
                           "(3) event; only those have a problem and a recovery")
    value = _required(params, "event_value")
    status = STATUSES.get(value)
    if status is None:
        raise AdapterError(f"event_value: expected 1 (problem) or 0 (recovery), got {value[:20]!r}")
    update = _value(params, "event_update_status")
    if update is not None and update not in UPDATE_STATUSES:
        raise AdapterError(f"event_update_status: expected 0 or 1, got {update[:20]!r}")
    nseverity = _value(params, "event_nseverity")
    severity = SEVERITIES.get(nseverity or "")
    prefix = "event_recovery" if status == "resolved" else "event"
    fingerprint, signature = _required(params, FINGERPRINT_FIELD), _required(params, "event_name")
    # The message verbatim (Zabbix's CRLF line ends included); unresolved → the event name.
    message = params["alert_message"] if _value(params, "alert_message") else params["event_name"]
    return [AlertRecord(
        source=SOURCE,
        source_fingerprint=fingerprint,
        signature=signature,
        severity=severity or "warning",
        raw_severity=nseverity,
        severity_mapped=severity is not None,
        status=status,
        body_sha256=body_hash(document),
        source_alert_id=fingerprint,
        asset=_value(params, "host_name"),
        occurred_at_us=_occurred(params, prefix, _zone(params), received_us),
        message=message,
        labels=_labels(params),
    )]


def _strings(document: dict[str, Any]) -> dict[str, str]:
    """Every value is a string (the script posts Zabbix's macro expansions as they are)."""
    for key, value in document.items():
        if not isinstance(value, str):
            raise AdapterError(f"{key}: expected a string, got {type(value).__name__}")
    return document


def _value(params: dict[str, str], key: str) -> str | None:
    """The value, or None when it is absent, blank or an unresolved macro."""
    value = params.get(key, "").strip()
    return None if not value or _MACRO.fullmatch(value) else value


def _required(params: dict[str, str], key: str) -> str:
    value = text(required(params, key, "body"), key, allow_empty=True).strip()
    if _MACRO.fullmatch(value):
        raise AdapterError(f"{key}: the macro {value[:60]} was not resolved by Zabbix")
    return text(value, key)


def _zone(params: dict[str, str]) -> ZoneInfo:
    """`zabbix_timezone`, an IANA name set by the admin; absent → UTC."""
    name = _value(params, "zabbix_timezone") or "UTC"
    if len(name) > 64 or not _ZONE_NAME.fullmatch(name):
        raise AdapterError(f"zabbix_timezone: {name[:64]!r} is not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise AdapterError(f"zabbix_timezone: unknown time zone {name!r}") from None


def _occurred(params: dict[str, str], prefix: str, zone: ZoneInfo, received_us: int) -> int:
    """`2026.11.26` + `10:00:00`, server-local in `zone` → µs since the epoch, UTC."""
    day, clock = _required(params, f"{prefix}_date"), _required(params, f"{prefix}_time")
    date_match, time_match = _DATE.fullmatch(day), _TIME.fullmatch(clock)
    if date_match is None or time_match is None:
        raise AdapterError(f"{prefix}_date/{prefix}_time: expected YYYY.MM.DD and HH:MM:SS, "
                           f"got {day[:20]!r} {clock[:20]!r}")
    year, month, day_of_month = map(int, date_match.groups())
    hour, minute, second = map(int, time_match.groups())
    try:
        local = datetime(year, month, day_of_month, hour, minute, second, tzinfo=zone)
    except ValueError as exc:
        raise AdapterError(f"{prefix}_date/{prefix}_time: {exc}") from None
    micros = (local - _EPOCH) // _MICROSECOND
    try:
        check_plausible(micros, received_us, f"{prefix}_date/{prefix}_time")
    except TimestampError as exc:
        raise AdapterError(str(exc)) from None
    return micros


def _labels(params: dict[str, str]) -> dict[str, str]:
    """`{EVENT.TAGSJSON}` (`[{"tag": "…", "value": "…"}]`) plus a few Zabbix fields."""
    labels: dict[str, str] = {}
    tags_json = _value(params, "event_tags_json")
    if tags_json is not None:
        try:
            tags = json.loads(tags_json)
        except (ValueError, RecursionError):
            raise AdapterError("event_tags_json: not valid JSON") from None
        if not isinstance(tags, list) or not all(
            isinstance(t, dict) and isinstance(t.get("tag"), str)
            and isinstance(t.get("value", ""), str) for t in tags
        ):
            raise AdapterError('event_tags_json: expected [{"tag": "…", "value": "…"}, …]')
        for tag in tags:
            name, value = tag["tag"], tag.get("value", "")
            labels[name] = f"{labels[name]},{value}" if name in labels else value
    for key in LABEL_FIELDS:
        value = _value(params, key)
        if value is not None:
            labels.setdefault(key, value)
    return labels
