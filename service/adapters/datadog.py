"""Datadog Webhooks integration → canonical events (SOURCES.md, Datadog row).

Datadog posts whatever payload template the webhook was given, as JSON or, with "Encode as
form", as `application/x-www-form-urlencoded` (the route hands us a dict of strings). We read
two templates: Datadog's default one (`body`, `last_updated`, `event_type`, `title`, `date`,
`org`, `id`) and the one we document, which adds the monitor fields:

    {"id": "$ID", "date": "$DATE", "title": "$EVENT_TITLE", "body": "$EVENT_MSG",
     "event_type": "$EVENT_TYPE", "aggreg_key": "$AGGREG_KEY", "alert_id": "$ALERT_ID",
     "alert_title": "$ALERT_TITLE", "alert_transition": "$ALERT_TRANSITION",
     "alert_type": "$ALERT_TYPE", "alert_priority": "$ALERT_PRIORITY",
     "alert_scope": "$ALERT_SCOPE", "hostname": "$HOSTNAME", "tags": "$TAGS"}

Only `title` is required. Datadog renders a variable that does not apply as an empty string:
empty (or a literal `$VARIABLE`) counts as absent. Decisions beyond SOURCES.md:

- Without `$AGGREG_KEY` the fingerprint is `sha256:` + hash of (`$ALERT_ID`, the signature,
  the scope tags sorted — `$ALERT_SCOPE`, else the `{…}` of the title, else the asset): the
  title of a triggered and of a recovered notification differ only in the stripped prefixes.
- Without `$ALERT_TRANSITION` the status comes from the title prefix (`[Triggered on {…}]`,
  `[Recovered]`…); a title without one (an event, not a monitor) is a `point` event.
- Without `$ALERT_PRIORITY` the title's `[P1]` prefix is the same value and is used next.
- `$ID` (the event id, the same on Datadog's retries) is the delivery id, kept exact even
  when the template leaves it unquoted and it is an integer above 2^53.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from service.adapters.common import AdapterError, body_hash, required, text
from warehouse.contracts import AlertRecord
from warehouse.timestamps import TimestampError, check_plausible

SOURCE = "datadog"

STATUSES: dict[str, str] = {
    "recovered": "resolved",
    **dict.fromkeys(("triggered", "re-triggered", "warn", "re-warn", "no data", "re-no data",
                     "renotify"), "firing"),
}
PRIORITIES = {"p1": "critical", "p2": "high", "p3": "warning", "p4": "info", "p5": "info"}
ALERT_TYPES = {"error": "high", "warning": "warning", "info": "info", "success": "info"}
# The fingerprint: `$AGGREG_KEY`, else a hash of these (see the module docstring).
FINGERPRINT_FIELDS = ("aggreg_key",)

# `[P1] [Triggered on {host:web01,env:prod}] CPU high` → priority, status word, scope, name.
_PRIORITY_PREFIX = re.compile(r"\s*\[(?P<priority>P[1-5])\]\s*", re.IGNORECASE)
_STATUS_PREFIX = re.compile(
    r"\[(?P<status>[A-Za-z][A-Za-z -]*?)(?: on \{(?P<scope>[^}]*)\})?\]\s*"
)
_UNRENDERED = re.compile(r"\$[A-Z_]+")
_MAX_EPOCH_DIGITS = 16


def normalize(document: Any, received_us: int) -> list[AlertRecord]:
    """One webhook call (a JSON object or a form) → one canonical event."""
    if not isinstance(document, dict):
        raise AdapterError(f"body: expected an object, got {type(document).__name__}")
    title = _title(document)
    priority, prefix_word, title_scope, name = _parse_title(title)
    word = _field(document, "alert_transition") or prefix_word
    signature = _field(document, "alert_title") or name or title.strip()
    scope = _field(document, "alert_scope") or title_scope
    asset = _field(document, "hostname") or _tag(scope, "host")
    raw_severity, severity, mapped = _severity(document, priority)
    status = "point" if word is None else _status(word)
    aggreg_key = _field(document, "aggreg_key")
    return [AlertRecord(
        source=SOURCE,
        source_fingerprint=aggreg_key or _derived_fingerprint(document, signature, scope, asset),
        signature=signature,
        severity=severity,
        raw_severity=raw_severity,
        severity_mapped=mapped,
        status=status,
        body_sha256=body_hash(document),
        source_alert_id=aggreg_key,
        delivery_id=_delivery_id(document.get("id")),
        asset=asset,
        occurred_at_us=_occurred(document, received_us),
        message=_message(document),
        labels=_labels(document),
    )]


def _field(document: dict[str, Any], key: str) -> str | None:
    """An optional string field; empty or an unrendered `$VARIABLE` is absent."""
    value = document.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # an unquoted numeric variable (`"alert_id": $ALERT_ID`)
    value = text(value, key, allow_empty=True).strip()
    return None if not value or _UNRENDERED.fullmatch(value) else value


def _title(document: dict[str, Any]) -> str:
    if "title" not in document and "alert_title" in document:
        return text(document["alert_title"], "alert_title")
    return text(required(document, "title", "body"), "title")


def _parse_title(title: str) -> tuple[str | None, str | None, str | None, str]:
    """(priority, status word, scope, monitor name) of `[P1] [Triggered on {…}] name`."""
    priority = None
    match = _PRIORITY_PREFIX.match(title)
    if match:
        priority, title = match["priority"], title[match.end():]
    match = _STATUS_PREFIX.match(title)
    # A bracketed word that is no status (`[prod] CPU high`) belongs to the monitor name.
    if match is None or match["status"].lower() not in STATUSES:
        return priority, None, None, title.strip()
    return priority, match["status"], match["scope"], title[match.end():].strip()


def _status(word: str) -> str:
    status = STATUSES.get(word.lower())
    if status is None:
        raise AdapterError(f"alert_transition: unknown transition {word[:40]!r} "
                           f"(one of {', '.join(sorted(STATUSES))})")
    return status


def _severity(document: dict[str, Any], title_priority: str | None) -> tuple[str | None, str, bool]:
    """(raw word, canonical severity, mapped?): priority, else alert type, else warning."""
    for raw, table in ((_field(document, "alert_priority") or title_priority, PRIORITIES),
                       (_field(document, "alert_type"), ALERT_TYPES)):
        if raw is not None and raw.lower() in table:
            return raw, table[raw.lower()], True
    raw = _field(document, "alert_priority") or _field(document, "alert_type")
    return raw, "warning", False


def _tag(scope: str | None, key: str) -> str | None:
    """`host:web01, env:prod` → the value of `host`, if any."""
    for tag in (scope or "").split(","):
        name, sep, value = tag.strip().partition(":")
        if sep and name == key and value.strip():
            return value.strip()
    return None


def _derived_fingerprint(
    document: dict[str, Any], signature: str, scope: str | None, asset: str | None
) -> str:
    tags = sorted(t.strip() for t in scope.split(",") if t.strip()) if scope else [asset or ""]
    identity = [_field(document, "alert_id") or "", signature, tags]
    return "sha256:" + hashlib.sha256(orjson.dumps(identity)).hexdigest()[:32]


def _delivery_id(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise AdapterError(f"id: expected a string or an integer, got {type(value).__name__}")
    return str(value).strip()  # an int stays exact: orjson parses it as int, never float


def _occurred(document: dict[str, Any], received_us: int) -> int | None:
    """`$DATE` is epoch milliseconds, quoted or not; absent → the receive time (R9)."""
    digits = _field(document, "date")
    if digits is None:
        return None
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_EPOCH_DIGITS:
        raise AdapterError(f"date: expected epoch milliseconds, got {digits[:40]!r}")
    micros = int(digits) * 1000
    try:
        check_plausible(micros, received_us, "date")
    except TimestampError as exc:
        raise AdapterError(str(exc)) from None
    return micros


def _message(document: dict[str, Any]) -> str | None:
    """`$EVENT_MSG` verbatim (markdown between `%%%` lines); blank → none."""
    return _field(document, "body") and text(document["body"], "body")


def _labels(document: dict[str, Any]) -> dict[str, str]:
    """`$TAGS` (`env:prod,role:db`) as labels, plus the monitor id and event type."""
    labels: dict[str, str] = {}
    for tag in (_field(document, "tags") or "").split(","):
        name, _, value = tag.strip().partition(":")
        if name:
            labels[name] = f"{labels[name]},{value}" if name in labels else value
    for key, label in (("alert_id", "monitor_id"), ("event_type", "event_type")):
        field = _field(document, key)
        if field is not None:
            labels[label] = field
    return labels
