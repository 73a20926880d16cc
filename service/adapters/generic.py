"""The generic format of `POST /v1/alerts`: canonical alert objects, one or an array.

The fingerprint of a stateful alert is the sender's `source_alert_id`; without one it is
derived from the asset, signature and labels, so a resolve without an id still finds the
firing event it ends. The body hash (R2) covers the alert object exactly as sent.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from service.adapters.common import AdapterError, body_hash
from warehouse.contracts import AlertRecord, CanonicalAlertIn
from warehouse.timestamps import TimestampError, check_plausible, parse_rfc3339_us

SOURCE = "generic"
MAX_ALERTS_PER_REQUEST = 10_000

_MANY = TypeAdapter(list[CanonicalAlertIn])


def normalize(document: Any, received_us: int) -> list[AlertRecord]:
    """Validate one alert object or an array of them into canonical records."""
    objects = document if isinstance(document, list) else [document]
    if not objects:
        raise AdapterError("the array holds no alerts")
    if len(objects) > MAX_ALERTS_PER_REQUEST:
        raise AdapterError(f"at most {MAX_ALERTS_PER_REQUEST} alerts per request")
    try:
        alerts = _MANY.validate_python(objects)
    except ValidationError as exc:
        raise AdapterError(_describe(exc, isinstance(document, list))) from None
    return [
        _record(alert, raw, i if isinstance(document, list) else None, received_us)
        for i, (alert, raw) in enumerate(zip(alerts, objects, strict=True))
    ]


def _record(
    alert: CanonicalAlertIn, raw: dict[str, Any], index: int | None, now: int
) -> AlertRecord:
    occurred = None
    if alert.occurred_at is not None:
        try:
            occurred = parse_rfc3339_us(alert.occurred_at)
            check_plausible(occurred, now)
        except TimestampError as exc:
            raise AdapterError(f"{_where(index)}occurred_at: {exc}") from None
    status = alert.status or ("firing" if alert.source_alert_id else "point")
    return AlertRecord(
        source=alert.source,
        source_fingerprint=alert.source_alert_id or _derived_fingerprint(alert),
        signature=alert.signature,
        severity=alert.severity,
        raw_severity=raw.get("severity"),
        severity_mapped="severity" in raw,  # absent: defaulted to warning, not mapped
        status=status,
        body_sha256=body_hash(raw),
        source_alert_id=alert.source_alert_id,
        delivery_id=alert.delivery_id,
        asset=alert.asset,
        occurred_at_us=occurred,
        message=alert.message,
        labels=alert.labels,
    )


def _derived_fingerprint(alert: CanonicalAlertIn) -> str:
    identity = [alert.asset or "", alert.signature, sorted(alert.labels.items())]
    return "sha256:" + hashlib.sha256(orjson.dumps(identity)).hexdigest()[:32]


def _where(index: int | None) -> str:
    return "" if index is None else f"alerts[{index}]."


def _describe(exc: ValidationError, is_list: bool) -> str:
    """The first few problems, each with its location, e.g. `alerts[3].severity: …`."""
    parts = []
    for error in exc.errors()[:5]:
        loc = list(error["loc"])
        index = int(loc.pop(0)) if loc and isinstance(loc[0], int) else None
        where = _where(index if is_list else None) + ".".join(str(p) for p in loc)
        parts.append(f"{where or 'body'}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
