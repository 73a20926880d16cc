"""CloudWatch alarms delivered by Amazon SNS: a *verified* SNS notification → canonical event.

`service.sns` checks the envelope's signature and finds the tenant first; this module only
reads it. The alarm is JSON inside the string `Message` (SOURCES.md quirks: `+0000` offsets,
sometimes `\\/` and `\\uXXXX` escapes, which JSON decoding undoes); its mapping is shared with
EventBridge in `cloudwatch.normalize_alarm`, so both transports give the same fingerprint.
The SNS `MessageId` is the delivery id: SNS redelivers with the same id, so a redelivery is
a duplicate, not a second event.
"""

from __future__ import annotations

from typing import Any

from service.adapters.cloudwatch import normalize_alarm
from service.adapters.common import AdapterError, required, text
from service.body import parse_json
from service.errors import IngestError
from warehouse.contracts import AlertRecord

SOURCE = "cloudwatch"
MEDIA_TYPES = ("text/plain",)  # what SNS always sends, whatever the body holds


def normalize(document: Any, received_us: int) -> list[AlertRecord]:
    """An SNS `Notification` envelope (already verified) → the alarm's one canonical event."""
    if not isinstance(document, dict):
        raise AdapterError(f"body: expected an SNS message object, got {type(document).__name__}")
    kind = required(document, "Type", "body")
    if kind != "Notification":
        raise AdapterError(f"Type: expected 'Notification', got {str(kind)[:40]!r}")
    message_id = text(required(document, "MessageId", "body"), "MessageId")
    message = text(required(document, "Message", "body"), "Message")
    try:
        # The same strict parser as request bodies: duplicate keys, NaN, depth, NUL refused.
        alarm = parse_json(message.encode("utf-8"))
    except (IngestError, UnicodeError) as exc:
        reason = exc.message if isinstance(exc, IngestError) else "not valid UTF-8"
        raise AdapterError(f"Message: not CloudWatch alarm JSON: {reason}") from None
    return [normalize_alarm(alarm, received_us, delivery_id=message_id)]
