"""The canonical alert: the one type in the middle of the product (SEMANTICS.md vocabulary).

Every source adapter converts what a monitoring tool sends into `AlertRecord`s; the durable
buffer and the lake store them as canonical events (see `warehouse.schema`). Conversions
happen only at the edges.

`CanonicalAlertIn` is the public JSON contract of `POST /v1/alerts`: its pydantic model is
both the validator and the OpenAPI documentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"


class Status(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"
    POINT = "point"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}

MAX_TEXT = 4096
MAX_MESSAGE = 16384
MAX_LABELS = 128

# RFC 3339 with a mandatory offset; up to 9 fractional digits (Go emits nanoseconds).
# ASCII digits only: the validator's `\d` would also match non-ASCII digits ("２０２６").
RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LabelValue = Annotated[str, StringConstraints(max_length=MAX_TEXT)]


class CanonicalAlertIn(BaseModel):
    """One alert object as a sender posts it to `POST /v1/alerts`."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "source_alert_id": "disk-web01-var",
                    "delivery_id": "7f9c2a10-0b1e-4c55-9d0e-3b8f6f1e2d11",
                    "asset": "web01",
                    "signature": "disk_full",
                    "severity": "critical",
                    "status": "firing",
                    "occurred_at": "2026-11-26T10:00:00Z",
                    "message": "/var is 97% full",
                    "labels": {"env": "prod", "mount": "/var"},
                    "source": "nagios",
                },
                {"asset": "db02", "signature": "backup_failed", "severity": "high"},
            ]
        },
    )

    source_alert_id: ShortText | None = Field(
        default=None,
        description="The sender's identity of the alert. Stateful (firing/resolved) alerts "
        "need it so that a resolve finds its firing event.",
    )
    delivery_id: ShortText | None = Field(
        default=None,
        description="Unique per delivery. A delivery id seen before for this tenant and "
        "source is an exact duplicate (R2), whatever its age.",
    )
    asset: Annotated[str, StringConstraints(max_length=MAX_TEXT)] | None = Field(
        default=None, description="The thing that is affected (host, service, device)."
    )
    signature: ShortText = Field(description="What is wrong, e.g. `disk_full`.")
    severity: Literal["critical", "high", "warning", "info"] = Field(
        default="warning", description="Canonical severity."
    )
    status: Literal["firing", "resolved", "point"] | None = Field(
        default=None,
        description="Default: `firing` when `source_alert_id` is given, else `point`.",
    )
    occurred_at: str | None = Field(
        default=None,
        pattern=RFC3339_PATTERN,
        description="RFC 3339 event time with an offset; default: the receive time. "
        "Digits beyond microseconds are truncated.",
        examples=["2026-11-26T10:00:00.123456789Z"],
    )
    message: Annotated[str, StringConstraints(max_length=MAX_MESSAGE)] | None = None
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=MAX_LABELS, description="String-to-string labels."
    )
    source: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        default="generic", description="Free text naming the sending tool."
    )


@dataclass(slots=True)
class AlertRecord:
    """One normalized event before it is given an id and a sequence number.

    `occurred_at_us` is microseconds since the Unix epoch (UTC) or None for "use the
    receive time". `body_sha256` is the hash of the alert object itself (R2), without
    envelope fields.
    """

    source: str
    source_fingerprint: str
    signature: str
    severity: str
    status: str
    body_sha256: str
    source_alert_id: str | None = None
    delivery_id: str | None = None
    asset: str | None = None
    occurred_at_us: int | None = None
    message: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    raw_severity: str | None = None
    # Alert quality (SEMANTICS.md KPI): was the source's severity recognised, can this alert
    # ever be resolved by its source, how many alerts the source dropped from the notification.
    severity_mapped: bool = True
    has_resolve_path: bool | None = None  # None: derived, True for firing/resolved events
    truncated_alerts: int | None = None

    def __post_init__(self) -> None:
        if self.has_resolve_path is None:
            self.has_resolve_path = self.status != "point"

    @property
    def missing_asset(self) -> bool:
        """R4: an empty or whitespace-only asset is a missing asset."""
        return self.asset is None or not self.asset.strip()
